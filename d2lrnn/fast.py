"""FastRNNScratch: "Making the scratch RNN fast" (book/performance.ipynb).

A faster scratch RNN: the mathematics of D2L 8.5, arranged for the CPU.

``FastRNNScratch`` computes exactly what ``RNNModelScratch`` with
``get_params``, ``init_rnn_state`` and ``rnn`` computes::

    H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)     # (batch_size, num_hiddens)
    O_t = H_t W_hq + b_q                          # (batch_size, vocab_size)

with the same five parameters (drawn by ``get_params``, so a seed gives the
same start), the same state and the same output rows, so ``sgd``,
``grad_clipping``, ``train_epoch_ch8``, ``train_ch8`` and ``predict_ch8``
use it unchanged. What makes it fast, each step measured
(``bench/bench_speed.py``, the book's page "Making the scratch RNN fast"):

1. **oneDNN kernels.** In the MXNet 1.9.1 wheel ``np.dot`` goes to an
   OpenBLAS built for SSE and ``np.tanh`` to a scalar loop;
   ``npx.fully_connected`` and ``npx.activation`` go to oneDNN, which
   generates code for the CPU it runs on (AVX-512 here); the benchmark
   records both libraries' rates.
2. **The state kept transposed.** oneDNN multiplies (512, 512) by
   (512, 32) faster than (32, 512) by (512, 512) (the benchmark records
   both), so each step computes H_t^T = tanh(W_hh^T H_{t-1}^T + ...) and
   transposes the small result back with MXNet's classic ``transpose`` (a
   oneDNN reorder, faster here than ``np.transpose``).
3. **Inputs and outputs for all steps at once.** X_t W_xh + b_h for every
   step is one product with the one-hot inputs (the autograd variants pick
   rows of ``W_xh`` with ``npx.embedding``); the output layer is one
   (num_steps * batch_size, num_hiddens) product.
4. **Backpropagation through time by hand.** Autograd computes dW_hh as
   num_steps thin (num_hiddens, batch_size) x (batch_size, num_hiddens)
   products and adds them up; the hand-written backward only carries dH
   from step to step and then forms the weight gradients as three products
   over all steps, the bias gradients and dW_xh included (rows of ones and
   of one-hot inputs).
5. **Cached graphs.** Forward and backward are each one hybridized graph
   (built once per num_steps and batch_size), so no Python runs per
   operator; the model records one operation (an ``autograd.Function``)
   per call. They allocate per call (no ``static_alloc``): as fast, and
   less peak memory.
6. **One ``split``, not ``np.split``**: MXNet's ``np.split`` into 35 parts
   costs as much as the recurrence; the classic ``split``
   (``SliceChannel``) used here writes all the parts in one cheap
   operator, cheaper than one ``slice`` per step.
7. **One native operator pair** (the default where it can be built):
   ``csrc/rnn_op.cc`` runs all steps forward, and back, in two MXNet
   operator calls per minibatch instead of several per step; see
   ``d2lrnn.native``. ``native=False`` keeps the cached graphs above.

The class is deliberately *not* a Gluon ``Block``: ``train_ch8`` would then
re-initialise it and train it with a Gluon ``Trainer``. Its parameters are
the plain arrays of ``get_params``, and the gradients land in their
``.grad``.
"""
import mxnet
from mxnet import autograd, gluon, np, npx

from . import native as _native
from .checks import check_fraction, check_one_of, check_positive
from .model import get_params, init_rnn_state


def rnn_unrolled(F, X, H, params, sizes, mask=None, activation='tanh'):
    """The RNN of D2L 8.5.3 over token ids `X` from state `H`.

    `X` is shaped (batch_size, num_steps). `F` holds the ``np``/``npx``
    namespaces (``mxnet.ndarray`` imperatively, ``mxnet.symbol`` when
    hybridized); `sizes` is (vocab_size, num_hiddens, num_steps), which a
    symbolic graph cannot read from shapes. Returns the outputs
    (num_steps * batch_size, vocab_size), step after step as in ``rnn``,
    and the last hidden state (batch_size, num_hiddens). Autograd
    differentiates it (variants 'hybrid' and 'imperative'); the default
    variant runs ``_BPTTForward`` and ``_BPTTBackward`` instead. A dropout
    `mask` (num_steps * batch_size, num_hiddens), if given, multiplies the
    hidden states on their way to the output layer (not on their way to the
    next step). `activation` is 'tanh' (the section's) or 'relu'
    (exercise 6).
    """
    W_xh, W_hh, b_h, W_hq, b_q = params
    vocab_size, num_hiddens, num_steps = sizes
    XW = _input_projection(F, X, W_xh, b_h, vocab_size, num_hiddens)
    # fully_connected multiplies by the transpose of its weight
    W_hh_T = W_hh.T
    Hs = []
    # XW_t: (batch_size, num_hiddens)
    for XW_t in _unstack(F, XW, num_steps):
        HW = F.npx.fully_connected(H, W_hh_T, no_bias=True,
                                   num_hidden=num_hiddens)
        # (batch_size, num_hiddens)
        H = F.npx.activation(XW_t + HW, act_type=activation)
        Hs.append(H)
    # (num_steps * batch_size, num_hiddens)
    Hs = F.np.concatenate(Hs) if num_steps > 1 else Hs[0]
    if mask is not None:
        Hs = Hs * mask
    return (F.npx.fully_connected(Hs, W_hq.T, b_q, num_hidden=vocab_size),
            H)


def _input_projection(F, X, W_xh, b_h, vocab_size, num_hiddens):
    """X_t W_xh + b_h for every step at once, by row lookup.

    A one-hot X_t picks a row of W_xh.
    """
    XW = F.npx.embedding(X.T, W_xh, input_dim=vocab_size,
                         output_dim=num_hiddens)
    return XW + b_h  # (num_steps, batch_size, num_hiddens)


class _Unrolled(gluon.HybridBlock):
    """``rnn_unrolled`` as a cached graph, for one set of sizes.

    The sizes are (vocab_size, num_hiddens, num_steps).

    It has no parameters of its own: the five arrays come in as inputs, so
    their gradients go to the arrays of ``get_params``.
    """

    def __init__(self, sizes, activation='tanh'):
        super().__init__()
        self.sizes, self.activation = sizes, activation

    def hybrid_forward(self, F, X, H, W_xh, W_hh, b_h, W_hq, b_q, *mask):
        return rnn_unrolled(F, X, H, (W_xh, W_hh, b_h, W_hq, b_q),
                            self.sizes, mask[0] if mask else None,
                            self.activation)


def _transpose(F, Z, axes=None):
    """Z transposed by MXNet's classic ``transpose``.

    It runs as a oneDNN reorder, much faster here than ``np.transpose``.
    """
    Z = Z.as_nd_ndarray()
    return (F.transpose(Z, axes=axes) if axes
            else F.transpose(Z)).as_np_ndarray()


def _unstack(F, Z, num, axis=0):
    """The `num` slices of Z along `axis`, that axis dropped.

    One classic ``split`` cuts them all.
    """
    if num == 1:
        return [F.np.squeeze(Z, axis=axis)]
    parts = F.split(Z.as_nd_ndarray(), num_outputs=num, axis=axis,
                    squeeze_axis=True)
    return [parts[i].as_np_ndarray() for i in range(num)]


class _BPTTForward(gluon.HybridBlock):
    """Forward pass as a cached graph, the hidden state kept *transposed*.

    oneDNN multiplies (num_hiddens, num_hiddens) by
    (num_hiddens, batch_size) faster than (batch_size, num_hiddens) by
    (num_hiddens, num_hiddens) (mb512ic512oc32 against mb32ic512oc512 in
    its verbose log, ``DNNL_VERBOSE=1``), so each step computes
    H_t^T = tanh(W_hh^T H_{t-1}^T + (X_t W_xh + b_h)^T) and transposes the
    small result back for the next product and the output layer. Returns
    the outputs (num_steps * batch_size, vocab_size), the last state
    (batch_size, num_hiddens) and every state transposed, H_0^T first:
    (num_steps + 1, num_hiddens, batch_size), which the backward pass
    needs. With dropout, a last input, the mask
    (num_steps * batch_size, num_hiddens), multiplies the states that
    enter the output layer.
    """

    def __init__(self, sizes, activation='tanh'):
        super().__init__()
        # (vocab_size, num_hiddens, num_steps, batch_size)
        self.sizes, self.activation = sizes, activation

    def hybrid_forward(self, F, W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask):
        vocab_size, num_hiddens, num_steps, batch_size = self.sizes
        # (X_t W_xh + b_h)^T for all steps in one product:
        # [W_xh; b_h]^T [onehot(X_t), 1]^T
        inputs = F.np.concatenate(
            [F.npx.one_hot(X.T.reshape(-1), vocab_size),
             F.np.ones((num_steps * batch_size, 1))], axis=1)
        XW = F.npx.fully_connected(
            F.np.concatenate([W_xh.T, F.np.expand_dims(b_h, 1)], axis=1),
            inputs, no_bias=True, num_hidden=num_steps * batch_size)
        XWs = _unstack(F, XW.reshape(num_hiddens, num_steps, batch_size),
                       num_steps, axis=1)
        W_hh_T = _transpose(F, W_hh)
        H, Ss, Hs = H0, [_transpose(F, H0)], []
        for XW_t in XWs:
            # fully_connected(data, weight) = data weight^T: here
            # W_hh^T H^T, (num_hiddens, batch_size)
            HW = F.npx.fully_connected(W_hh_T, H, no_bias=True,
                                       num_hidden=batch_size)
            # H_t^T
            S = F.npx.activation(HW + XW_t, act_type=self.activation)
            H = _transpose(F, S)  # (batch_size, num_hiddens)
            Ss.append(S)
            Hs.append(H)
        Ss = F.np.stack(Ss)  # (num_steps + 1, num_hiddens, batch_size)
        # (num_steps * batch_size, num_hiddens)
        Hs = F.np.concatenate(Hs) if num_steps > 1 else Hs[0]
        if mask:  # dropout between the hidden layer and the output layer
            Hs = Hs * mask[0]
        Y = F.npx.fully_connected(Hs, W_hq.T, b_q, num_hidden=vocab_size)
        return Y, H, Ss  # Y: (num_steps * batch_size, vocab_size)


class _BPTTBackward(gluon.HybridBlock):
    """Backpropagation through time by hand, as a cached graph.

    Autograd would compute the gradient of W_hh as num_steps thin products
    (num_hiddens, batch_size) x (batch_size, num_hiddens) and add them up.
    Here the loop only carries the state gradient back from step to step,
    transposed as in the forward pass; then all weight gradients come from
    three products over all (num_steps + 1) * batch_size columns. Pairing
    the states H_0 ... H_T with the gradients one step later
    (dA_1 ... dA_T, 0) gives dW_hh; with the output gradients of the same
    step (0, dY_1 ... dY_T) it gives dW_hq; a row of ones gives the bias
    gradients, and one-hot rows give dW_xh. With dropout, the mask (last
    input) multiplies both the gradient that reaches each H_t from its
    output and the states paired with the output gradients in dW_hq, as it
    multiplied H_t in the forward pass.
    """

    def __init__(self, sizes, activation='tanh'):
        super().__init__()
        self.sizes, self.activation = sizes, activation

    def hybrid_forward(self, F, dY, dH_last, W_hh, W_hq, X, Ss, *mask):
        vocab_size, num_hiddens, num_steps, batch_size = self.sizes
        # dY W_hq^T, the gradient reaching each H_t from its output,
        # transposed per step
        dHs = F.npx.fully_connected(W_hq, dY, no_bias=True,
                                    num_hidden=num_steps * batch_size)
        if mask:  # transposed like dHs: (num_hiddens, num_steps * batch_size)
            mask_T = _transpose(F, mask[0])
            dHs = dHs * mask_T
        dHs = _unstack(F, dHs.reshape(num_hiddens, num_steps, batch_size),
                       num_steps, axis=1)
        # the activation's derivative from its output, each
        # (num_hiddens, batch_size): tanh' = 1 - H_t^2; relu' = 1 where
        # H_t > 0, else 0 (the sign of a value >= 0)
        dact = 1 - Ss * Ss if self.activation == 'tanh' else F.np.sign(Ss)
        dact = _unstack(F, dact, num_steps + 1)
        dH, dAs = (_transpose(F, dH_last),
                   [F.np.zeros((num_hiddens, batch_size))])
        for t in reversed(range(num_steps)):
            # before the activation, transposed: (num_hiddens, batch_size)
            dA = (dHs[t] + dH) * dact[t + 1]
            dAs.insert(0, dA)
            # W_hh dA^T = (dA W_hh^T)^T, the gradient reaching H_{t-1},
            # transposed
            dH = F.npx.fully_connected(W_hh, _transpose(F, dA), no_bias=True,
                                       num_hidden=batch_size)
        # (num_hiddens, (num_steps + 1) * batch_size): columns step by step,
        # batch inside
        dA = _transpose(F, F.np.stack(dAs),
                        (1, 0, 2)).reshape(num_hiddens, -1)
        H = _transpose(F, Ss, (1, 0, 2)).reshape(num_hiddens, -1)
        # the states as the output layer saw them (H_0's block of columns
        # meets zero output gradients)
        H_out = H if not mask else H * F.np.concatenate(
            [F.np.ones((num_hiddens, batch_size)), mask_T], axis=1)
        dY = _transpose(F, F.np.concatenate(
            [F.np.zeros((batch_size, vocab_size)), dY]))
        one_hot = F.np.concatenate(
            [F.npx.one_hot(X.T.reshape(-1), vocab_size),
             F.np.zeros((batch_size, vocab_size))])
        E = F.np.concatenate(
            [_transpose(F, one_hot),
             F.np.ones((1, (num_steps + 1) * batch_size))])
        # E: one-hot rows of the inputs (none for the last column block),
        # then ones
        dW_xh_b_h = F.npx.fully_connected(E, dA, no_bias=True,
                                          num_hidden=num_hiddens)
        # (vocab_size + 1, vocab_size): only the last row, from the ones, is
        # used (db_q)
        db_q = F.npx.fully_connected(E, dY, no_bias=True,
                                     num_hidden=vocab_size)
        return (
            # dW_xh (vocab_size, num_hiddens)
            F.npx.slice(dW_xh_b_h, begin=(0,), end=(vocab_size,)),
            # dW_hh
            F.npx.fully_connected(H, dA, no_bias=True,
                                  num_hidden=num_hiddens),
            # db_h
            F.npx.slice(dW_xh_b_h, begin=(vocab_size,),
                        end=(None,)).reshape(-1),
            # dW_hq
            F.npx.fully_connected(H_out, dY, no_bias=True,
                                  num_hidden=vocab_size),
            # db_q
            F.npx.slice(db_q, begin=(vocab_size,), end=(None,)).reshape(-1),
            # dH0 (batch_size, num_hiddens)
            _transpose(F, dH))


class _RNNWithBPTT(autograd.Function):
    """One recorded operation: the cached forward and BPTT graphs.

    The BPTT graph is the operation's backward.

    Inputs in this order: W_xh, W_hh, b_h, W_hq, b_q, H0, X, and with
    dropout the mask. MXNet 1.9's ``Function`` stops writing gradients at
    the first input that needs none, so the state (detached in training),
    the ids and the mask (never differentiated) come last.

    Memory: ``Function.__call__`` in MXNet 1.9 builds ctypes callbacks
    that end up in a reference cycle with this instance, so the instance
    outlives its graph until Python's cyclic garbage collector runs, which
    can take many minibatches. Whatever it holds lives that long too. So
    the large arrays it saves, all hidden states
    ((num_steps + 1, num_hiddens, batch_size) from the Python graphs,
    (num_steps + 1, batch_size, num_hiddens) from the native operators) and
    copies of W_hh and W_hq, are dropped as soon as the backward pass has
    used them; a second backward pass through the same graph
    (``backward(retain_graph=True)`` twice) recomputes the states from H0
    and X and reads the live weights instead, as MXNet's own operators
    read their inputs when they run.
    """

    def __init__(self, forward_graph, backward_graph):
        super().__init__()
        self.forward_graph, self.backward_graph = forward_graph, backward_graph
        self.Hs = self.weights = None

    def forward(self, W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask):
        Y, H, self.Hs = self.forward_graph(W_xh, W_hh, b_h, W_hq, b_q, H0,
                                           X, *mask)
        # references, for a second backward pass only (see backward)
        self.save_for_backward(W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask)
        # Copies of the weights the backward pass reads. It runs later, in a
        # callback of MXNet's engine, after whatever the caller pushed once
        # backward() returned: reading the live W_hh there would wait for an
        # update of W_hh, which waits for these gradients (a deadlock).
        # Released after use, like Hs.
        self.weights = (W_hh.copy(), W_hq.copy())
        # (num_steps * batch_size, vocab_size), (batch_size, num_hiddens)
        return Y, H

    def backward(self, dY, dH_last):
        W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask = self.saved_tensors
        Hs, self.Hs = self.Hs, None  # see the class docstring
        weights, self.weights = self.weights, None
        if Hs is None:  # a second backward pass through a retained graph
            with autograd.pause():
                Hs = self.forward_graph(W_xh, W_hh, b_h, W_hq, b_q, H0,
                                        X, *mask)[2]
            weights = (W_hh, W_hq)
        grads = self.backward_graph(dY.as_np_ndarray(),
                                    dH_last.as_np_ndarray(),
                                    *weights, X, Hs, *mask)
        # The ids and the mask have no gradient.
        grads = list(grads) + [np.zeros(Z.shape, ctx=Z.ctx)
                               for Z in [X] + mask]
        return tuple(g.as_nd_ndarray() for g in grads)


def _nd(arrays):
    """The arrays as classic NDArrays (views), for the native operators."""
    return [Z.as_nd_ndarray() for Z in arrays]


class _NativeForward:
    """``_BPTTForward``'s outputs from the native forward operator.

    One operator runs all steps (``csrc/rnn_op.cc``); the states it
    returns are (num_steps + 1, batch_size, num_hiddens), H_0 first.
    """

    def __init__(self, activation, masked):
        self.attrs = dict(activation=activation, masked=str(int(masked)))

    def __call__(self, W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask):
        X = X if X.dtype == 'float32' else X.astype('float32')
        outs = mxnet.nd.d2lrnn_rnn_forward(
            *_nd([W_xh, W_hh, b_h, W_hq, b_q, H0, X, *mask]), **self.attrs)
        return tuple(Z.as_np_ndarray() for Z in outs)


class _NativeBackward(_NativeForward):
    """``_BPTTBackward``'s gradients from the native backward operator."""

    def __call__(self, dY, dH_last, W_hh, W_hq, X, Hs, *mask):
        X = X if X.dtype == 'float32' else X.astype('float32')
        outs = mxnet.nd.d2lrnn_rnn_backward(
            *_nd([dY, dH_last, W_hh, W_hq, X, Hs, *mask]), **self.attrs)
        return tuple(Z.as_np_ndarray() for Z in outs)


class FastRNNScratch:
    """The scratch RNN of D2L 8.5, faster.

    Same parameters and results as ``RNNModelScratch``:
    ``FastRNNScratch(vocab_size, num_hiddens, ctx)`` stands in for
    ``RNNModelScratch(vocab_size, num_hiddens, ctx, get_params,
    init_rnn_state, rnn)``. `variant` chooses how the gradient is computed,
    for measuring: ``'bptt'`` (the default and fastest: backpropagation
    through time by hand), ``'hybrid'`` (autograd through the cached graph
    of ``rnn_unrolled``) or ``'imperative'`` (autograd through the same
    operators, one call each).

    ``dropout=p`` (the regulariser of D2L 4.6) sets each entry of the
    hidden states to zero on its way to the output layer with probability
    p and scales the others by 1 / (1 - p), with a new mask at every call,
    but only while training (``autograd.is_training()``, true inside
    ``autograd.record()``). The recurrence itself is never masked. When
    scoring or predicting, and with the default p = 0, the model computes
    exactly what it computes without the option.

    ``activation='relu'`` puts max(0, .) where the section has tanh (its
    exercise 6; ``exercises.rnn_relu`` is the faithful counterpart).

    ``native`` (variant 'bptt', on the CPU): ``None`` (the default) runs
    the forward and backward passes as two native operators
    (``d2lrnn.native``, compiled on first use with g++ and OpenBLAS) when
    they can be built, else says why in one line on stderr and takes the
    Python path; ``True`` requires them (``NativeBuildError`` if they
    cannot be built); ``False`` always takes the Python path. Both paths
    give the same results to float32 rounding, with or without dropout.
    On every path, a token id outside 0..vocab_size-1 (a vocabulary that
    does not match the model) raises ValueError naming it.
    """

    VARIANTS = ('bptt', 'hybrid', 'imperative')
    ACTIVATIONS = ('tanh', 'relu')

    def __init__(self, vocab_size, num_hiddens, ctx, variant='bptt',
                 dropout=0.0, activation='tanh', native=None):
        check_positive(vocab_size=vocab_size, num_hiddens=num_hiddens)
        check_one_of(self.VARIANTS, variant=variant)
        check_fraction(dropout=dropout)
        check_one_of(self.ACTIVATIONS, activation=activation)
        self.dropout, self.activation = dropout, activation
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, ctx)
        self.variant = variant
        if native and variant != 'bptt':
            raise ValueError("native=True needs variant='bptt', got "
                             f'{variant!r}.')
        # built on first use: here, when the model is made
        self.native = (variant == 'bptt' and native is not False
                       and _native.load(required=bool(native)))
        self._graphs = {}  # (sizes, masked) -> cached graphs

    def __call__(self, X, state):
        """Outputs and the new state ``(H,)`` for token ids X.

        X is shaped (batch_size, num_steps), the outputs
        (num_steps * batch_size, vocab_size).
        """
        num_steps = self._check_input(X, state)
        H, = state
        sizes = (self.vocab_size, self.num_hiddens, num_steps)
        mask = []  # no dropout: the graphs without a mask input
        if self.dropout > 0 and autograd.is_training():
            mask = [self.dropout_mask(num_steps, X.shape[0], H.ctx)]
        if self.native and H.ctx.device_type == 'cpu':
            graphs = (_NativeForward(self.activation, bool(mask)),
                      _NativeBackward(self.activation, bool(mask)))
            Y, H = _RNNWithBPTT(*graphs)(*self.params, H, X, *mask)
        elif self.variant == 'bptt':
            graphs = self._graph(sizes + (X.shape[0],), bool(mask))
            Y, H = _RNNWithBPTT(*graphs)(*self.params, H, X, *mask)
        elif self.variant == 'hybrid':
            Y, H = self._graph(sizes, bool(mask))[0](X, H, *self.params,
                                                     *mask)
        else:
            Y, H = rnn_unrolled(mxnet.ndarray, X, H, self.params, sizes,
                                mask[0] if mask else None, self.activation)
        # (num_steps * batch_size, vocab_size), ((batch_size, num_hiddens),)
        return Y, (H,)

    def begin_state(self, batch_size, ctx):
        """The initial state, as ``init_rnn_state`` makes it.

        A tuple holding zeros shaped (batch_size, num_hiddens).
        """
        return init_rnn_state(batch_size, self.num_hiddens, ctx)

    def dropout_mask(self, num_steps, batch_size, ctx):
        """A new dropout mask, drawn from MXNet's random generator.

        Shaped (num_steps * batch_size, num_hiddens), rows step by step as
        the outputs go; each entry is 0 with probability ``dropout``, else
        1 / (1 - dropout), so that the masked states keep their mean.
        """
        with autograd.pause():
            keep = np.random.uniform(
                size=(num_steps * batch_size, self.num_hiddens), ctx=ctx)
            kept = (keep >= self.dropout).astype('float32')
            return kept / (1 - self.dropout)

    def _graph(self, sizes, masked=False):
        """The cached graphs for these sizes, built on first use.

        (forward, backward) for 'bptt' (sizes end with batch_size),
        (unrolled,) for 'hybrid'; `masked` graphs take a dropout mask.
        """
        key = (sizes, masked)
        if key not in self._graphs:
            blocks = ((_BPTTForward, _BPTTBackward) if self.variant == 'bptt'
                      else (_Unrolled,))
            graphs = tuple(block(sizes, self.activation) for block in blocks)
            # The BPTT graphs allocate per call: static buffers would keep
            # the memory of both graphs for good (more peak memory, and
            # measured no faster).
            static = self.variant == 'hybrid'
            for graph in graphs:
                graph.hybridize(static_alloc=static, static_shape=static)
            self._graphs[key] = graphs
        return self._graphs[key]

    def _check_input(self, X, state):
        """Raise a clear error for unreadable inputs; return num_steps."""
        if X.ndim != 2:
            raise ValueError(
                'X must hold token ids shaped (batch_size, num_steps), '
                f'got shape {X.shape}.')
        if not isinstance(state, (tuple, list)) or len(state) != 1:
            raise ValueError('state must be a tuple holding one array, '
                             'as begin_state returns.')
        expected = (X.shape[0], self.num_hiddens)
        if state[0].shape != expected:
            raise ValueError(
                f'the state has shape {state[0].shape}, expected {expected} '
                f'for a minibatch of {X.shape[0]} rows.')
        if 0 in X.shape:
            raise ValueError(
                f'X holds no token ids (shape {X.shape}): batch_size and '
                'num_steps must be at least 1.')
        self._check_ids(X)
        return X.shape[1]

    def _check_ids(self, X):
        """Raise ValueError unless every id in X is in 0..vocab_size-1.

        The ids pick rows of W_xh: on every path, an id the vocabulary
        does not have is an error, not a read outside the matrix (native)
        or a silent row of zeros (Python). One pass: the smallest and the
        largest id.
        """
        ids = X.asnumpy()
        low, high = ids.min(), ids.max()
        if low >= 0 and high < self.vocab_size:  # False for NaN too
            return
        bad = low if not low >= 0 else high
        bad = int(bad) if float(bad).is_integer() else float(bad)
        raise ValueError(
            f'token id {bad} is outside the vocabulary of {self.vocab_size} '
            f'tokens (0..{self.vocab_size - 1}): the model and the '
            'vocabulary do not match.')

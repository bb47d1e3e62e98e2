"""A faster scratch RNN: the mathematics of D2L section 8.5, arranged for the CPU.

``FastRNNScratch`` computes exactly what ``RNNModelScratch`` with ``get_params``,
``init_rnn_state`` and ``rnn`` computes::

    H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)     # (batch_size, num_hiddens)
    O_t = H_t W_hq + b_q                          # (batch_size, vocab_size)

with the same five parameters (drawn by ``get_params``, so a seed gives the same
start), the same state and the same output rows, so ``sgd``, ``grad_clipping``,
``train_epoch_ch8``, ``train_ch8`` and ``predict_ch8`` use it unchanged. What
makes it fast, each step measured (``bench/bench_speed.py``, the book's page
"Making the scratch RNN fast"):

1. **oneDNN kernels.** In the MXNet 1.9.1 wheel ``np.dot`` goes to an OpenBLAS
   built for SSE and ``np.tanh`` to a scalar loop; ``npx.fully_connected`` and
   ``npx.activation`` go to oneDNN, which generates code for the CPU it runs on
   (AVX-512 here): a (32, 512) x (512, 512) product about 3x faster, ``tanh``
   about 8x.
2. **Row lookup instead of a one-hot product.** With one-hot X_t, ``X_t W_xh`` is
   a row of ``W_xh``: ``npx.embedding`` picks the rows for all steps at once.
3. **Output layer once**, as one (num_steps * batch_size, num_hiddens) product.
4. **Backpropagation through time by hand.** Autograd computes dW_hh as
   num_steps thin (num_hiddens, batch_size) x (batch_size, num_hiddens) products
   and adds them up; the hand-written backward only carries dH from step to step
   and then forms each weight gradient as one product over all steps.
5. **Cached graphs.** Forward and backward are each one hybridized graph (built
   once per num_steps), so no Python runs per operator; the model records one
   operation (an ``autograd.Function``) per call.
6. **Per-step slices, not ``np.split``**: a 35-way split costs as much as the
   recurrence. The slices are never differentiated, so no full-size zero
   gradients appear either.

The class is deliberately *not* a Gluon ``Block``: ``train_ch8`` would then
re-initialise it and train it with a Gluon ``Trainer``. Its parameters are the
plain arrays of ``get_params``, and the gradients land in their ``.grad``.
"""
import mxnet
from mxnet import autograd, gluon, np, npx

from .data import check_positive
from .model import get_params, init_rnn_state


def rnn_unrolled(F, X, H, params, sizes):
    """The RNN of D2L 8.5.3 over token ids `X` (batch_size, num_steps) from state `H`.

    `F` holds the ``np``/``npx`` namespaces (``mxnet.ndarray`` imperatively,
    ``mxnet.symbol`` when hybridized); `sizes` is (vocab_size, num_hiddens,
    num_steps), which a symbolic graph cannot read from shapes. Returns the
    outputs (num_steps * batch_size, vocab_size), step after step as in ``rnn``,
    the last hidden state (batch_size, num_hiddens), and all hidden states
    (num_steps, batch_size, num_hiddens), which the hand-written backward needs.
    """
    W_xh, W_hh, b_h, W_hq, b_q = params
    vocab_size, num_hiddens, num_steps = sizes
    XW = _input_projection(F, X, W_xh, b_h, vocab_size, num_hiddens)
    W_hh_T = W_hh.T  # fully_connected multiplies by the transpose of its weight
    H = F.np.expand_dims(H, axis=0)  # (1, batch_size, num_hiddens)
    Hs = []
    for XW_t in _steps(F, XW, num_steps):  # XW_t: (1, batch_size, num_hiddens)
        HW = F.npx.fully_connected(H, W_hh_T, no_bias=True, flatten=False,
                                   num_hidden=num_hiddens)
        H = F.npx.activation(XW_t + HW, act_type='tanh')  # (1, batch_size, num_hiddens)
        Hs.append(H)
    Hs = _join(F, Hs)  # (num_steps, batch_size, num_hiddens)
    Y = F.npx.fully_connected(Hs, W_hq.T, b_q, flatten=False,
                              num_hidden=vocab_size)  # (num_steps, batch_size, vocab_size)
    return Y.reshape(-1, vocab_size), H.squeeze(axis=0), Hs


def _input_projection(F, X, W_xh, b_h, vocab_size, num_hiddens):
    """X_t W_xh + b_h for every step at once, by row lookup (one-hot X_t picks a row of W_xh)."""
    XW = F.npx.embedding(X.T, W_xh, input_dim=vocab_size, output_dim=num_hiddens)
    return XW + b_h  # (num_steps, batch_size, num_hiddens)


def _steps(F, Z, num_steps):
    """The time steps of Z (num_steps, ...) as a list of (1, ...) slices.

    One slice per step: MXNet's ``np.split`` into num_steps parts costs as much
    as the whole recurrence here.
    """
    return [F.npx.slice(Z, begin=(t,), end=(t + 1,)) for t in range(num_steps)]


class _Unrolled(gluon.HybridBlock):
    """``rnn_unrolled`` for one (vocab_size, num_hiddens, num_steps), as a cached graph.

    It has no parameters of its own: the five arrays come in as inputs, so
    their gradients go to the arrays of ``get_params``.
    """

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes

    def hybrid_forward(self, F, X, H, W_xh, W_hh, b_h, W_hq, b_q):
        return rnn_unrolled(F, X, H, (W_xh, W_hh, b_h, W_hq, b_q), self.sizes)[:2]


class _BPTTForward(gluon.HybridBlock):
    """Forward pass of the RNN as a cached graph: outputs, last state, and every state.

    Inputs W_xh, W_hh, b_h, W_hq, b_q, H0 (batch_size, num_hiddens), X (batch_size,
    num_steps); `sizes` is (vocab_size, num_hiddens, num_steps).
    """

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes

    def hybrid_forward(self, F, W_xh, W_hh, b_h, W_hq, b_q, H0, X):
        return rnn_unrolled(F, X, H0, (W_xh, W_hh, b_h, W_hq, b_q), self.sizes)


class _BPTTBackward(gluon.HybridBlock):
    """Backpropagation through time by hand, as a cached graph.

    Autograd would compute the gradient of W_hh as num_steps thin products
    (num_hiddens, batch_size) x (batch_size, num_hiddens) and add them up.
    Here the loop only carries the state gradient back from step to step;
    every weight gradient is then one product over all num_steps * batch_size
    rows, e.g. dW_hh = H_prev^T dA.
    """

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes

    def hybrid_forward(self, F, dY, dH_last, W_hh, W_hq, H0, X, Hs):
        vocab_size, num_hiddens, num_steps = self.sizes
        # dY W_hq^T: the gradient reaching each H_t from its output
        dHs = F.npx.fully_connected(dY, W_hq, no_bias=True, num_hidden=num_hiddens)
        dHs = dHs.reshape(num_steps, -1, num_hiddens)  # (num_steps, batch_size, num_hiddens)
        dtanh = 1 - Hs * Hs  # tanh' = 1 - H_t^2 at every step: (num_steps, batch_size, num_hiddens)
        dH, dAs = F.np.expand_dims(dH_last, axis=0), []
        for dHs_t, dtanh_t in reversed(list(zip(_steps(F, dHs, num_steps),
                                                _steps(F, dtanh, num_steps)))):
            dA = (dHs_t + dH) * dtanh_t  # before tanh: (1, batch_size, num_hiddens)
            dAs.insert(0, dA)
            # dA W_hh^T: the gradient reaching H_{t-1}
            dH = F.npx.fully_connected(dA, W_hh, no_bias=True, flatten=False,
                                       num_hidden=num_hiddens)
        dA = _join(F, dAs).reshape(-1, num_hiddens)  # (num_steps * batch_size, num_hiddens)
        # the state before each step: H0, H_1, ..., H_{num_steps-1}
        H_prev = F.np.expand_dims(H0, axis=0)  # (num_steps, batch_size, num_hiddens) after the concatenation
        if num_steps > 1:
            H_prev = F.np.concatenate([H_prev, F.npx.slice(Hs, begin=(0,), end=(num_steps - 1,))])
        one_hot = F.npx.one_hot(X.T.reshape(-1), vocab_size)  # (num_steps * batch_size, vocab_size)
        return (_t_matmul(F, one_hot, dA, num_hiddens),  # dW_xh (vocab_size, num_hiddens)
                _t_matmul(F, H_prev.reshape(-1, num_hiddens), dA, num_hiddens),  # dW_hh
                dA.sum(axis=0),  # db_h (num_hiddens,)
                _t_matmul(F, Hs.reshape(-1, num_hiddens), dY, vocab_size),  # dW_hq
                dY.sum(axis=0),  # db_q (vocab_size,)
                dH.squeeze(axis=0))  # dH0 (batch_size, num_hiddens)


def _t_matmul(F, A, B, num_cols):
    """A^T B for A (n, k) and B (n, num_cols), summed over all n rows, by oneDNN."""
    return F.npx.fully_connected(A.T, B.T, no_bias=True, num_hidden=num_cols)  # (k, num_cols)


def _join(F, steps):
    """Concatenate a list of (1, ...) steps into (len(steps), ...)."""
    return steps[0] if len(steps) == 1 else F.np.concatenate(steps, axis=0)


class _RNNWithBPTT(autograd.Function):
    """One recorded operation: the cached forward graph, and the cached BPTT graph as its backward.

    Inputs in this order: W_xh, W_hh, b_h, W_hq, b_q, H0, X. MXNet 1.9's
    ``Function`` stops writing gradients at the first input that needs none,
    so the state (detached in training) and the ids (never differentiated)
    come last.

    Memory: ``Function.__call__`` in MXNet 1.9 builds ctypes callbacks that
    end up in a reference cycle with this instance, so the instance outlives
    its graph until Python's cyclic garbage collector runs, which can take
    many minibatches. Whatever it holds lives that long too. So the one large
    array it saves, all hidden states (num_steps, batch_size, num_hiddens),
    is dropped as soon as the backward pass has used it; a second backward
    pass through the same graph (``backward(retain_graph=True)`` twice)
    recomputes the states from H0 and X instead.
    """

    def __init__(self, forward_graph, backward_graph):
        super().__init__()
        self.forward_graph, self.backward_graph = forward_graph, backward_graph
        self.Hs = None

    def forward(self, W_xh, W_hh, b_h, W_hq, b_q, H0, X):
        Y, H, self.Hs = self.forward_graph(W_xh, W_hh, b_h, W_hq, b_q, H0, X)
        # the parameters are references, not copies: they cost no memory here
        self.save_for_backward(W_xh, W_hh, b_h, W_hq, b_q, H0, X)
        return Y, H  # (num_steps * batch_size, vocab_size), (batch_size, num_hiddens)

    def backward(self, dY, dH_last):
        W_xh, W_hh, b_h, W_hq, b_q, H0, X = self.saved_tensors
        Hs, self.Hs = self.Hs, None  # see the class docstring
        if Hs is None:  # a second backward pass through a retained graph
            Hs = rnn_unrolled(mxnet.ndarray, X, H0, (W_xh, W_hh, b_h, W_hq, b_q),
                              self.forward_graph.sizes)[2]
        grads = self.backward_graph(dY.as_np_ndarray(), dH_last.as_np_ndarray(),
                                    W_hh, W_hq, H0, X, Hs)
        grads = list(grads) + [np.zeros(X.shape, ctx=X.ctx)]  # ids have no gradient
        return tuple(g.as_nd_ndarray() for g in grads)


class FastRNNScratch:
    """The scratch RNN of D2L 8.5, same parameters and results as ``RNNModelScratch``, faster.

    ``FastRNNScratch(vocab_size, num_hiddens, ctx)`` stands in for
    ``RNNModelScratch(vocab_size, num_hiddens, ctx, get_params, init_rnn_state, rnn)``.
    `variant` chooses how the gradient is computed, for measuring: ``'bptt'``
    (the default and fastest: backpropagation through time by hand),
    ``'hybrid'`` (autograd through the cached graph of ``rnn_unrolled``) or
    ``'imperative'`` (autograd through the same operators, one call each).
    """

    VARIANTS = ('bptt', 'hybrid', 'imperative')

    def __init__(self, vocab_size, num_hiddens, ctx, variant='bptt'):
        check_positive(vocab_size=vocab_size, num_hiddens=num_hiddens)
        if variant not in self.VARIANTS:
            raise ValueError(f'variant must be one of {self.VARIANTS}, got {variant!r}.')
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, ctx)
        self.variant = variant
        self._graphs = {}  # (vocab_size, num_hiddens, num_steps) -> cached graphs

    def __call__(self, X, state):
        """Outputs (num_steps * batch_size, vocab_size) for token ids X (batch_size, num_steps),
        and the new state ``(H,)``."""
        num_steps = self._check_input(X, state)
        H, = state
        sizes = (self.vocab_size, self.num_hiddens, num_steps)
        if self.variant == 'bptt':
            Y, H = _RNNWithBPTT(*self._graph(sizes))(*self.params, H, X)
        elif self.variant == 'hybrid':
            Y, H = self._graph(sizes)[0](X, H, *self.params)
        else:
            Y, H, _ = rnn_unrolled(mxnet.ndarray, X, H, self.params, sizes)
        return Y, (H,)  # (num_steps * batch_size, vocab_size), ((batch_size, num_hiddens),)

    def begin_state(self, batch_size, ctx):
        """The initial state: a tuple holding zeros (batch_size, num_hiddens), as ``init_rnn_state``."""
        return init_rnn_state(batch_size, self.num_hiddens, ctx)

    def _graph(self, sizes):
        """The cached graphs for these sizes, built on first use: (forward, backward) for
        'bptt', (unrolled,) for 'hybrid'."""
        if sizes not in self._graphs:
            blocks = ((_BPTTForward, _BPTTBackward) if self.variant == 'bptt' else (_Unrolled,))
            graphs = tuple(block(sizes) for block in blocks)
            for graph in graphs:
                graph.hybridize(static_alloc=True, static_shape=True)
            self._graphs[sizes] = graphs
        return self._graphs[sizes]

    def _check_input(self, X, state):
        """Raise a clear error for inputs the model cannot read; return num_steps."""
        if X.ndim != 2:
            raise ValueError('X must hold token ids shaped (batch_size, num_steps), '
                             f'got shape {X.shape}.')
        if not isinstance(state, (tuple, list)) or len(state) != 1:
            raise ValueError('state must be a tuple holding one array, as begin_state returns.')
        expected = (X.shape[0], self.num_hiddens)
        if state[0].shape != expected:
            raise ValueError(f'the state has shape {state[0].shape}, expected {expected} '
                             f'for a minibatch of {X.shape[0]} rows.')
        return X.shape[1]

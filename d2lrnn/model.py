"""The scratch RNN (book/03-parameters.ipynb, book/04-model.ipynb).

The RNN language model of D2L section 8.5, written from scratch.

One time step, for a minibatch of one-hot inputs X_t (batch_size, vocab_size)::

    H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)     # (batch_size, num_hiddens)
    O_t = H_t W_hq + b_q                          # (batch_size, vocab_size)

The model is three plain functions (parameters, initial state, forward) and a
small class that holds them together.

Where this differs from the original: ``get_params`` draws its random
numbers on the CPU and then copies them to `ctx`, so that a seed gives the
same initial parameters on every device (the original draws on `ctx`; on
the CPU the two are identical). Sizes that are not positive integers raise
``ValueError`` (``d2lrnn.checks``).
"""
from mxnet import np, npx

from .checks import check_positive


def get_params(vocab_size, num_hiddens, ctx):
    """W_xh, W_hh, b_h, W_hq, b_q, each with a gradient (D2L 8.5.2)."""
    check_positive(vocab_size=vocab_size, num_hiddens=num_hiddens)
    num_inputs = num_outputs = vocab_size

    def normal(shape):  # drawn on the CPU: a seed gives the same on any ctx
        return np.random.normal(scale=0.01, size=shape,
                                ctx=npx.cpu()).as_in_ctx(ctx)

    # Hidden layer. The draws happen in this order: W_xh, W_hh, W_hq.
    W_xh = normal((num_inputs, num_hiddens))
    W_hh = normal((num_hiddens, num_hiddens))
    b_h = np.zeros(num_hiddens, ctx=ctx)
    # Output layer
    W_hq = normal((num_hiddens, num_outputs))
    b_q = np.zeros(num_outputs, ctx=ctx)
    params = [W_xh, W_hh, b_h, W_hq, b_q]
    for param in params:
        param.attach_grad()
    return params


def init_rnn_state(batch_size, num_hiddens, ctx):
    """The initial hidden state: a tuple of one zero array (D2L 8.5.3)."""
    check_positive(batch_size=batch_size, num_hiddens=num_hiddens)
    return (np.zeros(shape=(batch_size, num_hiddens), ctx=ctx),)


def rnn(inputs, state, params):
    """Run the tanh RNN over all time steps of `inputs` (D2L 8.5.3)."""
    # inputs: (num_steps, batch_size, vocab_size)
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, = state
    outputs = []
    for X in inputs:  # X: (batch_size, vocab_size)
        H = np.tanh(np.dot(X, W_xh) + np.dot(H, W_hh) + b_h)
        Y = np.dot(H, W_hq) + b_q
        outputs.append(Y)
    # Outputs of all steps, step after step: (num_steps * batch_size,
    # vocab_size); and the new state.
    return np.concatenate(outputs, axis=0), (H,)


class RNNModelScratch:
    """A model from parameter, state and forward functions (D2L 8.5.3)."""

    def __init__(self, vocab_size, num_hiddens, ctx,
                 get_params, init_state, forward):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.params = get_params(vocab_size, num_hiddens, ctx)
        self.init_state, self.forward_fn = init_state, forward

    def __call__(self, X, state):
        # Token ids (batch_size, num_steps) -> one-hot, time first:
        # (num_steps, batch_size, vocab_size)
        X = npx.one_hot(X.T, self.vocab_size)
        return self.forward_fn(X, state, self.params)

    def begin_state(self, batch_size, ctx):
        return self.init_state(batch_size, self.num_hiddens, ctx)

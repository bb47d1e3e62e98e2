"""Tools for the exercises: training with a clipping switch and a record of every step,
perplexity on held-out text, and a ReLU variant of the scratch RNN.

``train_ch8`` trains the way the section does and prints; the exercises need
more control and more measurements, so this module trains the same way
(same loss, same SGD update, same state handling) but

* clips with any threshold ``theta``, or not at all (``theta=None``);
* records the global gradient norm *before* clipping at every step;
* optionally scores held-out text every few epochs;
* does not stop when the loss stops being finite: it records where that
  happened, so that a diverging run can be shown rather than assumed.
"""
import math

from mxnet import autograd, gluon, np

from .evaluate import evaluate_perplexity, seq_data_iter_eval
from .train import grad_clipping, sgd
from .utils import Accumulator, Timer


def rnn_relu(inputs, state, params):
    """The forward function of ``d2lrnn.rnn`` with ReLU in place of tanh (exercise 6).

    ``H_t = max(0, X_t W_xh + H_{t-1} W_hh + b_h)``: the hidden state is no
    longer confined to (-1, 1); it is non-negative and unbounded above.
    Same arguments and results as ``rnn``.
    """
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, = state
    outputs = []
    for X in inputs:  # X: (batch_size, vocab_size)
        H = np.maximum(np.dot(X, W_xh) + np.dot(H, W_hh) + b_h, 0)
        outputs.append(np.dot(H, W_hq) + b_q)
    return np.concatenate(outputs, axis=0), (H,)


def _check_theta(theta):
    if theta is not None and not (isinstance(theta, (int, float))
                                  and not isinstance(theta, bool) and theta > 0):
        raise ValueError(f'theta must be a positive number or None (no clipping), got {theta!r}.')


def train_epoch(model, train_iter, loss, updater, ctx, use_random_iter=False,
                theta=1, on_step=None):
    """One pass over `train_iter` like ``train_epoch_ch8``, with clipping at `theta`.

    ``theta=None`` turns clipping off (the norm is still measured). After every
    step ``on_step(loss, norm)`` is called with the minibatch's mean loss and
    the global gradient norm before clipping, both Python floats.

    Returns ``(perplexity, tokens per second, finite)``. When the loss stops
    being finite the epoch ends at once and ``finite`` is False (the
    perplexity is then ``inf``): the caller decides what that means.
    """
    _check_theta(theta)
    state, timer = None, Timer()
    metric = Accumulator(2)  # sum of losses over tokens, number of tokens
    for X, Y in train_iter:
        if state is None or use_random_iter:
            state = model.begin_state(batch_size=X.shape[0], ctx=ctx)
        else:
            state = tuple(s.detach() for s in state)
        y = Y.T.reshape(-1)
        X, y = X.as_in_context(ctx), y.as_in_context(ctx)
        with autograd.record():
            py, state = model(X, state)
            l = loss(py, y).mean()
        l.backward()
        norm = grad_clipping(model, math.inf if theta is None else theta)
        norm = float(norm)
        lval = float(l)
        if on_step is not None:
            on_step(lval, norm)
        if not (math.isfinite(lval) and math.isfinite(norm)):
            return math.inf, metric[1] / timer.stop(), False
        updater(batch_size=1)
        metric.add(lval * y.size, y.size)
    if metric[1] == 0:
        raise ValueError('train_iter yielded no minibatch: the text is too short '
                         'for this batch_size and num_steps.')
    return math.exp(metric[0] / metric[1]), metric[1] / timer.stop(), True


def train_run(model, train_iter, lr, num_epochs, ctx, use_random_iter=False,
              theta=1, valid_corpus=None, eval_every=1, eval_batch_size=32,
              eval_num_steps=35, on_epoch=None):
    """Train a scratch model (anything with ``.params``) with SGD and record everything.

    Returns a dict of lists:

    * ``epoch``, ``train_ppl``: training perplexity after each epoch;
    * ``step_loss``, ``step_norm``: mean loss and pre-clipping gradient norm
      of every minibatch;
    * ``valid_epoch``, ``valid_ppl``: perplexity on `valid_corpus` (token
      ids, read with ``seq_data_iter_eval``) every `eval_every` epochs and
      after the last one, if `valid_corpus` is given;
    * ``diverged_at_step``: the first step whose loss or norm was not
      finite, or None; training stops there;
    * ``tokens_per_sec``: of the last epoch.

    ``on_epoch(epoch, record)`` is called after every epoch.
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs <= 0:
        raise ValueError(f'num_epochs must be a positive integer, got {num_epochs!r}.')
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f'lr must be a positive number, got {lr!r}.')
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every <= 0:
        raise ValueError(f'eval_every must be a positive integer, got {eval_every!r}.')
    _check_theta(theta)
    valid_iter = None
    if valid_corpus is not None:
        if len(valid_corpus) == 0:
            raise ValueError('valid_corpus is empty: there is no held-out text to score.')
        valid_iter = seq_data_iter_eval(valid_corpus, eval_batch_size, eval_num_steps)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def updater(batch_size):
        sgd(model.params, lr, batch_size)

    record = dict(epoch=[], train_ppl=[], step_loss=[], step_norm=[],
                  valid_epoch=[], valid_ppl=[], diverged_at_step=None, tokens_per_sec=None)

    def on_step(lval, norm):
        record['step_loss'].append(lval)
        record['step_norm'].append(norm)

    for epoch in range(1, num_epochs + 1):
        ppl, speed, finite = train_epoch(model, train_iter, loss, updater, ctx,
                                         use_random_iter, theta, on_step)
        record['tokens_per_sec'] = speed
        if not finite:
            record['diverged_at_step'] = len(record['step_loss'])
            break
        record['epoch'].append(epoch)
        record['train_ppl'].append(ppl)
        if valid_iter is not None and (epoch % eval_every == 0 or epoch == num_epochs):
            record['valid_epoch'].append(epoch)
            record['valid_ppl'].append(evaluate_perplexity(model, valid_iter, ctx))
        if on_epoch is not None:
            on_epoch(epoch, record)
    return record

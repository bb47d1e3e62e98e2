"""Clipping and training (book/06-gradient-clipping.ipynb, 07-training).

Training: clipping, SGD, one epoch, many epochs (D2L 8.5.5 and 8.5.6).

Where this differs from the original, or adds to it:

* ``grad_clipping`` takes a Gluon ``Block`` or anything with ``.params`` (a
  scratch model). It lists the gradients first, so a ``.params`` that is a
  generator is not used up by the norm before the rescaling loop, and it
  skips Gluon parameters without a gradient; both leave the original's
  results unchanged. It returns the norm before clipping. `theta` must be a
  positive number (infinity never clips).
* ``train_epoch_ch8`` keeps the detached copies of the state: the original
  calls ``s.detach()`` and drops the result, which leaves the state
  attached. MXNet frees a graph on ``backward``, so the two give identical
  results (the tests check this bit for bit). A non-finite loss raises
  ``FloatingPointError`` before the update, so the parameters keep their
  last finite values; so does a perplexity too large for a float.
* ``train_ch8`` plots the perplexity of epochs 1, 11, 21, ... as the
  original does, to `animator` if one is given (a ``ProgressLog`` also
  measures the model at those epochs). It does not print the prediction
  made every 10 epochs (in a notebook the original's live plot erased it
  at once; in a terminal it scrolled by), prints the same three lines at
  the end and returns the final perplexity. A divergence names its epoch;
  `lr` must be a finite number > 0 and `num_epochs` a positive integer.
* ``ProgressLog`` is an `animator` for ``train_ch8`` that measures the
  model on the way. ``train_ch8`` calls ``animator.add(epoch,
  [perplexity])`` at epochs 1, 11, 21, ...; a ``ProgressLog`` passes the
  point on to its own `animator` (if any) and calls each of its `measures`
  (functions of no argument, for example a greedy continuation or a
  held-out perplexity) at that moment. ``rows`` then holds one dict per
  call: ``epoch``, ``perplexity`` and one entry per measure. The measures
  must not change the model: they run between two epochs, so training goes
  on exactly as without them.
* ``train_epoch`` is the loop of ``train_epoch_ch8`` with switches for the
  exercises (``optim.fit`` and ``exercises.train_run`` build on it).
  `theta` is the clipping threshold; ``theta=None`` turns clipping off
  (the norm is still measured). `state_mode` says what happens to the
  state between sequential minibatches (exercise 5): ``'detach'``, as
  ``train_epoch_ch8``; ``'keep'``, passed on untouched (what the original's
  ``for s in state: s.detach()`` amounts to, as it drops the detached
  copies); ``'retain'``, passed on untouched with
  ``backward(retain_graph=True)``, so that the gradient of each minibatch
  flows back through all earlier minibatches of the epoch. With
  ``use_random_iter`` every minibatch starts from a fresh state. After
  every step ``on_step(loss, norm, seconds)`` gets the minibatch's mean
  loss, the global gradient norm before clipping and the step's time, all
  Python floats. It returns ``(perplexity, tokens per second, finite)``;
  the perplexity sums ``float(l) * y.size`` in float64 where
  ``train_epoch_ch8`` sums ``l * y.size`` rounded to float32, so the two
  can differ in about the eighth digit (the training is the same bit for
  bit). When the loss or the norm stops being finite the epoch ends at
  once, before the update, and returns ``(inf, speed, False)``: the caller
  decides what that means.
"""
import contextlib
import math

from mxnet import autograd, gluon, init

from .checks import (check_clipping_threshold, check_positive,
                     check_positive_number, check_theta_or_none,
                     check_vocab_fits)
from .plot import Animator
from .predict import predict_ch8
from .utils import Accumulator, Timer, perplexity

# What train_epoch does with the state between sequential minibatches.
STATE_MODES = ('detach', 'keep', 'retain')


def grad_clipping(model, theta):
    """Rescale all gradients to a global norm <= `theta` (D2L 8.5.5)."""
    check_clipping_threshold(theta)
    if isinstance(model, gluon.Block):
        grads = [p.grad() for p in model.collect_params().values()
                 if p.grad_req != 'null']
    else:
        grads = [p.grad for p in model.params]  # a list: it is read twice
    norm = math.sqrt(sum((g ** 2).sum() for g in grads))
    if norm > theta:
        for g in grads:
            g[:] *= theta / norm
    return norm


def sgd(params, lr, batch_size):
    """Minibatch stochastic gradient descent, in place (D2L 3.2)."""
    for param in params:
        param[:] = param - lr * param.grad / batch_size


def train_epoch_ch8(model, train_iter, loss, updater, ctx, use_random_iter):
    """Train one epoch; return (perplexity, tokens per second) (D2L 8.5.6)."""
    state, timer = None, Timer()
    metric = Accumulator(2)  # sum of losses over tokens, number of tokens
    for i, (X, Y) in enumerate(train_iter):
        if state is None or use_random_iter:
            # First minibatch, or rows unrelated to the previous ones.
            state = model.begin_state(batch_size=X.shape[0], ctx=ctx)
        else:
            # Rows continue: keep the values, cut the graph to this minibatch.
            state = tuple(s.detach() for s in state)
        # Labels in the order of the outputs: (num_steps * batch_size,)
        y = Y.T.reshape(-1)
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        with autograd.record():
            # py: (num_steps * batch_size, vocab_size)
            py, state = model(X, state)
            l = loss(py, y).mean()
        l.backward()
        check_finite_loss(l, i)  # before the update: parameters stay finite
        grad_clipping(model, 1)
        updater(batch_size=1)  # the loss is already a mean
        metric.add(l * y.size, y.size)
    return epoch_perplexity(metric), metric[1] / timer.stop()


def check_finite_loss(l, i):
    """Raise ``FloatingPointError`` unless the loss `l` is finite."""
    if not math.isfinite(float(l)):
        raise FloatingPointError(
            f'the loss became {float(l)} at minibatch {i + 1}: training '
            'diverged; lower the learning rate or clip the gradients harder.')


def check_some_tokens(metric):
    """Raise unless the epoch's (loss sum, tokens) counted any token."""
    if metric[1] == 0:
        raise ValueError('train_iter yielded no minibatch: the text is too '
                         'short for this batch_size and num_steps.')


def epoch_perplexity(metric):
    """exp(mean loss) of an epoch: (loss sum, tokens) -> perplexity."""
    check_some_tokens(metric)
    ppl = perplexity(metric[0], metric[1])
    if ppl == math.inf:
        raise FloatingPointError(
            f'the mean loss was {metric[0] / metric[1]:.3g} per token, so '
            'the perplexity overflows: training diverged; lower the learning '
            'rate or clip the gradients harder.')
    return ppl


def train_ch8(model, train_iter, vocab, lr, num_epochs, ctx,
              use_random_iter=False, animator=None):
    """Train with SGD, plot every 10 epochs, return perplexity (D2L 8.5.6)."""
    check_positive(num_epochs=num_epochs)
    check_positive_number(lr=lr)  # infinity would make the parameters NaN
    check_vocab_fits(model, vocab)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    if animator is None:
        animator = Animator(xlabel='epoch', ylabel='perplexity',
                            legend=['train'], xlim=[1, num_epochs])
    if isinstance(model, gluon.Block):
        model.initialize(ctx=ctx, force_reinit=True, init=init.Normal(0.01))
        trainer = gluon.Trainer(model.collect_params(), 'sgd',
                                {'learning_rate': lr})

        def updater(batch_size):
            return trainer.step(batch_size)
    else:
        def updater(batch_size):
            return sgd(model.params, lr, batch_size)

    for epoch in range(num_epochs):
        with in_epoch(epoch + 1):  # a divergence names its epoch
            ppl, speed = train_epoch_ch8(
                model, train_iter, loss, updater, ctx, use_random_iter)
        if epoch % 10 == 0:  # epochs 1, 11, 21, ...
            animator.add(epoch + 1, [ppl])
    print('Perplexity %.1f, %d tokens/sec on %s' % (ppl, speed, ctx))
    print(predict_ch8('time traveller', 50, model, vocab, ctx))
    print(predict_ch8('traveller', 50, model, vocab, ctx))
    return ppl


@contextlib.contextmanager
def in_epoch(epoch):
    """Prefix a ``FloatingPointError`` raised inside with 'epoch N: '."""
    try:
        yield
    except FloatingPointError as e:
        raise FloatingPointError(f'epoch {epoch}: {e}') from None


def train_epoch(model, train_iter, loss, updater, ctx, use_random_iter=False,
                theta=1, state_mode='detach', on_step=None):
    """``train_epoch_ch8`` with switches for exercises 4 and 5 (D2L 8.5.6)."""
    check_epoch_switches(theta, state_mode)
    state, timer = None, Timer()
    metric = Accumulator(2)  # sum of losses over tokens, number of tokens
    for X, Y in train_iter:
        step = Timer()
        if state is None or use_random_iter:
            state = model.begin_state(batch_size=X.shape[0], ctx=ctx)
        elif state_mode == 'detach':  # 'keep' and 'retain' pass it on as is
            state = tuple(s.detach() for s in state)
        y = Y.T.reshape(-1)
        X, y = X.as_in_ctx(ctx), y.as_in_ctx(ctx)
        with autograd.record():
            py, state = model(X, state)
            l = loss(py, y).mean()
        # 'retain' keeps the graphs of the epoch's earlier minibatches alive
        l.backward(retain_graph=(state_mode == 'retain'))
        norm = float(grad_clipping(model, theta or math.inf))  # None: no clip
        lval = float(l)
        finite = math.isfinite(lval) and math.isfinite(norm)
        if finite:  # else the update would make the parameters NaN
            updater(batch_size=1)
            metric.add(lval * y.size, y.size)
        if on_step is not None:
            on_step(lval, norm, step.stop())
        if not finite:  # diverged: the caller decides what that means
            return math.inf, metric[1] / timer.stop(), False
    check_some_tokens(metric)
    return perplexity(metric[0], metric[1]), metric[1] / timer.stop(), True


def check_epoch_switches(theta, state_mode):
    """Raise unless `theta` and `state_mode` suit ``train_epoch``."""
    check_theta_or_none(theta)
    if state_mode not in STATE_MODES:
        raise ValueError(f'state_mode must be one of {STATE_MODES}, '
                         f'got {state_mode!r}.')


class ProgressLog:
    """An `animator` for ``train_ch8`` that also measures the model."""

    def __init__(self, animator=None, **measures):
        self.animator, self.measures = animator, measures
        self.rows = []  # one dict per plotted epoch

    def add(self, x, y):
        if self.animator is not None:
            self.animator.add(x, y)
        ppl = y[0] if hasattr(y, '__len__') else y
        row = {'epoch': x, 'perplexity': ppl}
        row.update((name, f()) for name, f in self.measures.items())
        self.rows.append(row)

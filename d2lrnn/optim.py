"""Adam, schedules, averaging (book/exercises/ex2-perplexity.ipynb).

Training a scratch RNN for text it has not seen.

Optimiser, schedule, averaging and the loop that keeps the best epoch.

The section trains with plain SGD at one fixed step size and reports the
training perplexity only. On a held-out part of the book that recipe stops
improving early while the training perplexity keeps falling: the model
memorises. This module holds what later chapters of *Dive into Deep
Learning* use against that, each written from scratch on the model's list of
parameter arrays (no Gluon ``Trainer``):

* ``Adam``: a step size per parameter entry (D2L 11.10), with weight decay
  (D2L 4.5) applied to the weight matrices, decoupled from the gradient;
* ``cosine_schedule``: a learning rate that warms up, then decays along a
  half cosine (D2L 11.11);
* ``ParamAverage``: an exponential moving average of the parameters,
  used in place of the parameters for evaluation;
* ``fit``: epochs of the exercise loop (``train.train_epoch``) with
  all of the above, the held-out text scored after every epoch and the
  parameters of the best epoch kept.

Dropout, the fourth regulariser, lives in the model: ``FastRNNScratch(...,
dropout=p)``.
"""
import contextlib
import math
import random

from mxnet import gluon, np

from .checks import (check_fraction, check_nonnegative,
                     check_nonnegative_number, check_positive,
                     check_positive_number, check_that, is_integer, is_real)
from .evaluate import evaluate_perplexity, seq_data_iter_eval
from .train import train_epoch
from .utils import Timer


class Adam:
    """Adam (Kingma and Ba 2015; D2L 11.10) on a list of arrays with ``.grad``.

    For every entry of every parameter it keeps a moving average of the
    gradient (``m``, weight ``beta1``) and of its square (``v``, weight
    ``beta2``), corrects both for starting at zero, and steps by
    ``lr * m_hat / (sqrt(v_hat) + eps)``: entries whose gradients are
    large or noisy take small steps, rare ones larger steps.

    ``weight_decay=wd`` also shrinks every weight matrix (arrays with two or
    more axes; biases are left alone, as is customary) by ``lr * wd *
    param`` at each step, separately from the gradient ("AdamW", Loshchilov
    and Hutter 2019). Added to the gradient instead, an L2 penalty would be
    divided by ``sqrt(v_hat)`` like the rest and shrink rarely-updated
    weights the most.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0):
        check_positive_number(lr=lr, eps=eps)
        check_fraction(**dict(zip(('beta1', 'beta2'), betas)))
        check_nonnegative_number(weight_decay=weight_decay)
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay = weight_decay
        self.m = [np.zeros(p.shape, ctx=p.ctx) for p in self.params]
        self.v = [np.zeros(p.shape, ctx=p.ctx) for p in self.params]
        self.t = 0  # steps taken, for the bias correction

    def step(self, lr=None):
        """Update every parameter in place from its ``.grad``; `lr` overrides
        the step size for this step (a schedule)."""
        lr = self.lr if lr is None else lr
        # Before anything changes: a NaN, infinite or negative step would
        # ruin every parameter silently; 0 (where a schedule ends at
        # final_lr=0) moves nothing.
        check_nonnegative_number(lr=lr)
        beta1, beta2 = self.betas
        self.t += 1
        # Bias corrections folded into the step size (one scalar, no arrays).
        step = lr * math.sqrt(1 - beta2 ** self.t) / (1 - beta1 ** self.t)
        eps = self.eps * math.sqrt(1 - beta2 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m[:] = beta1 * m + (1 - beta1) * g
            v[:] = beta2 * v + (1 - beta2) * g * g
            if self.weight_decay and p.ndim >= 2:
                p[:] = p * (1 - lr * self.weight_decay)
            p[:] = p - step * m / (np.sqrt(v) + eps)


def cosine_schedule(base_lr, total_steps, warmup_steps=0, final_lr=0.0):
    """The learning rate at each step, as a function of the step (from 0).

    It rises linearly from ``base_lr / warmup_steps`` to `base_lr` over the
    first `warmup_steps` steps (large steps while Adam's averages are still
    poor estimates can throw the model far off), then falls along half a
    cosine to `final_lr` at step `total_steps` and stays there (D2L 11.11).
    """
    check_positive(total_steps=total_steps)
    check_positive_number(base_lr=base_lr)
    check_that(lambda v: is_integer(v) and 0 <= v < total_steps,
               'be an integer at least 0 and below '
               f'total_steps={total_steps}')(warmup_steps=warmup_steps)
    check_that(lambda v: is_real(v) and 0 <= v <= base_lr,
               f'lie in [0, base_lr={base_lr}]')(final_lr=final_lr)

    def lr_at(step):
        # A negative step would give a negative rate during the warm-up.
        check_nonnegative(step=step)  # the steps taken so far
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        done = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        cosine = (1 + math.cos(math.pi * done)) / 2  # from 1 down to 0
        return final_lr + (base_lr - final_lr) * cosine
    return lr_at


class ParamAverage:
    """An exponential moving average of the parameters, for evaluation.

    After each update, ``average = decay * average + (1 - decay) *
    params``: with ``decay = 0.999`` it spans roughly the last thousand
    steps. Stochastic steps make the parameters wander around a good region;
    their average tends to lie nearer its middle and scores better on
    held-out text. The running sum starts at zero and is divided by
    ``1 - decay ** steps`` (as Adam corrects its moments), so that the
    initial parameters carry no weight. ``decay=0`` is no averaging.
    """

    def __init__(self, params, decay=0.999):
        check_fraction(decay=decay)
        self.params, self.decay = list(params), decay
        # the sum of (1 - decay) decay**k params_{steps - k} over the steps
        self.total = [np.zeros(p.shape, ctx=p.ctx) for p in self.params]
        self.steps = 0

    def update(self):
        """Take the current parameters into the average."""
        self.steps += 1
        for total, p in zip(self.total, self.params):
            total[:] = self.decay * total + (1 - self.decay) * p

    def averaged(self):
        """The averaged parameters, as new arrays (the parameters themselves
        before the first update)."""
        if self.steps == 0:
            return [p.copy() for p in self.params]
        weight = 1 - self.decay ** self.steps
        return [total / weight for total in self.total]

    @contextlib.contextmanager
    def swapped(self):
        """Inside the block the model's arrays hold the averaged parameters;
        afterwards they hold the trained ones again."""
        saved = [p.copy() for p in self.params]
        for p, a in zip(self.params, self.averaged()):
            p[:] = a
        try:
            yield
        finally:
            for p, s in zip(self.params, saved):
                p[:] = s


def fit(model, train_iter, valid_corpus, ctx, num_epochs, lr=2e-3,
        theta=1.0, weight_decay=0.0, warmup_steps=0, final_lr=0.0,
        average_decay=0.0, eval_batch_size=32, eval_num_steps=35,
        on_epoch=None):
    """Train `model` with Adam on a cosine schedule; keep its best epoch.

    Each epoch is ``train.train_epoch`` (the loop of
    ``train_epoch_ch8``: state carried and detached between sequential
    minibatches, gradients clipped to norm `theta`) with an Adam step as
    the update. After each epoch the model (its moving average, if
    `average_decay` > 0) is scored on `valid_corpus` (ids, read by
    ``seq_data_iter_eval``, the state carried along). At the end the
    model holds the parameters of the epoch with the lowest validation
    perplexity, and the returned record says which epoch that was:

    * ``epoch``, ``train_ppl``, ``valid_ppl``, ``lr``, ``seconds``: per
      epoch (``train_ppl`` is measured while training, with dropout on;
      ``lr`` is the last step size of the epoch; ``seconds`` counts
      training and scoring);
    * ``valid_ppl_raw``: with averaging, the trained parameters' own
      validation perplexity per epoch (what the average gains);
    * ``best_epoch``, ``best_valid_ppl``;
    * ``step_norm``: the gradient norm before clipping of every step;
    * ``diverged_at_step``: the first step whose loss or norm was not
      finite (training stops there), or None.

    ``on_epoch(epoch, record)`` is called after every epoch.
    """
    check_positive(num_epochs=num_epochs)
    valid_iter = seq_data_iter_eval(valid_corpus, eval_batch_size,
                                    eval_num_steps)
    schedule = cosine_schedule(lr, num_epochs * _count_minibatches(train_iter),
                               warmup_steps, final_lr)
    optimizer = Adam(model.params, lr, weight_decay=weight_decay)
    average = (ParamAverage(model.params, average_decay)
               if average_decay > 0 else None)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    record = dict(epoch=[], train_ppl=[], valid_ppl=[], lr=[], seconds=[],
                  step_norm=[], best_epoch=None, best_valid_ppl=math.inf,
                  diverged_at_step=None)
    if average_decay > 0:
        record['valid_ppl_raw'] = []
    best = [p.copy() for p in model.params]

    def update(batch_size):  # train_epoch's updater; Adam needs no batch size
        optimizer.step(schedule(optimizer.t))
        if average is not None:
            average.update()

    def on_step(lval, norm, seconds):
        record['step_norm'].append(norm)

    for epoch in range(1, num_epochs + 1):
        timer = Timer()
        train_ppl, _, finite = train_epoch(model, train_iter, loss, update,
                                           ctx, theta=theta, on_step=on_step)
        if not finite:
            record['diverged_at_step'] = len(record['step_norm'])
            break
        if average is not None:
            record['valid_ppl_raw'].append(
                evaluate_perplexity(model, valid_iter, ctx))
        with average.swapped() if average else contextlib.nullcontext():
            valid_ppl = evaluate_perplexity(model, valid_iter, ctx)
            if valid_ppl < record['best_valid_ppl']:
                best = [p.copy() for p in model.params]
                record['best_epoch'] = epoch
                record['best_valid_ppl'] = valid_ppl
        for key, value in (('epoch', epoch), ('train_ppl', train_ppl),
                           ('valid_ppl', valid_ppl),
                           ('lr', schedule(optimizer.t - 1)),
                           ('seconds', timer.stop())):
            record[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, record)
    for p, b in zip(model.params, best):
        p[:] = b
    return record


def _count_minibatches(train_iter):
    """Minibatches in one pass over `train_iter`, without touching the
    random state from which the pass draws its offset."""
    state = random.getstate()
    try:
        return sum(1 for _ in train_iter)
    finally:
        random.setstate(state)

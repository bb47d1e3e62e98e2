"""Training: clipping, SGD, one epoch, many epochs (D2L 8.5.5 and 8.5.6)."""
import math

from mxnet import autograd, gluon, init

from .data import check_positive
from .plot import Animator
from .predict import predict_ch8
from .utils import Accumulator, Timer, perplexity


def grad_clipping(model, theta):
    """Rescale all gradients to a global norm of at most `theta` (D2L 8.5.5).

    `model` is a Gluon ``Block`` or anything with ``.params`` (a scratch
    model). Unlike the original, the parameters are listed first, so a
    ``.params`` that is a generator is not used up by the norm before the
    rescaling loop; and Gluon parameters without a gradient are skipped.
    Both leave the original's results unchanged. Returns the norm before
    clipping. `theta` must be a positive number (infinity never clips): 0
    would zero the gradients, a negative one reverse them, and NaN turn
    clipping off without a word.
    """
    if not theta > 0:
        raise ValueError(f'theta must be a positive number, got {theta!r}.')
    if isinstance(model, gluon.Block):
        grads = [p.grad() for p in model.collect_params().values()
                 if p.grad_req != 'null']
    else:
        grads = [p.grad for p in model.params]
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
    """One pass over `train_iter`; return (perplexity, tokens/s) (D2L 8.5.6).

    The original calls ``s.detach()`` and drops the result, which leaves
    the state attached; this keeps the detached copies. MXNet frees a graph
    on ``backward``, so the two give identical results (the tests check
    this bit for bit). A non-finite loss, or a perplexity too large for a
    float, raises ``FloatingPointError``; a non-finite loss does so before
    the update, so the parameters keep their last finite values.
    """
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
        # Checked before the update, so the parameters stay finite.
        if not math.isfinite(float(l)):
            raise FloatingPointError(
                f'the loss became {float(l)} at minibatch {i + 1}: training '
                'diverged; lower the learning rate or clip the gradients '
                'harder.')
        grad_clipping(model, 1)
        updater(batch_size=1)  # the loss is already a mean
        metric.add(l * y.size, y.size)
    if metric[1] == 0:
        raise ValueError('train_iter yielded no minibatch: the text is too '
                         'short for this batch_size and num_steps.')
    ppl = perplexity(metric[0], metric[1])
    if ppl == math.inf:
        raise FloatingPointError(
            f'the mean loss was {metric[0] / metric[1]:.3g} per token, so '
            'the perplexity overflows: training diverged; lower the learning '
            'rate or clip the gradients harder.')
    return ppl, metric[1] / timer.stop()


def train_ch8(model, train_iter, vocab, lr, num_epochs, ctx,
              use_random_iter=False, animator=None):
    """Train `num_epochs` with SGD, plotting every 10 epochs (D2L 8.5.6).

    As in the original, the perplexity of epochs 1, 11, 21, ... is plotted
    (x = epoch number). `animator` receives the points (a default one
    plots live in a notebook and stays silent elsewhere; a ``ProgressLog``
    also keeps samples). Unlike the original, the prediction made every 10
    epochs is not printed (in a notebook the original's live plot erased
    it at once; in a terminal it scrolled by), and the function returns
    the final perplexity. It prints the same three lines at the end.
    """
    check_positive(num_epochs=num_epochs)
    # Infinity would turn the parameters into NaN at the first update.
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(
            f'lr must be a positive number, and finite, got {lr!r}.')
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

    def predict(prefix):
        return predict_ch8(prefix, 50, model, vocab, ctx)

    for epoch in range(num_epochs):
        try:
            ppl, speed = train_epoch_ch8(
                model, train_iter, loss, updater, ctx, use_random_iter)
        except FloatingPointError as e:
            raise FloatingPointError(f'epoch {epoch + 1}: {e}') from None
        if epoch % 10 == 0:  # epochs 1, 11, 21, ...
            animator.add(epoch + 1, [ppl])
    print('Perplexity %.1f, %d tokens/sec on %s' % (ppl, speed, ctx))
    print(predict('time traveller'))
    print(predict('traveller'))
    return ppl


class ProgressLog:
    """An `animator` for ``train_ch8`` that also measures the model on the way.

    ``train_ch8`` calls ``animator.add(epoch, [perplexity])`` at epochs 1,
    11, 21, ...; this passes the point on to `animator` (if any) and calls
    each of `measures` (functions of no argument, for example a greedy
    continuation or a held-out perplexity) at that moment. ``rows`` then
    holds one dict per call: ``epoch``, ``perplexity`` and one entry per
    measure. The measures must not change the model: they run between two
    epochs, so training goes on exactly as without them.
    """

    def __init__(self, animator=None, **measures):
        self.animator, self.measures = animator, measures
        self.rows = []

    def add(self, x, y):
        if self.animator is not None:
            self.animator.add(x, y)
        ppl = y[0] if hasattr(y, '__len__') else y
        row = {'epoch': x, 'perplexity': ppl}
        row.update((name, f()) for name, f in self.measures.items())
        self.rows.append(row)

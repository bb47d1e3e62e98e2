"""Clipping, the state between minibatches, and training (D2L 8.5.5 and 8.5.6)."""
import contextlib
import io
import math
import re

import numpy as onp
import pytest
from mxnet import autograd, gluon, np, npx

import d2lrnn
from d2lrnn.train import grad_clipping, sgd


class Params:
    """A stand-in for a scratch model: parameters with gradients set by hand."""

    def __init__(self, grads, as_generator=False):
        self._params = []
        for g in grads:
            p = np.zeros(g.shape)
            p.attach_grad()
            p.grad[:] = np.array(g)
            self._params.append(p)
        self.as_generator = as_generator

    @property
    def params(self):
        return (p for p in self._params) if self.as_generator else self._params

    def grads(self):
        return [p.grad.asnumpy() for p in self._params]


GRADS = [onp.array([[3.0, -4.0], [1.0, 2.0]], 'float32'), onp.array([12.0, 0.5], 'float32')]
NORM = math.sqrt(sum(float((g.astype('float64') ** 2).sum()) for g in GRADS))  # about 13.2


@pytest.mark.parametrize('as_generator', [False, True])
def test_clipping_above_theta_rescales_to_theta_keeping_the_direction(as_generator):
    model = Params(GRADS, as_generator)
    assert grad_clipping(model, 5) == pytest.approx(NORM)
    clipped = model.grads()
    assert math.sqrt(sum((g.astype('float64') ** 2).sum() for g in clipped)) == pytest.approx(5)
    for before, after in zip(GRADS, clipped):
        onp.testing.assert_allclose(after, before * 5 / NORM, rtol=1e-6)


def test_clipping_below_theta_changes_nothing():
    model = Params(GRADS)
    assert grad_clipping(model, 20) == pytest.approx(NORM)
    for before, after in zip(GRADS, model.grads()):
        onp.testing.assert_array_equal(after, before)


def test_clipping_a_gluon_block_skips_parameters_without_gradient():
    net = gluon.nn.Sequential()
    net.add(gluon.nn.Dense(3, in_units=4), gluon.nn.Dense(2, in_units=3))
    net.initialize()
    net[1].bias.grad_req = 'null'
    with autograd.record():
        l = (net(np.ones((5, 4))) * 1000).sum()
    l.backward()
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    norm = math.sqrt(sum(float((p.grad().astype('float64') ** 2).sum()) for p in params))
    before = [p.grad().asnumpy() for p in params]
    assert norm > 1
    assert grad_clipping(net, 1) == pytest.approx(norm, rel=1e-5)
    for b, p in zip(before, params):
        onp.testing.assert_allclose(p.grad().asnumpy(), b / norm, rtol=1e-5)


# --- the original's dropped detach() ---

def original_epoch(model, train_iter, loss, lr, ctx):
    """train_epoch_ch8 as the original writes it: `for s in state: s.detach()`."""
    state = None
    for X, Y in train_iter:
        if state is None:
            state = model.begin_state(batch_size=X.shape[0], ctx=ctx)
        else:
            for s in state:
                s.detach()  # returns a detached copy, which is dropped
        y = Y.T.reshape(-1)
        with autograd.record():
            py, state = model(X, state)
            l = loss(py, y).mean()
        l.backward()
        grad_clipping(model, 1)
        sgd(model.params, lr, batch_size=1)


def two_epochs(seed, ctx, make_model, original):
    """The parameters before and after two seeded epochs."""
    seed(3)
    train_iter, vocab = d2lrnn.load_data_time_machine(8, 10, max_tokens=1500)
    model = make_model(len(vocab), 32)
    initial = [p.asnumpy() for p in model.params]
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(2):
        if original:
            original_epoch(model, train_iter, loss, 1, ctx)
        else:
            d2lrnn.train_epoch_ch8(model, train_iter, loss,
                                   lambda batch_size: sgd(model.params, 1, batch_size), ctx, False)
    return initial, [p.asnumpy() for p in model.params]


def test_dropping_detach_as_the_original_does_gives_identical_parameters(seed, ctx, make_model):
    initial, ours = two_epochs(seed, ctx, make_model, original=False)
    _, theirs = two_epochs(seed, ctx, make_model, original=True)
    for a, b in zip(ours, theirs):
        onp.testing.assert_array_equal(a, b)
    assert not any(onp.array_equal(a, b) for a, b in zip(initial, ours))  # it did train


# --- training ---

@pytest.mark.slow
def test_a_short_seeded_run_lowers_perplexity_markedly(seed, ctx, make_model):
    train_iter, vocab = d2lrnn.load_data_time_machine(32, 35)
    model = make_model(len(vocab), 128)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    ppls = [d2lrnn.train_epoch_ch8(model, train_iter, loss,
                                   lambda batch_size: sgd(model.params, 2, batch_size),
                                   ctx, False)[0]
            for _ in range(10)]
    assert 20 < ppls[0] < 28.5  # about len(vocab) at the start: nearly uniform guesses
    assert ppls[-1] < 14


def test_train_ch8_plots_every_10_epochs_and_prints_three_lines(seed, ctx, make_model):
    train_iter, vocab = d2lrnn.load_data_time_machine(8, 10, max_tokens=1000)
    model = make_model(len(vocab), 16)
    animator = d2lrnn.Animator(display=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ppl = d2lrnn.train_ch8(model, train_iter, vocab, 1, 11, ctx, animator=animator)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r'Perplexity \d+\.\d, \d+ tokens/sec on cpu\(0\)', lines[0])
    assert lines[0].startswith(f'Perplexity {ppl:.1f},')
    assert lines[1].startswith('time traveller') and len(lines[1]) == 14 + 50
    assert lines[2].startswith('traveller') and len(lines[2]) == 9 + 50
    assert animator.X == [[1, 11]]  # epochs 1, 11, 21, ... as in the original
    assert animator.Y[0][-1] == ppl


@pytest.mark.slow
def test_a_progress_log_measures_at_the_plotted_epochs_without_changing_training(
        seed, ctx, make_model):
    def run(with_log):
        seed()
        train_iter, vocab = d2lrnn.load_data_time_machine(8, 10, max_tokens=1000)
        model = make_model(len(vocab), 16)
        animator = d2lrnn.Animator(display=False)
        log = d2lrnn.ProgressLog(
            animator,
            sample=lambda: d2lrnn.predict_ch8('time', 10, model, vocab, ctx),
            norm=lambda: float(sum((p ** 2).sum() for p in model.params)))
        with contextlib.redirect_stdout(io.StringIO()):
            ppl = d2lrnn.train_ch8(model, train_iter, vocab, 1, 21, ctx,
                                   animator=log if with_log else animator)
        return log, animator, ppl, [p.asnumpy() for p in model.params]

    log, animator, ppl, params = run(True)
    assert [r['epoch'] for r in log.rows] == [1, 11, 21]
    assert [r['perplexity'] for r in log.rows] == animator.Y[0]  # passed on
    assert log.rows[-1]['perplexity'] == ppl
    assert all(len(r['sample']) == 4 + 10 and r['sample'].startswith('time')
               for r in log.rows)
    norms = [r['norm'] for r in log.rows]
    assert len(set(norms)) == 3  # measured at three different moments
    _, _, ppl_plain, params_plain = run(False)
    assert ppl == ppl_plain
    for a, b in zip(params, params_plain):
        onp.testing.assert_array_equal(a, b)


def test_train_ch8_trains_a_gluon_model(seed, ctx):
    class GluonRNN(gluon.Block):
        """A minimal Gluon language model with the scratch model's interface."""

        def __init__(self, vocab_size, num_hiddens):
            super().__init__()
            self.rnn = gluon.rnn.RNN(num_hiddens, input_size=vocab_size)
            self.dense = gluon.nn.Dense(vocab_size, flatten=False, in_units=num_hiddens)
            self.vocab_size = vocab_size

        def forward(self, X, state):
            from mxnet import npx
            Y, state = self.rnn(npx.one_hot(X.T, self.vocab_size), state)
            return self.dense(Y).reshape(-1, self.vocab_size), state

        def begin_state(self, batch_size, ctx):
            return self.rnn.begin_state(batch_size=batch_size, ctx=ctx)

    train_iter, vocab = d2lrnn.load_data_time_machine(8, 10, max_tokens=1000)
    model = GluonRNN(len(vocab), 16)
    with contextlib.redirect_stdout(io.StringIO()):
        ppl = d2lrnn.train_ch8(model, train_iter, vocab, 1, 2, ctx,
                               animator=d2lrnn.Animator(display=False))
    assert 1 < ppl < 40


class Poisoned:
    """A scratch model whose outputs turn to NaN from its `after`-th call on."""

    def __init__(self, model, after):
        self.model, self.after, self.calls = model, after, 0
        self.params, self.begin_state = model.params, model.begin_state

    def __call__(self, X, state):
        self.calls += 1
        Y, state = self.model(X, state)
        return (Y * np.nan if self.calls >= self.after else Y), state


def test_a_nan_loss_stops_training_naming_the_epoch(seed, ctx, make_model):
    train_iter, vocab = d2lrnn.load_data_time_machine(4, 10, max_tokens=1000)
    per_epoch = (1000 - 10 - 1) // 4 // 10  # 24 minibatches, whatever the offset
    assert len(list(train_iter)) == per_epoch
    model = Poisoned(make_model(len(vocab), 8), after=per_epoch + 3)
    with pytest.raises(FloatingPointError, match=r'^epoch 2: the loss became nan at minibatch 3:'):
        d2lrnn.train_ch8(model, train_iter, vocab, 1, 5, ctx,
                         animator=d2lrnn.Animator(display=False))


def test_a_nan_loss_leaves_the_parameters_as_they_were(seed, ctx, make_model):
    train_iter, vocab = d2lrnn.load_data_time_machine(4, 10, max_tokens=1000)
    model = Poisoned(make_model(len(vocab), 8), after=3)
    updates = []

    def updater(batch_size):
        d2lrnn.sgd(model.params, 1, batch_size)
        updates.append([p.copy() for p in model.params])

    with pytest.raises(FloatingPointError, match='at minibatch 3:'):
        d2lrnn.train_epoch_ch8(model, train_iter, gluon.loss.SoftmaxCrossEntropyLoss(),
                               updater, ctx, False)
    assert len(updates) == 2  # the poisoned minibatch updated nothing
    for p, q in zip(model.params, updates[-1]):
        assert (p == q).all()


def test_a_huge_learning_rate_is_reported_as_divergence(seed, ctx, make_model):
    train_iter, vocab = d2lrnn.load_data_time_machine(8, 10, max_tokens=2000)
    with pytest.raises(FloatingPointError, match='epoch 1: .*diverged; lower the learning rate'):
        d2lrnn.train_ch8(make_model(len(vocab), 16), train_iter, vocab, 1e30, 3, ctx,
                         animator=d2lrnn.Animator(display=False))


@pytest.mark.parametrize('lr, num_epochs, message', [
    (0, 1, 'lr must be a finite number > 0, got 0'), (-1, 1, 'lr must be a finite number > 0'),
    (float('nan'), 1, 'lr must be a finite number > 0'),
    ('1', 1, "lr must be a finite number > 0, got '1'"),  # once a raw TypeError
    (None, 1, 'lr must be a finite number > 0, got None'),
    (True, 1, 'lr must be a finite number > 0, got True'),
    (1, 0, 'num_epochs must be a positive integer'),
    (1, 2.0, 'num_epochs must be a positive integer, got 2.0')])
def test_train_ch8_refuses_bad_settings(ctx, make_model, lr, num_epochs, message):
    train_iter, vocab = d2lrnn.load_data_time_machine(4, 10, max_tokens=1000)
    with pytest.raises(ValueError, match=message):
        d2lrnn.train_ch8(make_model(len(vocab), 8), train_iter, vocab, lr, num_epochs, ctx)


def test_an_empty_iterator_is_refused(ctx, make_model):
    model = make_model(28, 8)
    with pytest.raises(ValueError, match='yielded no minibatch'):
        d2lrnn.train_epoch_ch8(model, [], gluon.loss.SoftmaxCrossEntropyLoss(),
                               lambda batch_size: None, ctx, False)


# ------------------------------------------------ bad arguments refused up front (issue 13)

@pytest.mark.parametrize('lr', [math.inf, -math.inf, float('nan')])
def test_train_ch8_refuses_a_learning_rate_that_is_not_finite(ctx, make_model, lr):
    """Refused before any update: the model keeps its finite initial parameters."""
    train_iter, vocab = d2lrnn.load_data_time_machine(4, 10, max_tokens=1000)
    model = make_model(len(vocab), 8)
    before = [p.copy() for p in model.params]
    with pytest.raises(ValueError, match='lr must be a finite number > 0'):
        d2lrnn.train_ch8(model, train_iter, vocab, lr, 1, ctx,
                         animator=d2lrnn.Animator(display=False))
    for p, q in zip(model.params, before):
        assert (p == q).all()


@pytest.mark.parametrize('theta', [0, -1, float('nan'), -math.inf, '1', None, True])
def test_grad_clipping_refuses_a_threshold_that_is_not_positive(theta):
    """-1 would reverse the gradients, 0 zero them and NaN turn clipping off."""
    model = Params(GRADS)
    with pytest.raises(ValueError, match='theta must be a positive number'):
        grad_clipping(model, theta)
    for g, expected in zip(model.grads(), GRADS):
        assert onp.array_equal(g, expected)  # untouched


def test_grad_clipping_with_an_infinite_threshold_never_clips():
    model = Params(GRADS)
    assert grad_clipping(model, math.inf) == pytest.approx(NORM)
    for g, expected in zip(model.grads(), GRADS):
        assert onp.array_equal(g, expected)


@pytest.mark.parametrize('call', ['train', 'predict'])
def test_a_model_built_for_a_smaller_vocabulary_is_refused(call):
    # RNNModelScratch would read ids 10..27 as one-hot rows of zeros, silently.
    train_iter, vocab = d2lrnn.load_data_time_machine(4, 5, max_tokens=500)
    model = d2lrnn.RNNModelScratch(10, 8, npx.cpu(), d2lrnn.get_params,
                                   d2lrnn.init_rnn_state, d2lrnn.rnn)
    message = ('the vocabulary has 28 tokens but the model was built for 10: '
               'build it with vocab_size=len(vocab).')
    with pytest.raises(ValueError, match=re.escape(message)):
        if call == 'train':
            d2lrnn.train_ch8(model, train_iter, vocab, 1, 1, npx.cpu())
        else:
            d2lrnn.predict_ch8('time', 5, model, vocab, npx.cpu())

"""d2lrnn.optim (Adam, schedule, averaging, fit); FastRNNScratch's dropout."""
import math
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np, npx

import d2lrnn
from d2lrnn import FastRNNScratch
from d2lrnn.optim import Adam, ParamAverage, cosine_schedule, fit

CTX = npx.cpu()


def arrays_with_grads(values, grads):
    params = []
    for value, grad in zip(values, grads):
        p = np.array(value)
        p.attach_grad()
        p.grad[:] = np.array(grad)
        params.append(p)
    return params


def reference_adam(values, grads, lrs, betas=(0.9, 0.999), eps=1e-8, wd=0.0):
    """Adam as Kingma and Ba write it, in float64 NumPy; decoupled decay."""
    values = [onp.array(v, dtype='float64') for v in values]
    m = [onp.zeros_like(v) for v in values]
    v2 = [onp.zeros_like(v) for v in values]
    for t, lr in enumerate(lrs, start=1):
        for i, (x, g) in enumerate(zip(values, grads)):
            g = onp.asarray(g, dtype='float64')
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v2[i] = betas[1] * v2[i] + (1 - betas[1]) * g * g
            m_hat = m[i] / (1 - betas[0] ** t)
            v_hat = v2[i] / (1 - betas[1] ** t)
            if wd and x.ndim >= 2:
                x = x * (1 - lr * wd)
            values[i] = x - lr * m_hat / (onp.sqrt(v_hat) + eps)
    return values


@pytest.mark.parametrize('wd', [0.0, 0.1])
def test_adam_matches_the_textbook_update(wd):
    rng = onp.random.default_rng(0)
    values = [rng.normal(size=(3, 4)), rng.normal(size=(4,))]
    grads = [rng.normal(size=(3, 4)), rng.normal(size=(4,)) * 1e-3]
    params = arrays_with_grads(values, grads)
    adam = Adam(params, lr=0.01, weight_decay=wd)
    lrs = [0.01, 0.02, 0.005]
    for lr in lrs:  # the same gradients each step
        adam.step(lr)
    expected = reference_adam(values, grads, lrs, wd=wd)
    for p, e in zip(params, expected):
        assert onp.allclose(p.asnumpy(), e, rtol=1e-5, atol=1e-6)
    assert adam.t == 3


def test_adam_takes_about_lr_per_step_whatever_the_gradient_scale():
    # per-entry step sizes: a gradient 1e6 times smaller moves as far
    params = arrays_with_grads([[0.0, 0.0]], [[1.0, 1e-6]])
    Adam(params, lr=0.1).step()
    assert onp.allclose(params[0].asnumpy(), [[-0.1, -0.1]], rtol=1e-2)


def test_weight_decay_spares_the_biases():
    params = arrays_with_grads([[[1.0]], [1.0]], [[[0.0]], [0.0]])
    Adam(params, lr=0.5, weight_decay=0.2).step()
    assert params[0].item() == pytest.approx(0.9)  # 1 * (1 - 0.5 * 0.2)
    assert params[1].item() == pytest.approx(1.0)


def test_adam_minimises_a_quadratic():
    x = np.array([3.0, -2.0])
    x.attach_grad()
    adam = Adam([x], lr=0.1)
    for _ in range(300):
        with autograd.record():
            loss = ((x - np.array([1.0, 0.5])) ** 2).sum()
        loss.backward()
        adam.step()
    assert onp.allclose(x.asnumpy(), [1.0, 0.5], atol=1e-2)


def test_bad_optimizer_settings_are_refused():
    params = arrays_with_grads([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match='lr'):
        Adam(params, lr=0)
    with pytest.raises(ValueError, match='beta2'):
        Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match='weight_decay'):
        Adam(params, weight_decay=-1)


@pytest.mark.parametrize('lr', [math.nan, math.inf, -math.inf, -0.1, '1', True,
                                onp.float32('nan')])
def test_a_step_size_that_would_ruin_the_parameters_is_refused(lr):
    params = arrays_with_grads([[1.0, 2.0]], [[0.5, -0.5]])
    adam = Adam(params, lr=0.1)
    adam.step()
    before = [a.asnumpy().copy() for a in (*params, *adam.m, *adam.v)]
    with pytest.raises(ValueError, match='lr must be a finite number >= 0, got'):
        adam.step(lr)
    assert adam.t == 1  # nothing changed: no NaN parameters, no step counted
    for a, b in zip((*params, *adam.m, *adam.v), before):
        assert (a.asnumpy() == b).all()


def test_a_step_of_size_zero_moves_nothing():
    """What a schedule ending at final_lr=0 gives from total_steps on."""
    params = arrays_with_grads([[1.0, 2.0]], [[0.5, -0.5]])
    adam = Adam(params, lr=0.1)
    adam.step(cosine_schedule(0.1, 10)(10))
    assert adam.t == 1 and params[0].asnumpy().tolist() == [1.0, 2.0]


@pytest.mark.parametrize('step', [-1, 1.5, math.nan, None, True])
def test_the_schedule_refuses_a_step_that_is_not_a_count(step):
    lr = cosine_schedule(1.0, total_steps=110, warmup_steps=10)
    with pytest.raises(ValueError, match='step must be an integer >= 0'):
        lr(step)


def test_cosine_schedule():
    lr = cosine_schedule(1.0, total_steps=110, warmup_steps=10, final_lr=0.1)
    assert [lr(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr(10) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.55)  # half way down the cosine
    assert lr(110) == pytest.approx(0.1) and lr(500) == pytest.approx(0.1)
    values = [lr(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert cosine_schedule(2.0, 5)(0) == 2.0  # no warm-up
    with pytest.raises(ValueError, match='warmup_steps'):
        cosine_schedule(1.0, 10, warmup_steps=10)
    with pytest.raises(ValueError, match='final_lr'):
        cosine_schedule(1.0, 10, final_lr=2.0)


def test_param_average_is_the_corrected_moving_average():
    x = np.array([0.0])
    average = ParamAverage([x], decay=0.5)
    assert average.averaged()[0].item() == 0.0  # before any update
    for value in (4.0, 8.0):
        x[:] = value
        average.update()
    # 0.25 * 4 + 0.5 * 8 = 5, divided by 1 - 0.5**2 (the weights' sum)
    assert average.averaged()[0].item() == pytest.approx(5 / 0.75)
    with average.swapped():
        assert x.item() == pytest.approx(5 / 0.75)
    assert x.item() == 8.0  # the trained value is back
    no_average = ParamAverage([x], decay=0.0)
    no_average.update()
    assert no_average.averaged()[0].item() == 8.0


# ------------------------------------------------------------ fit

def tiny_setup(seed=0, dropout=0.0):
    corpus, vocab = d2lrnn.load_corpus_time_machine(2000)
    train, valid = d2lrnn.split_corpus(corpus, 0.9)
    random.seed(seed)
    mx.random.seed(seed)
    model = FastRNNScratch(len(vocab), 16, CTX, dropout=dropout)
    train_iter = d2lrnn.SeqDataLoader(8, 10, False, -1, corpus=train,
                                      vocab=vocab)
    return model, train_iter, valid


def valid_ppl(model, valid):
    return d2lrnn.evaluate_perplexity(
        model, d2lrnn.seq_data_iter_eval(valid, 4, 10), CTX)


@pytest.mark.parametrize('average_decay', [0.0, 0.9])
def test_fit_keeps_the_best_epoch(average_decay):
    model, train_iter, valid = tiny_setup(dropout=0.1)
    # a step size so large that later epochs get worse again
    rec = fit(model, train_iter, valid, CTX, num_epochs=5, lr=0.2,
              average_decay=average_decay, eval_batch_size=4,
              eval_num_steps=10)
    assert rec['epoch'] == [1, 2, 3, 4, 5]
    best = min(range(5), key=lambda i: rec['valid_ppl'][i])
    assert rec['best_epoch'] == best + 1
    assert rec['best_valid_ppl'] == min(rec['valid_ppl'])
    # the model now holds that epoch's parameters
    assert valid_ppl(model, valid) == pytest.approx(rec['best_valid_ppl'],
                                                    rel=1e-6)
    assert len(rec['step_norm']) == 5 * len(list(train_iter))
    assert rec['lr'][-1] == pytest.approx(0.0, abs=1e-3)


def test_fit_is_repeatable_from_a_seed():
    records = []
    for _ in range(2):
        model, train_iter, valid = tiny_setup(seed=3, dropout=0.2)
        records.append(fit(model, train_iter, valid, CTX, num_epochs=2,
                           lr=0.01, eval_batch_size=4, eval_num_steps=10))
    assert records[0]['valid_ppl'] == records[1]['valid_ppl']


# ------------------------------------------------------------ dropout

def plain_rnn_with_mask(params, X, H, mask, vocab_size):
    """The model written out with autograd's operators, dropout mask given."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    Hs = []
    for x in X.T:  # x: (batch_size,) ids of one step
        H = np.tanh(np.dot(npx.one_hot(x, vocab_size), W_xh)
                    + np.dot(H, W_hh) + b_h)
        Hs.append(H)
    return np.dot(np.concatenate(Hs) * mask, W_hq) + b_q, H


def outputs_and_gradients(forward, params, H0):
    H0 = H0.copy()
    H0.attach_grad()
    with autograd.record():
        Y, H = forward(H0)
        loss = (Y * Y).sum() + (H * np.arange(H.shape[1])).sum()
    loss.backward()
    return [Y, H] + [p.grad.copy() for p in params] + [H0.grad.copy()]


def assert_close(a, b, rtol=1e-5, atol=1e-6):
    scale = float(np.abs(a).max()) or 1.0
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) <= atol + rtol * scale


@pytest.mark.parametrize('variant', FastRNNScratch.VARIANTS)
@pytest.mark.parametrize('batch_size, num_steps', [(3, 7), (2, 1)])
def test_dropout_gradients_match_autograd(variant, batch_size, num_steps):
    mx.random.seed(0)
    model = FastRNNScratch(28, 64, CTX, variant=variant, dropout=0.4)
    X = np.random.randint(0, 28, size=(batch_size, num_steps))
    X = X.astype('float32')
    H0 = np.random.normal(scale=0.5, size=(batch_size, 64))
    mx.random.seed(7)
    mask = model.dropout_mask(num_steps, batch_size, CTX)
    assert 0 < float((mask == 0).mean()) < 1
    assert set(onp.unique(mask.asnumpy())) <= {0.0, np.float32(1 / 0.6).item()}
    expected = outputs_and_gradients(
        lambda H: plain_rnn_with_mask(model.params, X, H, mask, 28),
        model.params, H0)
    mx.random.seed(7)  # the model draws the same mask
    actual = outputs_and_gradients(
        lambda H: (lambda Y, state: (Y, state[0]))(*model(X, (H,))),
        model.params, H0)
    for a, b in zip(expected, actual):
        assert_close(a, b)


def test_dropout_acts_only_while_training():
    mx.random.seed(0)
    model = FastRNNScratch(28, 32, CTX, dropout=0.5)
    mx.random.seed(0)
    plain = FastRNNScratch(28, 32, CTX)
    X = np.array([[3, 9, 2], [5, 6, 7]])
    H0 = model.begin_state(2, CTX)
    assert (model(X, H0)[0] == plain(X, H0)[0]).all()  # scoring, predicting
    with autograd.record():
        trained = model(X, H0)[0]
        again = model(X, H0)[0]
    assert not (trained == plain(X, H0)[0]).all()
    assert not (trained == again).all()  # a new mask for every call
    # the recurrence is never masked: the final state is the same
    with autograd.record():
        assert (model(X, H0)[1][0] == plain(X, H0)[1][0]).all()


def test_bad_dropout_is_refused():
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match='dropout'):
            FastRNNScratch(28, 8, CTX, dropout=p)

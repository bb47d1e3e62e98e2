"""d2lrnn.exercises, the parts for exercises 2, 4 and 6: train_epoch, train_run, rnn_relu."""
import math
import random

import pytest
from mxnet import gluon, np, npx

import d2lrnn
from d2lrnn import exercises as E

CTX = npx.cpu()


def tiny(forward=d2lrnn.rnn, num_hiddens=8, seed=0):
    random.seed(seed)
    npx.random.seed(seed)
    data, vocab = d2lrnn.load_data_time_machine(4, 5, max_tokens=300)
    model = d2lrnn.RNNModelScratch(len(vocab), num_hiddens, CTX, d2lrnn.get_params,
                                   d2lrnn.init_rnn_state, forward)
    return model, data, vocab


def test_rnn_relu_is_rnn_with_relu():
    npx.random.seed(1)
    params = d2lrnn.get_params(6, 4, CTX)
    for p in params[:3]:
        p[:] = p * 100  # big enough for negative pre-activations
    X = npx.one_hot(np.array([[0, 1, 2], [3, 4, 5]]).T, 6)  # 3 steps, batch 2
    H0 = np.ones((2, 4)) * -0.5
    Y, (H,) = E.rnn_relu(X, (H0,), params)
    W_xh, W_hh, b_h, W_hq, b_q = params
    h, outs = H0, []
    for x in X:
        h = np.maximum(np.dot(x, W_xh) + np.dot(h, W_hh) + b_h, 0)
        outs.append(np.dot(h, W_hq) + b_q)
    assert Y.shape == (6, 6) and H.shape == (2, 4)
    assert float(H.min()) >= 0 and float((H == 0).sum()) > 0
    assert np.allclose(Y, np.concatenate(outs, axis=0)) and np.allclose(H, h)


def test_train_run_records_every_step():
    model, data, _ = tiny()
    valid = list(range(1, 28)) * 20
    rec = E.train_run(model, data, 1.0, 3, CTX, valid_corpus=valid, eval_every=2,
                      eval_batch_size=4, eval_num_steps=5)
    assert rec['epoch'] == [1, 2, 3] and len(rec['train_ppl']) == 3
    assert rec['valid_epoch'] == [2, 3] and all(p > 1 for p in rec['valid_ppl'])
    assert len(rec['step_norm']) == len(rec['step_loss']) >= 3 * 10
    assert rec['diverged_at_step'] is None and rec['tokens_per_sec'] > 0


def test_train_epoch_by_default_trains_like_train_epoch_ch8():
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    models, ppls, steps = [], [], []
    for ch8 in (True, False):
        model, data, _ = tiny()

        def updater(batch_size, model=model):
            d2lrnn.sgd(model.params, 1.0, batch_size)

        random.seed(1)
        if ch8:
            ppl, _ = d2lrnn.train_epoch_ch8(model, data, loss, updater, CTX, False)
        else:
            ppl, _, finite = E.train_epoch(model, data, loss, updater, CTX,
                                           on_step=lambda *step: steps.append(step))
            assert finite
        models.append(model)
        ppls.append(ppl)
    for a, b in zip(models[0].params, models[1].params):
        assert bool((a == b).all())
    assert math.isclose(ppls[0], ppls[1], rel_tol=1e-6)  # the loss sum is kept in float64
    assert len(steps) >= 10 and all(len(s) == 3 and all(isinstance(x, float) for x in s)
                                    for s in steps)
    assert all(seconds > 0 for _, _, seconds in steps)


def test_no_clipping_is_identical_while_the_norm_stays_below_theta():
    runs = []
    for theta in (1, None):
        model, data, _ = tiny()
        runs.append(E.train_run(model, data, 1.0, 2, CTX, theta=theta))
    assert max(runs[0]['step_norm']) < 1
    assert runs[0]['train_ppl'] == runs[1]['train_ppl']
    assert runs[0]['step_norm'] == runs[1]['step_norm']


def test_clipping_changes_the_run_once_it_bites():
    runs = []
    for theta in (0.01, None):
        model, data, _ = tiny()
        runs.append(E.train_run(model, data, 1.0, 2, CTX, theta=theta))
    assert runs[0]['step_norm'][0] == runs[1]['step_norm'][0] > 0.01
    assert runs[0]['train_ppl'] != runs[1]['train_ppl']


def test_a_diverging_run_is_recorded_not_raised():
    model, data, _ = tiny()
    model.params[3][0, 0] = math.inf  # one infinite weight: the loss is not finite at once
    rec = E.train_run(model, data, 1.0, 5, CTX, theta=None)
    assert rec['diverged_at_step'] == 1 == len(rec['step_loss'])
    assert not math.isfinite(rec['step_loss'][0])
    assert rec['epoch'] == [] and rec['train_ppl'] == []


@pytest.mark.parametrize('kwargs, message', [
    (dict(theta=0), 'theta'), (dict(theta='1'), 'theta'), (dict(theta=True), 'theta'),
    (dict(theta=math.inf), 'theta'),
    (dict(num_epochs=0), 'num_epochs'), (dict(lr=-1), 'lr'), (dict(lr=math.nan), 'lr'),
    (dict(eval_every=0), 'eval_every'), (dict(valid_corpus=[]), 'empty'),
    (dict(valid_corpus=[1, 2, 3]), 'too few'),
])
def test_train_run_rejects_bad_arguments(kwargs, message):
    model, data, _ = tiny()
    args = dict(lr=1.0, num_epochs=1)
    args.update(kwargs)
    lr, num_epochs = args.pop('lr'), args.pop('num_epochs')
    with pytest.raises(ValueError, match=message):
        E.train_run(model, data, lr, num_epochs, CTX, **args)


def test_train_epoch_lives_in_train_and_is_what_exercises_and_optim_use():
    from d2lrnn import optim, train
    assert train.train_epoch.__module__ == 'd2lrnn.train'
    assert E.train_epoch is train.train_epoch is optim.train_epoch

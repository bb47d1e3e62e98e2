"""The scratch RNN of D2L 8.5.1-8.5.3: shapes, gradients, and agreement with Gluon's RNN."""
import numpy as onp
import pytest
from mxnet import autograd, gluon, np, npx

import d2lrnn


def test_one_hot_of_0_and_2(time_machine):
    vocab = time_machine[1]
    got = npx.one_hot(np.array([0, 2]), len(vocab)).asnumpy()
    onp.testing.assert_array_equal(got, onp.eye(len(vocab))[[0, 2]])


def test_one_hot_of_a_minibatch_is_time_major():
    X = np.arange(32 * 35).reshape(32, 35)
    assert npx.one_hot(X.T, 28).shape == (35, 32, 28)


def test_sanity_check_of_the_section(seed, ctx, time_machine):
    vocab = time_machine[1]
    model = d2lrnn.RNNModelScratch(len(vocab), 512, ctx, d2lrnn.get_params,
                                   d2lrnn.init_rnn_state, d2lrnn.rnn)
    X = np.arange(32 * 35).reshape(32, 35)
    state = model.begin_state(X.shape[0], ctx)
    Y, new_state = model(X.as_in_ctx(ctx), state)
    assert Y.shape == (1120, 28)
    assert len(new_state) == 1
    assert new_state[0].shape == (32, 512)


def test_parameters_have_the_books_shapes_and_gradients(seed, ctx):
    params = d2lrnn.get_params(28, 16, ctx)
    assert [p.shape for p in params] == [(28, 16), (16, 16), (16,), (16, 28), (28,)]
    assert all(p.grad is not None for p in params)
    assert float(abs(params[2]).sum()) == float(abs(params[4]).sum()) == 0
    assert 0.005 < float(params[1].asnumpy().std()) < 0.015  # N(0, 0.01)


def test_a_seed_gives_the_same_parameters(seed, ctx):
    first = [p.asnumpy() for p in d2lrnn.get_params(28, 8, ctx)]
    seed(0)
    again = [p.asnumpy() for p in d2lrnn.get_params(28, 8, ctx)]
    assert all((a == b).all() for a, b in zip(first, again))


def float64_params(vocab_size, num_hiddens, rng):
    """Parameters large enough that tanh is far from linear, in float64."""
    shapes = [(vocab_size, num_hiddens), (num_hiddens, num_hiddens), (num_hiddens,),
              (num_hiddens, vocab_size), (vocab_size,)]
    return [np.array(rng.normal(scale=0.7, size=s), dtype='float64') for s in shapes]


def test_gradients_match_finite_differences():
    rng = onp.random.default_rng(0)
    vocab_size, num_hiddens, num_steps, batch_size = 5, 4, 3, 2
    params = float64_params(vocab_size, num_hiddens, rng)
    inputs = np.array(rng.normal(size=(num_steps, batch_size, vocab_size)), dtype='float64')
    H0 = np.array(rng.normal(scale=0.5, size=(batch_size, num_hiddens)), dtype='float64')
    # A loss that weighs every output and the final state differently.
    R_out = np.array(rng.normal(size=(num_steps * batch_size, vocab_size)), dtype='float64')
    R_H = np.array(rng.normal(size=(batch_size, num_hiddens)), dtype='float64')

    def loss():
        outputs, (H,) = d2lrnn.rnn(inputs, (H0,), params)
        return (outputs * R_out).sum() + (H * R_H).sum()

    for p in params:
        p.attach_grad()
    with autograd.record():
        l = loss()
    l.backward()
    eps = 1e-6
    for p in params:
        analytic, numeric = p.grad.asnumpy(), onp.zeros(p.shape)
        for i in onp.ndindex(*p.shape):
            old = float(p[i])
            p[i] = old + eps
            up = float(loss())
            p[i] = old - eps
            down = float(loss())
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        onp.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_scratch_rnn_equals_gluons_rnn_layer(ctx):
    rng = onp.random.default_rng(1)
    vocab_size, num_hiddens, num_steps, batch_size = 7, 6, 5, 3
    W_xh, W_hh, b_h, W_hq, b_q = [p.astype('float32') for p in
                                  float64_params(vocab_size, num_hiddens, rng)]
    ids = np.array(rng.integers(0, vocab_size, size=(batch_size, num_steps)))
    H0 = np.array(rng.normal(scale=0.5, size=(batch_size, num_hiddens)), dtype='float32')

    layer = gluon.rnn.RNN(num_hiddens, activation='tanh', layout='TNC', input_size=vocab_size)
    dense = gluon.nn.Dense(vocab_size, flatten=False, in_units=num_hiddens)
    layer.initialize(ctx=ctx)
    dense.initialize(ctx=ctx)
    weights = {'i2h_weight': W_xh.T, 'h2h_weight': W_hh.T,
               'i2h_bias': b_h, 'h2h_bias': np.zeros(num_hiddens)}
    for name, p in layer.collect_params().items():
        p.set_data(next(w for key, w in weights.items() if name.endswith(key)))
    dense.weight.set_data(W_hq.T)
    dense.bias.set_data(b_q)

    hiddens, (H_gluon,) = layer(npx.one_hot(ids.T, vocab_size), [H0.reshape(1, *H0.shape)])
    outputs_gluon = dense(hiddens).reshape(-1, vocab_size)  # (num_steps * batch_size, vocab)

    model = d2lrnn.RNNModelScratch(vocab_size, num_hiddens, ctx,
                                   lambda *_: [W_xh, W_hh, b_h, W_hq, b_q],
                                   d2lrnn.init_rnn_state, d2lrnn.rnn)
    outputs, (H,) = model(ids, (H0,))
    onp.testing.assert_allclose(outputs.asnumpy(), outputs_gluon.asnumpy(), rtol=1e-5, atol=1e-5)
    onp.testing.assert_allclose(H.asnumpy(), H_gluon[0].asnumpy(), rtol=1e-5, atol=1e-6)


def test_scratch_rnn_equals_d2l_1_0_3s_rnn_scratch():
    d2l = pytest.importorskip('d2l.mxnet')
    rng = onp.random.default_rng(2)
    W_xh, W_hh, b_h, _, _ = [p.astype('float32') for p in float64_params(4, 3, rng)]
    inputs = np.array(rng.normal(size=(5, 2, 4)), dtype='float32')
    H0 = np.array(rng.normal(size=(2, 3)), dtype='float32')
    reference = d2l.RNNScratch(4, 3)
    reference.W_xh, reference.W_hh, reference.b_h = W_xh, W_hh, b_h
    hiddens, H_ref = reference(inputs, (H0,))
    # With W_hq = I and b_q = 0 the outputs are the hidden states themselves.
    outputs, (H,) = d2lrnn.rnn(inputs, (H0,), [W_xh, W_hh, b_h, np.eye(3), np.zeros(3)])
    onp.testing.assert_allclose(outputs.asnumpy(), np.concatenate(hiddens, 0).asnumpy(),
                                rtol=1e-6, atol=1e-7)
    onp.testing.assert_allclose(H.asnumpy(), H_ref.asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('args, name', [((0, 8), 'vocab_size'), ((28, -1), 'num_hiddens')])
def test_sizes_must_be_positive(ctx, args, name):
    with pytest.raises(ValueError, match=f'{name} must be a positive integer'):
        d2lrnn.get_params(*args, ctx)


def test_state_sizes_must_be_positive(ctx):
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        d2lrnn.init_rnn_state(0, 8, ctx)
    with pytest.raises(ValueError, match='num_hiddens must be a positive integer'):
        d2lrnn.init_rnn_state(2, 0, ctx)

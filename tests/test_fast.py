"""FastRNNScratch computes what RNNModelScratch computes: outputs, state, gradients, training;
token ids outside the vocabulary are refused on every path."""
import os
import random
import subprocess
import sys
import textwrap

import mxnet as mx
import pytest
from mxnet import autograd, gluon, np, npx

import d2lrnn
from d2lrnn import (FastRNNScratch, RNNModelScratch, get_params, grad_clipping,
                    init_rnn_state, predict_ch8, rnn, sgd, train_epoch_ch8)

CTX = npx.cpu()
pytestmark = pytest.mark.usefixtures('native_library')


# each variant, and 'bptt' both with the native operators and without
PATHS = [('bptt', True), ('bptt', False), ('hybrid', None), ('imperative', None)]


def faithful_and_fast(vocab_size, num_hiddens, variant='bptt', seed=0, native=None):
    """The two models, each built right after the same seed."""
    mx.random.seed(seed)
    faithful = RNNModelScratch(vocab_size, num_hiddens, CTX, get_params, init_rnn_state, rnn)
    mx.random.seed(seed)
    fast = FastRNNScratch(vocab_size, num_hiddens, CTX, variant=variant, native=native)
    return faithful, fast


def forward_backward(model, X, H0):
    """Outputs, final state and the gradients of a loss that uses both."""
    H0.attach_grad()
    with autograd.record():
        Y, (H,) = model(X, (H0,))
        loss = (Y * Y).sum() + (H * np.arange(H.shape[1])).sum()
    loss.backward()
    return Y, H, [p.grad.copy() for p in model.params] + [H0.grad.copy()]


def assert_close(a, b, rtol=1e-5, atol=1e-6):
    scale = float(np.abs(a).max()) or 1.0
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) <= atol + rtol * scale


def test_same_initial_parameters_as_get_params():
    faithful, fast = faithful_and_fast(28, 32)
    assert [p.shape for p in fast.params] == [(28, 32), (32, 32), (32,), (32, 28), (28,)]
    for p, q in zip(faithful.params, fast.params):
        assert (p == q).all() and q.grad is not None
    assert (fast.vocab_size, fast.num_hiddens) == (28, 32)
    assert not isinstance(fast, gluon.Block)  # train_ch8 must take its scratch path


@pytest.mark.parametrize('variant, native', PATHS)
@pytest.mark.parametrize('batch_size, num_steps', [(3, 7), (2, 1)])
def test_outputs_state_and_gradients_match(variant, native, batch_size, num_steps):
    faithful, fast = faithful_and_fast(28, 64, variant, native=native)
    mx.random.seed(1)
    X = np.random.randint(0, 28, size=(batch_size, num_steps)).astype('float32')
    H0 = np.random.normal(scale=0.5, size=(batch_size, 64))
    expected = forward_backward(faithful, X, H0.copy())
    actual = forward_backward(fast, X, H0.copy())
    for a, b in zip(expected[:2] + tuple(expected[2]), actual[:2] + tuple(actual[2])):
        assert_close(a, b)


@pytest.mark.parametrize('variant, native', PATHS)
def test_relu_matches_the_section_model_with_rnn_relu(variant, native):
    from d2lrnn.exercises import rnn_relu
    mx.random.seed(0)
    faithful = RNNModelScratch(28, 64, CTX, get_params, init_rnn_state, rnn_relu)
    mx.random.seed(0)
    fast = FastRNNScratch(28, 64, CTX, variant=variant, activation='relu', native=native)
    mx.random.seed(1)
    X = np.random.randint(0, 28, size=(3, 7)).astype('float32')
    # larger than the section's initial weights, so that many units are cut
    for p, q in zip(faithful.params, fast.params):
        p[:] = p * 30
        q[:] = q * 30
    H0 = np.random.normal(scale=0.5, size=(3, 64))
    expected = forward_backward(faithful, X, H0.copy())
    actual = forward_backward(fast, X, H0.copy())
    assert 0.2 < float((actual[1] == 0).mean()) < 0.8  # ReLU did cut
    for a, b in zip(expected[:2] + tuple(expected[2]), actual[:2] + tuple(actual[2])):
        assert_close(a, b)
    # and it is not the tanh model
    mx.random.seed(0)
    tanh = FastRNNScratch(28, 64, CTX, variant=variant, native=native)
    for p, q in zip(tanh.params, fast.params):
        p[:] = q
    assert float(np.abs(forward_backward(tanh, X, H0.copy())[1] - actual[1]).max()) > 0.1


@pytest.mark.parametrize('native', [True, False])
def test_integer_token_ids_work_as_float_ones(native):
    # the data iterators yield float32 ids; users may hand in integers
    _, fast = faithful_and_fast(28, 16, native=native)
    X = np.array([[3, 9, 2], [5, 6, 7]])
    H0 = fast.begin_state(2, CTX)[0]
    as_int = forward_backward(fast, X.astype('int64'), H0.copy())
    as_float = forward_backward(fast, X.astype('float32'), H0.copy())
    for a, b in zip(as_int[:2] + tuple(as_int[2]), as_float[:2] + tuple(as_float[2])):
        assert (a == b).all()


def one_epoch(model, num_hiddens=512):
    random.seed(0)
    train_iter, _ = d2lrnn.load_data_time_machine(32, 35)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    return train_epoch_ch8(model, train_iter, loss,
                           lambda batch_size: sgd(model.params, 1, batch_size), CTX, False)[0]


@pytest.mark.parametrize('native', [True, False])
def test_one_seeded_epoch_gives_the_same_perplexity(native):
    faithful, fast = faithful_and_fast(28, 512, native=native)
    expected, actual = one_epoch(faithful), one_epoch(fast)
    assert actual == pytest.approx(expected, rel=1e-5)
    for p, q in zip(faithful.params, fast.params):
        assert_close(p, q, rtol=1e-4)


def test_predict_and_grad_clipping_work_unchanged():
    faithful, fast = faithful_and_fast(28, 64)
    vocab = d2lrnn.load_data_time_machine(32, 35)[1]
    assert (predict_ch8('time traveller', 20, fast, vocab, CTX)
            == predict_ch8('time traveller', 20, faithful, vocab, CTX))
    X = np.array([[3, 9, 2, 1, 4], [5, 6, 7, 8, 1]])
    norms = []
    for model in (faithful, fast):
        forward_backward(model, X, model.begin_state(2, CTX)[0])
        norms.append(grad_clipping(model, 0.01))
        assert (sum(float((p.grad ** 2).sum()) for p in model.params) ** 0.5
                == pytest.approx(0.01, rel=1e-4))
    assert norms[1] == pytest.approx(norms[0], rel=1e-5)


def test_bad_input_gets_a_clear_error():
    fast = FastRNNScratch(28, 8, CTX)
    with pytest.raises(ValueError, match='batch_size, num_steps'):
        fast(np.zeros((2, 3, 4)), fast.begin_state(2, CTX))
    with pytest.raises(ValueError, match='state has shape'):
        fast(np.zeros((2, 3)), fast.begin_state(5, CTX))
    with pytest.raises(ValueError, match='variant'):
        FastRNNScratch(28, 8, CTX, variant='gpu')
    with pytest.raises(ValueError, match="activation must be one of .*'sigmoid'"):
        FastRNNScratch(28, 8, CTX, activation='sigmoid')
    with pytest.raises(ValueError, match='num_hiddens'):
        FastRNNScratch(28, 0, CTX)
    with pytest.raises(ValueError, match="native=True needs variant='bptt'"):
        FastRNNScratch(28, 8, CTX, variant='hybrid', native=True)


@pytest.mark.parametrize('native', [True, False])
def test_saved_states_are_released_after_backward_and_a_retained_graph_still_works(native):
    # MXNet 1.9's Function.__call__ leaves each Function in a reference cycle that only
    # the cyclic garbage collector frees; the saved states must not wait for it.
    import gc
    _, fast = faithful_and_fast(28, 16, native=native)
    X, H0 = np.array([[3, 9, 2], [5, 6, 7]]), fast.begin_state(2, CTX)[0]
    gc.collect()
    gc.disable()
    try:
        with autograd.record():
            Y, (H,) = fast(X, (H0,))
            loss = (Y * Y).sum() + H.sum()
        loss.backward(retain_graph=True)
        first = [p.grad.copy() for p in fast.params]
        loss.backward()  # recomputes the released states
        npx.waitall()
        functions = [o for o in gc.get_objects() if type(o).__name__ == '_RNNWithBPTT']
        assert functions and all(f.Hs is None for f in functions)
    finally:
        gc.enable()
    for a, b in zip(first, fast.params):
        assert_close(a, b.grad)


def run_python(code, timeout=300):
    """Run `code` in a fresh Python (a crash there fails the test, not the session).

    The child ends with os._exit, as the command line does: after recorded passes of
    FastRNNScratch, MXNet's own shutdown can block for ever (d2lrnn.cli.end_process).
    """
    code = textwrap.dedent(code) + 'import os, sys; sys.stdout.flush(); os._exit(0)\n'
    env = dict(os.environ, MPLBACKEND='Agg')
    return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=timeout)


def outside(token_id, vocab_size):
    return (f'token id {token_id} is outside the vocabulary of {vocab_size} tokens '
            f'(0..{vocab_size - 1}): the model and the vocabulary do not match.')


@pytest.mark.parametrize('native', [True, False])
def test_token_ids_outside_the_vocabulary_get_one_clear_error_on_both_paths(native):
    # The ids pick rows of W_xh: the native operator read (and wrote) outside the
    # matrix, the Python path took a row of zeros; both must refuse alike.
    done = run_python(f'''
        from mxnet import autograd, np, npx
        from d2lrnn import FastRNNScratch
        model = FastRNNScratch(28, 32, npx.cpu(), native={native})
        assert model.native == {native}
        H0 = model.begin_state(2, npx.cpu())
        for bad in (1000000, 28, -1, float('nan'), 2.5, 27):
            X = np.array([[5, bad], [0, 1]])
            try:
                with autograd.record():
                    model(X, H0)[0].sum().backward()
                print('accepted', bad)
            except ValueError as e:
                print(e)
        ''')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [outside(1000000, 28), outside(28, 28),
                                        outside(-1, 28), outside('nan', 28),
                                        'accepted 2.5', 'accepted 27']


@pytest.mark.parametrize('native', [True, False])
def test_train_ch8_with_a_model_smaller_than_the_vocabulary_says_so(native):
    # A notebook's easy mistake: FastRNNScratch(10, ...) on the 28-token data.
    done = run_python(f'''
        import random
        import mxnet as mx
        from mxnet import npx
        import d2lrnn
        random.seed(0)
        mx.random.seed(0)
        train_iter, vocab = d2lrnn.load_data_time_machine(32, 35)
        model = d2lrnn.FastRNNScratch(10, 32, npx.cpu(), native={native})
        assert model.native == {native}
        try:
            d2lrnn.train_ch8(model, train_iter, vocab, 1, 1, npx.cpu())
        except ValueError as e:
            print(e)
        ''')
    assert done.returncode == 0, done.stderr
    assert done.stdout == ('the vocabulary has 28 tokens but the model was built for 10: '
                           'build it with vocab_size=len(vocab).\n')


@pytest.mark.parametrize('native', [True, False])
def test_no_time_steps_gets_a_clear_error(native):
    model = FastRNNScratch(28, 8, CTX, native=native)
    for shape in ((2, 0), (0, 3)):
        with pytest.raises(ValueError, match=r'X holds no token ids \(shape \(\d, \d\)\): '
                                             'batch_size and num_steps must be at least 1'):
            model(np.zeros(shape), (np.zeros((shape[0], 8)),))


@pytest.mark.parametrize('native', [True, False])
@pytest.mark.parametrize('update', ['d2lrnn.sgd(m.params, 0.01, 1)',
                                    'd2lrnn.Adam(m.params, lr=0.01).step()'])
def test_updating_right_after_backward_does_not_wait_for_ever(native, update):
    # The backward pass runs later, in a callback of MXNet's engine; had it read
    # the live parameters, it would wait for this update, which waits for its
    # gradients. Nothing here reads the gradients first (no clipping).
    code = f'''
        import d2lrnn
        from mxnet import autograd, np, npx
        m = d2lrnn.FastRNNScratch(28, 8, npx.cpu(), native={native})
        with autograd.record():
            Y, _ = m(np.array([[1, 2, 3]]), m.begin_state(1, npx.cpu()))
            loss = Y.sum()
        loss.backward()
        {update}
        print(float(m.params[0].sum()))
    '''
    try:
        result = run_python(code, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail('the update after backward() never finished (a deadlock)')
    assert result.returncode == 0, result.stderr
    assert float(result.stdout)  # a finite number was printed

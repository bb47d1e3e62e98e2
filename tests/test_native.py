"""The native operators: same results as the Python path, bad ids refused, the build's
cache and lock, the fallback, the command. (The cache's safety: test_native_cache.py.)"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mxnet as mx
import pytest
from mxnet import autograd, np, npx

from d2lrnn import FastRNNScratch, cli, native

CTX = npx.cpu()
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures('native_library')


@pytest.fixture(scope='session')
def library():
    """The real library, built (once per cache) and loaded in this process."""
    assert native.load(required=True)
    return native._loaded


def run(model, X, H0, seed=1):
    """Outputs, state and all gradients of one recorded pass (mask drawn after `seed`)."""
    H0 = H0.copy()
    H0.attach_grad()
    mx.random.seed(seed)
    with autograd.record():
        Y, (H,) = model(X, (H0,))
        loss = (Y * Y).sum() + (H * np.arange(H.shape[1])).sum()
    loss.backward()
    return [Y, H] + [p.grad.copy() for p in model.params] + [H0.grad.copy()]


def assert_close(a, b, rtol=1e-5, atol=1e-6):
    scale = float(np.abs(a).max()) or 1.0
    assert a.shape == b.shape
    assert float(np.abs(a - b).max()) <= atol + rtol * scale


# 48 and 64 hidden units: the operator's own kernel for the step product (a multiple
# of 16; with AVX-512, 48 takes a pair of panels and a single one, 64 two pairs, and
# 32 rows are five blocks of 6 and one of 2); 20: OpenBLAS for it
@pytest.mark.parametrize('activation', ['tanh', 'relu'])
@pytest.mark.parametrize('batch_size, num_steps, num_hiddens', [(7, 9, 48), (1, 1, 48),
                                                                (32, 4, 64), (4, 3, 20)])
def test_native_with_dropout_matches_the_python_path(library, activation, batch_size,
                                                     num_steps, num_hiddens):
    models = []
    for flag in (True, False):
        mx.random.seed(0)
        models.append(FastRNNScratch(28, num_hiddens, CTX, dropout=0.3,
                                     activation=activation, native=flag))
    assert models[0].native and not models[1].native
    X = np.random.randint(0, 28, size=(batch_size, num_steps)).astype('float32')
    H0 = np.random.normal(scale=0.5, size=(batch_size, num_hiddens))
    fast, slow = run(models[0], X, H0), run(models[1], X, H0)
    assert float((fast[2] == 0).mean()) < 1  # gradients reached W_xh
    for a, b in zip(fast, slow):
        assert_close(a, b)
    # the mask was used: without it the outputs differ
    mx.random.seed(0)
    plain = FastRNNScratch(28, num_hiddens, CTX, activation=activation, native=True)
    assert float(np.abs(run(plain, X, H0)[0] - fast[0]).max()) > 1e-3


def test_native_is_the_default_and_predicting_matches(library):
    mx.random.seed(0)
    default = FastRNNScratch(28, 32, CTX, dropout=0.5)
    mx.random.seed(0)
    python = FastRNNScratch(28, 32, CTX, dropout=0.5, native=False)
    assert default.native and not python.native
    X = np.array([[3, 9, 2], [5, 6, 7]])
    H0 = default.begin_state(2, CTX)
    Y, (H,) = default(X, H0)  # not training: no mask
    Z, (G,) = python(X, H0)
    assert_close(Y, Z)
    assert_close(H, G)


def test_the_operators_themselves_refuse_ids_outside_the_vocabulary(library):
    # Called directly, past FastRNNScratch's own check: an error, never a read or write
    # outside W_xh. In a child: before this check, id 1000000 crashed the process.
    code = textwrap.dedent(f'''
        import mxnet as mx
        nd = mx.nd
        mx.library.load({str(library)!r}, verbose=False)
        V, Hd = 28, 32
        W_xh, W_hh, W_hq = nd.ones((V, Hd)), nd.zeros((Hd, Hd)), nd.zeros((Hd, V))
        for bad in (1000000, 28, -1, float('nan'), 27):
            X = nd.array([[5, bad]])
            calls = dict(
                forward=lambda: nd.d2lrnn_rnn_forward(
                    W_xh, W_hh, nd.zeros(Hd), W_hq, nd.zeros(V), nd.zeros((1, Hd)), X),
                backward=lambda: nd.d2lrnn_rnn_backward(
                    nd.ones((2, V)), nd.zeros((1, Hd)), W_hh, W_hq, X, nd.ones((3, 1, Hd))))
            for name, call in calls.items():
                try:
                    [out.wait_to_read() for out in call()]
                    print(name, 'ran')
                except mx.base.MXNetError as e:
                    print(str(e).strip().splitlines()[-1].split(': ', 1)[1])
        ''')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    expected = [f'd2lrnn_rnn_{op}: token id {shown} is outside the vocabulary of 28 tokens '
                '(0..27)' for shown in ('1e+06', '28', '-1', 'nan') for op in ('forward',
                                                                              'backward')]
    assert done.stdout.splitlines() == expected + ['forward ran', 'backward ran']


def test_a_second_build_finds_the_cache(fake_compiler, tmp_path, monkeypatch):
    script, log = fake_compiler()
    monkeypatch.setenv('CXX', str(script))
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(tmp_path / 'cache'))
    path, compiled = native.build()
    assert compiled and path.parent == tmp_path / 'cache' and path.suffix == '.so'
    assert native.build() == (path, False)
    assert len(log.read_text().splitlines()) == 1
    # another compiler is another key
    monkeypatch.setenv('CXX', str(script) + '-not-there')
    assert native.library_path() != path


def test_two_processes_never_compile_at_once(fake_compiler, tmp_path):
    script, log = fake_compiler(delay=2)
    env = dict(os.environ, CXX=str(script), D2LRNN_CACHE_DIR=str(tmp_path / 'cache'))
    code = 'from d2lrnn import native; print(native.build()[1])'
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, text=True,
                              stdout=subprocess.PIPE) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ['False', 'True']  # one compiled; the other waited, then found it
    assert len(log.read_text().splitlines()) == 1


def test_without_a_compiler_one_line_then_the_python_path(library, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv('CXX', str(tmp_path / 'no-such-g++'))
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(native, '_loaded', None)  # as in a fresh process
    monkeypatch.setattr(native, '_failure', None)
    models = []
    for flag in (None, None, False):
        mx.random.seed(0)
        models.append(FastRNNScratch(28, 32, CTX, native=flag))
    err = capsys.readouterr().err
    assert err == ('d2lrnn: the native operator could not be built '
                   f'({tmp_path}/no-such-g++ not found; install g++ or set CXX); '
                   'using the Python path\n')
    assert not any(m.native for m in models)
    X = np.array([[3, 9, 2], [5, 6, 7]])
    H0 = models[0].begin_state(2, CTX)[0]
    for a, b in zip(run(models[0], X, H0), run(models[2], X, H0)):
        assert (a == b).all()
    with pytest.raises(native.NativeBuildError, match='no-such-g.. not found.*native=False'):
        FastRNNScratch(28, 32, CTX, native=True)


def test_a_failed_compilation_says_why(tmp_path, monkeypatch):
    script = tmp_path / 'broken-g++'
    script.write_text('#!/bin/sh\necho "op.cc:1: error: something is wrong" >&2\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv('CXX', str(script))
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(tmp_path / 'cache'))
    with pytest.raises(native.NativeBuildError, match='failed: op.cc:1: error: something'):
        native.build()
    assert [p.suffix for p in (tmp_path / 'cache').iterdir()] == ['.lock']  # no .so left


def test_build_native_command(library, tmp_path, monkeypatch, capsys):
    assert cli.main(['build-native']) == 0
    assert capsys.readouterr().out == f'already built: {library}\n'
    monkeypatch.setenv('CXX', str(tmp_path / 'no-such-g++'))
    assert cli.main(['build-native']) == 1
    err = capsys.readouterr().err
    assert err.startswith('d2lrnn: error: the native operator could not be built (')
    assert err.endswith('will use the Python path\n') and err.count('\n') == 1


def test_default_cache_directory(monkeypatch, tmp_path):
    monkeypatch.delenv('D2LRNN_CACHE_DIR')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert native.cache_dir() == tmp_path / 'd2lrnn'
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'me'))
    assert native.cache_dir() == tmp_path / 'me' / '.cache' / 'd2lrnn'


def test_the_source_ships_with_the_package():
    text = (ROOT / 'pyproject.toml').read_text()
    assert '"csrc/*.cc"' in text and native.SOURCE.is_file()

"""The native operators: same results as the Python path, cache, lock, fallback, command."""
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# Builds in the tests go to a shared temporary cache, not ~/.cache (set at collection, so
# every model the session makes uses it; the lock lets the workers share one build).
os.environ.setdefault('D2LRNN_CACHE_DIR',
                      str(Path(tempfile.gettempdir()) / f'd2lrnn-test-cache-{os.getuid()}'))

import mxnet as mx  # noqa: E402
import pytest  # noqa: E402
from mxnet import autograd, np, npx  # noqa: E402

from d2lrnn import FastRNNScratch, cli, native  # noqa: E402

CTX = npx.cpu()
ROOT = Path(__file__).resolve().parent.parent


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


def fake_compiler(tmp_path, library, delay=0):
    """A script standing in for g++: logs its call, waits, copies the real library."""
    log = tmp_path / 'calls.log'
    script = tmp_path / 'fake-g++'
    script.write_text(textwrap.dedent(f'''\
        #!/bin/sh
        echo "$$" >> {log}
        sleep {delay}
        while [ "$#" -gt 1 ]; do [ "$1" = -o ] && out="$2"; shift; done
        cp {library} "$out"
        '''))
    script.chmod(0o755)
    return script, log


def test_a_second_build_finds_the_cache(library, tmp_path, monkeypatch):
    script, log = fake_compiler(tmp_path, library)
    monkeypatch.setenv('CXX', str(script))
    monkeypatch.setenv('D2LRNN_CACHE_DIR', str(tmp_path / 'cache'))
    path, compiled = native.build()
    assert compiled and path.parent == tmp_path / 'cache' and path.suffix == '.so'
    assert native.build() == (path, False)
    assert len(log.read_text().split()) == 1
    # another compiler is another key
    monkeypatch.setenv('CXX', str(script) + '-not-there')
    assert native.library_path() != path


def test_two_processes_never_compile_at_once(library, tmp_path):
    script, log = fake_compiler(tmp_path, library, delay=2)
    env = dict(os.environ, CXX=str(script), D2LRNN_CACHE_DIR=str(tmp_path / 'cache'))
    code = 'from d2lrnn import native; print(native.build()[1])'
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, text=True,
                              stdout=subprocess.PIPE) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ['False', 'True']  # one compiled; the other waited, then found it
    assert len(log.read_text().split()) == 1


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
    assert native.cache_dir() == Path.home() / '.cache' / 'd2lrnn'


def test_the_source_ships_with_the_package():
    text = (ROOT / 'pyproject.toml').read_text()
    assert '"csrc/*.cc"' in text and native.SOURCE.is_file()

"""Shared fixtures: seeds, the CPU, the section's data, the native operator."""
import atexit
import os
import shutil
import tempfile
import textwrap

import pytest

# The native operator (d2lrnn/native.py) is built into a cache of the tests'
# own, never the user's: a private directory (mode 0700, a name nobody can
# guess and create first), made here at import so that notebook kernels and
# CLI subprocesses inherit it through the environment, and removed at exit. A
# directory the caller exports (dev.sh shares one between its lanes) is kept.
if not os.environ.get('D2LRNN_CACHE_DIR'):
    os.environ['D2LRNN_CACHE_DIR'] = tempfile.mkdtemp(prefix='d2lrnn-test-cache-')
    atexit.register(shutil.rmtree, os.environ['D2LRNN_CACHE_DIR'], True)

# Test modules whose models or commands use the native operator and that do
# not request the native_library fixture themselves (most that use it do).
NATIVE_MODULES = ('test_checkpoint', 'test_optim', 'test_bench',
                  'test_relu_vs_tanh', 'test_train_best')

import d2lrnn  # first: it imports mxnet without mxnet's own DeprecationWarnings
from mxnet import npx  # noqa: E402

from d2lrnn.results import seed_all  # noqa: E402


@pytest.fixture
def seed():
    """Python's and MXNet's generators seeded with 0 (seed_all), so that a
    test repeats exactly; call it to seed them again (0 unless told)."""
    seed_all(0)
    return lambda value=0: seed_all(value)


@pytest.fixture(scope='session')
def ctx():
    return npx.cpu()


@pytest.fixture(scope='session')
def time_machine():
    """(corpus, vocab) of the section: the first 10,000 character ids."""
    return d2lrnn.load_corpus_time_machine(10000)


@pytest.fixture(scope='session')
def make_model(ctx):
    """A maker of scratch RNNs of the section, with any sizes (draws from MXNet's seed)."""
    def _make(vocab_size=28, num_hiddens=32):
        return d2lrnn.RNNModelScratch(vocab_size, num_hiddens, ctx, d2lrnn.get_params,
                                      d2lrnn.init_rnn_state, d2lrnn.rnn)
    return _make


@pytest.fixture(scope='session')
def native_library():
    """The native operator, built once before the tests that use it (and
    before anything they time); its path, or None when it cannot be built, a
    failure left to the tests that need it. Only they build it: a run of
    tests that do not needs no compiler."""
    from d2lrnn import native
    try:
        return native.build()[0]
    except native.NativeBuildError:
        return None


@pytest.fixture
def fake_compiler(tmp_path, native_library):
    """A maker of scripts standing in for g++: each call logs its arguments (one
    line), waits `delay` seconds, then copies the real library to the output."""
    assert native_library, 'the native operator could not be built'

    def _make(delay=0, name='fake-g++'):
        log, script = tmp_path / f'{name}.log', tmp_path / name
        script.write_text(textwrap.dedent(f'''\
            #!/bin/sh
            echo "$*" >> {log}
            sleep {delay}
            while [ "$#" -gt 1 ]; do [ "$1" = -o ] && out="$2"; shift; done
            cp {native_library} "$out"
            '''))
        script.chmod(0o755)
        return script, log
    return _make


def pytest_collection_modifyitems(items):
    """The tests of NATIVE_MODULES request native_library too."""
    for item in items:
        module = getattr(item, 'module', None)
        name = getattr(module, '__name__', '').rpartition('.')[2]
        if name in NATIVE_MODULES and 'native_library' not in item.fixturenames:
            item.fixturenames.append('native_library')

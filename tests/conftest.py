"""Shared fixtures: seeds, the CPU, and the section's data, loaded once."""
import importlib.util
import os
import random
import tempfile
from pathlib import Path

import pytest

# The native operator (d2lrnn/native.py) is built once into a cache of the
# tests' own, not the user's, and shared by every test process (notebook
# kernels and CLI subprocesses inherit it); the build's lock keeps two
# processes from compiling at once.
os.environ.setdefault('D2LRNN_CACHE_DIR', os.path.join(
    tempfile.gettempdir(), f'd2lrnn-test-cache-{os.getuid()}'))

import d2lrnn  # first: it imports mxnet without mxnet's own DeprecationWarnings
import mxnet as mx  # noqa: E402
from mxnet import npx  # noqa: E402


@pytest.fixture
def seed():
    """Seed Python's and MXNet's generators, so that a test repeats exactly."""
    def _seed(value=0):
        random.seed(value)
        mx.random.seed(value)
    _seed()
    return _seed


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
def bench_script():
    """A loader of experiments/NAME.py or bench/NAME.py as a fresh module
    (the scripts are not a package)."""
    root = Path(__file__).resolve().parents[1]

    def _load(name):
        path = next(p for p in (root / 'experiments' / f'{name}.py',
                                root / 'bench' / f'{name}.py') if p.exists())
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return _load


def pytest_sessionstart(session):
    """Build the native operator before any test is timed (a no-op when the
    cache has it); a failure is left to the tests that need it."""
    from d2lrnn import native
    try:
        native.build()
    except native.NativeBuildError:
        pass

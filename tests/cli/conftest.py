"""The command line's checkpoints, trained once and shared by its tests."""
import shutil

import numpy as onp
import pytest

from cli_helpers import TINY, UNSTABLE, d2lrnn
from d2lrnn import checkpoint as ckpt
from d2lrnn import cli
from d2lrnn.cli.config import DEFAULTS
from d2lrnn.data import Vocab, tokenize


@pytest.fixture(autouse=True)
def native_operator(native_library):
    """The command line's model is FastRNNScratch: its native operator is built
    (tests/conftest.py) before any test here times or trains it."""
    return native_library


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
    """A 4-epoch run with a validation split: (directory, CompletedProcess)."""
    out = tmp_path_factory.mktemp('trained') / 'run'
    result = d2lrnn('train', *TINY, '--epochs', 4, '--val-fraction', 0.2, '--out', out)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture()
def good(trained, tmp_path):
    """A copy of the trained checkpoint that a test may try (and fail) to damage."""
    out = tmp_path / 'good'
    shutil.copytree(trained[0], out)
    return out


@pytest.fixture(scope='session')
def unstable(tmp_path_factory):
    """The directory of a 5-epoch run whose best validation epoch is not the last."""
    out = tmp_path_factory.mktemp('unstable') / 'run'
    code = cli.main(['train', *map(str, UNSTABLE), '--epochs', '5', '--out', str(out)])
    assert code == 0
    return out


@pytest.fixture()
def abc_checkpoint(tmp_path):
    """A checkpoint whose vocabulary holds only 'a', 'b', 'c' and the space."""
    vocab = Vocab(tokenize(['abc cab bca'], 'char'))
    shapes = ckpt.param_shapes(len(vocab), 4)
    params = {name: onp.full(shape, 0.1, dtype='float32') for name, shape in shapes.items()}
    config = {**DEFAULTS, 'num_hiddens': 4, 'batch_size': 2, 'num_steps': 3}
    out = tmp_path / 'abc'
    ckpt.save(out, ckpt.Checkpoint(params, vocab, config, {'epoch': 0, 'history': []}))
    return out

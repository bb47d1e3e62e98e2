"""Checkpoint files that are not finite, not regular or not bounded are refused.

Unit tests of ``d2lrnn.checkpoint`` itself, in this process; the command line's
behaviour around them is in test_cli.py.
"""
import math
import os

import numpy as onp
import pytest

from d2lrnn import checkpoint as ckpt
from d2lrnn.data import Vocab, tokenize


def small_checkpoint(fill=0.1):
    vocab = Vocab(tokenize(['abc cab bca'], 'char'))
    params = {name: onp.full(shape, fill, dtype='float32')
              for name, shape in ckpt.param_shapes(len(vocab), 4).items()}
    return ckpt.Checkpoint(params, vocab, {'num_hiddens': 4}, {'epoch': 1})


def files_of(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_a_model_that_is_not_finite_is_never_saved(tmp_path, bad):
    out = tmp_path / 'run'
    ckpt.save(out, small_checkpoint())
    before = files_of(out)
    broken = small_checkpoint()
    broken.params['W_hh'][1, 2] = bad
    with pytest.raises(ValueError, match='W_hh is not finite'):
        ckpt.save(out, broken)
    assert files_of(out) == before  # the finite checkpoint is untouched
    with pytest.raises(ValueError, match='not finite'):
        ckpt.save(tmp_path / 'fresh', broken)
    assert not ckpt.exists(tmp_path / 'fresh')


def test_a_saved_model_that_is_not_finite_is_refused_on_loading(tmp_path, monkeypatch):
    out = tmp_path / 'run'
    broken = small_checkpoint(math.nan)
    monkeypatch.setattr(ckpt, '_check_finite', lambda params: None)  # as an old d2lrnn did
    ckpt.save(out, broken)
    monkeypatch.undo()
    with pytest.raises(ckpt.CheckpointError, match=r'W_xh holds NaN or infinite values'):
        ckpt.load(out)

"""Checkpoint files that are not finite, not regular or not bounded are refused.

Unit tests of ``d2lrnn.checkpoint`` itself, in this process; the command line's
behaviour around them is in test_cli.py.
"""
import io
import json
import math
import os
import tempfile
import threading

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


# ---------------------------------------------------------------- hostile files

def load_within(directory, seconds=10):
    """ckpt.load in a thread: (the exception it raised, or None); fails if it takes longer."""
    outcome = []

    def target():
        try:
            ckpt.load(directory)
            outcome.append(None)
        except BaseException as e:  # noqa: B902 -- whatever it is, the test reports it
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f'ckpt.load still running after {seconds} s'
    return outcome[0]


def manifest_entry(directory, role):
    return json.loads((directory / ckpt.MANIFEST).read_text())['files'][role]


def replace_by_symlink(path, target):
    path.unlink()
    path.symlink_to(target)


@pytest.fixture()
def saved(tmp_path):
    out = tmp_path / 'run'
    ckpt.save(out, small_checkpoint())
    return out


@pytest.mark.parametrize('role', ['manifest', 'params', 'vocab'])
@pytest.mark.parametrize('target', ['/dev/zero', '/dev/urandom'])
def test_a_symlink_to_an_endless_device_is_refused_at_once(saved, role, target):
    name = ckpt.MANIFEST if role == 'manifest' else manifest_entry(saved, role)['name']
    replace_by_symlink(saved / name, target)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError), error
    assert f'{name} is not a regular file' in str(error) and '\n' not in str(error)


@pytest.mark.parametrize('role', ['manifest', 'config'])
def test_a_pipe_in_place_of_a_file_is_refused_without_blocking(saved, role):
    name = ckpt.MANIFEST if role == 'manifest' else manifest_entry(saved, role)['name']
    (saved / name).unlink()
    os.mkfifo(saved / name)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError) and 'is not a regular file' in str(error)


def test_a_manifest_that_is_a_directory_is_refused(saved):
    (saved / ckpt.MANIFEST).unlink()
    (saved / ckpt.MANIFEST).mkdir()
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError)
    assert 'manifest.json is not a regular file' in str(error)


def test_no_more_than_the_stated_size_is_read(saved, monkeypatch):
    entry = manifest_entry(saved, 'params')
    with open(saved / entry['name'], 'ab') as f:
        f.write(b'\0' * 10_000_000)  # a file that grew: read only bytes + 1 of it
    reads = []
    monkeypatch.setattr(ckpt.os, 'fdopen', lambda fd, mode: Reader(fd, reads))
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError)
    assert f'{entry["name"]} is larger than {entry["bytes"]} bytes' in str(error)
    # The manifest (bounded by MAX_MANIFEST_BYTES), then the params: bytes + 1.
    assert reads == [ckpt.MAX_MANIFEST_BYTES + 1, entry['bytes'] + 1]


class Reader(io.FileIO):
    """A file object that records how many bytes each read asks for."""

    def __init__(self, fd, reads):
        super().__init__(fd, 'rb')
        self.reads = reads

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


def test_a_manifest_larger_than_a_manifest_can_be_is_refused(saved):
    (saved / ckpt.MANIFEST).write_bytes(b' ' * (ckpt.MAX_MANIFEST_BYTES + 1))
    error = load_within(saved)
    assert 'manifest.json is larger than' in str(error)


def rewrite_json(directory, role, data):
    """Replace a JSON file of the checkpoint by `data`, with a manifest that agrees."""
    entry = ckpt._entry(role, data)
    (directory / entry['name']).write_bytes(data)
    manifest = json.loads((directory / ckpt.MANIFEST).read_text())
    manifest['files'][role] = entry
    (directory / ckpt.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize('role', ['config', 'progress', 'vocab'])
def test_json_nested_too_deeply_is_refused_in_one_line(saved, role):
    rewrite_json(saved, role, b'[' * 200_000 + b']' * 200_000)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError), error
    assert f'its {role} file is not valid JSON' in str(error) and '\n' not in str(error)


def test_a_deep_manifest_is_refused_in_one_line(saved):
    (saved / ckpt.MANIFEST).write_bytes(b'[' * 30_000 + b']' * 30_000)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError) and 'manifest.json is unreadable' in str(error)


def test_a_negative_size_in_the_manifest_is_refused(saved):
    manifest = json.loads((saved / ckpt.MANIFEST).read_text())
    manifest['files']['params']['bytes'] = -1
    (saved / ckpt.MANIFEST).write_text(json.dumps(manifest))
    assert 'does not name its files' in str(load_within(saved))


def test_a_params_file_mxnet_cannot_parse_is_refused_without_its_traceback(saved):
    entry = manifest_entry(saved, 'params')
    data = b'not mxnet at all' * 10
    new = ckpt._entry('params', data)
    (saved / new['name']).write_bytes(data)
    manifest = json.loads((saved / ckpt.MANIFEST).read_text())
    manifest['files']['params'] = new
    (saved / ckpt.MANIFEST).write_text(json.dumps(manifest))
    error = load_within(saved)
    assert 'does not hold MXNet arrays' in str(error)
    assert 'Traceback' not in str(error) and '\n' not in str(error)
    assert entry  # the old params file is simply no longer named


def test_loading_writes_no_file_anywhere(saved, tmp_path, monkeypatch):
    """The parameters are parsed from memory: no temporary file outside the checkpoint."""
    temp = tmp_path / 'temp'
    temp.mkdir()
    monkeypatch.setenv('TMPDIR', str(temp))
    monkeypatch.setattr(tempfile, 'tempdir', None)
    made = []
    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(tempfile, 'mkstemp', lambda *a, **k: made.append(a) or real_mkstemp(*a, **k))
    before = sorted(p.name for p in saved.iterdir())
    ckpt.load(saved)
    assert made == [] and list(temp.iterdir()) == []
    assert sorted(p.name for p in saved.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their mode')
def test_a_file_the_user_may_not_read_is_not_called_damaged(saved):
    entry = manifest_entry(saved, 'params')
    (saved / entry['name']).chmod(0)
    error = load_within(saved)
    assert 'permission denied' in str(error) and 'damaged' not in str(error)


def test_a_file_name_ending_in_a_newline_is_not_one_of_ours(saved):
    manifest = json.loads((saved / ckpt.MANIFEST).read_text())
    name = manifest['files']['config']['name']
    os.rename(saved / name, saved / (name + '\n'))
    manifest['files']['config']['name'] = name + '\n'
    (saved / ckpt.MANIFEST).write_text(json.dumps(manifest))
    assert 'does not name its files' in str(load_within(saved))


def test_mxnet_failing_to_write_the_parameters_is_an_os_error(saved, monkeypatch):
    """As on a full disk: one line, no MXNet traceback, the old checkpoint kept."""
    before = files_of(saved)

    def full_disk(path, arrays):
        with open(path, 'wb') as f:
            f.write(b'half')
        raise ckpt.mx.base.MXNetError('Traceback (most recent call last):\n'
                                      '  File "../src/io.cc", line 9\n'
                                      'MXNetError: Check failed: fo->Write: No space left')

    monkeypatch.setattr(ckpt.npx, 'save', full_disk)
    with pytest.raises(OSError) as caught:
        ckpt.save(saved, small_checkpoint(0.5))
    assert caught.value.strerror == ('the parameters could not be written: '
                                     'MXNetError: Check failed: fo->Write: No space left')
    assert files_of(saved) == before  # not even a temporary file is left


def test_a_directory_the_user_may_not_search_is_said_to_be_so(saved, monkeypatch):
    """Faked (root may search any directory): lstat of the manifest is refused."""
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):
        if str(path).endswith(ckpt.MANIFEST):
            raise PermissionError(13, 'Permission denied')
        return real_lstat(path, *args, **kwargs)
    monkeypatch.setattr(ckpt.os, 'lstat', lstat)
    error = load_within(saved)
    assert 'cannot be read (permission denied)' in str(error)
    assert 'damaged' not in str(error) and 'holds no checkpoint' not in str(error)


def test_a_file_the_user_may_not_open_is_said_to_be_so(saved, monkeypatch):
    """Faked as above: opening the params file is refused."""
    real_open = os.open
    name = manifest_entry(saved, 'params')['name']

    def open_(path, *args, **kwargs):
        if str(path).endswith(name):
            raise PermissionError(13, 'Permission denied')
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(ckpt.os, 'open', open_)
    error = load_within(saved)
    assert f'{name} cannot be read (permission denied)' in str(error)
    assert 'damaged' not in str(error)


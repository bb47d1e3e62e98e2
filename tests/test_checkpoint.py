"""Checkpoint files that are not finite, not regular or not bounded are refused.

Unit tests of ``d2lrnn.checkpoint`` itself, in this process; the command line's
behaviour around them is in tests/cli/.
"""
import contextlib
import io
import json
import math
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

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


def test_a_checkpoint_loads_in_any_thread(saved):
    """MXNet's NumPy shapes are on only in the thread that imported d2lrnn."""
    assert load_within(saved) is None


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


class Reader(io.FileIO):
    """A file object that records (file name, bytes asked for) of each read."""

    def __init__(self, fd, reads):
        super().__init__(fd, 'rb')
        self.reads, self.path = reads, os.readlink(f'/proc/self/fd/{fd}')

    def read(self, size=-1):
        self.reads.append((os.path.basename(self.path), size))
        return super().read(size)


@pytest.fixture()
def reads(monkeypatch):
    """Every read of a checkpoint file, as (file name, bytes asked for)."""
    reads = []
    monkeypatch.setattr(ckpt.os, 'fdopen', lambda fd, mode: Reader(fd, reads))
    return reads


def test_a_file_larger_than_the_manifest_says_is_refused_unread(saved, reads):
    entry = manifest_entry(saved, 'params')
    with open(saved / entry['name'], 'ab') as f:
        f.write(b'\0' * 10_000_000)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError)
    assert (f'{entry["name"]} has {entry["bytes"] + 10_000_000} bytes, the manifest says '
            f'{entry["bytes"]}') in str(error)
    assert entry['name'] not in {name for name, _ in reads}


def test_a_file_that_grows_while_it_is_read_is_read_no_further(saved, reads, monkeypatch):
    """As if it grew between the size check and the reading: bytes + 1 read, in chunks."""
    entry = manifest_entry(saved, 'params')
    with open(saved / entry['name'], 'ab') as f:
        f.write(b'\0' * 3 * ckpt.READ_CHUNK)
    real_fstat = os.fstat

    def fstat(fd):
        found = real_fstat(fd)
        if os.readlink(f'/proc/self/fd/{fd}').endswith(entry['name']):
            return os.stat_result((*found[:6], entry['bytes'], *found[7:]))
        return found
    monkeypatch.setattr(ckpt.os, 'fstat', fstat)
    monkeypatch.setattr(ckpt, 'READ_CHUNK', 100)
    error = load_within(saved)
    assert f'{entry["name"]} is larger than {entry["bytes"]} bytes' in str(error)
    sizes = [size for name, size in reads if name == entry['name']]
    assert max(sizes) <= 100 and sum(sizes) == entry['bytes'] + 1


HOSTILE_SIZES = [2 ** 63, 2 ** 63 - 1, 10 ** 30, 2 ** 62, 2 ** 40]


def set_declared_size(directory, role, size):
    manifest = json.loads((directory / ckpt.MANIFEST).read_text())
    manifest['files'][role]['bytes'] = size
    (directory / ckpt.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize('size', HOSTILE_SIZES)
@pytest.mark.parametrize('role', ['params', 'vocab'])
def test_a_size_no_checkpoint_has_is_refused_before_any_read(saved, reads, role, size):
    set_declared_size(saved, role, size)
    error = load_within(saved)
    assert isinstance(error, ckpt.CheckpointError), repr(error)
    assert (f'manifest.json gives {manifest_entry(saved, role)["name"]} {size:,} bytes; '
            f'no {role} file of d2lrnn has more than {ckpt.MAX_BYTES[role]:,})') in str(error)
    assert '\n' not in str(error)
    assert {name for name, _ in reads} == {ckpt.MANIFEST}


def test_the_size_bounds_hold_the_largest_model_the_command_line_accepts():
    from d2lrnn.cli import config
    # The command line refuses arrays beyond the same bound (config.check_model_size).
    with pytest.raises(config.CLIError, match=f'limit of {ckpt.MAX_ARRAY_SIZE:,} per array'):
        config.check_model_size(28, {'num_hiddens': math.isqrt(ckpt.MAX_ARRAY_SIZE) + 1})
    # The largest hidden size of a character vocabulary of 28, and the largest vocabulary
    # of one hidden unit: every array within MXNet's limit, as cli.check_model_size asks.
    for vocab_size, num_hiddens in ((28, math.isqrt(ckpt.MAX_ARRAY_SIZE)),
                                    (ckpt.MAX_ARRAY_SIZE, 1)):
        shapes = ckpt.param_shapes(vocab_size, num_hiddens)
        assert max(math.prod(shape) for shape in shapes.values()) <= ckpt.MAX_ARRAY_SIZE
        assert (ckpt.params_bytes(vocab_size, num_hiddens) + ckpt.PARAMS_OVERHEAD
                <= ckpt.MAX_PARAMS_BYTES)


def test_a_size_within_bounds_reads_only_what_the_file_holds(saved):
    """The vocab file is small; the manifest says 256 MiB: nothing that large is allocated."""
    entry = manifest_entry(saved, 'vocab')
    set_declared_size(saved, 'vocab', ckpt.MAX_JSON_BYTES)
    tracemalloc.start()
    try:
        error = load_within(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (f'{entry["name"]} has {entry["bytes"]} bytes, the manifest says '
            f'{ckpt.MAX_JSON_BYTES}') in str(error)
    assert peak < 16 * 2 ** 20, peak


def test_a_params_file_larger_than_its_model_is_refused_unread(saved, reads):
    name = manifest_entry(saved, 'params')['name']
    set_declared_size(saved, 'params', 2 ** 32 + 10)
    error = load_within(saved)
    assert ('does not fit together: '
            f'{name} has 4,294,967,306 bytes, but 5 tokens and num_hiddens=4 need '
            f'about {ckpt.params_bytes(5, 4):,}') in str(error)
    assert name not in {name for name, _ in reads}


def test_a_params_file_larger_than_mxnet_parses_is_refused_unread(saved, reads):
    """MXNet 1.9's load_frombuffer takes a 32-bit length: a longer file cannot be parsed."""
    rewrite_json(saved, 'config', json.dumps({'num_hiddens': 40_000}).encode())
    name = manifest_entry(saved, 'params')['name']
    set_declared_size(saved, 'params', 2 ** 32 + 10)
    error = load_within(saved)
    assert (f'is too large to load: {name} has 4,294,967,306 bytes, and MXNet 1.9 parses '
            'at most 4,294,967,295 from memory') in str(error)
    assert name not in {name for name, _ in reads}


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


def rewrite_params(directory, arrays):
    """Replace the params file by MXNet's file of `arrays`, with a manifest that agrees."""
    path = directory / 'arrays.params'
    ckpt.npx.save(str(path), {name: ckpt.np.array(array, dtype=array.dtype)
                              for name, array in arrays.items()})
    data = path.read_bytes()
    path.unlink()
    entry = ckpt._entry('params', data)
    (directory / entry['name']).write_bytes(data)
    manifest = json.loads((directory / ckpt.MANIFEST).read_text())
    manifest['files']['params'] = entry
    (directory / ckpt.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize('dtype', ['int32', 'float64', 'float16', 'uint8'])
def test_parameters_of_another_type_than_float32_are_refused(saved, dtype):
    """Hash and size agree: the numbers are what is wrong."""
    params = small_checkpoint().params
    rewrite_params(saved, {name: (array * 10).astype(dtype) for name, array in params.items()})
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.load(saved)
    assert f'W_xh holds {dtype}, not float32' in str(caught.value)
    assert '\n' not in str(caught.value)


def test_parameters_too_large_for_the_memory_here_are_said_to_be(saved, monkeypatch):
    def no_memory(data):
        raise MemoryError
    monkeypatch.setattr(ckpt.mx.nd, 'load_frombuffer', no_memory)
    error = load_within(saved)
    size = manifest_entry(saved, 'params')['bytes']
    assert f'does not fit in the memory here: its parameter file has {size:,} bytes' in str(error)
    assert 'damaged' not in str(error)


def test_a_file_too_large_to_read_into_memory_is_said_to_be(saved, monkeypatch):
    class NoMemory(io.FileIO):
        def read(self, size=-1):
            raise MemoryError
    monkeypatch.setattr(ckpt.os, 'fdopen', lambda fd, mode: NoMemory(fd, 'rb'))
    error = load_within(saved)
    assert 'does not fit in the memory here: manifest.json' in str(error)


def generate(directory):
    """`python -m d2lrnn generate --checkpoint DIRECTORY`: the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'd2lrnn', 'generate', '--checkpoint',
                           str(directory), '--prefix', 'ab', '--device', 'cpu'],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def declare_huge_params(directory):
    set_declared_size(directory, 'params', 2 ** 63)


def declare_huge_vocab(directory):
    set_declared_size(directory, 'vocab', 10 ** 30)


def declare_terabyte_params(directory):
    set_declared_size(directory, 'params', 2 ** 40)


def store_int32_params(directory):
    params = small_checkpoint().params
    rewrite_params(directory, {name: array.astype('int32') for name, array in params.items()})


@pytest.mark.parametrize('damage, message', [
    (declare_huge_params, 'params-'),
    (declare_huge_vocab, 'vocab-'),
    (declare_terabyte_params, '1,099,511,627,776 bytes; no params file of d2lrnn'),
    (store_int32_params, 'W_xh holds int32, not float32'),
])
def test_the_command_line_refuses_a_hostile_checkpoint_in_one_line(saved, damage, message):
    damage(saved)
    result = generate(saved)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.startswith(f'd2lrnn: error: the checkpoint in {saved} is damaged (')
    assert message in result.stderr and result.stderr.count('\n') == 1, result.stderr


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


def test_a_file_the_user_may_not_read_is_not_called_damaged(shared_checkpoint):
    entry = manifest_entry(shared_checkpoint, 'params')
    (shared_checkpoint / entry['name']).chmod(0)
    with second_user():
        error = load_within(shared_checkpoint)
    assert (f'{shared_checkpoint / entry["name"]} cannot be read (permission denied)'
            in str(error)) and 'damaged' not in str(error)


@contextlib.contextmanager
def second_user():
    """As root (as CI runs), act as `nobody` inside the block: root reads any file.

    Only the effective ids change, so root's come back afterwards; the kernel, not
    a stand-in, refuses the reading.
    """
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam('nobody')
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture()
def shared_checkpoint():
    """A checkpoint another user may reach (pytest's tmp_path is private to its user)."""
    directory = Path(tempfile.mkdtemp(prefix='d2lrnn-test-'))
    try:
        directory.chmod(0o755)
        ckpt.save(directory / 'run', small_checkpoint())
        yield directory / 'run'
    finally:
        shutil.rmtree(directory)


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


"""Checkpoints: a trained model in a directory a crash cannot half-write
(book/command-line.ipynb).

A checkpoint directory holds::

    manifest.json                  format and version; names the four
                                   files below, each with its size and
                                   SHA-256
    params-<sha256[:16]>.params    W_xh, W_hh, b_h, W_hq, b_q (MXNet's
                                   array format)
    vocab-<sha256[:16]>.json       vocab_state(vocab)
    config-<sha256[:16]>.json      how the model was built and trained
    progress-<sha256[:16]>.json    epochs done, Python's random state, history

Every file but the manifest is named after its content, so a new checkpoint
never writes over a file the current manifest names. Saving writes the four
files (each to a temporary file, fsync, ``os.replace``), then replaces
``manifest.json`` the same way, and only then deletes files no manifest names.
Whenever the process dies -- even by ``kill -9`` -- ``manifest.json`` names
complete files: the old checkpoint's or the new one's. Loading checks every
size and hash, so a damaged or hand-edited checkpoint is refused, not used.
"""
import errno
import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as onp
from mxnet import np, npx

from . import atomic
from .data import Vocab

FORMAT = 'd2lrnn-checkpoint'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
PARAM_NAMES = ('W_xh', 'W_hh', 'b_h', 'W_hq', 'b_q')
ROLES = {'params': '.params', 'vocab': '.json', 'config': '.json',
         'progress': '.json'}
# Files this module writes; only these are ever deleted from a directory.
_OWN_FILE = re.compile(
    r'^(params|vocab|config|progress)-[0-9a-f]{16}\.(params|json)$')
# The model the package ships: experiments/train_best.py's run best on validation,
# trained on the first 80% of The Time Machine, chosen on the next 10% (its figures:
# experiments/results/best_rnn.json).
SHIPPED_MODEL = Path(__file__).resolve().parent / 'models' / 'time-machine-best'

# Bounds on what loading reads, checked before a byte of a file is read.
MAX_MANIFEST_BYTES = 1 << 16  # a manifest is about 1 KB
# Numbers per array in MXNet's usual build; `d2lrnn train` refuses a model
# with a larger array (cli.check_model_size).
MAX_ARRAY_SIZE = 2 ** 31 - 1
# MXNet's list format around the float32 numbers: names, shapes, types
# (274 bytes for the shipped model).
PARAMS_OVERHEAD = 4096
# No parameter file of a model `d2lrnn train` accepts is larger: W_xh, W_hh
# and W_hq hold at most MAX_ARRAY_SIZE float32 numbers each, b_h and b_q
# together at most MAX_ARRAY_SIZE + 1 (V + H <= V * H + 1). About 34 GB.
MAX_PARAMS_BYTES = 4 * (4 * MAX_ARRAY_SIZE + 1) + PARAMS_OVERHEAD
# MXNet 1.9's load_frombuffer passes the length as a 32-bit integer: a
# longer buffer would be cut short.
MAX_LOADABLE_PARAMS_BYTES = 2 ** 32 - 1
# The JSON files: a vocabulary of every Unicode character (1,112,064 of
# them) takes 53 MiB; a progress file about 150 bytes per epoch.
MAX_JSON_BYTES = 1 << 28
MAX_BYTES = {'params': MAX_PARAMS_BYTES, 'vocab': MAX_JSON_BYTES,
             'config': MAX_JSON_BYTES, 'progress': MAX_JSON_BYTES}
READ_CHUNK = 1 << 20  # files are read this much at a time, never all at once


class CheckpointError(Exception):
    """A checkpoint that is missing, damaged or of another format.

    The message says which.
    """


class Checkpoint:
    """What a checkpoint holds: parameters, vocabulary, config, progress.

    The parameters are NumPy arrays by name.
    """

    def __init__(self, params, vocab, config, progress):
        self.params, self.vocab = params, vocab
        self.config, self.progress = config, progress


def param_shapes(vocab_size, num_hiddens):
    """The shape of each parameter of the scratch RNN (D2L 8.5.2), by name."""
    V, H = vocab_size, num_hiddens
    return {'W_xh': (V, H), 'W_hh': (H, H), 'b_h': (H,), 'W_hq': (H, V),
            'b_q': (V,)}


def vocab_state(vocab):
    """Everything that defines `vocab`, as JSON-ready lists and numbers."""
    state = {'idx_to_token': list(vocab.idx_to_token),
             'token_freqs': [list(pair) for pair in vocab.token_freqs],
             'unk': vocab.unk}
    if hasattr(vocab, 'pad'):
        state.update(pad=vocab.pad, bos=vocab.bos, eos=vocab.eos)
    return state


def vocab_from_state(state):
    """The vocabulary that ``vocab_state`` described (say read from JSON)."""
    vocab = Vocab([])
    vocab.idx_to_token = list(state['idx_to_token'])
    vocab.token_to_idx = {token: idx
                          for idx, token in enumerate(vocab.idx_to_token)}
    vocab.token_freqs = [tuple(pair) for pair in state['token_freqs']]
    vocab.unk = state['unk']
    if 'pad' in state:
        vocab.pad, vocab.bos, vocab.eos = (state['pad'], state['bos'],
                                           state['eos'])
    return vocab


def exists(directory):
    """True if `directory` holds a checkpoint (good or damaged).

    That is, if it has a manifest.
    """
    return (Path(directory) / MANIFEST).exists()


# ---------------------------------------------------------------- saving

def save(directory, checkpoint):
    """Write `checkpoint` into `directory` atomically, over the one there."""
    # Before anything is written: a model that is not finite never replaces
    # one that is.
    _check_finite(checkpoint.params)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {'params': _write_params(directory, checkpoint.params),
             'vocab': _write_json(directory, 'vocab',
                                  vocab_state(checkpoint.vocab)),
             'config': _write_json(directory, 'config', checkpoint.config),
             'progress': _write_json(directory, 'progress',
                                     checkpoint.progress)}
    manifest = {'format': FORMAT, 'format_version': FORMAT_VERSION,
                'epoch': checkpoint.progress.get('epoch'), 'files': files}
    # The commit point: before this replace the old checkpoint is current,
    # after it the new.
    atomic.write(directory, MANIFEST, _json_bytes(manifest))
    _remove_unnamed(directory, {entry['name'] for entry in files.values()})


def _check_finite(params):
    """Raise ValueError naming a parameter that holds NaN or infinity.

    Such a model predicts nothing (a diverged run); it is never saved.
    """
    for name in PARAM_NAMES:
        if name in params and not _all_finite(params[name]):
            raise ValueError(f'{name} is not finite (NaN or infinity): '
                             'a diverged model is not saved.')


def _all_finite(array):
    if hasattr(array, 'asnumpy'):  # an MXNet array
        array = array.asnumpy()
    return bool(onp.isfinite(array).all())


def _json_bytes(obj):
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False)
    return (text + '\n').encode('utf-8')


def _write_json(directory, role, obj):
    data = _json_bytes(obj)
    entry = _entry(role, data)
    atomic.write(directory, entry['name'], data)
    return entry


def _write_params(directory, params):
    """Save the parameters with ``npx.save``, through a temporary file.

    ``npx.save`` writes only to a path, so it writes to a temporary one.
    """
    missing = set(PARAM_NAMES) - set(params)
    if missing:
        raise ValueError(f'parameters missing: {sorted(missing)}')
    fd, tmp = tempfile.mkstemp(prefix=atomic.TEMP_PREFIX, dir=directory)
    os.close(fd)
    try:
        try:
            npx.save(tmp, {name: _as_mx(params[name]) for name in PARAM_NAMES})
        # MXNet reports a failed write (say a full disk) as its own error,
        # with its C++ traceback: an OSError with the message's last line.
        except Exception as e:
            lines = [line for line in str(e).splitlines() if line.strip()]
            raise OSError(errno.EIO, 'the parameters could not be written: '
                          + (lines[-1].strip() if lines else 'MXNet failed')
                          ) from None
        # mkstemp makes 0600; give the usual file mode.
        os.chmod(tmp, 0o666 & ~atomic.umask())
        # Hash what was written, then put it on disk.
        with open(tmp, 'rb+') as f:
            entry = _entry('params', f.read())
            # The bytes are on disk before the name points at them.
            os.fsync(f.fileno())
        os.replace(tmp, directory / entry['name'])
    except BaseException:
        atomic.unlink_quietly(tmp)
        raise
    atomic.fsync_directory(directory)  # and the rename itself is on disk
    return entry


def _as_mx(array):
    """An MXNet array on the CPU, from an MXNet or a NumPy array."""
    return (array.as_in_ctx(npx.cpu()) if hasattr(array, 'as_in_ctx')
            else np.array(array))


def _entry(role, data):
    digest = hashlib.sha256(data).hexdigest()
    return {'name': f'{role}-{digest[:16]}{ROLES[role]}', 'sha256': digest,
            'bytes': len(data)}


def _remove_unnamed(directory, keep):
    """Delete our files that the manifest does not name.

    These are older checkpoints and leftovers of a crash.
    """
    for path in directory.iterdir():
        own = (_OWN_FILE.fullmatch(path.name)
               or path.name.startswith(atomic.TEMP_PREFIX))
        if own and path.name not in keep:
            atomic.unlink_quietly(path)


def remove(directory):
    """Delete the checkpoint in `directory`, if any, manifest first.

    Without its manifest a directory holds no checkpoint, so a crash
    half-way leaves none rather than a damaged one. Only this module's
    files go; the directory itself goes if that empties it.
    """
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        return
    atomic.unlink_quietly(directory / MANIFEST)
    _remove_unnamed(directory, set())
    try:
        directory.rmdir()
    except OSError:  # something else lives there: leave it
        pass


# ---------------------------------------------------------------- loading

def load(directory):
    """Read and check the checkpoint in `directory`.

    Raises CheckpointError saying what is wrong.
    """
    directory = Path(directory)
    files = _read_manifest(directory)['files']
    # The small files first: they say how large the parameters can be.
    data = {role: _read_checked(directory, files, role)
            for role in ('vocab', 'config', 'progress')}
    vocab = _parse_vocab(directory,
                         _parse_json(directory, 'vocab', data['vocab']))
    config = _parse_json(directory, 'config', data['config'])
    progress = _parse_json(directory, 'progress', data['progress'])
    for role, obj in (('config', config), ('progress', progress)):
        if not isinstance(obj, dict):
            raise _damaged(directory, f'its {role} file holds a '
                                      f'{type(obj).__name__}, not an object')
    _check_params_size(directory, files['params'], len(vocab),
                       _num_hiddens(directory, config))
    params = _parse_params(directory,
                           _read_checked(directory, files, 'params'))
    _check_shapes(directory, params, len(vocab), config)
    return Checkpoint(params, vocab, config, progress)


def _damaged(directory, what):
    return CheckpointError(
        f'the checkpoint in {directory} is damaged ({what}); train again, '
        'or restore the directory from a copy.')


def _read_manifest(directory):
    if os.path.lexists(directory) and not directory.is_dir():
        raise CheckpointError(f'{directory} is a file, not a checkpoint '
                              'directory; give the --out directory of a '
                              '`d2lrnn train` run.')
    if not directory.is_dir():
        raise CheckpointError(f'{directory}: no such directory; give the '
                              '--out directory of a `d2lrnn train` run.')
    path = directory / MANIFEST
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(
            f'{directory} holds no checkpoint (no {MANIFEST}); '
            f'create one with `d2lrnn train --out {directory}`.') from None
    except PermissionError:  # a directory the user may not search
        raise CheckpointError(
            f'{directory} cannot be read (permission denied); check its '
            'permissions.') from None
    data = read_regular(directory, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _damaged(directory, f'{MANIFEST} is unreadable: '
                                  f'{_first_line(e)}') from None
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise _damaged(directory, f'{MANIFEST} is not a d2lrnn manifest')
    _check_version(directory, manifest.get('format_version'))
    files = manifest.get('files')
    if not isinstance(files, dict) or any(not _valid_entry(files.get(r))
                                          for r in ROLES):
        raise _damaged(directory, f'{MANIFEST} does not name its files')
    for role in ROLES:
        _check_declared_size(directory, role, files[role])
    return manifest


def _check_version(directory, version):
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f'the checkpoint in {directory} has format version {version}, '
            f'but this d2lrnn reads version {FORMAT_VERSION}; use the d2lrnn '
            'that wrote it, or train again.')


def _valid_entry(entry):
    return (isinstance(entry, dict) and isinstance(entry.get('name'), str)
            # fullmatch: '$' would also match before a final newline.
            and _OWN_FILE.fullmatch(entry['name']) is not None
            and isinstance(entry.get('sha256'), str)
            and isinstance(entry.get('bytes'), int)
            and not isinstance(entry['bytes'], bool) and entry['bytes'] >= 0)


def _check_declared_size(directory, role, entry):
    """Refuse a size that no file d2lrnn writes has, before reading any."""
    if entry['bytes'] > MAX_BYTES[role]:
        raise _damaged(directory, f'{MANIFEST} gives {entry["name"]} '
                                  f'{entry["bytes"]:,} bytes; no {role} file '
                                  'of d2lrnn has more than '
                                  f'{MAX_BYTES[role]:,}')


def read_regular(directory, name, limit):
    """The bytes of directory/name, if it is a regular file of <= `limit`.

    Only a regular file is read: a symlink to an endless device, a pipe
    that blocks, a directory are refused at once. A file larger than
    `limit` is refused before it is read; otherwise it is read in chunks,
    never more than `limit` + 1 bytes. A file the user may not read is
    said to be so, not damaged.
    """
    with _open_regular(directory, name) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise _damaged(directory, f'{name} is larger than {limit} bytes')
        return _read_bounded(directory, name, f, limit)


def _open_regular(directory, name):
    """directory/name opened for reading (a binary file object), if it is
    a regular file."""
    path = directory / name
    try:
        # O_NONBLOCK: opening a pipe must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise _damaged(directory,
                       f'{name} cannot be read: {e.strerror}') from None
    except PermissionError:
        raise CheckpointError(
            f'{path} cannot be read (permission denied); check the '
            'permissions of the checkpoint directory.') from None
    except OSError as e:
        raise _damaged(directory,
                       f'{name} cannot be opened: {e.strerror}') from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _damaged(directory, f'{name} is not a regular file')
    return os.fdopen(fd, 'rb')


def _read_bounded(directory, name, f, limit):
    """At most `limit` bytes of `f`, read a chunk at a time.

    Memory grows with what is read, not with what a manifest claims; a
    file that still has bytes after `limit` of them (it grew) is refused.
    """
    chunks, total = [], 0
    try:
        while True:
            chunk = f.read(min(READ_CHUNK, limit + 1 - total))
            if not chunk:
                return b''.join(chunks)
            total += len(chunk)
            if total > limit:
                raise _damaged(directory,
                               f'{name} is larger than {limit} bytes')
            chunks.append(chunk)
    except OSError as e:
        raise _damaged(directory,
                       f'{name} cannot be read: {e.strerror}') from None
    except MemoryError:
        raise _too_large(directory, name, limit) from None


def _too_large(directory, name, size):
    return CheckpointError(
        f'the checkpoint in {directory} does not fit in the memory here: '
        f'{name} has {size:,} bytes; load it on a machine with more memory.')


def _first_line(error):
    """An error's message without the lines some libraries append."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read_checked(directory, files, role):
    """The bytes of the file the manifest names for `role`, checked against
    its size (before reading) and its SHA-256."""
    entry = files[role]
    name, size = entry['name'], entry['bytes']
    with _open_regular(directory, name) as f:
        found = os.fstat(f.fileno()).st_size
        if found == size:
            data = _read_bounded(directory, name, f, size)
            found = len(data)  # less if the file shrank meanwhile
    if found != size:
        raise _damaged(directory,
                       f'{name} has {found} bytes, the manifest says {size}')
    if hashlib.sha256(data).hexdigest() != entry['sha256']:
        raise _damaged(directory, f'{name} does not match its SHA-256')
    return data


def _parse_json(directory, role, data):
    try:
        return json.loads(data.decode('utf-8'))
    # RecursionError: JSON nested too deeply for Python's stack.
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _damaged(directory, f'its {role} file is not valid JSON: '
                                  f'{_first_line(e)}') from None
    except MemoryError:
        raise _too_large(directory, f'its {role} file', len(data)) from None


def _parse_vocab(directory, state):
    """The vocabulary in ``vocab_state``'s JSON, once checked to be one."""
    if not (isinstance(state, dict)
            and isinstance(state.get('idx_to_token'), list)
            and state['idx_to_token']
            and all(isinstance(t, str) for t in state['idx_to_token'])
            and len(set(state['idx_to_token'])) == len(state['idx_to_token'])
            and isinstance(state.get('token_freqs'), list)
            and all(isinstance(pair, list) and len(pair) == 2
                    for pair in state['token_freqs'])
            and all(isinstance(state.get(key, 0), int)
                    and not isinstance(state.get(key), bool)
                    and 0 <= state.get(key, 0) < len(state['idx_to_token'])
                    for key in ('unk', 'pad', 'bos', 'eos'))
            and 'unk' in state):
        raise _damaged(directory, 'its vocab file does not hold a vocabulary')
    try:
        return vocab_from_state(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise _damaged(directory, 'its vocab file does not hold a '
                                  f'vocabulary: {e}') from None


def _parse_params(directory, data):
    """Parameters as NumPy arrays, parsed from the bytes already checked.

    From memory: no temporary file is written anywhere.
    """
    try:
        # d2lrnn saves with NumPy shapes on; MXNet turns them on per thread,
        # so a thread other than the one that imported d2lrnn needs them too.
        with mx.util.np_shape(True):
            loaded = mx.nd.load_frombuffer(data)
    except MemoryError:
        raise _too_large(directory, 'its parameter file', len(data)) from None
    # MXNet raises its own MXNetError for a malformed file; its message is
    # MXNet's C++ traceback, not for users.
    except Exception:
        raise _damaged(directory, 'its parameter file does not hold MXNet '
                                  'arrays') from None
    if not isinstance(loaded, dict) or set(loaded) != set(PARAM_NAMES):
        raise _damaged(directory, 'its parameter file does not hold '
                                  f'{", ".join(PARAM_NAMES)}')
    for name in PARAM_NAMES:
        # Another type's bytes read as float32 would be nonsense numbers.
        dtype = onp.dtype(loaded[name].dtype)
        if dtype != onp.float32:
            raise _damaged(directory, f'{name} holds {dtype.name}, not '
                                      'float32 as d2lrnn saves it')
    try:
        params = {name: loaded[name].asnumpy() for name in PARAM_NAMES}
    except MemoryError:
        raise _too_large(directory, 'its parameter file', len(data)) from None
    for name, array in params.items():
        if not onp.isfinite(array).all():
            raise _damaged(directory, f'{name} holds NaN or infinite values, '
                                      'as a diverged model does')
    return params


def _check_shapes(directory, params, vocab_size, config):
    """Refuse parameters whose shapes disagree with vocabulary and config.

    The config gives num_hiddens, the vocabulary the number of tokens.
    """
    num_hiddens = _num_hiddens(directory, config)
    expected = param_shapes(vocab_size, num_hiddens)
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise CheckpointError(
                f'the checkpoint in {directory} does not fit together: '
                f'{name} has shape {tuple(params[name].shape)}, but '
                f'{vocab_size} tokens and num_hiddens={num_hiddens} need '
                f'{shape}; train again.')


def _num_hiddens(directory, config):
    """The config's num_hiddens, once checked to be a positive integer."""
    num_hiddens = (config.get('num_hiddens') if isinstance(config, dict)
                   else None)
    if not isinstance(num_hiddens, int) or num_hiddens <= 0:
        raise _damaged(directory, 'its config has no valid num_hiddens')
    return num_hiddens


def params_bytes(vocab_size, num_hiddens):
    """Bytes of the float32 numbers of the scratch RNN's five parameters."""
    shapes = param_shapes(vocab_size, num_hiddens).values()
    return 4 * sum(math.prod(shape) for shape in shapes)


def _check_params_size(directory, entry, vocab_size, num_hiddens):
    """Refuse, before reading it, a parameter file larger than the model
    that vocabulary and config describe, or than MXNet can parse."""
    size, needed = entry['bytes'], params_bytes(vocab_size, num_hiddens)
    if size > needed + PARAMS_OVERHEAD:
        raise CheckpointError(
            f'the checkpoint in {directory} does not fit together: '
            f'{entry["name"]} has {size:,} bytes, but {vocab_size} tokens '
            f'and num_hiddens={num_hiddens} need about {needed:,}; train '
            'again.')
    if size > MAX_LOADABLE_PARAMS_BYTES:
        raise CheckpointError(
            f'the checkpoint in {directory} is too large to load: '
            f'{entry["name"]} has {size:,} bytes, and MXNet 1.9 parses at '
            f'most {MAX_LOADABLE_PARAMS_BYTES:,} from memory; train a model '
            'with fewer hidden units.')

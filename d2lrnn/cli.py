"""The command line: ``d2lrnn train``, ``generate`` and ``evaluate``.

::

    d2lrnn train --epochs 50 --out runs/tm    # trains on The Time Machine
    d2lrnn generate --checkpoint runs/tm --prefix 'time traveller' -n 50
    d2lrnn evaluate --checkpoint runs/tm --text some_book.txt

Training is the section's own loop (``train_epoch_ch8`` with ``sgd``),
epoch after epoch, with a checkpoint (see ``d2lrnn.checkpoint``) every few
epochs, at the end and on Ctrl-C. A checkpoint holds Python's ``random``
state, from which the minibatch iterators draw, so ``--resume`` continues
exactly where an uninterrupted run of the same seed would be. With
``--val-fraction`` the epoch of the lowest validation perplexity is kept
too, in ``--out``/best/, and ``evaluate --val-fraction`` scores exactly the
characters that training held out. A model that is not finite is never
saved.

Bad input ends with one line, ``d2lrnn: error: ...``, on stderr and exit
status 1 (2 for a malformed command line, 130 after Ctrl-C); nothing is
written before the input has been checked, so an existing checkpoint
survives. Two ``train`` runs cannot write to one ``--out`` at once: the
second stops with an error (a lock in ``--out`` that the first holds until
it ends, killed or not). After an error or Ctrl-C the process ends at
once (see ``end_process``). A text is read in chunks and only its first
``--max-tokens`` characters are kept (see ``scan_text``).
"""
import argparse
import codecs
import collections
import contextlib
import fcntl
import hashlib
import itertools
import math
import os
import random
import re
import signal
import stat
import string
import sys
import tempfile
from pathlib import Path

import mxnet as mx
import numpy as onp
from mxnet import gluon, np, npx

from . import checkpoint as ckpt
from .data import (TIME_MACHINE, TIME_MACHINE_SHA1, SeqDataLoader, Vocab,
                   check_corpus_length, check_sha1, clean, preprocess_lines,
                   tokenize)
from .evaluate import evaluate_perplexity, seq_data_iter_eval, split_corpus
from .predict import predict_ch8
from .train import sgd, train_epoch_ch8

PROG = 'd2lrnn'
# The section's settings (D2L 8.5.6), except for the number of epochs it
# trains (500).
DEFAULTS = {'num_hiddens': 512, 'lr': 1.0, 'num_epochs': 500,
            'batch_size': 32, 'num_steps': 35, 'use_random_iter': False,
            'max_tokens': 10000, 'seed': 0, 'val_fraction': 0.0}
# Command-line option -> configuration key (the book's names).
OPTION_KEYS = {'hidden': 'num_hiddens', 'lr': 'lr', 'epochs': 'num_epochs',
               'batch_size': 'batch_size', 'num_steps': 'num_steps',
               'iter': 'use_random_iter', 'max_tokens': 'max_tokens',
               'seed': 'seed', 'val_fraction': 'val_fraction'}
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CLIError(Exception):
    """Bad input: the message says what is wrong and what to do.

    No traceback is shown.
    """


class Interrupted(Exception):
    """Training stopped by Ctrl-C after saving.

    The message says where the checkpoint is and how to go on.
    """


# ---------------------------------------------------------------- the model

def make_model(vocab_size, num_hiddens, ctx):
    """A new model (``checkpoint.new_model``, the class checkpoints hold)."""
    return ckpt.new_model(vocab_size, num_hiddens, ctx)


def get_params_copy(model):
    """A CPU copy of the model's parameters by name, safe from training."""
    return {name: param.copy().as_in_ctx(npx.cpu())
            for name, param in zip(ckpt.PARAM_NAMES, model.params)}


def choose_ctx(device):
    """``cpu``, ``gpu`` (refused if there is none) or ``auto``.

    ``auto`` is a GPU if there is one, else the CPU.
    """
    if device == 'cpu':
        return npx.cpu()
    if npx.num_gpus() > 0:
        return npx.gpu(0)
    if device == 'gpu':
        raise CLIError('--device gpu, but MXNet sees no GPU here; '
                       'use --device cpu or auto.')
    return npx.cpu()


# ---------------------------------------------------------------- texts

def load_text(path):
    """(lines as section 8.3 reads them, SHA-256 of the bytes) of a text.

    The file is read once. `path` None is The Time Machine, checked against
    its SHA-1 first. Another text must be a readable UTF-8 file holding
    some letters a-z.
    """
    if path is None:
        try:
            check_sha1(TIME_MACHINE, TIME_MACHINE_SHA1)
            raw = TIME_MACHINE.read_bytes()
        except (OSError, ValueError) as e:
            raise CLIError(str(e)) from None
        return (preprocess_lines(decode_text(raw)),
                hashlib.sha256(raw).hexdigest())
    raw = read_utf8_bytes(path)
    lines = preprocess_lines(decode_text(raw))
    if not any(line.strip() for line in lines):
        raise CLIError(f'{path} holds no letters a-z: nothing to learn from '
                       'or score; give an English text.')
    return lines, hashlib.sha256(raw).hexdigest()


def decode_text(raw):
    r"""The text of UTF-8 bytes, with ``'\r\n'`` and ``'\r'`` as ``'\n'``.

    That is how text mode reads them.
    """
    return raw.decode('utf-8').replace('\r\n', '\n').replace('\r', '\n')


def read_utf8_bytes(path):
    """The bytes of a readable UTF-8 file; refuse anything else, saying why.

    (The package's reader turns bytes that are not UTF-8 into spaces; here
    a wrong encoding is more likely a mistake than a stray byte, so it is
    refused.)
    """
    path = check_text_file(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CLIError(f'{path} cannot be read ({e.strerror}); '
                       'check its permissions.') from None
    try:
        raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise CLIError(
            f'{path} is not UTF-8 text (byte {e.start} is '
            f'{raw[e.start]:#04x}); convert it, for example with '
            '`iconv -t UTF-8`.') from None
    return raw


def describe_text(path):
    """The text's name for messages."""
    return 'The Time Machine' if path is None else str(path)


class ScannedText:
    """What train and evaluate need of a text, read once, in chunks.

    ``counts``: how often each character occurs in the whole text as
    section 8.3 reads it (the vocabulary is built from all of it);
    ``chars``: its first `max_tokens` characters (all if not positive), as
    one string; ``sha256``: of its bytes. Memory follows what is kept, not
    the size of the file: the counts, `chars` and one chunk.
    """

    def __init__(self, counts, chars, sha256):
        self.counts, self.chars, self.sha256 = counts, chars, sha256


CHUNK_BYTES = 1 << 20


def scan_text(path, max_tokens):
    r"""A ``ScannedText`` of the text at `path` (None: The Time Machine).

    It reads as ``load_text`` does (UTF-8, ``'\r\n'`` and ``'\r'`` as
    ``'\n'``, then ``preprocess_lines``), and refuses what ``load_text``
    refuses, but a chunk at a time.
    """
    if path is None:
        try:
            check_sha1(TIME_MACHINE, TIME_MACHINE_SHA1)
        except (OSError, ValueError) as e:
            raise CLIError(str(e)) from None
        file = TIME_MACHINE
    else:
        file = check_text_file(path)
    try:
        with open(file, 'rb') as f:
            scan = scan_chunks(iter(lambda: f.read(CHUNK_BYTES), b''),
                               max_tokens, file)
    except OSError as e:
        raise CLIError(f'{path} cannot be read ({e.strerror}); '
                       'check its permissions.') from None
    if not any(c != ' ' for c in scan.counts):
        raise CLIError(f'{path} holds no letters a-z: nothing to learn from '
                       'or score; give an English text.')
    return scan


# Bytes of lower-cased ASCII: letters stay, '\n' stays, all else a space.
KEEP_LETTERS = bytes(
    c if chr(c) in string.ascii_lowercase + '\n' else ord(' ')
    for c in range(256))
SPACE_RUNS = re.compile(rb'  +')


def clean_lines(text):
    r"""What ``preprocess_lines`` makes of whole lines, as ASCII bytes.

    `text` is lines each ending in ``'\n'``; the result is their cleaned
    forms run together (as the corpus runs them together). Each line is
    stripped and lower-cased as there; then, on the whole block at once,
    every character but a-z becomes a space (a character outside ASCII
    first becomes '?', which then does), and a run of spaces one space, as
    ``data.clean`` does to each line.
    """
    stripped = '\n'.join(line.strip() for line in text.split('\n'))
    data = stripped.lower().encode('ascii', 'replace').translate(KEEP_LETTERS)
    # Line by line: a run of spaces never crosses a line break.
    return SPACE_RUNS.sub(b' ', data).replace(b'\n', b'')


def count_bytes(data, counts):
    """Add to `counts` how often each byte value occurs in `data`.

    ``clean_lines`` leaves only a-z and ' '; a histogram of the bytes is
    many times faster than a Counter over characters.
    """
    histogram = onp.bincount(onp.frombuffer(data, dtype=onp.uint8),
                             minlength=256)
    for byte in onp.flatnonzero(histogram):
        counts[chr(byte)] += int(histogram[byte])


def scan_chunks(chunks, max_tokens, path):
    """A ``ScannedText`` of byte chunks; see ``scan_text``."""
    sha, counts, kept = hashlib.sha256(), collections.Counter(), []
    left = max_tokens if max_tokens > 0 else math.inf
    decoder = codecs.getincrementaldecoder('utf-8')()
    carry, offset = '', 0
    for chunk in itertools.chain(chunks, [None]):
        final = chunk is None
        pending = decoder.getstate()[0]
        try:
            text = carry + decoder.decode(chunk or b'', final=final)
        except UnicodeDecodeError as e:
            data = pending + (chunk or b'')
            raise CLIError(
                f'{path} is not UTF-8 text (byte '
                f'{offset - len(pending) + e.start} is {data[e.start]:#04x}); '
                'convert it, for example with `iconv -t UTF-8`.') from None
        if chunk:
            sha.update(chunk)
            offset += len(chunk)
        # A '\r' at the end may be the first half of a '\r\n'.
        held = '\r' if not final and text.endswith('\r') else ''
        text = text[:len(text) - len(held)]
        text = text.replace('\r\n', '\n').replace('\r', '\n')
        if final:  # a last line without '\n' counts too
            whole, carry = (text + '\n' if text else ''), ''
        else:  # the last, unfinished line waits for the next chunk
            cut = text.rfind('\n') + 1
            whole, carry = text[:cut], text[cut:] + held
        cleaned = clean_lines(whole)
        count_bytes(cleaned, counts)
        if left > 0 and cleaned:
            kept.append(cleaned[:left] if left < len(cleaned) else cleaned)
            left -= len(kept[-1])
    return ScannedText(counts, b''.join(kept).decode('ascii'),
                       sha.hexdigest())


def check_text_file(path):
    """`path` as a Path, if it names a file; refuse it otherwise."""
    path = Path(path)
    if not path.exists():
        raise CLIError(
            f'{path}: no such file; give the path of a UTF-8 text file.')
    if not path.is_file():
        raise CLIError(
            f'{path} is not a file; give the path of a UTF-8 text file.')
    return path


def training_corpus(text, max_tokens):
    """Character ids and vocabulary of a text (D2L 8.3).

    As ``load_corpus_time_machine`` builds them: the vocabulary from the
    whole text, then the first `max_tokens` ids. `text` is the lines of
    ``load_text`` or a ``ScannedText``; the latter builds the vocabulary
    from counts, not from a list of every character.
    """
    if isinstance(text, ScannedText):
        vocab = Vocab(text.counts)  # Vocab counts a Counter as its counts
        chars = text.chars[:max_tokens] if max_tokens > 0 else text.chars
        return [vocab.token_to_idx[c] for c in chars], vocab
    tokens = tokenize(text, 'char')
    vocab = Vocab(tokens)
    corpus = [vocab[tk] for line in tokens for tk in line]
    return (corpus[:max_tokens] if max_tokens > 0 else corpus), vocab


def corpus_in_vocab(path, vocab, max_tokens, val_fraction=0):
    """Ids of the text at `path` in a given vocabulary, and what it lacks.

    Only the first `max_tokens` characters are read (all if it is not
    positive); the second result lists the characters among them that the
    vocabulary lacks, or among the last `val_fraction` of them only (the
    part ``holdout_split`` keeps for scoring), if it is given.
    """
    chars = scan_text(path, max_tokens).chars
    scored = holdout_split(chars, val_fraction)[1] if val_fraction else chars
    unknown = sorted(set(scored) - set(vocab.token_to_idx))
    return [vocab.token_to_idx.get(c, vocab.unk) for c in chars], unknown


def eval_batches(corpus, batch_size, num_steps):
    """Deterministic minibatches for scoring; fewer rows for a short text."""
    batch_size = min(batch_size, (len(corpus) - 1) // num_steps)
    if batch_size < 1:
        raise CLIError(f'{len(corpus)} characters are too few to score with '
                       f'--num-steps {num_steps}: at least {num_steps + 1} '
                       'are needed.')
    return seq_data_iter_eval(corpus, batch_size, num_steps)


def read_prefix(prefix, vocab):
    """The prefix as the text was read; refuse unknown characters.

    It is cleaned as the text was (lower case, non-letters as one space).
    Unknown characters are refused rather than read as ``<unk>``: the model
    never saw ``<unk>`` in training, so the text after it would mean
    nothing.
    """
    cleaned = clean(prefix)
    if not cleaned.strip():
        raise CLIError(f'the prefix {prefix!r} holds no letters; give a few '
                       'words to start from.')
    unknown = sorted(set(cleaned) - set(vocab.token_to_idx))
    if unknown:
        known = ''.join(sorted(vocab.idx_to_token[1:]))
        raise CLIError('the prefix has characters the model never saw: '
                       f'{"".join(unknown)!r}; use only {known!r}.')
    return cleaned


# ---------------------------------------------------------------- train: setup

def train_config(args, checkpoint):
    """(The run's configuration, the lines of its text).

    The configuration is the options over the defaults, or the
    checkpoint's if resuming.
    """
    given = {opt: getattr(args, opt) for opt in OPTION_KEYS
             if getattr(args, opt) is not None}
    config = {OPTION_KEYS[opt]: value for opt, value in given.items()}
    if 'iter' in given:
        config['use_random_iter'] = given['iter'] == 'random'
    if checkpoint is None:
        config = {**DEFAULTS, **config}
        # Errors name the path as it was given.
        scanned = scan_text(args.text, config['max_tokens'])
        text = None if args.text is None else str(Path(args.text).resolve())
        return ({**config, 'text': text, 'text_sha256': scanned.sha256},
                scanned)
    saved = dict(checkpoint.config)
    check_resumable(saved, checkpoint.progress, args.out)
    for opt, value in given.items():
        key = OPTION_KEYS[opt]
        if key != 'num_epochs' and saved.get(key) != config[key]:
            flag = '--' + opt.replace('_', '-')
            raise CLIError(
                f'{flag} {value} differs from the checkpoint '
                f'({saved.get(key)}); a resumed run keeps its settings: '
                f'leave {flag} out, or start afresh with --force.')
    saved['num_epochs'] = config.get('num_epochs', saved['num_epochs'])
    lines = resumed_text(args, saved)
    check_epochs_left(saved, checkpoint.progress.get('epoch'))
    return saved, lines


def check_resumable(config, progress, out):
    """Refuse a checkpoint that lacks what training needs, or holds junk.

    Such a checkpoint was not written by `train` (or was edited since);
    each value is checked as the command line checks the option it comes
    from, so that training never starts from a value it would refuse.
    """
    missing = sorted((set(DEFAULTS) | {'text', 'text_sha256'}) - set(config))
    wrong = None if missing else first_bad_value(config)
    epoch, history = progress.get('epoch'), progress.get('history')
    if missing or wrong or not (
            is_int(epoch) and isinstance(history, list)
            and len(history) == epoch and all(map(valid_record, history))
            and 'python_random' in progress):
        what = (f'its config lacks {", ".join(missing)}' if missing
                else f'its config is not valid: {wrong}' if wrong
                else 'its progress is incomplete')
        raise CLIError(f'the checkpoint in {out} cannot be resumed ({what}); '
                       'start afresh with --force.')


def is_int(value):
    """An int, and not a bool (which is an int but never meant as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value):
    """An int or a float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What each configuration value must be: (test, what the message says).
CONFIG_RULES = {
    'num_hiddens': (lambda v: is_int(v) and v > 0, 'a positive integer'),
    'num_epochs': (lambda v: is_int(v) and v > 0, 'a positive integer'),
    'batch_size': (lambda v: is_int(v) and v > 0, 'a positive integer'),
    'num_steps': (lambda v: is_int(v) and v > 0, 'a positive integer'),
    'lr': (lambda v: is_real(v) and FLOAT32_TINY <= v <= FLOAT32_MAX,
           'a positive number'),
    'use_random_iter': (lambda v: isinstance(v, bool), 'true or false'),
    'max_tokens': (lambda v: is_int(v) and (v > 0 or v == -1),
                   'an integer'),
    'seed': (lambda v: is_int(v) and 0 <= v < 2 ** 32,
             'an integer from 0 to 2**32 - 1'),
    'val_fraction': (lambda v: is_real(v) and 0 <= v < 1,
                     'at least 0 and below 1'),
    'text': (lambda v: v is None or isinstance(v, str), 'a path or null'),
    'text_sha256': (lambda v: isinstance(v, str), 'a SHA-256'),
}


def first_bad_value(config):
    """'KEY must be ..., got VALUE' for the first bad value, or None."""
    for key, (valid, wanted) in CONFIG_RULES.items():
        if not valid(config[key]):
            return f'{key} must be {wanted}, got {config[key]!r}'
    return None


def valid_record(record):
    """One epoch of a progress file's history, as `Run.epoch` makes it."""
    return (isinstance(record, dict) and is_int(record.get('epoch'))
            and is_real(record.get('perplexity'))
            and is_real(record.get('tokens_per_sec'))
            and (record.get('val_perplexity') is None
                 or is_real(record.get('val_perplexity'))))


def resumed_text(args, config):
    """The text the run began on (scanned), which must read as then."""
    given, max_tokens = None, config['max_tokens']
    if args.text is not None:
        given = scan_text(args.text, max_tokens)
        if given.sha256 != config['text_sha256']:
            raise CLIError(
                f'{args.text} is not the text this checkpoint was trained '
                f'on ({describe_text(config["text"])}); leave --text out '
                'to use that one.')
    same_file = (given is not None and config['text'] is not None
                 and Path(args.text).resolve() == Path(config['text']))
    scanned = given if same_file else scan_text(config['text'], max_tokens)
    if scanned.sha256 != config['text_sha256']:
        raise CLIError(
            f'{describe_text(config["text"])} has changed since the '
            'checkpoint was written; restore it, or start afresh with '
            '--force.')
    return scanned


def check_epochs_left(config, done):
    """Refuse an --epochs below the epochs done.

    --epochs counts all epochs, resumed ones included.
    """
    if config['num_epochs'] < done:
        raise CLIError(
            f'--epochs {config["num_epochs"]}, but the checkpoint has done '
            f'{done} epochs already; give a larger --epochs.')


def check_out_dir(out, args):
    """Refuse to replace a checkpoint by accident."""
    if not args.out:
        raise CLIError("--out '' names no directory (it would be the current "
                       "one); give a directory for the checkpoint.")
    if args.resume and args.force:
        raise CLIError('--resume continues the checkpoint and --force '
                       'replaces it; give one.')
    if out.exists() and not out.is_dir():
        raise CLIError(
            f'--out {out} is a file; give a directory for the checkpoint.')
    if ckpt.exists(out) and not (args.resume or args.force):
        raise CLIError(f'{out} already holds a checkpoint; continue it with '
                       '--resume, or replace it with --force.')


def ensure_writable(out):
    """Create `out` and find out now whether it takes files.

    Now, that is, and not after the first epochs.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise CLIError(f'cannot write to --out {out} ({e.strerror}); '
                       'choose another directory.') from None


LOCK = '.lock'  # in --out; not a checkpoint file, so saving never deletes it


@contextlib.contextmanager
def training_lock(out):
    """Hold an exclusive lock on `out` while training.

    A second `train` on `out` stops at once. The lock is ``flock`` on a
    file in `out`: the kernel drops it when the process ends, even on
    SIGKILL, so a crashed run never leaves `out` locked.
    """
    with open_lock_file(out / LOCK) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CLIError(
                f'another `d2lrnn train` is writing to {out}; wait for it '
                'to end, or choose another --out.') from None
        yield


def open_lock_file(path):
    """The lock file, created if need be; never through a symlink.

    A symlink would create or lock a file outside --out.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK, 0o666)
    except OSError as e:
        raise CLIError(f'{path} cannot be opened ({e.strerror}); remove it '
                       'if it is a symlink or not a plain file.') from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CLIError(f'{path} is not a plain file; remove it.')
    return os.fdopen(fd, 'r+b')


def manifest_bytes(out):
    """The checkpoint's manifest as it stands (None without one).

    It changes with every save.
    """
    if not os.path.lexists(out / ckpt.MANIFEST):
        return None
    # Bounded, and only from a regular file: see checkpoint.read_regular.
    return ckpt.read_regular(out, ckpt.MANIFEST, ckpt.MAX_MANIFEST_BYTES)


def holdout_split(corpus, fraction):
    """(the first ids, the last `fraction` of them), or (corpus, None).

    The one cut that `train --val-fraction` and `evaluate --val-fraction`
    both make (``evaluate.split_corpus`` at 1 - `fraction`), so that
    evaluate scores exactly the characters training held out.
    """
    if not fraction > 0:
        return corpus, None
    try:
        return split_corpus(corpus, 1 - fraction)
    except ValueError:  # a part would be empty: the same cut, and the
        cut = int(len(corpus) * (1 - fraction))  # callers say which part
        return corpus[:cut], corpus[cut:]        # is too short


def split_for_validation(corpus, config):
    """(training ids, validation ids or None), both checked long enough."""
    fraction, steps, batch = (config['val_fraction'], config['num_steps'],
                              config['batch_size'])
    train, valid = holdout_split(corpus, fraction)
    try:
        check_corpus_length(train, batch, steps)
    except ValueError as e:
        needed = re.search(r'at least (\d+)', str(e))
        at_least = (f' (at least {needed.group(1)} are needed)' if needed
                    else '')
        raise CLIError(
            f'{len(train)} characters to train on are too few for one '
            f'minibatch of --batch-size {batch} x --num-steps '
            f'{steps}{at_least}; use a longer text, a larger --max-tokens, '
            'or smaller --batch-size and --num-steps.') from None
    if valid is not None and len(valid) < steps + 1:
        raise CLIError(
            f'--val-fraction {fraction} leaves {len(valid)} of '
            f'{len(corpus)} characters for validation, fewer than '
            f'--num-steps + 1 = {steps + 1}; raise --val-fraction or '
            '--max-tokens.')
    return train, valid


# ---------------------------------------------------------------- train: loop

def rng_state_to_json(state):
    """``random.getstate()`` as JSON-ready lists.

    The minibatch iterators draw from that state.
    """
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def restore_rng_state(obj, directory):
    """``random.setstate`` from ``rng_state_to_json``'s lists."""
    try:
        version, internal, gauss_next = obj
        random.setstate((version, tuple(internal), gauss_next))
    # OverflowError: a number too large for the generator's state.
    except (TypeError, ValueError, OverflowError):
        raise CLIError(f'the checkpoint in {directory} holds no valid random '
                       'state; train again.') from None


class Snapshot:
    """The state at the end of an epoch: all a checkpoint needs, copied."""

    def __init__(self, epoch, model, history):
        self.epoch = epoch
        self.params = get_params_copy(model)
        self.rng = rng_state_to_json(random.getstate())
        self.history = [dict(h) for h in history]
        self.written = False  # set once save_snapshot has written it

    def checkpoint(self, vocab, config):
        progress = {'epoch': self.epoch, 'python_random': self.rng,
                    'history': self.history}
        return ckpt.Checkpoint(self.params, vocab, config, progress)


@contextlib.contextmanager
def sigint_noted():
    """Ctrl-C raises KeyboardInterrupt, and is also noted in the list yielded.

    Python runs a signal handler between two bytecodes, wherever they are;
    a KeyboardInterrupt raised inside a ``__del__`` (MXNet frees arrays in
    ``NDArray.__del__``) is printed as "ignored" and lost, and training
    would go on. The training loop checks the note after every epoch.
    """
    pressed = []

    def handler(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def sigint_deferred():
    """Hold Ctrl-C back while a checkpoint is written, then deliver it."""
    received = []
    previous = signal.signal(signal.SIGINT,
                             lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def save_snapshot(out, snapshot, vocab, config, main=True):
    """Write the snapshot as the checkpoint in `out`.

    Ctrl-C waits until it is written. `main` False is the best epoch's
    copy, which does not count as the run's checkpoint.
    """
    try:
        with sigint_deferred():
            ckpt.save(out, snapshot.checkpoint(vocab, config))
            if main:
                snapshot.written = True  # before a deferred Ctrl-C is raised
    except OSError as e:
        kept = ('the previous one is kept' if ckpt.exists(out)
                else 'nothing was saved')
        raise CLIError(f'cannot write the checkpoint to {out} ({e.strerror}); '
                       f'{kept}.') from None


def progress_bar(config, start):
    """A tqdm bar over epochs, on stderr, starting at the epochs done."""
    from tqdm import tqdm
    return tqdm(total=config['num_epochs'], initial=start, desc='train',
                unit='epoch', file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5)


def epoch_postfix(record):
    """What the bar shows after an epoch.

    Perplexity, tokens per second and validation perplexity.
    """
    postfix = {'ppl': f'{record["perplexity"]:.2f}',
               'tok/s': f'{record["tokens_per_sec"]:.0f}'}
    if record['val_perplexity'] is not None:
        postfix['val_ppl'] = f'{record["val_perplexity"]:.2f}'
    return postfix


class Run:
    """One training run: model, data, settings, where to save, history."""

    def __init__(self, model, vocab, train, valid, config, ctx, out, every):
        self.model, self.vocab, self.config, self.ctx = (model, vocab,
                                                         config, ctx)
        self.out, self.every = out, every
        self.train_iter = SeqDataLoader(config['batch_size'],
                                        config['num_steps'],
                                        config['use_random_iter'],
                                        -1,  # train is cut already
                                        corpus=train, vocab=vocab)
        self.valid = (None if valid is None else
                      eval_batches(valid, config['batch_size'],
                                   config['num_steps']))
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def updater(self, batch_size):
        sgd(self.model.params, self.config['lr'], batch_size)

    def epoch(self, epoch):
        """Train one epoch (D2L 8.5.6), score validation; return the record."""
        try:
            ppl, speed = train_epoch_ch8(self.model, self.train_iter,
                                         self.loss, self.updater, self.ctx,
                                         self.config['use_random_iter'])
        except FloatingPointError as e:
            raise CLIError(f'epoch {epoch}: {e} {self.kept()}') from None
        # A finite loss does not prove finite parameters: the last update
        # may have overflowed. Such a model is never saved.
        if not all(onp.isfinite(p.asnumpy()).all() for p in self.model.params):
            raise CLIError(
                f'epoch {epoch}: the parameters overflowed to infinity or '
                f'NaN: training diverged; {self.kept()}')
        val = (None if self.valid is None
               else evaluate_perplexity(self.model, self.valid, self.ctx))
        return {'epoch': epoch, 'perplexity': ppl, 'tokens_per_sec': speed,
                'val_perplexity': val}

    def kept(self):
        """What a diverged run leaves behind, and what to do."""
        if self.saved is None:
            return ('nothing of this run was saved; run it again with a '
                    'smaller --lr.')
        return (f'the last checkpoint in {self.out}, of epoch {self.saved}, '
                'is kept; start afresh with --force and a smaller --lr.')

    def run(self, start, history, saved):
        """Epochs start+1 .. num_epochs, with checkpoints.

        A checkpoint is written every `every` epochs, at the end and on
        Ctrl-C; with a validation part, the epoch of the lowest validation
        perplexity so far is also written, as soon as it ends, to
        ``best/`` in `out`.
        """
        self.saved = saved
        self.snapshot = Snapshot(start, self.model, history)
        bar = progress_bar(self.config, start)
        try:
            with sigint_noted() as pressed:
                for epoch in range(start + 1, self.config['num_epochs'] + 1):
                    self.finish_epoch(epoch, history, bar)
                    if pressed:  # a Ctrl-C whose exception was lost
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            snapshot = self.snapshot
            if self.saved != snapshot.epoch and not snapshot.written:
                save_snapshot(self.out, snapshot, self.vocab, self.config)
            raise Interrupted(
                f'interrupted: saved epoch {snapshot.epoch} in {self.out}; '
                f'continue with `d2lrnn train --out {self.out} --resume`.'
            ) from None
        finally:
            # Also before an error, so that its line starts a line.
            bar.close()
        return history

    def finish_epoch(self, epoch, history, bar):
        """Train epoch `epoch`, show it, and save what is due."""
        history.append(self.epoch(epoch))
        self.snapshot = snapshot = Snapshot(epoch, self.model, history)
        if best_epoch(history) == epoch:
            save_snapshot(self.out / BEST, snapshot, self.vocab,
                          self.config, main=False)
        bar.set_postfix(epoch_postfix(history[-1]), refresh=False)
        bar.update()
        if epoch % self.every == 0 or epoch == self.config['num_epochs']:
            save_snapshot(self.out, snapshot, self.vocab, self.config)
            self.saved = epoch


BEST = 'best'  # in --out: the checkpoint of the best validation epoch


def best_epoch(history):
    """The epoch of the lowest finite validation perplexity, or None.

    The earliest one wins a tie, so a later epoch that only equals it does
    not replace the best checkpoint.
    """
    scored = [(h['val_perplexity'], h['epoch']) for h in history
              if h.get('val_perplexity') is not None
              and math.isfinite(h['val_perplexity'])]
    return min(scored)[1] if scored else None


def cmd_train(args):
    """Check everything, then train afresh or resume, saving as we go."""
    out = Path(args.out)
    check_out_dir(out, args)
    read = manifest_bytes(out)
    checkpoint = ckpt.load(out) if args.resume else None
    config, lines = train_config(args, checkpoint)
    ctx = choose_ctx(args.device)
    corpus, vocab = training_corpus(lines, config['max_tokens'])
    check_model_size(len(vocab), config)
    train, valid = split_for_validation(corpus, config)
    ensure_writable(out)
    with training_lock(out):
        if manifest_bytes(out) != read:  # another run saved in between
            raise CLIError(f'the checkpoint in {out} changed while this '
                           'command started; run it again.')
        if checkpoint is None:
            # A best epoch of the run that --force replaces is not this
            # run's.
            ckpt.remove(out / BEST)
            model, start, history = start_fresh(config, vocab, ctx)
        else:
            model, start, history = start_from(checkpoint, vocab, ctx, out)
        run = Run(model, vocab, train, valid, config, ctx, out,
                  args.checkpoint_every)
        history = run.run(start, history,
                          saved=None if checkpoint is None else start)
        report_training(history, model, vocab, ctx, out)


MAX_ARRAY_SIZE = 2 ** 31 - 1  # numbers per array in MXNet's usual build
# Copies of the parameters a run holds: the parameters, their gradients,
# the snapshot of the last epoch and the one being saved.
PARAM_COPIES = 4


def check_model_size(vocab_size, config):
    """Refuse, before any work, a model that MXNet or memory cannot hold."""
    hidden = config['num_hiddens']
    shapes = ckpt.param_shapes(vocab_size, hidden)
    numbers = sum(math.prod(shape) for shape in shapes.values())
    largest = max(shapes, key=lambda name: math.prod(shapes[name]))
    if math.prod(shapes[largest]) > MAX_ARRAY_SIZE:
        raise CLIError(
            f'--hidden {hidden} makes {largest} a {shapes[largest]} array of '
            f'{math.prod(shapes[largest]):,} numbers, more than MXNet\'s '
            f'limit of {MAX_ARRAY_SIZE:,} per array; choose at most '
            f'{math.isqrt(MAX_ARRAY_SIZE)} hidden units.')
    needed = PARAM_COPIES * 4 * numbers  # float32
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise CLIError(
            f'--hidden {hidden} needs about {needed / 1e9:.1f} GB for '
            f'{numbers:,} parameters (float32, with gradients and copies), '
            f'more than the {memory / 1e9:.1f} GB of memory here; choose '
            'fewer hidden units.')


def physical_memory():
    """Bytes of memory of this machine, or None if the system won't say."""
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def start_fresh(config, vocab, ctx):
    """A new model from the seed: (model, epochs done, history)."""
    random.seed(config['seed'])  # the minibatch iterators draw from `random`
    mx.random.seed(config['seed'])  # get_params draws from MXNet's generator
    model = make_model(len(vocab), config['num_hiddens'], ctx)
    # For the record: which class trained it.
    config['model'] = type(model).__name__
    return model, 0, []


def start_from(checkpoint, vocab, ctx, out):
    """The checkpoint's model and random state.

    Returns (model, epochs done, history).
    """
    check_same_vocab(vocab, checkpoint.vocab, out)
    model = ckpt.to_model(checkpoint, ctx)
    restore_rng_state(checkpoint.progress.get('python_random'), out)
    return (model, checkpoint.progress['epoch'],
            list(checkpoint.progress['history']))


def check_same_vocab(vocab, saved_vocab, out):
    """The text must give the vocabulary the checkpoint was trained with."""
    if vocab.idx_to_token != saved_vocab.idx_to_token:
        raise CLIError('the text now gives another vocabulary than the '
                       f'checkpoint in {out}; start afresh with --force.')


def report_training(history, model, vocab, ctx, out):
    """The section's closing lines, then where the model is.

    The closing lines are perplexity, speed and a prediction.
    """
    if history:
        last = history[-1]
        val = ('' if last['val_perplexity'] is None
               else f', validation perplexity {last["val_perplexity"]:.1f}')
        print(f'epoch {last["epoch"]}: perplexity '
              f'{last["perplexity"]:.1f}{val}, '
              f'{last["tokens_per_sec"]:.0f} tokens/sec on {ctx}')
    if set('time traveller') <= set(vocab.token_to_idx):
        print(predict_ch8('time traveller', 50, model, vocab, ctx))
    print(f'checkpoint: {out}')
    best = best_epoch(history)
    if best is not None:
        print(f'best validation perplexity '
              f'{history[best - 1]["val_perplexity"]:.2f}, epoch {best}: '
              f'{out / BEST}')


# ------------------------------------------------------ generate, evaluate

def cmd_generate(args):
    """`d2lrnn generate`: print a prefix and its continuation (D2L 8.5.4)."""
    if not args.sample and (args.alpha is not None or args.seed is not None):
        raise CLIError(
            '--alpha and --seed choose how to sample: add --sample.')
    checkpoint = ckpt.load(args.checkpoint)
    prefix = read_prefix(args.prefix, checkpoint.vocab)
    ctx = choose_ctx(args.device)
    model = WithoutUnk(ckpt.to_model(checkpoint, ctx),
                       len(checkpoint.vocab), checkpoint.vocab.unk, ctx)
    alpha = 1.0 if args.alpha is None else args.alpha
    print(predict_ch8(prefix, args.n, model, checkpoint.vocab, ctx,
                      sample=args.sample, alpha=alpha, seed=args.seed))


class WithoutUnk:
    """A model that never predicts ``<unk>``: its logit becomes -inf.

    The training text holds no ``<unk>``, so the model gives it a small but
    non-zero probability, and sampling would now and then print ``<unk>``
    into the text. Greedy prediction is unchanged unless ``<unk>`` were the
    argmax.
    """

    def __init__(self, model, vocab_size, unk, ctx):
        self.model = model
        # Added, not written in place: the model's outputs may be its own
        # buffers.
        self.mask = np.zeros(vocab_size, ctx=ctx)
        self.mask[unk] = -math.inf

    def __call__(self, X, state):
        Y, state = self.model(X, state)
        return Y + self.mask, state

    def begin_state(self, batch_size, ctx):
        return self.model.begin_state(batch_size, ctx)


def cmd_evaluate(args):
    """`d2lrnn evaluate`: perplexity and bits per character on a text.

    With ``--val-fraction F`` only the last F of the characters are
    scored, cut as ``train --val-fraction F`` cut them (``holdout_split``);
    then ``--max-tokens`` defaults to the checkpoint's, so that on the
    training text the scored characters are exactly its validation part.
    """
    checkpoint = ckpt.load(args.checkpoint)
    config = checkpoint.config
    if not all(isinstance(config.get(key), int)
               and not isinstance(config.get(key), bool)
               and config[key] > 0 for key in ('batch_size', 'num_steps')):
        raise CLIError(
            f'the checkpoint in {args.checkpoint} has no valid batch_size '
            'and num_steps in its config, which scoring needs; train again.')
    max_tokens = evaluate_max_tokens(args, config)
    corpus, unknown = corpus_in_vocab(args.text, checkpoint.vocab,
                                      max_tokens, args.val_fraction)
    scored = corpus
    if args.val_fraction:
        scored = holdout_split(corpus, args.val_fraction)[1]
    data = eval_batches(scored, config['batch_size'], config['num_steps'])
    if unknown:
        print(f'{PROG}: warning: {args.text} has characters the model never '
              f'saw, scored as <unk>: {"".join(unknown)!r}', file=sys.stderr)
    ctx = choose_ctx(args.device)
    model = ckpt.to_model(checkpoint, ctx)
    ppl = evaluate_perplexity(model, data, ctx)
    where = (f'{len(corpus)} characters' if scored is corpus else
             f'the last {len(scored)} of {len(corpus)} characters')
    print(f'perplexity {ppl:.2f}, {math.log2(ppl):.2f} bits per character, '
          f'on {where} of {args.text}')


def evaluate_max_tokens(args, config):
    """--max-tokens, or its default: all, or the checkpoint's with a split."""
    if args.max_tokens is not None:
        return args.max_tokens
    saved = config.get('max_tokens')
    if (args.val_fraction and isinstance(saved, int)
            and not isinstance(saved, bool)):
        return saved
    return -1


# ---------------------------------------------------------------- the parser

class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: ``d2lrnn: error: ...``."""

    def error(self, message):
        self.exit(EXIT_USAGE,
                  f'{PROG}: error: {message} (see `{self.prog} --help`)\n')


def number_type(convert, accept, wanted):
    """An argparse type: `convert` the text, then require `accept(value)`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(
                f'must be {wanted}, got {text!r}')
        return value
    return parse


positive_int = number_type(int, lambda v: v > 0, 'a positive integer')
positive_float = number_type(float, lambda v: 0 < v < math.inf,
                             'a positive number')
# The learning rate reaches MXNet as a float32 scalar, which refuses
# numbers outside float32's normal range (say 1e-310).
FLOAT32_TINY, FLOAT32_MAX = 1.1754944e-38, 3.4028235e38
learning_rate = number_type(
    float, lambda v: FLOAT32_TINY <= v <= FLOAT32_MAX,
    f'a positive number from {FLOAT32_TINY:.2g} to {FLOAT32_MAX:.2g} '
    '(float32)')
# A seed that both Python's random and MXNet accept.
seed_int = number_type(int, lambda v: 0 <= v < 2 ** 32,
                       'an integer from 0 to 2**32 - 1')


def max_tokens_int(text):
    """argparse type: a positive integer, or 'all' (-1, as in the book)."""
    if text == 'all':
        return -1
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'all', got {text!r}") from None


def fraction(text):
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f'must be at least 0 and below 1, got {text!r}')
    return value


def add_device(parser):
    parser.add_argument(
        '--device', choices=['cpu', 'gpu', 'auto'], default='auto',
        help='where to compute (default: auto, a GPU if MXNet sees one)')


def add_train_parser(subparsers):
    p = subparsers.add_parser(
        'train', help='train a model and write checkpoints',
        description='Train the scratch RNN of D2L 8.5 on a text.')
    d = DEFAULTS
    p.add_argument('--out', required=True, metavar='DIR',
                   help='checkpoint directory')
    p.add_argument('--text', metavar='FILE',
                   help='a UTF-8 text to learn (default: The Time Machine)')
    p.add_argument('--hidden', type=positive_int, metavar='N',
                   help=f'hidden units (default {d["num_hiddens"]})')
    p.add_argument('--lr', type=learning_rate,
                   help=f'learning rate (default {d["lr"]})')
    p.add_argument('--epochs', type=positive_int, metavar='N',
                   help='epochs in all, counting resumed ones '
                        f'(default {d["num_epochs"]})')
    p.add_argument('--batch-size', type=positive_int, metavar='N',
                   help='subsequences per minibatch '
                        f'(default {d["batch_size"]})')
    p.add_argument('--num-steps', type=positive_int, metavar='N',
                   help='time steps per subsequence '
                        f'(default {d["num_steps"]})')
    p.add_argument('--iter', choices=['sequential', 'random'],
                   help='sequential partitioning or random sampling '
                        '(default sequential)')
    p.add_argument('--max-tokens', type=max_tokens_int, metavar='N',
                   help="characters of the text to use, or 'all' "
                        f"(default {d['max_tokens']})")
    p.add_argument('--val-fraction', type=fraction, metavar='F',
                   help='the last fraction of those characters held out '
                        'for validation (default 0: none, as in the book); '
                        'the epoch of the lowest validation perplexity is '
                        'also kept, as a checkpoint in DIR/best')
    p.add_argument('--seed', type=seed_int, metavar='S',
                   help=f'random seed (default {d["seed"]})')
    add_device(p)
    p.add_argument('--checkpoint-every', type=positive_int, default=10,
                   metavar='N',
                   help='write a checkpoint every N epochs (default 10), '
                        'and at the end')
    p.add_argument('--resume', action='store_true',
                   help='continue the checkpoint in --out with its own '
                        'settings')
    p.add_argument('--force', action='store_true',
                   help='replace the checkpoint in --out with a new run')
    p.set_defaults(func=cmd_train)


def add_generate_parser(subparsers):
    p = subparsers.add_parser(
        'generate', help='continue a prefix with a trained model',
        description='Continue a prefix, greedily (the book) or by sampling. '
                    'The prefix is read as the text was: lower case, each '
                    'run of non-letters one space. Characters the model '
                    'never saw are refused.')
    p.add_argument('--checkpoint', required=True, metavar='DIR',
                   help='the --out directory of `d2lrnn train`')
    p.add_argument('--prefix', required=True, metavar='TEXT',
                   help='the text to continue')
    p.add_argument('-n', type=positive_int, default=50,
                   help='characters to generate (default 50)')
    p.add_argument('--sample', action='store_true',
                   help='draw each character from p**alpha instead of '
                        'taking the argmax')
    p.add_argument('--alpha', type=positive_float,
                   help='sharpness of sampling (default 1)')
    p.add_argument('--seed', type=seed_int, metavar='S',
                   help='make a sample repeatable')
    add_device(p)
    p.set_defaults(func=cmd_generate)


def add_evaluate_parser(subparsers):
    p = subparsers.add_parser(
        'evaluate', help="a model's perplexity on a text",
        description='Perplexity and bits per character (log2 of the '
                    'perplexity) on a text read sequentially from its start '
                    "(deterministic). Characters outside the model's "
                    'vocabulary count as <unk>, with a warning. To score '
                    'the part of the training text that training held '
                    'out, give that text and the same --val-fraction.')
    p.add_argument('--checkpoint', required=True, metavar='DIR',
                   help='the --out directory of `d2lrnn train`')
    p.add_argument('--text', required=True, metavar='FILE',
                   help='a UTF-8 text')
    p.add_argument('--max-tokens', type=max_tokens_int, metavar='N',
                   help="the first N characters of the text, or 'all' "
                        "(default all; with --val-fraction, the "
                        "checkpoint's --max-tokens)")
    p.add_argument('--val-fraction', type=fraction, metavar='F',
                   help='score only the last fraction F of those '
                        'characters, cut exactly where `train '
                        '--val-fraction F` cut them (default 0: all)')
    add_device(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_build_native(args):
    """Build the native RNN operators into the cache; print where."""
    from . import native
    try:
        path, compiled = native.build()
    except native.NativeBuildError as e:
        raise CLIError(f'the native operator could not be built ({e}); '
                       'FastRNNScratch will use the Python path') from None
    print(f"{'built' if compiled else 'already built'}: {path}")


def add_build_native_parser(subparsers):
    p = subparsers.add_parser(
        'build-native', help='build the native RNN operators ahead of time',
        description='Compile the native operators of FastRNNScratch (g++, '
                    'or $CXX) into the per-user cache ($D2LRNN_CACHE_DIR, '
                    'else $XDG_CACHE_HOME/d2lrnn, else ~/.cache/d2lrnn) '
                    'and print the library\'s path; they are otherwise '
                    'built on first use.')
    p.set_defaults(func=cmd_build_native)


def build_parser():
    """The parser of all the commands."""
    parser = Parser(
        prog=PROG,
        description='The character-level RNN of D2L 8.5 from the shell.')
    subparsers = parser.add_subparsers(title='commands', metavar='COMMAND',
                                       required=True, parser_class=Parser)
    add_train_parser(subparsers)
    add_generate_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_build_native_parser(subparsers)
    return parser


def main(argv=None):
    """Run one command; return the exit status.

    0 when done, 1 for bad input, 2 for a malformed command line, 130
    after Ctrl-C. Called as the process's own command line (`argv` None),
    a failed or interrupted command ends the process at once with that
    status (``end_process``) instead of returning.
    """
    status = run_command(argv)
    if argv is None and status != 0:
        end_process(status)
    return status


def end_process(status):
    """Flush what was printed and end the process now, with `status`.

    After an exception has left a minibatch of ``FastRNNScratch`` early,
    MXNet's own shutdown (``MXNotifyShutdown``, which waits for all its
    pending work) can block for ever, and a second Ctrl-C does not help.
    Everything worth keeping is already on disk (checkpoints are synced
    before they are named) and the lock goes with the process, so the
    process skips that shutdown.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing to flush to
            pass
    os._exit(status)


def run_command(argv):
    """Parse `argv` and run its command; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ckpt.CheckpointError) as e:
        print(f'{PROG}: error: {e}', file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as e:
        print(f'{PROG}: {e}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted.', file=sys.stderr)
        return EXIT_INTERRUPTED
    except mx.base.MXNetError as e:
        # Its message carries MXNet's C++ traceback; its last line is what
        # failed.
        print(f'{PROG}: error: MXNet failed: {last_line(e)}',
              file=sys.stderr)
        return EXIT_ERROR
    return 0


def last_line(error):
    """The last non-empty line of an error's message, without 'MXNetError:'."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else type(error).__name__
    return re.sub(r'^(MXNetError: )+', '', line.strip())

"""A training run's directory and lifecycle (book/command-line.ipynb).

One training run: its --out directory, lock, signals and checkpoints.

Training is the section's own loop (``train_epoch_ch8`` with ``sgd``),
epoch after epoch, with a checkpoint every few epochs, at the end and on
Ctrl-C. A checkpoint holds Python's ``random`` state, from which the
minibatch iterators draw, so a resumed run continues exactly where an
uninterrupted run of the same seed would be. With a validation part, the
epoch of the lowest validation perplexity is kept too, in ``best/``. A
model that is not finite is never saved.

Two runs cannot write to one --out at once: the second stops with an error
(a lock in --out that the first holds until it ends, killed or not).
"""
import contextlib
import fcntl
import math
import os
import random
import signal
import stat
import sys
import tempfile

import mxnet as mx
import numpy as onp
from mxnet import gluon, npx

from .. import checkpoint as ckpt
from .. import pretrained
from ..data import SeqDataLoader
from ..evaluate import evaluate_perplexity, seq_data_iter_eval
from ..predict import predict_ch8
from ..train import sgd, train_epoch_ch8
from .config import scoring_batch_size
from .errors import CLIError, Interrupted

LOCK = '.lock'  # in --out; not a checkpoint file, so saving never deletes it
BEST = 'best'  # in --out: the checkpoint of the best validation epoch


# ---------------------------------------------------------------- --out

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


# ---------------------------------------------------------------- the start

def start_fresh(config, vocab, ctx):
    """A new model from the seed: (model, epochs done, history)."""
    random.seed(config['seed'])  # the minibatch iterators draw from `random`
    mx.random.seed(config['seed'])  # get_params draws from MXNet's generator
    model = pretrained.new_model(len(vocab), config['num_hiddens'], ctx)
    # For the record: which class trained it.
    config['model'] = type(model).__name__
    return model, 0, []


def start_from(checkpoint, vocab, ctx, out):
    """The checkpoint's model and random state.

    Returns (model, epochs done, history).
    """
    check_same_vocab(vocab, checkpoint.vocab, out)
    model = pretrained.to_model(checkpoint, ctx)
    restore_rng_state(checkpoint.progress.get('python_random'), out)
    return (model, checkpoint.progress['epoch'],
            list(checkpoint.progress['history']))


def check_same_vocab(vocab, saved_vocab, out):
    """The text must give the vocabulary the checkpoint was trained with."""
    if vocab.idx_to_token != saved_vocab.idx_to_token:
        raise CLIError('the text now gives another vocabulary than the '
                       f'checkpoint in {out}; start afresh with --force.')


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


# ---------------------------------------------------------------- saving

def get_params_copy(model):
    """A CPU copy of the model's parameters by name, safe from training."""
    return {name: param.copy().as_in_ctx(npx.cpu())
            for name, param in zip(ckpt.PARAM_NAMES, model.params)}


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


def save_snapshot(out, snapshot, vocab, config, best_copy=False):
    """Write the snapshot as the checkpoint in `out`.

    Ctrl-C waits until it is written. A `best_copy` (the best epoch's, in
    ``best/``) does not count as the run's checkpoint.
    """
    try:
        with sigint_deferred():
            ckpt.save(out, snapshot.checkpoint(vocab, config))
            if not best_copy:
                snapshot.written = True  # before a deferred Ctrl-C is raised
    except OSError as e:
        kept = ('the previous one is kept' if ckpt.exists(out)
                else 'nothing was saved')
        raise CLIError(f'cannot write the checkpoint to {out} ({e.strerror}); '
                       f'{kept}.') from None


# ---------------------------------------------------------------- the epochs

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


def best_epoch(history):
    """The epoch of the lowest finite validation perplexity, or None.

    The earliest one wins a tie, so a later epoch that only equals it does
    not replace the best checkpoint.
    """
    scored = [(h['val_perplexity'], h['epoch']) for h in history
              if h.get('val_perplexity') is not None
              and math.isfinite(h['val_perplexity'])]
    return min(scored)[1] if scored else None


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
        steps = config['num_steps']
        self.valid = (None if valid is None else seq_data_iter_eval(
            valid, scoring_batch_size(len(valid), config['batch_size'],
                                      steps), steps))
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def updater(self, batch_size):
        sgd(self.model.params, self.config['lr'], batch_size)

    def train_and_score(self, epoch):
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
        history.append(self.train_and_score(epoch))
        self.snapshot = snapshot = Snapshot(epoch, self.model, history)
        if best_epoch(history) == epoch:
            save_snapshot(self.out / BEST, snapshot, self.vocab,
                          self.config, best_copy=True)
        bar.set_postfix(epoch_postfix(history[-1]), refresh=False)
        bar.update()
        if epoch % self.every == 0 or epoch == self.config['num_epochs']:
            save_snapshot(self.out, snapshot, self.vocab, self.config)
            self.saved = epoch


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

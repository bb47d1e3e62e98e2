"""The commands train, generate, evaluate (book/command-line.ipynb).

What each command does: check its input, then hand off.

``train`` checks everything (configuration, text, memory, --out) before it
writes anything, then leaves the epochs to ``run.Run``; ``generate``
continues a prefix (D2L 8.5.4); ``evaluate`` scores a text, streaming it
from its file; ``build-native`` compiles the native operator.
"""
import math
import sys
from pathlib import Path

from mxnet import np, npx

from .. import checkpoint as ckpt
from .. import pretrained
from ..checks import check_positive, is_integer
from ..data import clean
from ..evaluate import (bits_per_char, evaluate_perplexity,
                        seq_data_stream_eval, split_train_valid_test)
from ..predict import predict_ch8
from ..textfile import TextReader, scan_text
from ..utils import gpu_problem, try_gpu
from .config import (check_model_size, check_training_memory, holdout_split,
                     scoring_batch_size, split_for_validation, train_config)
from .errors import PROG, CLIError
from .run import (BEST, Run, check_out_dir, ensure_writable, manifest_bytes,
                  report_training, start_fresh, start_from, training_lock)


def choose_ctx(device):
    """``cpu``, ``gpu`` (refused if none runs MXNet) or ``auto``.

    ``auto`` is ``try_gpu()``: a GPU if one runs MXNet's kernels, else the
    CPU (saying why in one line when a GPU was found but cannot run them).
    """
    if device == 'cpu':
        return npx.cpu()
    if device == 'auto':
        return try_gpu()
    if npx.num_gpus() == 0:
        raise CLIError('--device gpu, but MXNet sees no GPU here; '
                       'use --device cpu or auto.')
    problem = gpu_problem(0)
    if problem:
        raise CLIError(f'--device gpu, but {problem}; use --device cpu.')
    return npx.gpu(0)


# ---------------------------------------------------------------- train

def cmd_train(args):
    """Check everything, then train afresh or resume, saving as we go."""
    out = Path(args.out)
    check_out_dir(out, args)
    read = manifest_bytes(out)
    checkpoint = ckpt.load(out) if args.resume else None
    config, text = train_config(args, checkpoint)
    check_training_memory(text.length, config)
    ctx = choose_ctx(args.device)
    vocab = text.vocab()
    corpus = text.ids(vocab)
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


# ---------------------------------------------------------------- generate

def cmd_generate(args):
    """`d2lrnn generate`: print a prefix and its continuation (D2L 8.5.4)."""
    if not args.sample and (args.alpha is not None or args.seed is not None):
        raise CLIError(
            '--alpha and --seed choose how to sample: add --sample.')
    checkpoint = ckpt.load(args.checkpoint)
    prefix = read_prefix(args.prefix, checkpoint.vocab)
    ctx = choose_ctx(args.device)
    model = WithoutUnk(pretrained.to_model(checkpoint, ctx),
                       len(checkpoint.vocab), checkpoint.vocab.unk, ctx)
    alpha = 1.0 if args.alpha is None else args.alpha
    print(predict_ch8(prefix, args.n, model, checkpoint.vocab, ctx,
                      sample=args.sample, alpha=alpha, seed=args.seed))


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


# ---------------------------------------------------------------- evaluate

def cmd_evaluate(args):
    """`d2lrnn evaluate`: perplexity and bits per character on a text.

    The text is read twice from its file, never held: once to count its
    characters, then to score them, minibatch by minibatch. With
    ``--val-fraction F`` only the last F of the characters are scored, cut
    as ``train --val-fraction F`` cut them (``holdout_split``); then
    ``--max-tokens`` defaults to the checkpoint's, so that on the training
    text the scored characters are exactly its validation part. With
    ``--split`` only that part of ``split_train_valid_test`` is scored.
    """
    if args.split and args.val_fraction:
        raise CLIError('--split and --val-fraction both choose the part to '
                       'score; give one.')
    checkpoint = ckpt.load(args.checkpoint)
    config, vocab = checkpoint.config, checkpoint.vocab
    try:
        check_positive(batch_size=config.get('batch_size'),
                       num_steps=config.get('num_steps'))
    except ValueError:
        raise CLIError(
            f'the checkpoint in {args.checkpoint} has no valid batch_size '
            'and num_steps in its config, which scoring needs; train '
            'again.') from None
    text = scan_text(args.text, evaluate_max_tokens(args, config), keep=False)
    scored, where = scored_part(text.length, args)
    num_steps = config['num_steps']
    batch_size = scoring_batch_size(len(scored), config['batch_size'],
                                    num_steps)
    with TextReader(text) as reader:
        unknown = unknown_chars(reader, text, scored, vocab)
        if unknown:
            print(f'{PROG}: warning: {args.text} has characters the model '
                  f'never saw, scored as <unk>: {"".join(unknown)!r}',
                  file=sys.stderr)
        ctx = choose_ctx(args.device)
        model = pretrained.to_model(checkpoint, ctx)
        ids = reader.ids(vocab)
        batches = seq_data_stream_eval(
            lambda start, stop: ids(scored.start + start,
                                    scored.start + stop),
            len(scored), batch_size, num_steps)
        ppl = evaluate_perplexity(model, batches, ctx)
    print(f'perplexity {ppl:.2f}, {bits_per_char(ppl):.2f} bits per '
          f'character, on {where} of {args.text}')


def evaluate_max_tokens(args, config):
    """--max-tokens, or its default: all, or the checkpoint's with a split."""
    if args.max_tokens is not None:
        return args.max_tokens
    saved = config.get('max_tokens')
    if args.val_fraction and is_integer(saved):
        return saved
    return -1


def scored_part(length, args):
    """(positions scored, as a range; how the output line names them).

    All `length` characters; the last --val-fraction of them; or the
    --split part of ``split_train_valid_test``.
    """
    everything = range(length)
    if args.val_fraction:
        scored = holdout_split(everything, args.val_fraction)[1]
        return scored, f'the last {len(scored)} of {length} characters'
    if args.split:
        try:
            _, valid, test = split_train_valid_test(everything)
        except ValueError:
            raise CLIError(f'{length} characters are too few to split into '
                           'training, validation and test parts; give a '
                           'longer text or a larger --max-tokens.') from None
        scored = valid if args.split == 'valid' else test
        return scored, (f'the {args.split} part ({len(scored)} of {length} '
                        'characters)')
    return everything, f'{length} characters'


def unknown_chars(reader, text, scored, vocab):
    """The characters among those `scored` that `vocab` lacks, sorted."""
    if set(text.counts) <= set(vocab.token_to_idx):
        return []  # none in the whole text: no need to read it again
    counts = reader.counts(scored.start, scored.stop)
    return sorted(set(counts) - set(vocab.token_to_idx))


# ---------------------------------------------------------------- build

def cmd_build_native(args):
    """Build the native RNN operators into the cache; print where."""
    from .. import native
    try:
        path, compiled = native.build()
    except native.NativeBuildError as e:
        raise CLIError(f'the native operator could not be built ({e}); '
                       'FastRNNScratch will use the Python path') from None
    print(f"{'built' if compiled else 'already built'}: {path}")

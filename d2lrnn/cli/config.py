"""A run's checked configuration (book/command-line.ipynb).

A training run's configuration, each value checked before any work.

A new run's configuration is the options over ``DEFAULTS``; a resumed
run's is its checkpoint's, which must hold valid values, a text that still
reads as it did, and only the options it was trained with. Before anything
is written, the model must fit in MXNet's arrays and memory, the text in
memory, and the text must fill a minibatch.
"""
import math
import re
from pathlib import Path

from .. import checkpoint as ckpt
from ..checks import (check_corpus_length, check_fraction, check_positive,
                      check_that, is_integer, is_real)
from ..evaluate import split_corpus
from ..memory import available_memory, physical_memory
from ..textfile import describe_text, scan_text
from .errors import CLIError


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
# The learning rate reaches MXNet as a float32 scalar, which refuses
# numbers outside float32's normal range (say 1e-310).
FLOAT32_TINY, FLOAT32_MAX = 1.1754944e-38, 3.4028235e38
check_learning_rate = check_that(
    lambda v: is_real(v) and FLOAT32_TINY <= v <= FLOAT32_MAX,
    'be a positive number')
# A seed that both Python's random and MXNet accept.
check_seed = check_that(lambda v: is_integer(v) and 0 <= v < 2 ** 32,
                        'be an integer from 0 to 2**32 - 1')
# What each configuration value must be: d2lrnn.checks' rule where it has
# one, as the functions of the book check their arguments.
CONFIG_CHECKS = {
    'num_hiddens': check_positive, 'num_epochs': check_positive,
    'batch_size': check_positive, 'num_steps': check_positive,
    'lr': check_learning_rate,
    'use_random_iter': check_that(lambda v: isinstance(v, bool),
                                  'be true or false'),
    'max_tokens': check_that(lambda v: is_integer(v) and (v > 0 or v == -1),
                             'be an integer'),
    'seed': check_seed,
    'val_fraction': check_fraction,
    'text': check_that(lambda v: v is None or isinstance(v, str),
                       'be a path or null'),
    'text_sha256': check_that(lambda v: isinstance(v, str), 'be a SHA-256'),
}
# Copies of the parameters a run holds: the parameters, their gradients,
# the snapshot of the last epoch and the one being saved.
PARAM_COPIES = 4
# Memory a run takes per character it trains on: the ids as a list, the
# training and validation parts cut from it, the minibatch arrays of an
# epoch. On 20 MB, bench/bench_memory.py measures 23 bytes per character
# of the file without a validation part and 33 with --val-fraction 0.1
# (AMD EPYC); the larger, rounded up.
TRAIN_BYTES_PER_CHAR = 36


def train_config(args, checkpoint):
    """(The run's configuration, its text as a ``ScannedText``).

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
        text = scan_text(args.text, config['max_tokens'])
        path = None if args.text is None else str(Path(args.text).resolve())
        return {**config, 'text': path, 'text_sha256': text.sha256}, text
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
    text = resumed_text(args, saved)
    check_epochs_left(saved, checkpoint.progress.get('epoch'))
    return saved, text


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
            is_integer(epoch) and isinstance(history, list)
            and len(history) == epoch and all(map(valid_record, history))
            and 'python_random' in progress):
        what = (f'its config lacks {", ".join(missing)}' if missing
                else f'its config is not valid: {wrong}' if wrong
                else 'its progress is incomplete')
        raise CLIError(f'the checkpoint in {out} cannot be resumed ({what}); '
                       'start afresh with --force.')


def first_bad_value(config):
    """'KEY must be ..., got VALUE' for the first bad value, or None."""
    for key, check in CONFIG_CHECKS.items():
        try:
            check(**{key: config[key]})
        except ValueError as e:
            return str(e).removesuffix('.')
    return None


def valid_record(record):
    """One epoch of a progress file's history, as a run records it."""
    return (isinstance(record, dict) and is_integer(record.get('epoch'))
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


def check_training_memory(num_chars, config):
    """Refuse, before any work, a text too long to train on in memory."""
    needed = TRAIN_BYTES_PER_CHAR * num_chars
    available = available_memory()
    if available is not None and needed > available:
        max_tokens = config['max_tokens']
        raise CLIError(
            f'--max-tokens {"all" if max_tokens == -1 else max_tokens} '
            f'keeps {num_chars:,} characters of '
            f'{describe_text(config["text"])}; training on them needs about '
            f'{in_units(needed)} ({TRAIN_BYTES_PER_CHAR} bytes per '
            f'character), more than the {in_units(available)} of memory '
            'available here; give a smaller --max-tokens.')


def in_units(size):
    """A number of bytes for people: '3.2 GB', or '40 MB' below a GB."""
    return f'{size / 1e9:.1f} GB' if size >= 1e9 else f'{size / 1e6:.0f} MB'


def check_model_size(vocab_size, config):
    """Refuse, before any work, a model that MXNet or memory cannot hold."""
    hidden = config['num_hiddens']
    shapes = ckpt.param_shapes(vocab_size, hidden)
    numbers = sum(math.prod(shape) for shape in shapes.values())
    largest = max(shapes, key=lambda name: math.prod(shapes[name]))
    limit = ckpt.MAX_ARRAY_SIZE  # numbers per array in MXNet's usual build
    if math.prod(shapes[largest]) > limit:
        raise CLIError(
            f'--hidden {hidden} makes {largest} a {shapes[largest]} array of '
            f'{math.prod(shapes[largest]):,} numbers, more than MXNet\'s '
            f'limit of {limit:,} per array; choose at most '
            f'{math.isqrt(limit)} hidden units.')
    # Its checkpoint must load again: MXNet 1.9 parses at most 4 GiB of
    # parameters from memory.
    saved = ckpt.params_bytes(vocab_size, hidden) + ckpt.PARAMS_OVERHEAD
    if saved > ckpt.MAX_LOADABLE_PARAMS_BYTES:
        most = max(h for h in range(1, math.isqrt(limit) + 1, 64)
                   if ckpt.params_bytes(vocab_size, h) + ckpt.PARAMS_OVERHEAD
                   <= ckpt.MAX_LOADABLE_PARAMS_BYTES)
        raise CLIError(
            f'--hidden {hidden} makes a checkpoint of {saved / 2 ** 30:.1f} GiB, '
            'more than the 4 GiB MXNet 1.9 can load again; choose at most '
            f'about {most} hidden units.')
    needed = PARAM_COPIES * 4 * numbers  # float32
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise CLIError(
            f'--hidden {hidden} needs about {needed / 1e9:.1f} GB for '
            f'{numbers:,} parameters (float32, with gradients and copies), '
            f'more than the {memory / 1e9:.1f} GB of memory here; choose '
            'fewer hidden units.')


def holdout_split(corpus, fraction):
    """(the first ids, the last `fraction` of them), or (corpus, None).

    The one cut that `train --val-fraction` and `evaluate --val-fraction`
    both make (``evaluate.split_corpus`` at 1 - `fraction`), so that
    evaluate scores exactly the characters training held out. `corpus` is
    a list of ids, or a range of positions.
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


def scoring_batch_size(num_chars, batch_size, num_steps):
    """`batch_size`, or fewer rows if `num_chars` cannot fill it, to score.

    Scoring reads the text once from its start (``seq_data_iter_eval``):
    a short text is scored in fewer, longer rows rather than refused.
    """
    rows = min(batch_size, (num_chars - 1) // num_steps)
    if rows < 1:
        raise CLIError(f'{num_chars} characters are too few to score with '
                       f'--num-steps {num_steps}: at least {num_steps + 1} '
                       'are needed.')
    return rows

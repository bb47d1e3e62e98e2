"""Options of the `d2lrnn` command (book/command-line.ipynb).

The command line's grammar: its commands, options and their types.

A malformed command line ends with one line, ``d2lrnn: error: ...``, and
exit status 2; each number is checked as it is read.
"""
import argparse

from ..checks import (check_fraction, check_positive, check_positive_number,
                      check_that, is_integer)
from .commands import cmd_build_native, cmd_evaluate, cmd_generate, cmd_train
from .config import (DEFAULTS, FLOAT32_MAX, FLOAT32_TINY,
                     check_learning_rate, check_seed)
from .errors import EXIT_USAGE, PROG

# The most characters `generate -n` makes in one call: at about 2,000 a
# second on a 2-core CPU, minutes; more would run for hours, showing nothing
# until the end.
MAX_GENERATE = 1_000_000

class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: ``d2lrnn: error: ...``."""

    def error(self, message):
        self.exit(EXIT_USAGE,
                  f'{PROG}: error: {message} (see `{self.prog} --help`)\n')


def argument_type(convert, check, wanted):
    """An argparse type: `convert` the text, then `check` the value.

    `check` is one of ``d2lrnn.checks``, or of ``config`` for a rule they
    lack: the options are checked as the book's functions check their
    arguments, and as a resumed configuration is checked.
    """
    def parse(text):
        try:
            value = convert(text)
            check(value=value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'must be {wanted}, got {text!r}') from None
        return value
    return parse


positive_int = argument_type(int, check_positive, 'a positive integer')
positive_float = argument_type(float, check_positive_number,
                               'a positive number')
learning_rate = argument_type(
    float, check_learning_rate,
    f'a positive number from {FLOAT32_TINY:.2g} to {FLOAT32_MAX:.2g} '
    '(float32)')
seed_int = argument_type(int, check_seed, 'an integer from 0 to 2**32 - 1')
fraction = argument_type(float, check_fraction, 'at least 0 and below 1')
generate_count = argument_type(
    int, check_that(lambda n: is_integer(n) and 0 < n <= MAX_GENERATE,
                    f'be a positive integer up to {MAX_GENERATE:,}'),
    f'a positive integer up to {MAX_GENERATE:,}')


def max_tokens_int(text):
    """argparse type: a positive integer, or 'all' (-1, as in the book)."""
    if text == 'all':
        return -1
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or 'all', got {text!r}") from None


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
    p.add_argument('-n', type=generate_count, default=50,
                   help=f'characters to generate (default 50, at most '
                        f'{MAX_GENERATE:,})')
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
    p.add_argument('--split', choices=['valid', 'test'],
                   help='score only that part of those characters, cut '
                        'into training, validation and test parts '
                        '(80/10/10, contiguous) as the book cuts its text '
                        '(d2lrnn.split_train_valid_test)')
    add_device(p)
    p.set_defaults(func=cmd_evaluate)


def add_build_native_parser(subparsers):
    p = subparsers.add_parser(
        'build-native', help='build the native RNN operators ahead of time',
        description='Compile the native operators of FastRNNScratch (g++, '
                    'or $CXX) into the per-user cache ($D2LRNN_CACHE_DIR, '
                    'else $XDG_CACHE_HOME/d2lrnn, else ~/.cache/d2lrnn) '
                    'and print the library\'s path; they are otherwise '
                    'built on first use.')
    p.set_defaults(func=cmd_build_native)

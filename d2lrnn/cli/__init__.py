"""The `d2lrnn` command (book/command-line.ipynb).

The command line: ``d2lrnn train``, ``generate``, ``evaluate``.

::

    d2lrnn train --epochs 50 --out runs/tm    # trains on The Time Machine
    d2lrnn generate --checkpoint runs/tm --prefix 'time traveller' -n 50
    d2lrnn evaluate --checkpoint runs/tm --text some_book.txt

One room per file: ``parser`` (the grammar), ``commands`` (what each
command does), ``config`` (a run's settings, checked), ``run`` (the
training run: lock, signals, checkpoints); texts are read by
``d2lrnn.textfile``, checkpoints by ``d2lrnn.checkpoint``.

Bad input ends with one line, ``d2lrnn: error: ...``, on stderr and exit
status 1 (2 for a malformed command line, 130 after Ctrl-C); nothing is
written before the input has been checked, so an existing checkpoint
survives. After an error or Ctrl-C the process ends at once (see
``end_process``).
"""
import os
import re
import sys

import mxnet as mx

from .. import checkpoint as ckpt
from ..textfile import TextFileError
from .errors import (EXIT_ERROR, EXIT_INTERRUPTED, PROG, CLIError,
                     Interrupted)
from .parser import build_parser


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


def run_command(argv):
    """Parse `argv` and run its command; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, TextFileError, ckpt.CheckpointError) as e:
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

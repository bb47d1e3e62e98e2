"""The ``d2lrnn`` command's entry point: a Ctrl-C while it starts ends it.

The console script imports its function before calling it. Had it been
``d2lrnn.cli.main``, that import (the package, and with it MXNet: seconds
on a slow machine) would run outside any handler, and a Ctrl-C in those
seconds would print a traceback, or be lost inside MXNet's import code.
Here a handler is set first; the import runs under it; then
``d2lrnn.cli.main`` takes over with handlers of its own.

(``python -m d2lrnn`` imports the package before anything of it runs, so
only the installed command is covered.)
"""
import os
import signal
import sys


def main():
    pressed = []

    def on_sigint(signum, frame):
        pressed.append(signum)  # noted, in case the exception is swallowed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        from d2lrnn.cli import main as cli_main
    except KeyboardInterrupt:
        pressed.append(signal.SIGINT)
    if pressed:
        print('d2lrnn: interrupted while starting; nothing was done.',
              file=sys.stderr, flush=True)
        os._exit(130)  # not sys.exit: MXNet's shutdown may block (d2lrnn.cli)
    signal.signal(signal.SIGINT, previous)
    return cli_main()

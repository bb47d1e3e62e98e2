"""Exit statuses and error messages (book/command-line.ipynb).

How a command ends when it cannot finish: its exit status and messages."""

PROG = 'd2lrnn'
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CLIError(Exception):
    """Bad input: the message says what is wrong and what to do.

    No traceback is shown.
    """


class Interrupted(Exception):
    """Training stopped by Ctrl-C after saving.

    The message says where the checkpoint is and how to go on.
    """

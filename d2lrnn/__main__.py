"""The command line's entry point (book/command-line.ipynb).

``python -m d2lrnn``: the command line of ``d2lrnn.cli``."""
from .cli import main

raise SystemExit(main())

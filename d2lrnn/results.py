"""Where the book's committed results live, in a clone of the repository.

The scripts of ``experiments/`` write the results the book's pages discuss
(held-out perplexities, the shipped model's training); those of ``bench/``
measure speed and memory. Each writes JSON into its folder's ``results/``,
and the notebooks read it back with ``load``. An installed package has no
such folders: ``load`` then says to work from a clone.
"""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / 'experiments' / 'results'
BENCH = REPO / 'bench' / 'results'


def path(name):
    """The committed results file `name` (``'best_rnn.json'``...), wherever it is."""
    for folder in (EXPERIMENTS, BENCH):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f'no results file {name!r} in {EXPERIMENTS} or {BENCH}: the committed '
        'results come with a clone of the repository (git clone), not with '
        'the installed package.')


def load(name):
    """The JSON of the committed results file `name`."""
    return json.loads(path(name).read_text())

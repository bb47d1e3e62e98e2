"""The committed results the pages read (book/exercises/).

Where the book's committed results live, and what each records of its run.

The scripts of ``experiments/`` write the results the book's pages discuss
(held-out perplexities, the shipped model's training); those of ``bench/``
measure speed and memory. Each writes JSON into its folder's ``results/``,
and the notebooks read it back with ``load``. An installed package has no
such folders: ``load`` then says to work from a clone. Every such script
seeds its runs with ``seed_all`` and describes its machine with
``machine``: a figure is read with the processor that made it.
"""
import datetime
import json
import os
import platform
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / 'experiments' / 'results'
BENCH = REPO / 'bench' / 'results'
CPUINFO = Path('/proc/cpuinfo')
SIMD_FLAGS = ('avx512f', 'avx2', 'fma')


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


def _cpuinfo_lines():
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:  # not Linux
        return []


def cpu_model():
    """The processor's name (``lscpu``'s 'Model name'), else 'unknown'."""
    for line in _cpuinfo_lines():
        if line.startswith('model name'):
            return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown'


def machine():
    """What a figure was measured on: processor, cores, versions, threads,
    date and load; a JSON-ready dict."""
    import mxnet as mx
    import numpy as onp
    flags = next((line for line in _cpuinfo_lines()
                  if line.startswith('flags')), '').split()
    return {'cpu_model': cpu_model(), 'cores': os.cpu_count(),
            'simd': [f for f in SIMD_FLAGS if f in flags],
            'mxnet_version': mx.__version__,
            'numpy_version': onp.__version__,
            'python_version': platform.python_version(),
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            'load_average_at_start': list(os.getloadavg())}


def seed_all(seed):
    """Seed Python's generator (minibatch offsets) and MXNet's (initial
    parameters, dropout masks), so that a run repeats exactly."""
    import mxnet as mx
    random.seed(seed)
    mx.random.seed(seed)

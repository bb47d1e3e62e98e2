"""Helpers the pages use, from book/01-data.ipynb to 07-training.

Helpers the section borrows from earlier chapters.

A device, a timer, running sums and perplexity; and ``show_source``, which
displays this package's code in the book.

``try_gpu`` differs from the original in one way: a GPU that MXNet reports
must also run a kernel. MXNet 1.9.1's CUDA wheels carry machine code for
compute capability 5.0 to 8.6 (8.9 runs the 8.6 code) and no PTX, so on a
Hopper GPU (9.0) or newer every kernel fails with "no kernel image is
available for execution on the device". ``try_gpu`` then returns the CPU
and says why in one line on stderr.
"""
import functools
import math
import os
import subprocess
import sys
import time

from mxnet import np, npx
from mxnet.base import MXNetError

from .checks import check_nonnegative


def try_gpu(i=0):
    """gpu(i) if it exists and runs MXNet, otherwise cpu() (D2L 5.6)."""
    check_nonnegative(i=i)
    return _working_gpu(i) if npx.num_gpus() >= i + 1 else npx.cpu()


@functools.lru_cache(maxsize=None)  # checked, and reported, once a process
def _working_gpu(i):
    """gpu(i) if one small operation runs on it; else cpu(), saying why."""
    problem = gpu_problem(i)
    if problem:
        print(f'd2lrnn: {problem}; using the CPU instead.', file=sys.stderr)
        return npx.cpu()
    return npx.gpu(i)


def gpu_problem(i=0):
    """Why gpu(i) cannot run MXNet, in one line, or None if it can."""
    gpu = npx.gpu(i)
    try:
        _run_one_operation(gpu)
    except MXNetError as e:
        last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        name = _gpu_name(i)
        where = f'{gpu} ({name})' if name else str(gpu)
        return f'{where} cannot run MXNet: {last.strip().rstrip(".")}'
    return None


def _run_one_operation(ctx):
    # asnumpy() waits for the result: MXNet runs operations asynchronously,
    # so an error would otherwise surface later, somewhere else.
    (np.ones(2, ctx=ctx) * 2).asnumpy()


def _gpu_name(i):
    """The GPU's name and compute capability from nvidia-smi, or ''."""
    # nvidia-smi numbers all GPUs; CUDA, only those CUDA_VISIBLE_DEVICES lists.
    visible = os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',')
    gpu_id = visible[i].strip() if i < len(visible) and visible[i] else i
    try:
        out = subprocess.run(
            ['nvidia-smi', f'--id={gpu_id}', '--format=csv,noheader',
             '--query-gpu=name,compute_cap'],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ''
    name, _, cap = out.strip().partition(', ')
    return f'{name}, compute capability {cap}' if cap else name


class Timer:
    """Record several running times (D2L 2.4)."""

    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        self.tik = time.perf_counter()

    def stop(self):
        """Stop the timer; record and return the seconds since start."""
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self):
        return sum(self.times) / len(self.times)

    def sum(self):
        return sum(self.times)

    def cumsum(self):
        total, sums = 0.0, []
        for t in self.times:
            total += t
            sums.append(total)
        return sums


def perplexity(loss_sum, num_tokens):
    """exp of the mean cross-entropy per token (D2L 8.4).

    ``math.inf`` where that overflows a float.
    """
    try:
        return math.exp(loss_sum / num_tokens)
    except OverflowError:  # a mean loss above ~709.78 nats
        return math.inf


class Accumulator:
    """Sum `n` quantities over many additions (D2L 3.6)."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def show_source(*objs):
    """The source of functions or classes, for a notebook to highlight.

    The book's notebooks import their code from d2lrnn instead of keeping
    a copy; this shows that code where the text explains it.
    """
    import inspect

    from IPython.display import Code
    return Code('\n\n'.join(inspect.getsource(obj) for obj in objs),
                language='python')

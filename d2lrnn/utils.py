"""Helpers the section borrows from earlier chapters.

A device, a timer, running sums and perplexity; and ``show_source``, which
displays this package's code in the book.
"""
import math
import time

from mxnet import npx


def try_gpu(i=0):
    """gpu(i) if it exists, otherwise cpu() (D2L 5.6)."""
    return npx.gpu(i) if npx.num_gpus() >= i + 1 else npx.cpu()


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

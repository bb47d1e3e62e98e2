"""Held-out perplexity (book/exercises/ex2-perplexity.ipynb).

Held-out evaluation: perplexity on text the model did not train on.

The section reports only training perplexity, on 10,000 characters that a
512-unit model can memorise. Here the book is cut in two::

    corpus:  |<-------- training text -------->|<-- validation text -->|
                                      train_fraction

and the model is scored on the validation part, read sequentially from its
first character with the state carried across minibatches, so that every
evaluation of the same model on the same text gives the same number. A
score is a perplexity, or the bits per character it amounts to.
"""
import math

import numpy as onp
from mxnet import gluon, np

from .checks import check_open_fraction, check_positive, is_real
from .data import _sequential_batches
from .utils import Accumulator, perplexity


def split_corpus(corpus, train_fraction=0.9):
    """Cut `corpus` into (training ids, validation ids).

    The cut falls at `train_fraction` of its length.
    """
    check_open_fraction(train_fraction=train_fraction)
    cut = int(len(corpus) * train_fraction)
    train, valid = corpus[:cut], corpus[cut:]
    if not train or not valid:
        raise ValueError(
            f'a corpus of {len(corpus)} tokens is too short to split '
            f'at {train_fraction}: one part would be empty.')
    return train, valid


def split_train_valid_test(corpus, valid_fraction=0.1, test_fraction=0.1):
    """Cut `corpus` into contiguous (training, validation, test) ids.

    The book's protocol for every held-out figure: choose settings, epochs
    and count-model orders on the validation part, report once on the test
    part. With the defaults the parts are 80/10/10 and the test part is
    exactly what ``split_corpus(corpus, 0.9)`` holds out (and ``d2lrnn
    evaluate --val-fraction 0.1`` scores)::

        corpus: |<------ training ------>|<- validation ->|<- test ->|
    """
    if not (is_real(valid_fraction) and is_real(test_fraction)
            and 0 < valid_fraction and 0 < test_fraction
            and valid_fraction + test_fraction < 1):
        raise ValueError(
            'valid_fraction and test_fraction must be positive and sum to '
            f'less than 1, got {valid_fraction!r} and {test_fraction!r}.')
    rest, test = split_corpus(corpus, 1 - test_fraction)
    # On the whole corpus's length, not the rest's; rounded first, so that
    # 1 - 0.3 - 0.2 (0.4999...) cuts 10 tokens at 5, not 4.
    cut = int(round(len(corpus) * (1 - test_fraction - valid_fraction), 6))
    train, valid = rest[:cut], rest[cut:]
    if not train or not valid:
        raise ValueError(
            f'a corpus of {len(corpus)} tokens is too short to split into '
            'three non-empty parts.')
    return train, valid, test


def seq_data_iter_eval(corpus, batch_size, num_steps):
    """Sequential minibatches from the first token, no random offset.

    Like ``seq_data_iter_sequential`` but repeatable; the tail that does
    not fill a (batch_size, num_steps) block is left out.
    """
    check_eval_length(len(corpus), batch_size, num_steps)
    return list(_sequential_batches(corpus, batch_size, num_steps, offset=0))


def check_eval_length(num_tokens, batch_size, num_steps):
    """Raise unless `num_tokens` fill one (batch_size, num_steps) minibatch."""
    check_positive(batch_size=batch_size, num_steps=num_steps)
    if (num_tokens - 1) // batch_size < num_steps:
        raise ValueError(
            f'the text has {num_tokens} tokens, too few to score with '
            f'batch_size={batch_size} and num_steps={num_steps}: it needs '
            f'at least {batch_size * num_steps + 1}. '
            'Use a longer text or smaller batch_size and num_steps.')


def seq_data_stream_eval(read_ids, num_tokens, batch_size, num_steps):
    """``seq_data_iter_eval``'s minibatches, made one at a time.

    For a corpus too large to hold: `read_ids(start, stop)` yields the ids
    ``corpus[start:stop]`` of a corpus of `num_tokens` ids in pieces (NumPy
    integer arrays). The minibatches are those that
    ``seq_data_iter_eval(corpus, batch_size, num_steps)`` lists, value for
    value and in order; only a piece of each row is held at a time.
    """
    check_eval_length(num_tokens, batch_size, num_steps)
    # Row i of every minibatch continues row i of the one before: the
    # corpus is read as batch_size streams, each of row_length ids.
    row_length = (num_tokens - 1) // batch_size
    num_batches = row_length // num_steps
    rows = [_Stream(read_ids(i * row_length,
                             i * row_length + num_batches * num_steps + 1))
            for i in range(batch_size)]
    for _ in range(num_batches):
        # Each row's next num_steps ids and the one after, for the labels.
        block = onp.stack([row.take(num_steps + 1, num_steps)
                           for row in rows])  # (batch_size, num_steps + 1)
        # float32, as np.array makes of a list of ids
        yield (np.array(block[:, :-1], dtype='float32'),
               np.array(block[:, 1:], dtype='float32'))


class _Stream:
    """The ids of one row of minibatches, read piece by piece."""

    def __init__(self, pieces):
        self.pieces = iter(pieces)
        self.buffer = None  # of the pieces' dtype, once one is read

    def take(self, size, step):
        """The next `size` ids; the stream then moves on by `step`."""
        while self.buffer is None or len(self.buffer) < size:
            piece = next(self.pieces, None)
            if piece is None:
                have = 0 if self.buffer is None else len(self.buffer)
                raise ValueError(f'read_ids yielded fewer ids than asked for '
                                 f'(at least {size - have} more).')
            self.buffer = (piece if self.buffer is None
                           else onp.concatenate([self.buffer, piece]))
        ids = self.buffer[:size]
        self.buffer = self.buffer[step:]
        return ids


def scored_minibatches(model, data_iter, ctx, use_random_iter=False):
    """Run `model` over `data_iter` without training; yield ``(py, y)``.

    `py` is the model's output for a minibatch, shaped
    (num_steps * batch_size, vocab_size), and `y` the labels in the same
    order (``Y.T.reshape(-1)``), both on `ctx`. The state starts at zero
    and, unless `use_random_iter`, is carried from one minibatch to the
    next, as in training.
    """
    state = None
    for X, Y in data_iter:
        if state is None or use_random_iter:
            state = model.begin_state(batch_size=X.shape[0], ctx=ctx)
        y = Y.T.reshape(-1)  # (num_steps * batch_size,)
        py, state = model(X.as_in_ctx(ctx), state)
        yield py, y.as_in_ctx(ctx)


def evaluate_perplexity(model, data_iter, ctx, use_random_iter=False):
    """Perplexity of `model` over the minibatches of `data_iter`, no training.

    The state starts at zero and, unless `use_random_iter`, is carried from
    one minibatch to the next, as in training (``scored_minibatches``).
    """
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    metric = Accumulator(2)  # sum of losses over tokens, number of tokens
    for py, y in scored_minibatches(model, data_iter, ctx, use_random_iter):
        metric.add(loss(py, y).sum(), y.size)
    if metric[1] == 0:
        raise ValueError(
            'the data iterator yielded no minibatch: nothing to evaluate.')
    return perplexity(metric[0], metric[1])


def bits_per_char(ppl):
    """Bits per character of a character model with perplexity `ppl`.

    log2(ppl): the average number of bits an ideal coder would need.
    """
    return math.log2(ppl)


def corpus_perplexity(model, corpus, batch_size, num_steps, ctx):
    """Perplexity of `model` on the ids `corpus`, read in order.

    ``evaluate_perplexity`` over ``seq_data_iter_eval``: the reading every
    held-out figure of the book uses, the same number for the same model on
    the same text.
    """
    return evaluate_perplexity(
        model, seq_data_iter_eval(corpus, batch_size, num_steps), ctx)

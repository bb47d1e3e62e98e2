"""Reading the book into minibatches (book/01-data.ipynb).

From a book to minibatches: reading, tokens, vocabulary, corpus, iterators.

This is the pipeline of D2L section 8.3 that section 8.5 builds on::

    timemachine.txt ─read_time_machine─▶ lines of letters and spaces
        "the time machine by h g wells "
    ─tokenize(token='char')─▶ [['t','h','e',' ', ...], ...]
    ─Vocab─▶ <unk>=0, ' '=1, 'e'=2, 't'=3, ...
        (28 tokens, most frequent first)
    ─load_corpus_time_machine─▶ corpus = [3, 9, 2, 1, 3, 5, ...]
        (the first 10,000 ids)

and then, for batch_size=2, num_steps=3, the two ways of cutting the
corpus::

    corpus (after a random offset):  a b c d e f g h i j k l m

    sequential:  stream 0:  a b c | d e f    X1 = [[a b c],  X2 = [[d e f],
                 stream 1:  g h i | j k l          [g h i]]        [j k l]]
                 (row i of X2 continues row i of X1, so the hidden
                 state can too)
    random:      subsequences [a b c] [d e f] [g h i] [j k l] in shuffled
                 order, two per minibatch; neighbouring rows have nothing
                 to do with each other

In both, Y is X shifted one token to the right: the model predicts the
next token.

Where this differs from the original:

* The book ships inside the package (``texts/``) and is checked against
  its SHA-1 before it is read; nothing is downloaded, and the original's
  ``../data/timemachine.txt``, relative to the working directory, is not
  needed. ``path=`` reads another text file instead.
* Lines end at a newline only, as the original's ``readlines()`` splits
  them (``str.splitlines()`` would also split at form feeds and other
  separators). Bytes that are not valid UTF-8 become spaces, as the
  character they stand for would.
* ``tokenize`` raises ``ValueError`` for an unknown token type, where the
  original prints an error and returns ``None``.
* Bad arguments raise at once (``d2lrnn.checks``): a text without letters,
  a corpus too short for one minibatch, where the original would silently
  yield nothing, and a ``max_tokens`` that is not an integer.
"""
import collections
import random
import re
from pathlib import Path

from mxnet import np

from .checks import (check_corpus_length, check_has_letters, check_loader,
                     check_max_tokens, check_sha1)

TEXTS = Path(__file__).parent / 'texts'
TIME_MACHINE = TEXTS / 'timemachine.txt'
TIME_MACHINE_SHA1 = '090b5e7e70c295757f55df93cb0a180b9691891a'


def read_text(path, encoding='utf-8', errors='replace'):
    r"""The text of a file, with errors that name the file and say what to do.

    Only ASCII letters survive ``preprocess_lines``, so with the default
    ``errors='replace'`` bytes that are not valid `encoding` (say a
    Windows-1252 quote in a UTF-8 read) become U+FFFD and then spaces, as
    the character they stand for would: any ASCII-based encoding gives the
    same lines. With ``errors='strict'`` such bytes raise ``ValueError``
    instead. Text mode: '\r\n' and '\r' read as '\n'.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'{path}: no such file; give the path of a text file.')
    try:
        with open(path, encoding=encoding, errors=errors) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(
            f'{path} is not valid {encoding} text (byte {e.start}: '
            f'{e.reason}); pass the right encoding.') from None


def clean(text):
    """Lower-case `text`; each run of non-letters becomes a space (D2L 8.3)."""
    return re.sub('[^A-Za-z]+', ' ', text.lower())


def preprocess_lines(text):
    """The lines of `text`, split at newlines only, each cleaned (D2L 8.3)."""
    lines = text.removesuffix('\n').split('\n') if text else []
    return [clean(line.strip()) for line in lines]


def read_time_machine(path=None):
    """Lines of The Time Machine, or of the text file at `path` (D2L 8.3)."""
    if path is None:  # the copy inside the package, checked first
        path = check_sha1(TIME_MACHINE, TIME_MACHINE_SHA1)
    return preprocess_lines(read_text(path))


def tokenize(lines, token='word'):
    """Split each line into word or character tokens (D2L 8.3)."""
    if token == 'word':
        return [line.split(' ') for line in lines]
    if token == 'char':
        return [list(line) for line in lines]
    raise ValueError(f"unknown token type {token!r}: use 'word' or 'char'.")


def count_corpus(tokens):
    """Count token frequencies in a list of tokens or a list of token lists."""
    if tokens and isinstance(tokens[0], list):
        tokens = [tk for line in tokens for tk in line]
    return collections.Counter(tokens)


class Vocab:
    """Map tokens to indices and back, unknowns to ``<unk>`` (D2L 8.3)."""

    def __init__(self, tokens, min_freq=0, use_special_tokens=False):
        counter = count_corpus(tokens)
        # Most frequent first; ties in alphabetical order (the sort is
        # stable).
        self.token_freqs = sorted(counter.items(), key=lambda x: x[0])
        self.token_freqs.sort(key=lambda x: x[1], reverse=True)
        if use_special_tokens:
            self.pad, self.bos, self.eos, self.unk = (0, 1, 2, 3)
            uniq_tokens = ['<pad>', '<bos>', '<eos>', '<unk>']
        else:
            self.unk, uniq_tokens = 0, ['<unk>']
        uniq_tokens += [token for token, freq in self.token_freqs
                        if freq >= min_freq and token not in uniq_tokens]
        self.idx_to_token = uniq_tokens
        self.token_to_idx = {token: idx
                             for idx, token in enumerate(uniq_tokens)}

    def __len__(self):
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, self.unk)
        return [self.__getitem__(token) for token in tokens]

    def to_tokens(self, indices):
        if not isinstance(indices, (list, tuple)):
            return self.idx_to_token[indices]
        return [self.idx_to_token[index] for index in indices]


def corpus_of(lines, vocab=None, source='the text'):
    """(Character ids, vocabulary) of `lines`; a vocabulary made if None."""
    check_has_letters(lines, source)
    tokens = tokenize(lines, 'char')
    vocab = Vocab(tokens) if vocab is None else vocab
    return [vocab[tk] for line in tokens for tk in line], vocab


def load_corpus_time_machine(max_tokens=-1, path=None):
    """Character ids of the book and its vocabulary (D2L 8.3)."""
    check_max_tokens(max_tokens)
    corpus, vocab = corpus_of(read_time_machine(path),
                              source=path or TIME_MACHINE)
    if max_tokens > 0:  # the vocabulary still covers the whole text
        corpus = corpus[:max_tokens]
    return corpus, vocab


def seq_data_iter_random(corpus, batch_size, num_steps):
    """Minibatches of subsequences drawn in random order (D2L 8.3)."""
    check_corpus_length(corpus, batch_size, num_steps)
    return _random_batches(corpus, batch_size, num_steps)


def _random_batches(corpus, batch_size, num_steps):
    """The minibatches of ``seq_data_iter_random``, its checks passed."""
    # A random offset, so that every epoch cuts the text at other places.
    corpus = corpus[random.randint(0, num_steps):]
    # Keep one token back: the last subsequence needs its label.
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = list(range(0, num_subseqs * num_steps, num_steps))
    random.shuffle(starts)
    # The partial last minibatch is dropped.
    num_batches = num_subseqs // batch_size
    for i in range(0, batch_size * num_batches, batch_size):
        batch_starts = starts[i:i + batch_size]
        X = [corpus[j:j + num_steps] for j in batch_starts]
        Y = [corpus[j + 1:j + 1 + num_steps] for j in batch_starts]
        yield np.array(X), np.array(Y)  # (batch_size, num_steps), float32


def seq_data_iter_sequential(corpus, batch_size, num_steps):
    """Minibatches whose rows continue those of the last one (D2L 8.3)."""
    check_corpus_length(corpus, batch_size, num_steps)
    return _sequential_batches(corpus, batch_size, num_steps)


def _sequential_batches(corpus, batch_size, num_steps, offset=None):
    """The minibatches of ``seq_data_iter_sequential``, checks passed."""
    if offset is None:  # a new random start for every pass
        offset = random.randint(0, num_steps)
    # The largest multiple of batch_size that still leaves one token for
    # the labels.
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = np.array(corpus[offset:offset + num_tokens])
    Ys = np.array(corpus[offset + 1:offset + 1 + num_tokens])
    # batch_size parallel streams, read num_steps columns at a time.
    Xs, Ys = Xs.reshape(batch_size, -1), Ys.reshape(batch_size, -1)
    num_batches = Xs.shape[1] // num_steps
    for i in range(0, num_batches * num_steps, num_steps):
        yield Xs[:, i:i + num_steps], Ys[:, i:i + num_steps]


# The 2019 edition's name for the sequential iterator.
seq_data_iter_consecutive = seq_data_iter_sequential


class SeqDataLoader:
    """An iterable over minibatches, a new offset each pass (D2L 8.3)."""

    def __init__(self, batch_size, num_steps, use_random_iter, max_tokens,
                 path=None, corpus=None, vocab=None):
        self.data_iter_fn = (seq_data_iter_random if use_random_iter
                             else seq_data_iter_sequential)
        if corpus is None:  # else the caller's ids and vocabulary
            corpus, vocab = load_corpus_time_machine(max_tokens, path)
        check_loader(corpus, vocab, batch_size, num_steps)
        self.corpus, self.vocab = corpus, vocab
        self.batch_size, self.num_steps = batch_size, num_steps

    def __iter__(self):
        return self.data_iter_fn(self.corpus, self.batch_size,
                                 self.num_steps)


def load_data_time_machine(batch_size, num_steps, use_random_iter=False,
                           max_tokens=10000, path=None):
    """The minibatch iterator and vocabulary of The Time Machine (D2L 8.3)."""
    data_iter = SeqDataLoader(batch_size, num_steps, use_random_iter,
                              max_tokens, path)
    return data_iter, data_iter.vocab

"""N-gram baselines (book/exercises/ex2-perplexity.ipynb).

Character n-gram count models: the baseline a character RNN has to beat.

A model of order n predicts the next token from the n - 1 tokens before it,
using how often each n-gram occurred in the training text. It works on the
RNN's own tokens (the integer ids of ``d2lrnn.Vocab``), so its perplexity on a
held-out text is directly comparable with the RNN's.

Two smoothings:

* ``'kneser-ney'``: interpolated Kneser-Ney (Chen and Goodman 1998, "An
  empirical study of smoothing techniques for language modeling"). Every
  order subtracts a discount D from its counts and hands the mass it freed to
  the next lower order::

      p_k(w | h) = (a_k(h w) - D(a_k(h w))) / sum_v a_k(h v)
                   + gamma_k(h) * p_{k-1}(w | h without its first token)

  where ``gamma_k(h)`` is exactly the mass the discounts removed. The highest
  order uses raw counts; every lower order uses *continuation counts*
  (a_k(g) = how many different tokens precede the k-gram g), since a lower
  order is only asked about contexts the higher orders know little about.
  The lowest order interpolates with the uniform distribution over the
  vocabulary, so every token, even one never seen (``<unk>``), gets a
  probability above zero. By default each order has three discounts D1, D2,
  D3+ (for counts 1, 2, >= 3) estimated from its count-of-counts ("modified"
  Kneser-Ney, see ``kn_discounts``); ``discount=D`` uses one D for every
  count instead (the original interpolated Kneser-Ney).
* ``'add-k'`` (Lidstone): ``p(w | h) = (c(h w) + k) / (c(h) + k V)``, for
  reference. On held-out text it falls behind Kneser-Ney from order 3 on,
  whatever k, and gets worse as the order grows: most long contexts of a
  new text were never seen, and add-k then guesses almost uniformly.

Why not ``nltk.lm``: tried with nltk 3.10.4 on this project's tokens, fitted
on the first 150,000 characters of the 90 % training part of The Time Machine
and scoring the held-out part (CPU times on one core of an AMD EPYC):

* Too slow. Its ``KneserNeyInterpolated`` took 8.8 s to fit at order 5 and
  6.1 ms per scored character (about 105 s for the 17,148 held-out
  characters); at order 8, 19 s to fit and 53 ms per character (about
  15 minutes), because every lower-order probability walks through all the
  stored n-grams of the order above. This module, counting with numpy, fits
  in 0.12 s (order 5) and 0.19 s (order 8) and scores all 17,148 characters
  in 0.02-0.03 s.
* Not usable as a baseline as it stands. Its probabilities do sum to 1 over
  the vocabulary, after contexts seen and unseen, but its lowest order is
  the continuation unigram alone, not interpolated with the uniform
  distribution: ``<unk>``, never seen, has probability 0, so one unknown
  character in a test text makes the perplexity infinite. And it uses one
  fixed discount for every count and every order (0.1 by default): held-out
  perplexity 5.41 at order 5 and 11.8 at order 8, where the discounts
  estimated here give 4.32 and 4.16.
* Its arithmetic is right: given the same single discount
  (``discount=0.1``) this module reproduces its perplexity to 1e-6
  relative (5.671400 against 5.671396 on the first 500 held-out characters
  at order 5, 12.608256 against 12.608250 at order 8; the difference is the
  uniform distribution at the lowest order).
"""
import math

import numpy as np

from .checks import check_at_least, check_positive_number, check_that, is_real
from .memory import memory_limit

SMOOTHINGS = ('kneser-ney', 'add-k')
# The discount used where the counts give no estimate (no n-gram counted
# exactly once, as for single characters in a long text): the customary
# choice for one absolute discount.
FALLBACK_DISCOUNT = 0.75
# The memory fitting and scoring take, in int64/float64 numbers of 8 bytes:
# the (order + 1, n) index of a text of n tokens; arrays of length n alive
# beside it; four per n-gram of the tables (table, counts, context totals,
# gammas) and NumPy's headers of each order's arrays; four of vocab_size in
# ``probs``. Checked with tracemalloc (tests/test_ngram.py): the peak stays
# below the estimate.
NUMBER_BYTES = 8
ARRAYS_PER_TOKEN = 12
ARRAYS_PER_NGRAM = 4
ARRAYS_PER_DISTRIBUTION = 4
TABLE_BYTES_PER_ORDER = 1024
BASE_BYTES = 1 << 16  # small arrays and Python objects, whatever the sizes
CODE_LIMIT = 2 ** 63  # n-gram codes (``_index_ngrams``) are int64


def kn_discounts(counts):
    """The modified Kneser-Ney discounts (D1, D2, D3+) of a list of n-gram counts.

    With n_j the number of n-grams counted exactly j times and
    Y = n_1 / (n_1 + 2 n_2) (Chen and Goodman 1998, eq. 26)::

        D1 = 1 - 2 Y n_2 / n_1,  D2 = 2 - 3 Y n_3 / n_2,  D3+ = 3 - 4 Y n_4 / n_3

    A discount the counts cannot give (a zero n_j in its formula, or a value
    outside (0, j]) is replaced by Y, or by ``FALLBACK_DISCOUNT`` if there is
    no n-gram counted once: small texts have such gaps.
    """
    counts = np.asarray(counts)
    n = [int(np.count_nonzero(counts == j)) for j in range(5)]  # n[0] unused
    y = n[1] / (n[1] + 2 * n[2]) if n[1] > 0 else None
    fallback = y if y else FALLBACK_DISCOUNT
    discounts = []
    for j in (1, 2, 3):
        d = j - (j + 1) * y * n[j + 1] / n[j] if y and n[j] > 0 else None
        discounts.append(d if d is not None and 0 < d <= j else fallback)
    return tuple(discounts)


def _check_ids(ids, vocab_size, name, min_len):
    """`ids` as a 1-D int64 array, checked: integers in [0, vocab_size), at least min_len."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f'{name} must be a flat sequence of token ids, got an array of '
                         f'shape {arr.shape}: pass one text as a list of ints.')
    if len(arr) < min_len:
        what = 'is empty' if len(arr) == 0 else f'has only {len(arr)} token(s)'
        raise ValueError(f'{name} {what}: it needs at least {min_len}. Pass a longer text.')
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f'{name} must hold integer token ids, got dtype {arr.dtype}: '
                         'encode the text with the vocabulary first (vocab[tokens]).')
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{name}[{first}] = {int(arr[first])} is not a token id of a '
                         f'vocabulary of {vocab_size}: ids must lie in [0, {vocab_size}). '
                         'Encode the text with the same vocabulary, or pass its length '
                         'as vocab_size.')
    return arr


def _num_ngrams(order, vocab_size, n):
    """At most how many k-grams a text of n tokens has, summed over k = 1..order."""
    top, total, k = min(order, n), 0, 1
    if vocab_size == 1:
        return top  # one k-gram of each length
    # Short k-grams: at most vocab_size ** k different ones.
    while k <= top and vocab_size ** k < n - k + 1:
        total += vocab_size ** k
        k += 1
    # Longer ones: at most one per position, n - k + 1.
    lengths = top - k + 1
    return total + lengths * (n + 1) - (k + top) * lengths // 2


def _index_ngrams(x, order, vocab_size, tables=None):
    """For k = 0..order, the index of the k-gram ending at each position of `x`.

    A k-gram is numbered by its place in the sorted table of the k-grams of
    the training text; it is coded as ``prefix * vocab_size + last token``,
    where prefix is the number of its first k - 1 tokens, so codes never
    overflow, whatever the order. Row k of the result is -1 where no k-gram
    ends (the first k - 1 positions) or where it is not in the table.
    Without `tables` (fitting), builds the tables from `x` and returns them too.
    """
    fitting = tables is None
    if fitting:
        tables = [np.zeros(1, dtype=np.int64)]  # the single 0-gram, the empty one
    pos = np.full((order + 1, len(x)), -1, dtype=np.int64)
    pos[0] = 0
    for k in range(1, order + 1):
        # The k-gram ending at i is the (k-1)-gram ending at i - 1, then x[i].
        prefix = np.zeros(len(x), dtype=np.int64)
        if k > 1:
            prefix[0] = -1
            prefix[1:] = pos[k - 1, :-1]
        known = prefix >= 0
        codes = prefix[known] * vocab_size + x[known]
        if fitting:
            table, inverse = np.unique(codes, return_inverse=True)
            tables.append(table)
            pos[k, known] = inverse
        else:
            table = tables[k]
            at = np.minimum(np.searchsorted(table, codes), max(len(table) - 1, 0))
            found = table[at] == codes if len(table) else np.zeros(len(codes), bool)
            pos[k, np.flatnonzero(known)[found]] = at[found]
    return (pos, tables) if fitting else pos


class NGramLM:
    """A character n-gram language model over token ids in [0, vocab_size).

    ``order`` n >= 1 conditions on the n - 1 previous tokens; ``smoothing`` is
    ``'kneser-ney'`` (interpolated, with ``discount=None`` the three estimated
    discounts of modified Kneser-Ney, or one fixed ``discount`` in (0, 1]) or
    ``'add-k'`` (Lidstone, adds ``k`` > 0 to every count). See the module
    docstring for the formulas. ``fit(ids)`` counts; then ``probs(context)``
    gives a next-token distribution and ``perplexity(ids)`` scores a text.
    """

    def __init__(self, order, vocab_size, smoothing='kneser-ney', k=1.0, discount=None):
        check_at_least(1, order=order, vocab_size=vocab_size)
        if smoothing not in SMOOTHINGS:
            raise ValueError(f'unknown smoothing {smoothing!r}: use one of {SMOOTHINGS}.')
        check_positive_number(k=k)  # the count added to every n-gram
        check_that(lambda v: v is None or (is_real(v) and 0 < v <= 1),
                   'lie in (0, 1], or be None for the three discounts estimated '
                   'from the counts')(discount=discount)
        self.order, self.vocab_size = int(order), int(vocab_size)
        self.smoothing, self.k, self.discount = smoothing, float(k), discount
        self._tables = None

    def fit(self, ids):
        """Count the n-grams of orders 1..order in `ids` (token ids); return self."""
        x = _check_ids(ids, self.vocab_size, 'ids', min_len=1)
        self._check_codes(len(x))
        self._check_memory('fit', len(x), fitting=True)
        pos, self._tables = _index_ngrams(x, self.order, self.vocab_size)
        # Per order k: the count a_k of each k-gram, and for each (k-1)-gram
        # context the sum of those counts and the mass gamma the discounts free.
        self._counts, self._totals, self._gammas, self.discounts = [None], [None], [None], []
        for k in range(1, self.order + 1):
            counts = self._count(pos, k, x)
            contexts = self._tables[k] // self.vocab_size
            num_contexts = len(self._tables[k - 1])
            totals = np.bincount(contexts, weights=counts, minlength=num_contexts)
            self._counts.append(counts)
            self._totals.append(totals)
            if self.smoothing == 'kneser-ney':
                d = (kn_discounts(counts) if self.discount is None
                     else (float(self.discount),) * 3)
                self.discounts.append(d)
                freed = np.bincount(contexts, weights=self._discount_of(counts, d),
                                    minlength=num_contexts)
                with np.errstate(invalid='ignore', divide='ignore'):
                    self._gammas.append(np.where(totals > 0, freed / totals, 0.0))
        return self

    def _check_codes(self, num_tokens):
        """Raise ValueError if n-gram codes (below tokens x vocab_size) of a
        text of `num_tokens` would overflow int64."""
        if num_tokens * self.vocab_size >= CODE_LIMIT:
            raise ValueError(
                f'vocab_size {self.vocab_size:,} is too large for a text of '
                f'{num_tokens:,} tokens: their n-gram codes (up to tokens x '
                'vocab_size) would overflow int64. Pass the number of '
                'tokens the vocabulary really has.')

    def needed_bytes(self, num_tokens, fitting=False, distributions=0):
        """At most the memory that indexing `num_tokens` tokens takes: to fit
        them (`fitting`, with the tables), or to score them, with
        `distributions` arrays of vocab_size (``probs``)."""
        numbers = ((self.order + 1 + ARRAYS_PER_TOKEN) * num_tokens
                   + ARRAYS_PER_DISTRIBUTION * self.vocab_size * distributions)
        tables = 0
        if fitting:
            ngrams = _num_ngrams(self.order, self.vocab_size, num_tokens)
            numbers += ARRAYS_PER_NGRAM * ngrams
            tables = TABLE_BYTES_PER_ORDER * self.order
        return NUMBER_BYTES * numbers + tables + BASE_BYTES

    def _check_memory(self, task, num_tokens, fitting=False, distributions=0):
        """Raise MemoryError, before allocating, if `task` on `num_tokens`
        tokens needs more memory than this process may use."""
        limit = memory_limit()
        needed = self.needed_bytes(num_tokens, fitting, distributions)
        if limit is not None and needed > limit:
            raise MemoryError(
                f'an n-gram model of order {self.order:,} over a vocabulary of '
                f'{self.vocab_size:,} needs about {needed / 1e9:,.1f} GB to {task} '
                f'{num_tokens:,} tokens, more than the {limit / 1e9:,.1f} GB of '
                'memory available here (it indexes every token at every order); use a '
                'lower order or a shorter text.')

    def _count(self, pos, k, x):
        """a_k for each k-gram of the table: raw counts, continuation counts below `order`.

        Add-k uses raw counts at every order. The continuation count of a
        k-gram is the number of distinct (k+1)-grams that end with it; the
        start of the text counts as one more distinct left neighbour of the
        first k-gram, as a sentence-start symbol would.
        """
        num_grams = len(self._tables[k])
        ends = pos[k][pos[k] >= 0]
        if self.smoothing == 'add-k' or k == self.order:
            return np.bincount(ends, minlength=num_grams)
        # Every occurrence of a (k+1)-gram ends with the same k-gram: writing
        # them all leaves one entry per distinct (k+1)-gram.
        longer = pos[k + 1] >= 0
        suffix = np.empty(len(self._tables[k + 1]), dtype=np.int64)
        suffix[pos[k + 1][longer]] = pos[k][longer]
        counts = np.bincount(suffix, minlength=num_grams)
        if len(x) >= k:
            counts[pos[k][k - 1]] += 1
        return counts

    @staticmethod
    def _discount_of(counts, discounts):
        """D(a) for each count a: 0 for 0, then D1, D2, D3+ for 1, 2 and >= 3."""
        return np.array((0.0,) + tuple(discounts))[np.minimum(counts, 3)]

    def _check_fitted(self):
        if self._tables is None:
            raise RuntimeError('this model has not been fitted: call fit(ids) first.')

    def probs(self, context):
        """The probabilities of the next token after `context`: an array of vocab_size.

        Only the last order - 1 ids of `context` matter; a shorter context (the
        start of a text, or ``[]``) uses the model's own lower orders.
        """
        self._check_fitted()
        ctx = _check_ids(context, self.vocab_size, 'context', min_len=0)
        ctx = ctx[len(ctx) - min(len(ctx), self.order - 1):]
        self._check_memory('score the next token after', len(ctx), distributions=1)
        context_ids = self._context_ids(ctx)
        top = len(ctx) + 1
        if self.smoothing == 'add-k':
            return self._add_k_probs(context_ids[top - 1], top)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(1, top + 1):
            p = self._kn_step(p, context_ids[k - 1], k)
        return p

    def _context_ids(self, ctx):
        """For j = 0..len(ctx), the number of the j-gram made of the last j ids (-1: unseen)."""
        if len(ctx) == 0:
            return [0]
        pos = _index_ngrams(ctx, self.order, self.vocab_size, self._tables)
        return [0] + [int(pos[j, -1]) for j in range(1, len(ctx) + 1)]

    def _next_tokens(self, context_id, k):
        """(tokens, counts) of the k-grams that follow the (k-1)-gram number `context_id`."""
        table = self._tables[k]
        lo, hi = np.searchsorted(table, [context_id * self.vocab_size,
                                         (context_id + 1) * self.vocab_size])
        return table[lo:hi] % self.vocab_size, self._counts[k][lo:hi]

    def _kn_step(self, lower, context_id, k):
        """Kneser-Ney at order k: discounted counts + gamma * the order below."""
        if context_id < 0 or self._totals[k][context_id] == 0:
            return lower  # a context never followed by a token: all mass to the order below
        tokens, counts = self._next_tokens(context_id, k)
        p = self._gammas[k][context_id] * lower
        p[tokens] += ((counts - self._discount_of(counts, self.discounts[k - 1]))
                      / self._totals[k][context_id])
        return p

    def _add_k_probs(self, context_id, k):
        """Add-k at order k: (count + k) / (context count + k V); uniform if unseen."""
        p = np.full(self.vocab_size, self.k)
        total = 0.0
        if context_id >= 0:
            tokens, counts = self._next_tokens(context_id, k)
            p[tokens] += counts
            total = self._totals[k][context_id]
        return p / (total + self.k * self.vocab_size)

    def log_probs(self, ids):
        """Natural log of p(ids[i] | ids[:i]) for i = 1 .. len(ids) - 1.

        Every token from position 1 on is scored given the ids before it in
        `ids` (at most order - 1 of them); the first token has no context and
        is not scored. Vectorised over the text: equal to
        ``log(probs(ids[:i])[ids[i]])`` at each i.
        """
        self._check_fitted()
        x = _check_ids(ids, self.vocab_size, 'ids', min_len=2)
        self._check_memory('score', len(x))
        pos = _index_ngrams(x, self.order, self.vocab_size, self._tables)
        i = np.arange(1, len(x))
        if self.smoothing == 'add-k':
            return np.log(self._add_k_at(pos, i))
        p = np.full(len(i), 1.0 / self.vocab_size)
        for k in range(1, self.order + 1):
            p = self._kn_at(p, pos, i, k)
        return np.log(p)

    def _kn_at(self, lower, pos, i, k):
        """Kneser-Ney order k at positions i, from the order-(k-1) probabilities `lower`."""
        p = lower.copy()
        ctx = pos[k - 1, i - 1]
        use = (i >= k - 1) & (ctx >= 0)
        use[use] = self._totals[k][ctx[use]] > 0
        ctx, gram = ctx[use], pos[k, i[use]]
        counts = np.where(gram >= 0, self._counts[k][np.maximum(gram, 0)], 0)
        p[use] = ((counts - self._discount_of(counts, self.discounts[k - 1]))
                  / self._totals[k][ctx] + self._gammas[k][ctx] * lower[use])
        return p

    def _add_k_at(self, pos, i):
        """Add-k probability of each ids[i], at the highest order its context allows."""
        top = np.minimum(i + 1, self.order)
        ctx = pos[top - 1, i - 1]
        gram = pos[top, i]
        counts = np.zeros(len(i))
        totals = np.zeros(len(i))
        for k in range(1, self.order + 1):
            at = (top == k) & (gram >= 0)
            counts[at] = self._counts[k][gram[at]]
            at = (top == k) & (ctx >= 0)
            totals[at] = self._totals[k][ctx[at]]
        return (counts + self.k) / (totals + self.k * self.vocab_size)

    def perplexity(self, ids):
        """exp of the mean negative log probability of ids[1:] (see ``log_probs``)."""
        return float(np.exp(-self.log_probs(ids).mean()))

    def bits_per_char(self, ids):
        """Mean bits per scored token of ids[1:]: log2 of ``perplexity(ids)``."""
        return float(-self.log_probs(ids).mean() / math.log(2))


def ngram_perplexity(train_ids, test_ids, vocab_size, order, smoothing='kneser-ney',
                     k=1.0, discount=None):
    """Perplexity on `test_ids` of an ``NGramLM`` fitted on `train_ids`.

    The test text is scored from its second token on, each token given the
    tokens before it in the test text (see ``NGramLM.log_probs``).
    """
    model = NGramLM(order, vocab_size, smoothing, k=k, discount=discount)
    return model.fit(train_ids).perplexity(test_ids)


__all__ = ['NGramLM', 'ngram_perplexity', 'kn_discounts']

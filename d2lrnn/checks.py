"""Argument checks: one clear error for each kind of bad input (book/01-data.ipynb).

Every check names the argument, shows the value it got and says what it
needs, so that a mistake is caught where it is made rather than deep inside
MXNet, or, worse, not at all (NaN compares false with everything, so
``max_tokens=nan`` once kept the whole text and ``theta=nan`` turned clipping
off). The functions the book lists call these in one line, so that their
listings keep to the lines that teach.

Most checks take keyword arguments, ``check_positive(batch_size=b,
num_steps=n)``, so that the name in the message is the caller's. They raise
``ValueError``, also for a value of the wrong type (``lr='1'``), because to
the caller both are the same mistake: a setting it must change. Numbers
are ``numbers.Integral`` or ``numbers.Real``, so NumPy scalars pass; ``True``
and ``False`` never do, since a flag passed as a size is a mistake.
"""
import hashlib
import math
import numbers
from pathlib import Path


def is_integer(value):
    """An integer (NumPy's too), and not a bool."""
    return (isinstance(value, numbers.Integral)
            and not isinstance(value, bool))


def is_real(value):
    """A real number (NumPy's too), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_that(test, rule):
    """A check in the manner of the others, for a rule they lack.

    ``check_that(test, 'be RULE')(name=value)`` raises ``ValueError('name
    must be RULE, got value.')`` unless ``test(value)``.
    """
    def check(**values):
        for name, value in values.items():
            if not test(value):
                raise ValueError(f'{name} must {rule}, got {value!r}.')
    return check


def check_positive(**values):
    """Raise unless every value is an integer > 0 (a size or a count)."""
    for name, value in values.items():
        if not is_integer(value) or value <= 0:
            raise ValueError(
                f'{name} must be a positive integer, got {value!r}.')


def check_at_least(minimum, **values):
    """Raise unless every value is an integer >= `minimum`."""
    for name, value in values.items():
        if not is_integer(value) or value < minimum:
            raise ValueError(
                f'{name} must be an integer >= {minimum}, got {value!r}.')


def check_nonnegative(**values):
    """Raise unless every value is an integer >= 0."""
    check_at_least(0, **values)


def check_positive_number(**values):
    """Raise unless every value is a finite number > 0 (a rate, a scale)."""
    for name, value in values.items():
        if not is_real(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f'{name} must be a finite number > 0, got {value!r}.')


def check_nonnegative_number(**values):
    """Raise unless every value is a finite number >= 0 (a step, a decay)."""
    for name, value in values.items():
        if not is_real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f'{name} must be a finite number >= 0, got {value!r}.')


def check_fraction(**values):
    """Raise unless every value is a number in [0, 1)."""
    for name, value in values.items():
        if not is_real(value) or not 0 <= value < 1:
            raise ValueError(
                f'{name} must be at least 0 and below 1, got {value!r}.')


def check_open_fraction(**values):
    """Raise unless every value is a number in (0, 1): neither part empty."""
    for name, value in values.items():
        if not is_real(value) or not 0 < value < 1:
            raise ValueError(f'{name} must lie strictly between 0 and 1, '
                             f'got {value!r}.')


def check_one_of(choices, **values):
    """Raise unless every value is one of `choices`."""
    for name, value in values.items():
        if value not in choices:
            raise ValueError(
                f'{name} must be one of {choices}, got {value!r}.')


def check_nonempty_string(**values):
    """Raise unless every value is a string of at least one character."""
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(
                f'{name} must be a non-empty string, got {value!r}.')


def check_max_tokens(max_tokens):
    """Raise unless `max_tokens` is an integer (-1 or 0: the whole text)."""
    # Checked as a type: NaN compares false with 0 and would keep the
    # whole text without a word.
    if not is_integer(max_tokens):
        raise ValueError('max_tokens must be an integer (-1 for the whole '
                         f'text), got {max_tokens!r}.')


def check_clipping_threshold(theta):
    """Raise unless `theta` is a number > 0; infinity is allowed (no clip).

    0 would zero the gradients, a negative threshold reverse them, and NaN
    turn clipping off without a word.
    """
    if not is_real(theta) or not theta > 0:
        raise ValueError(f'theta must be a positive number, got {theta!r}.')


def check_theta_or_none(theta):
    """Raise unless `theta` is a finite number > 0 or None (no clipping)."""
    if theta is None:
        return
    try:
        check_positive_number(theta=theta)
    except ValueError:
        raise ValueError(
            'theta must be a finite number > 0 or None (no clipping), '
            f'got {theta!r}.') from None


def check_vocab_fits(model, vocab):
    """Raise unless `model` has an input and an output for every token of
    `vocab`: ids beyond its size would be silently wrong (a one-hot row of
    zeros) or refused deep inside the model."""
    size = getattr(model, 'vocab_size', None)
    if size is not None and len(vocab) > size:
        raise ValueError(
            f'the vocabulary has {len(vocab)} tokens but the model was built '
            f'for {size}: build it with vocab_size=len(vocab).')


def check_prediction(prefix, num_predicts, model, vocab, sample, alpha):
    """The arguments of ``predict_ch8``: a prefix, a count, a model that fits
    the vocabulary, and alpha."""
    check_vocab_fits(model, vocab)
    check_nonempty_string(prefix=prefix)
    check_nonnegative(num_predicts=num_predicts)
    if sample:  # alpha is used only when sampling
        check_positive_number(alpha=alpha)


def check_token_ids(X, vocab_size):
    """Raise unless every id in the array `X` lies in [0, vocab_size)."""
    if X.size and (float(X.min()) < 0 or float(X.max()) >= vocab_size):
        raise ValueError(
            f'token ids must lie in [0, {vocab_size}), got ids '
            f'from {float(X.min())} to {float(X.max())}.')


def check_has_letters(lines, source='the text'):
    """Raise naming `source` unless some line holds a letter."""
    if not any(ch.isalpha() for line in lines for ch in line):
        raise ValueError(f'{source} holds no letters: nothing to learn from.')


def check_corpus_length(corpus, batch_size, num_steps):
    """Raise unless every random offset leaves at least one full minibatch."""
    check_positive(batch_size=batch_size, num_steps=num_steps)
    # The worst offset drops num_steps tokens, and the labels need one more.
    needed = (batch_size + 1) * num_steps + 1
    if len(corpus) < needed:
        raise ValueError(
            f'the corpus has {len(corpus)} tokens, too few for one '
            f'minibatch of batch_size={batch_size} x num_steps={num_steps}: '
            f'it needs at least {needed}. Use a longer text (or a larger '
            'max_tokens), or a smaller batch_size or num_steps.')


def check_loader(corpus, vocab, batch_size, num_steps):
    """A corpus comes with its vocabulary and fills at least one minibatch."""
    if vocab is None:
        raise ValueError('a corpus needs its vocab: pass both, or neither.')
    check_corpus_length(corpus, batch_size, num_steps)


def sha1_of(path):
    """SHA-1 hex digest of a file's bytes."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def check_sha1(path, expected):
    """Return `path` if its file exists with SHA-1 `expected`, else raise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'{path} is missing: the d2lrnn installation is incomplete; '
            f'reinstall d2lrnn (expected a file with SHA-1 {expected}).')
    actual = sha1_of(path)
    if actual != expected:
        raise ValueError(
            f'{path} has SHA-1 {actual}, expected {expected}: '
            'the file was altered; reinstall d2lrnn to restore it.')
    return path

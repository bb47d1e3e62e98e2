"""Tools for the exercises of the section (book/09-exercises.md, book/exercises/).

``train_ch8`` trains the way the section does and prints; the exercises need
more control and more measurements. In exercise order:

* exercise 1: an RNN that reads token ids with a lookup instead of one-hot
  vectors (``rnn_lookup``, ``LookupRNNScratch``);
* exercises 2, 4, 5 and 6: ``train_run``, many epochs of ``train_epoch``
  (``d2lrnn.train``: the loop of ``train_epoch_ch8`` with a clipping switch
  and a choice of what happens to the state between minibatches, reporting
  every step) with a record of everything and held-out perplexity;
  ``rnn_relu``, the section's ``rnn`` with ReLU in place of tanh;
* exercise 3: statistics of sampled text (``sharpen``, ``char_entropy``,
  ``word_fraction``, ...);
* exercise 7: the probability of each actual next token and their means.
"""
import collections
import re

import numpy as onp
from mxnet import gluon, np, npx

from .checks import (check_positive, check_positive_number,
                     check_theta_or_none, check_token_ids)
from .evaluate import (evaluate_perplexity, scored_minibatches,
                       seq_data_iter_eval)
from .model import RNNModelScratch
from .train import sgd, train_epoch


# Exercise 1: token ids instead of one-hot vectors ----------------------------

def rnn_lookup(inputs, state, params):
    """``rnn`` fed token ids, not one-hot vectors (exercise 1)."""
    check_id_matrix(inputs, 'inputs', '(num_steps, batch_size)')
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, = state
    outputs = []
    for ids in inputs:  # ids: (batch_size,)
        # The rows of W_xh picked by the ids, as one_hot(ids) @ W_xh
        # would give: (batch_size, num_hiddens)
        X_W = np.take(W_xh, ids.astype('int32'), axis=0)
        H = np.tanh(X_W + np.dot(H, W_hh) + b_h)
        outputs.append(np.dot(H, W_hq) + b_q)
    return np.concatenate(outputs, axis=0), (H,)


class LookupRNNScratch(RNNModelScratch):
    """``RNNModelScratch`` without one-hot: the forward function gets ids.

    Same parameters (made by `get_params`), same state, same outputs; only
    the input side differs: ``forward(X.T, state, params)`` with X the
    (batch_size, num_steps) ids, no ``npx.one_hot``.
    """

    def __init__(self, vocab_size, num_hiddens, ctx, get_params, init_state,
                 forward=rnn_lookup):
        super().__init__(vocab_size, num_hiddens, ctx, get_params,
                         init_state, forward)

    def __call__(self, X, state):
        check_id_matrix(X, 'X', '(batch_size, num_steps)')
        check_token_ids(X, self.vocab_size)
        # Ids, time first: (num_steps, batch_size); no one-hot
        return self.forward_fn(X.T, state, self.params)


def check_id_matrix(ids, name, shape):
    """Raise unless the array `ids` has two axes, those named by `shape`."""
    if ids.ndim != 2:
        raise ValueError(f'{name} must be token ids shaped {shape}, '
                         f'got shape {ids.shape}.')


# Exercises 2, 4, 5 and 6: training with a record of every step ---------------

def train_run(model, train_iter, lr, num_epochs, ctx, use_random_iter=False,
              theta=1, valid_corpus=None, eval_every=1, eval_batch_size=32,
              eval_num_steps=35, on_epoch=None):
    """Train a scratch model with SGD and record everything.

    The model is anything with ``.params``. Each epoch is a
    ``train_epoch`` (state detached between minibatches). Returns a dict
    of lists:

    * ``epoch``, ``train_ppl``: training perplexity after each epoch;
    * ``step_loss``, ``step_norm``: mean loss and pre-clipping gradient norm
      of every minibatch;
    * ``valid_epoch``, ``valid_ppl``: perplexity on `valid_corpus` (token
      ids, read with ``seq_data_iter_eval``) every `eval_every` epochs and
      after the last one, if `valid_corpus` is given;
    * ``diverged_at_step``: the first step whose loss or norm was not
      finite, or None; training stops there;
    * ``tokens_per_sec``: of the last epoch.

    ``on_epoch(epoch, record)`` is called after every epoch.
    """
    check_positive(num_epochs=num_epochs, eval_every=eval_every)
    check_positive_number(lr=lr)
    check_theta_or_none(theta)
    valid_iter = None
    if valid_corpus is not None:
        if len(valid_corpus) == 0:
            raise ValueError('valid_corpus is empty: there is no held-out '
                             'text to score.')
        valid_iter = seq_data_iter_eval(valid_corpus, eval_batch_size,
                                        eval_num_steps)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def updater(batch_size):
        sgd(model.params, lr, batch_size)

    record = dict(epoch=[], train_ppl=[], step_loss=[], step_norm=[],
                  valid_epoch=[], valid_ppl=[], diverged_at_step=None,
                  tokens_per_sec=None)

    def on_step(lval, norm, seconds):
        record['step_loss'].append(lval)
        record['step_norm'].append(norm)

    for epoch in range(1, num_epochs + 1):
        ppl, speed, finite = train_epoch(model, train_iter, loss, updater,
                                         ctx, use_random_iter, theta=theta,
                                         on_step=on_step)
        record['tokens_per_sec'] = speed
        if not finite:
            record['diverged_at_step'] = len(record['step_loss'])
            break
        record['epoch'].append(epoch)
        record['train_ppl'].append(ppl)
        if valid_iter is not None and (epoch % eval_every == 0
                                       or epoch == num_epochs):
            record['valid_epoch'].append(epoch)
            record['valid_ppl'].append(
                evaluate_perplexity(model, valid_iter, ctx))
        if on_epoch is not None:
            on_epoch(epoch, record)
    return record


def rnn_relu(inputs, state, params):
    """The forward function ``d2lrnn.rnn`` with ReLU, not tanh (exercise 6).

    ``H_t = max(0, X_t W_xh + H_{t-1} W_hh + b_h)``: the hidden state is no
    longer confined to (-1, 1); it is non-negative and unbounded above.
    Same arguments and results as ``rnn``.
    """
    W_xh, W_hh, b_h, W_hq, b_q = params
    H, = state
    outputs = []
    for X in inputs:  # X: (batch_size, vocab_size)
        H = np.maximum(np.dot(X, W_xh) + np.dot(H, W_hh) + b_h, 0)
        outputs.append(np.dot(H, W_hq) + b_q)
    return np.concatenate(outputs, axis=0), (H,)


# Exercise 3: statistics of sampled text --------------------------------------

def sharpen(p, alpha):
    """q ∝ p**alpha, renormalised over the last axis (exercise 3).

    The result is a NumPy float64 array. ``alpha=1`` returns p
    (renormalised), alpha -> 0 tends to the uniform distribution over the
    entries with p > 0, alpha -> inf to all mass on the largest entries.
    """
    check_positive_number(alpha=alpha)
    p = onp.asarray(p, dtype='float64')
    if (p.size == 0 or (p < 0).any() or not onp.isfinite(p).all()
            or (p.sum(axis=-1) <= 0).any()):
        raise ValueError('p must hold non-negative finite probabilities '
                         'with a positive sum.')
    with onp.errstate(divide='ignore'):
        logq = alpha * onp.log(p)
    logq -= logq.max(axis=-1, keepdims=True)
    q = onp.exp(logq)
    return q / q.sum(axis=-1, keepdims=True)


def _check_text(text):
    if not isinstance(text, str):
        raise ValueError(
            f'text must be a string, got {type(text).__name__}.')


def char_entropy(tokens):
    """Entropy in bits of the token frequencies in `tokens` (exercise 3).

    `tokens` is a string (its characters are the tokens) or a list of
    tokens, for example ``split_tokens(text)``, which keeps ``<unk>`` in
    one piece.
    """
    if not isinstance(tokens, (str, list, tuple)):
        raise ValueError('tokens must be a string or a list of tokens, '
                         f'got {type(tokens).__name__}.')
    if not tokens:
        raise ValueError(
            'there are no tokens: an empty sequence has no entropy.')
    counts = onp.array(list(collections.Counter(tokens).values()),
                       dtype='float64')
    f = counts / counts.sum()
    return float(-(f * onp.log2(f)).sum())


def split_tokens(text):
    """The character tokens of generated `text`; ``'<unk>'`` is one token."""
    _check_text(text)
    return re.findall('<unk>|.', text, flags=re.DOTALL)


def book_words(lines):
    """The set of words of a book given as lines.

    The lines are those that ``read_time_machine`` returns.
    """
    if (isinstance(lines, str)
            or not all(isinstance(line, str) for line in lines)):
        raise ValueError(
            'lines must be a list of strings, one per line of the book.')
    words = {w for line in lines for w in line.split()}
    if not words:
        raise ValueError('the lines hold no words.')
    return words


def word_fraction(text, words):
    """The fraction of the words of `text` in the set `words` (exercise 3).

    The first and the last word are left out, since they may be cut (the
    prefix starts mid-stream, the generation stops mid-word); runs of
    anything but the letters a-z separate words, ``<unk>`` included.
    """
    _check_text(text)
    if not isinstance(words, (set, frozenset)) or not words:
        raise ValueError('words must be a non-empty set of words.')
    tokens = re.findall('[a-z]+', text.replace('<unk>', ' '))[1:-1]
    if not tokens:
        raise ValueError(
            f'{text[:40]!r} is too short: it has no whole word between '
            'its first and last ones.')
    return sum(t in words for t in tokens) / len(tokens)


def distinct_ngram_fraction(text, n):
    """Distinct character n-grams of `text` over all of its n-grams.

    A low fraction means that the text repeats itself.
    """
    _check_text(text)
    check_positive(n=n)
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    if not grams:
        raise ValueError(
            f'text of {len(text)} characters has no {n}-gram.')
    return len(set(grams)) / len(grams)


# Exercise 7: the probabilities of the actual next tokens and their means -----

def target_probabilities(model, corpus, batch_size, num_steps, ctx):
    """The model's probability of each actual next token (exercise 7).

    The tokens are those of `corpus`, read as by ``evaluate_perplexity``
    (``seq_data_iter_eval``, state carried over); returns a NumPy float64
    array with one probability per predicted token.
    """
    probs = []
    data_iter = seq_data_iter_eval(corpus, batch_size, num_steps)
    for py, y in scored_minibatches(model, data_iter, ctx):
        p = npx.softmax(py.astype('float64'))
        rows, labels = onp.arange(y.size), y.asnumpy().astype('int64')
        probs.append(p.asnumpy()[rows, labels])
    return onp.concatenate(probs)


def means(p):
    """Arithmetic, geometric and harmonic mean of `p` (exercise 7).

    `p` holds positive numbers; the means are computed in float64.
    """
    p = onp.asarray(p, dtype='float64').ravel()
    if p.size == 0 or not onp.isfinite(p).all() or (p <= 0).any():
        raise ValueError(
            'p must be a non-empty array of positive finite numbers.')
    return {'arithmetic': float(p.mean()),
            'geometric': float(onp.exp(onp.log(p).mean())),
            'harmonic': float(1 / (1 / p).mean())}

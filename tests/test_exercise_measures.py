"""Tests of the exercise tools for exercises 1, 3, 5 and 7 in d2lrnn.exercises."""
import math
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np, npx

import d2lrnn
from d2lrnn import exercises as ex

CTX = npx.cpu()


def small_model(cls=d2lrnn.RNNModelScratch, forward=d2lrnn.rnn, vocab_size=7, num_hiddens=5):
    mx.random.seed(0)
    return cls(vocab_size, num_hiddens, CTX, d2lrnn.get_params, d2lrnn.init_rnn_state, forward)


# Exercise 1 ---------------------------------------------------------------

def test_lookup_model_matches_one_hot_model_outputs_and_gradients():
    a = small_model()
    b = small_model(ex.LookupRNNScratch, ex.rnn_lookup)
    X = np.array([[0, 3, 6, 3], [2, 2, 1, 5]])
    Y = np.array([[3, 6, 3, 1], [2, 1, 5, 0]])
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    results = []
    for model in (a, b):
        with autograd.record():
            out, (H,) = model(X, model.begin_state(2, CTX))
            l = loss(out, Y.T.reshape(-1)).mean()
        l.backward()
        results.append((out, H, [p.grad.copy() for p in model.params]))
    (out_a, H_a, g_a), (out_b, H_b, g_b) = results
    assert out_a.shape == out_b.shape == (8, 7)
    assert float(np.abs(out_a - out_b).max()) < 1e-6
    assert float(np.abs(H_a - H_b).max()) < 1e-6
    for ga, gb in zip(g_a, g_b):
        assert float(np.abs(ga - gb).max()) < 1e-6
    # rows of W_xh for ids that never occur get no gradient
    assert float(np.abs(g_b[0][4]).sum()) == 0


def test_lookup_model_rejects_bad_ids_and_shapes():
    model = small_model(ex.LookupRNNScratch, ex.rnn_lookup)
    state = model.begin_state(1, CTX)
    with pytest.raises(ValueError, match='token ids must lie'):
        model(np.array([[0, 7]]), state)
    with pytest.raises(ValueError, match='shaped'):
        model(np.array([0, 1]), state)
    with pytest.raises(ValueError, match='shaped'):
        ex.rnn_lookup(np.zeros((2, 1, 7)), state, model.params)


# Exercise 3 ---------------------------------------------------------------

def test_sharpen():
    p = onp.array([0.5, 0.3, 0.2])
    assert onp.allclose(ex.sharpen(p, 1), p)
    assert onp.allclose(ex.sharpen(p, 2), p ** 2 / (p ** 2).sum())
    assert onp.allclose(ex.sharpen(p, 1e-9), [1 / 3] * 3)
    assert onp.allclose(ex.sharpen(p, 1e4), [1, 0, 0])
    assert onp.allclose(ex.sharpen([[0.1, 0.9], [0.5, 0.5]], 1).sum(axis=-1), 1)
    assert ex.sharpen([0.0, 1.0], 0.5)[0] == 0  # zero stays zero


@pytest.mark.parametrize('alpha', [0, -1, float('inf'), float('nan'), '2', True])
def test_sharpen_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match='alpha'):
        ex.sharpen([0.5, 0.5], alpha)


@pytest.mark.parametrize('p', [[], [-0.1, 1.1], [0, 0], [float('nan'), 1]])
def test_sharpen_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match='probabilities'):
        ex.sharpen(p, 1)


def test_char_entropy_and_split_tokens():
    assert ex.char_entropy('aaaa') == 0
    assert math.isclose(ex.char_entropy('abab'), 1)
    assert math.isclose(ex.char_entropy('abcd'), 2)
    assert ex.split_tokens('a<unk>b') == ['a', '<unk>', 'b']
    assert math.isclose(ex.char_entropy(ex.split_tokens('a<unk>')), 1)
    with pytest.raises(ValueError, match='no entropy'):
        ex.char_entropy('')
    with pytest.raises(ValueError, match='string or a list'):
        ex.char_entropy(3)
    with pytest.raises(ValueError, match='string'):
        ex.split_tokens(None)


def test_word_fraction_and_book_words():
    words = ex.book_words(['the time machine ', 'by h g wells'])
    assert 'machine' in words and 'wells' in words
    # first and last words are left out: 'the' 'tixe' 'machine' count
    assert math.isclose(ex.word_fraction('ime the tixe machine wel', words), 2 / 3)
    assert ex.word_fraction('x the<unk>time y', words) == 1.0
    with pytest.raises(ValueError, match='too short'):
        ex.word_fraction('the time', words)
    with pytest.raises(ValueError, match='non-empty set'):
        ex.word_fraction('a b c d', ['the'])
    with pytest.raises(ValueError, match='list of strings'):
        ex.book_words('the time machine')
    with pytest.raises(ValueError, match='no words'):
        ex.book_words(['  '])


def test_distinct_ngram_fraction():
    assert ex.distinct_ngram_fraction('abcd', 2) == 1
    assert ex.distinct_ngram_fraction('aaaa', 2) == 1 / 3
    with pytest.raises(ValueError, match='n must be a positive integer'):
        ex.distinct_ngram_fraction('abcd', 0)
    with pytest.raises(ValueError, match='no 5-gram'):
        ex.distinct_ngram_fraction('abcd', 5)


# Exercise 5 ---------------------------------------------------------------

def _epoch(mode):
    random.seed(0)
    corpus = [random.randrange(7) for _ in range(400)]
    loader = d2lrnn.SeqDataLoader(4, 5, False, -1, corpus=corpus, vocab=d2lrnn.Vocab([]))
    model = small_model()
    loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def updater(batch_size):
        d2lrnn.sgd(model.params, 1, batch_size)

    random.seed(1)
    steps = []
    ppl, speed, finite = ex.train_epoch(model, loader, loss, updater, CTX, state_mode=mode,
                                        on_step=lambda l, norm, seconds: steps.append(seconds))
    assert finite
    return ppl, speed, steps, model


def test_train_epoch_state_modes_keep_equals_detach_and_retain_differs():
    ppl_d, speed, steps, model_d = _epoch('detach')
    ppl_k, _, _, model_k = _epoch('keep')
    ppl_r, _, _, model_r = _epoch('retain')
    assert speed > 0 and len(steps) >= 18 and all(t > 0 for t in steps)
    assert ppl_d == ppl_k
    for a, b in zip(model_d.params, model_k.params):
        assert bool((a == b).all())
    assert any(float(np.abs(a - b).max()) > 0 for a, b in zip(model_d.params, model_r.params))
    assert abs(ppl_r / ppl_d - 1) < 0.05


def test_train_epoch_rejects_unknown_state_mode():
    with pytest.raises(ValueError, match='state_mode must be one of'):
        ex.train_epoch(None, [], None, None, CTX, state_mode='cut')


# Exercise 7 ---------------------------------------------------------------

def test_means_and_their_order():
    m = ex.means([0.5, 0.25])
    assert math.isclose(m['arithmetic'], 0.375)
    assert math.isclose(m['geometric'], math.sqrt(0.125))
    assert math.isclose(m['harmonic'], 1 / 3)
    m = ex.means([0.2] * 5)
    assert math.isclose(m['arithmetic'], 0.2) and math.isclose(m['harmonic'], 0.2)
    for bad in ([], [0.0, 1.0], [-1.0], [float('inf')]):
        with pytest.raises(ValueError, match='positive finite'):
            ex.means(bad)


def test_target_probabilities_give_the_evaluated_perplexity():
    model = small_model()
    random.seed(0)
    corpus = [random.randrange(7) for _ in range(300)]
    p = ex.target_probabilities(model, corpus, 4, 5, CTX)
    assert p.dtype == onp.float64 and ((p > 0) & (p < 1)).all()
    assert len(p) == (len(corpus) - 1) // 4 // 5 * 5 * 4  # rows x whole blocks x steps
    ppl = d2lrnn.evaluate_perplexity(model, d2lrnn.seq_data_iter_eval(corpus, 4, 5), CTX)
    assert math.isclose(1 / ex.means(p)['geometric'], ppl, rel_tol=1e-5)

"""Character n-gram count models (d2lrnn.ngram): distributions, hand-worked numbers, errors."""
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from d2lrnn import memory, ngram
from d2lrnn.ngram import NGramLM, kn_discounts, ngram_perplexity
from d2lrnn.results import cpu_model

# The hand-worked examples: a vocabulary of 3 tokens {0, 1, 2}; 0 never occurs.
TEXT = [1, 2, 1, 2, 2, 1, 1, 2]
SMOOTHINGS = [dict(smoothing='kneser-ney'), dict(smoothing='kneser-ney', discount=0.3),
              dict(smoothing='add-k', k=0.1), dict(smoothing='add-k', k=1.0)]


def random_text(vocab_size, length, seed):
    """A skewed random text over ids 1..vocab_size-1 (id 0, like <unk>, never occurs)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab_size)
    return list(rng.choice(np.arange(1, vocab_size), size=length, p=weights / weights.sum()))


@pytest.mark.parametrize('order', [1, 2, 3, 5, 8])
@pytest.mark.parametrize('params', SMOOTHINGS)
def test_probs_sum_to_one_for_seen_and_unseen_contexts(order, params):
    vocab_size = 7
    train = random_text(vocab_size, 400, seed=order)
    model = NGramLM(order, vocab_size, **params).fit(train)
    rng = np.random.default_rng(0)
    contexts = [train[i - 7:i] for i in range(7, len(train), 13)]         # seen
    contexts += [list(rng.integers(0, vocab_size, size=n)) for n in range(9)]  # mostly unseen
    contexts += [[0] * 7, [], train[:1], train[-3:]]   # <unk>, empty, short, end of text
    for context in contexts:
        p = model.probs(context)
        assert p.shape == (vocab_size,)
        assert abs(p.sum() - 1) < 1e-9, (context, p.sum())
        assert (p > 0).all(), (context, p)    # <unk> (id 0) too


@pytest.mark.parametrize('order', [1, 2, 4, 6])
@pytest.mark.parametrize('params', SMOOTHINGS)
def test_log_probs_equal_probs_at_every_position(order, params):
    # log_probs is vectorised over the text; probs is computed context by
    # context: they must agree, on seen and unseen text, short contexts included.
    vocab_size = 6
    model = NGramLM(order, vocab_size, **params).fit(random_text(vocab_size, 300, seed=1))
    test = random_text(vocab_size, 60, seed=2) + [0, 3, 0]
    expected = [math.log(model.probs(test[:i])[test[i]]) for i in range(1, len(test))]
    np.testing.assert_allclose(model.log_probs(test), expected, rtol=1e-12)


def test_kneser_ney_by_hand():
    # TEXT = 1 2 1 2 2 1 1 2, order 2, one discount D = 0.5, V = 3.
    # Bigram counts (order 2 uses raw counts): c(1 2) = 3, c(1 1) = 1,
    # c(2 1) = 2, c(2 2) = 1; context totals c(1 .) = 4, c(2 .) = 3.
    # Unigrams use continuation counts, the number of distinct left neighbours,
    # the start of the text being one more for the first token (1):
    #   a(1) = |{2, 1, start}| = 3, a(2) = |{1, 2}| = 2, a(0) = 0; sum 5.
    #   gamma() = D * 2 types / 5 = 0.2, shared uniformly: 0.2 / 3 = 1/15 each.
    #   p(0) = 1/15, p(1) = 2.5/5 + 1/15 = 17/30, p(2) = 1.5/5 + 1/15 = 11/30.
    # After 1: gamma(1) = 0.5 * 2 / 4 = 1/4.
    #   p(0|1) = 1/4 * 1/15 = 1/60, p(1|1) = 0.5/4 + 1/4 * 17/30 = 4/15,
    #   p(2|1) = 2.5/4 + 1/4 * 11/30 = 43/60.
    # After 2: gamma(2) = 0.5 * 2 / 3 = 1/3.
    #   p(0|2) = 1/3 * 1/15 = 1/45, p(1|2) = 1.5/3 + 1/3 * 17/30 = 31/45,
    #   p(2|2) = 0.5/3 + 1/3 * 11/30 = 13/45.
    # After 0 (never seen): the unigram distribution.
    model = NGramLM(2, 3, discount=0.5).fit(TEXT)
    unigram = [1 / 15, 17 / 30, 11 / 30]
    np.testing.assert_allclose(model.probs([]), unigram, rtol=1e-12)
    np.testing.assert_allclose(model.probs([0]), unigram, rtol=1e-12)
    np.testing.assert_allclose(model.probs([2, 1]), [1 / 60, 4 / 15, 43 / 60], rtol=1e-12)
    np.testing.assert_allclose(model.probs([2]), [1 / 45, 31 / 45, 13 / 45], rtol=1e-12)
    # Scoring TEXT itself: tokens 2..8 given the one before.
    expected = [43 / 60, 31 / 45, 43 / 60, 13 / 45, 31 / 45, 4 / 15, 43 / 60]
    np.testing.assert_allclose(model.log_probs(TEXT), np.log(expected), rtol=1e-12)
    assert model.perplexity(TEXT) == pytest.approx(np.prod(expected) ** (-1 / 7), rel=1e-12)
    assert model.bits_per_char(TEXT) == pytest.approx(
        math.log2(model.perplexity(TEXT)), rel=1e-12)


def test_add_k_by_hand():
    # TEXT, order 2, k = 0.5, V = 3: p(w | h) = (c(h w) + 0.5) / (c(h .) + 1.5).
    #   After 1: c(1 0) = 0, c(1 1) = 1, c(1 2) = 3, c(1 .) = 4:
    #   (0.5, 1.5, 3.5) / 5.5 = (1/11, 3/11, 7/11).
    #   After 2: c(2 1) = 2, c(2 2) = 1: (0.5, 2.5, 1.5) / 4.5 = (1/9, 5/9, 1/3).
    #   After 0: no counts, uniform 1/3.
    #   No context: unigram counts (0, 4, 4) of 8: (0.5, 4.5, 4.5) / 9.5.
    model = NGramLM(2, 3, 'add-k', k=0.5).fit(TEXT)
    np.testing.assert_allclose(model.probs([1]), [1 / 11, 3 / 11, 7 / 11], rtol=1e-12)
    np.testing.assert_allclose(model.probs([2]), [1 / 9, 5 / 9, 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(model.probs([0]), [1 / 3] * 3, rtol=1e-12)
    np.testing.assert_allclose(model.probs([]), [1 / 19, 9 / 19, 9 / 19], rtol=1e-12)


def test_modified_kneser_ney_discounts():
    # n1 = 10, n2 = 5, n3 = 3, n4 = 2: Y = 10 / (10 + 2 * 5) = 0.5,
    # D1 = 1 - 2 * 0.5 * 5/10 = 0.5, D2 = 2 - 3 * 0.5 * 3/5 = 1.1,
    # D3+ = 3 - 4 * 0.5 * 2/3 = 5/3. Counts above 4 do not enter.
    counts = [1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [9] * 7
    assert kn_discounts(counts) == pytest.approx((0.5, 1.1, 5 / 3), rel=1e-12)
    # n1 = 2, n3 = 1, nothing counted 2 or 4 times: Y = 1, D1 = 1 - 0 = 1 and
    # D3+ = 3 - 0 = 3 lie in (0, j]; D2 has n2 = 0 in its denominator: Y.
    assert kn_discounts([1, 1, 3]) == pytest.approx((1.0, 1.0, 3.0))
    # n1 = n2 = 1, n3 = 10: Y = 1/3, D2 = 2 - 3 * 1/3 * 10 = -8 < 0: Y instead.
    assert kn_discounts([1, 2] + [3] * 10) == pytest.approx((1 / 3, 1 / 3, 3.0))
    # Nothing counted once: no estimate at all, the fallback discount.
    assert kn_discounts([5, 7]) == pytest.approx((0.75, 0.75, 0.75))


def test_fit_uses_estimated_discounts_per_order():
    text = random_text(6, 500, seed=3)
    model = NGramLM(3, 6).fit(text)
    assert len(model.discounts) == 3
    # The top order's discounts come from its raw trigram counts.
    _, counts = np.unique([tuple(text[i:i + 3]) for i in range(len(text) - 2)],
                          axis=0, return_counts=True)
    assert model.discounts[2] == pytest.approx(kn_discounts(counts))


def test_add_k_order_1_tends_to_relative_frequencies():
    model = NGramLM(1, 3, 'add-k', k=1e-12).fit(TEXT)
    np.testing.assert_allclose(model.probs([]), [0, 0.5, 0.5], atol=1e-11)
    np.testing.assert_allclose(model.probs([1, 2]), [0, 0.5, 0.5], atol=1e-11)


def test_uniform_model_has_perplexity_vocab_size():
    vocab_size = 5
    # Every token once: add-k of order 1 is exactly uniform; so is add-k of
    # order 3 on contexts it never saw.
    model = NGramLM(1, vocab_size, 'add-k', k=1.0).fit(list(range(vocab_size)))
    assert model.perplexity([4, 0, 0, 3, 1, 2]) == pytest.approx(vocab_size, rel=1e-12)
    assert model.bits_per_char([4, 0, 3]) == pytest.approx(math.log2(vocab_size), rel=1e-12)
    unseen = NGramLM(3, vocab_size, 'add-k').fit([1, 1, 1])
    assert unseen.perplexity([0, 2, 3, 4, 0, 2]) == pytest.approx(vocab_size, rel=1e-12)


def test_ngram_perplexity_fits_then_scores():
    train, test = random_text(5, 300, seed=4), random_text(5, 50, seed=5)
    expected = NGramLM(3, 5).fit(train).perplexity(test)
    assert ngram_perplexity(train, test, 5, 3) == expected
    assert ngram_perplexity(train, test, 5, 3, 'add-k', k=0.5) == \
        NGramLM(3, 5, 'add-k', k=0.5).fit(train).perplexity(test)


def test_a_longer_context_helps_on_a_repetitive_text():
    text = [1, 2, 3, 4] * 50
    perplexities = [ngram_perplexity(text, text, 5, n) for n in (1, 2)]
    assert perplexities[0] > 3.5 and perplexities[1] < 1.2


# ---------------------------------------------------------------- memory

def test_an_order_whose_index_cannot_fit_is_refused_before_allocating(monkeypatch):
    """The index holds order + 1 numbers per token: 8 GB for 1,000 tokens at order 10**6."""
    monkeypatch.setattr(ngram, 'memory_limit', lambda: 2 * 10 ** 9)
    ids = random_text(28, 1000, seed=0)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=(
                r'order 1,000,000 over a vocabulary of 28 needs about \d\.\d GB to fit 1,000 '
                r'tokens, more than the 2\.0 GB of memory available here')):
            NGramLM(10 ** 6, 28).fit(ids)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 ** 6


def test_scoring_and_long_contexts_are_checked_too(monkeypatch):
    model = NGramLM(10 ** 4, 28).fit(random_text(28, 200, seed=0))
    monkeypatch.setattr(ngram, 'memory_limit', lambda: 10 ** 8)
    long_text = random_text(28, 100_000, seed=1)
    with pytest.raises(MemoryError, match=r'needs about 8\.0 GB to score 100,000 tokens'):
        model.perplexity(long_text)
    with pytest.raises(MemoryError, match=r'0\.8 GB to score the next token after 9,999 tokens'):
        model.probs(long_text)
    vocabulary = NGramLM(2, 10 ** 9).fit([1, 2, 3])
    with pytest.raises(MemoryError, match=r'vocabulary of 1,000,000,000 needs about 32\.0 GB'):
        vocabulary.probs([1])


@pytest.mark.parametrize('order, vocab_size, length', [
    (3000, 28, 10), (1000, 28, 1000), (8, 28, 50_000), (3, 10 ** 5, 30_000), (300, 2, 3000),
    (1, 5, 10)])
def test_the_memory_estimate_bounds_what_fitting_and_scoring_take(order, vocab_size, length):
    """On uniform random text, which has about as many n-grams as the bound allows."""
    ids = np.random.default_rng(order).integers(0, vocab_size, length)
    context = ids[length - min(length, order - 1):]
    model = NGramLM(order, vocab_size)
    for task, estimate in (
            (lambda: model.fit(ids), model.needed_bytes(length, fitting=True)),
            (lambda: model.log_probs(ids), model.needed_bytes(length)),
            (lambda: model.probs(context), model.needed_bytes(len(context), distributions=1))):
        tracemalloc.start()
        try:
            task()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # An upper bound, and not so loose that it refuses what would fit.
        assert peak <= estimate <= 2 * peak + ngram.BASE_BYTES, (peak, estimate)


def test_the_ngram_count_bound_is_the_count_of_every_possible_ngram():
    for order, vocab_size, length in [(5, 3, 40), (1, 7, 5), (9, 1, 6), (4, 2, 2), (3, 50, 9)]:
        possible = sum(min(vocab_size ** k, length - k + 1) for k in range(1, min(order, length) + 1))
        assert ngram._num_ngrams(order, vocab_size, length) == possible


def test_the_memory_limit_follows_ulimit_and_the_memory_still_available(monkeypatch):
    real = memory.resource.getrlimit
    monkeypatch.setattr(memory.resource, 'getrlimit', lambda which: (
        (3 * 10 ** 8, 3 * 10 ** 8) if which == memory.resource.RLIMIT_AS else real(which)))
    monkeypatch.setattr(memory, 'available_memory', lambda: 4 * 10 ** 8)
    assert memory.memory_limit() == 3 * 10 ** 8
    # not the machine's memory: what other programs leave (a busy machine)
    monkeypatch.setattr(memory, 'available_memory', lambda: 2 * 10 ** 8)
    assert memory.memory_limit() == 2 * 10 ** 8 < memory.physical_memory()


def test_a_vocabulary_too_large_for_int64_codes_is_refused():
    with pytest.raises(ValueError, match='vocab_size 10,000,000,000,000,000 is too large for a '
                                         'text of 1,200 tokens'):
        NGramLM(2, 10 ** 16).fit([1, 2, 3] * 400)


@pytest.mark.parametrize('kwargs, match', [
    (dict(order=0, vocab_size=3), 'order must be an integer >= 1'),
    (dict(order=2.0, vocab_size=3), 'order must be an integer >= 1'),
    (dict(order=True, vocab_size=3), 'order must be an integer >= 1'),
    (dict(order=2, vocab_size=0), 'vocab_size must be an integer >= 1'),
    (dict(order=2, vocab_size=3, smoothing='laplace'), 'unknown smoothing'),
    (dict(order=2, vocab_size=3, smoothing='add-k', k=0), 'k must be a finite number > 0'),
    (dict(order=2, vocab_size=3, smoothing='add-k', k=-1), 'k must be a finite number > 0'),
    (dict(order=2, vocab_size=3, smoothing='add-k', k=float('nan')), 'k must be'),
    (dict(order=2, vocab_size=3, discount=0), r'discount must lie in \(0, 1\]'),
    (dict(order=2, vocab_size=3, discount=1.5), r'discount must lie in \(0, 1\]'),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NGramLM(**kwargs)


@pytest.mark.parametrize('ids, match', [
    ([], 'ids is empty'),
    ([1, 3, 2], r'ids\[1\] = 3 is not a token id of a vocabulary of 3'),
    ([1, -1], r'ids\[1\] = -1 is not a token id'),
    ([1.0, 2.0], 'integer token ids'),
    (['a', 'b'], 'integer token ids'),
    ([[1, 2], [2, 1]], 'flat sequence'),
])
def test_bad_training_text_raises(ids, match):
    with pytest.raises(ValueError, match=match):
        NGramLM(2, 3).fit(ids)


def test_bad_scoring_input_raises():
    model = NGramLM(2, 3).fit(TEXT)
    with pytest.raises(ValueError, match='has only 1 token.*at least 2'):
        model.perplexity([1])
    with pytest.raises(ValueError, match='ids is empty'):
        model.log_probs([])
    with pytest.raises(ValueError, match=r'context\[0\] = 7 is not a token id'):
        model.probs([7])
    with pytest.raises(ValueError, match='ids is empty'):
        ngram_perplexity([], TEXT, 3, 2)
    with pytest.raises(RuntimeError, match='call fit'):
        NGramLM(2, 3).probs([1])


def test_baselines_script_chooses_on_validation_and_reads_test(tmp_path):
    from experiments import baselines
    out = tmp_path / 'baselines.json'
    baselines.main(['--orders', '1', '2', '--ks', '0.5', '2', '--out', str(out)])
    report = json.loads(out.read_text())
    assert report['vocab_size'] == 28
    assert report['machine'] == {**report['machine'], 'cpu_model': cpu_model()}
    assert set(report['fits']) == {'train_80pct', 'first_10k'}
    for name, fit in report['fits'].items():
        results = fit['results']
        assert set(results) == {'kneser_ney', 'add_k_0.5', 'add_k_2'}
        # both fits are scored on the same validation and test parts
        assert fit['scored_tokens']['valid'] == 17149
        assert fit['scored_tokens']['test'] == 17149  # the last tenth
        for text in ('valid', 'test'):
            kn = [results['kneser_ney'][n]['scores'][text] for n in ('1', '2')]
            # A character's predecessor tells a lot: order 2 beats order 1.
            assert 1 < kn[1]['perplexity'] < kn[0]['perplexity'] < 28
            assert kn[0]['bits_per_char'] == pytest.approx(math.log2(kn[0]['perplexity']))
        chosen = fit['chosen']
        for family, names in (('kneser_ney', ['kneser_ney']),
                              ('add_k', ['add_k_0.5', 'add_k_2'])):
            row = chosen[family]
            candidates = [results[m][n]['scores'] for m in names for n in ('1', '2')]
            assert row['valid_ppl'] == min(c['valid']['perplexity'] for c in candidates)
            scores = results[row['model']][str(row['order'])]['scores']
            assert (row['valid_ppl'], row['test_ppl']) == (
                scores['valid']['perplexity'], scores['test']['perplexity'])
        assert chosen['add_k']['k'] == float(chosen['add_k']['model'][len('add_k_'):])
        assert chosen['best'] == min(chosen['kneser_ney'], chosen['add_k'],
                                     key=lambda r: r['valid_ppl'])
    assert report['fits']['first_10k']['train_tokens'] == 10000
    assert 'war_of_the_worlds_ppl' in report['fits']['train_80pct']['chosen']['best']

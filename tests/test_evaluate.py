"""Held-out perplexity: splitting the corpus, a repeatable iterator (listed or streamed), the
score itself."""
import math
import random

import numpy as onp
import pytest
from mxnet import np

import d2lrnn
from d2lrnn.evaluate import bits_per_char, seq_data_stream_eval


def test_split_corpus_cuts_at_the_fraction():
    corpus = list(range(101))
    train, valid = d2lrnn.split_corpus(corpus, 0.9)
    assert len(train) == 90 and train + valid == corpus
    assert d2lrnn.split_corpus([1, 2], 0.5) == ([1], [2])


@pytest.mark.parametrize('fraction', [0, 1, 1.5, -0.1])
def test_split_corpus_refuses_fractions_outside_0_1(fraction):
    with pytest.raises(ValueError, match='strictly between 0 and 1'):
        d2lrnn.split_corpus(list(range(100)), fraction)


@pytest.mark.parametrize('corpus, fraction', [([1], 0.5), ([], 0.5), (list(range(10)), 0.05)])
def test_split_corpus_refuses_an_empty_part(corpus, fraction):
    with pytest.raises(ValueError, match='too short to split'):
        d2lrnn.split_corpus(corpus, fraction)


def test_three_way_split_is_contiguous_80_10_10_and_its_test_part_is_the_last_tenth():
    corpus = list(range(171489))
    train, valid, test = d2lrnn.split_train_valid_test(corpus)
    assert train + valid + test == corpus
    assert (len(train), len(valid), len(test)) == (137191, 17149, 17149)
    assert test == d2lrnn.split_corpus(corpus, 0.9)[1]
    train, valid, test = d2lrnn.split_train_valid_test(list(range(10)), 0.2, 0.3)
    assert (train, valid, test) == ([0, 1, 2, 3, 4], [5, 6], [7, 8, 9])


@pytest.mark.parametrize('valid, test', [(0, 0.1), (0.1, 0), (0.5, 0.5), (-0.1, 0.2)])
def test_three_way_split_refuses_fractions_that_leave_a_part_empty(valid, test):
    with pytest.raises(ValueError, match='sum to less than 1'):
        d2lrnn.split_train_valid_test(list(range(100)), valid, test)
    with pytest.raises(ValueError, match='too short'):
        d2lrnn.split_train_valid_test([1, 2], 0.25, 0.25)


def test_eval_iterator_is_sequential_from_the_first_token_and_repeatable():
    corpus = list(range(100))
    batches = d2lrnn.seq_data_iter_eval(corpus, 3, 5)
    assert len(batches) == (99 // 3) // 5
    first_X, first_Y = batches[0]
    assert first_X[0, 0] == 0 and first_X.shape == (3, 5)
    for X, Y in batches:
        onp.testing.assert_array_equal(Y.asnumpy(), X.asnumpy() + 1)
    again = d2lrnn.seq_data_iter_eval(corpus, 3, 5)
    assert all((a[0] == b[0]).all() for a, b in zip(batches, again))


def test_eval_iterator_refuses_too_short_text():
    with pytest.raises(ValueError, match='too few to score.*at least 21'):
        d2lrnn.seq_data_iter_eval(list(range(20)), 4, 5)
    assert len(d2lrnn.seq_data_iter_eval(list(range(21)), 4, 5)) == 1
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        d2lrnn.seq_data_iter_eval(list(range(20)), 0, 5)


def test_perplexity_equals_a_direct_computation(seed, ctx, make_model):
    model = make_model(6, 8)
    for p in model.params:
        p[:] = p * 50  # far from uniform
    corpus = [int(i) for i in onp.random.default_rng(0).integers(0, 6, size=41)]
    ppl = d2lrnn.evaluate_perplexity(model, d2lrnn.seq_data_iter_eval(corpus, 1, 10), ctx)
    # The same 40 predictions in one pass of 40 steps, log-softmax in NumPy.
    logits, _ = model(np.array([corpus[:40]]), model.begin_state(1, ctx))
    logits = logits.asnumpy().astype('float64')
    log_p = logits - onp.log(onp.exp(logits).sum(axis=1, keepdims=True))
    expected = math.exp(-log_p[onp.arange(40), corpus[1:]].mean())
    assert ppl == pytest.approx(expected, rel=1e-5)
    assert abs(math.log(ppl) - math.log(6)) > 0.1  # not merely the uniform value


def test_evaluation_does_not_change_the_model(seed, ctx, make_model, time_machine):
    corpus, vocab = time_machine
    model = make_model(len(vocab), 16)
    before = [p.asnumpy() for p in model.params]
    ppl = d2lrnn.evaluate_perplexity(model, d2lrnn.seq_data_iter_eval(corpus[:2000], 4, 35), ctx)
    assert ppl == pytest.approx(len(vocab), rel=0.05)  # untrained: nearly uniform
    assert all((a == p.asnumpy()).all() for a, p in zip(before, model.params))


def test_evaluation_of_nothing_is_refused(ctx, make_model):
    with pytest.raises(ValueError, match='yielded no minibatch'):
        d2lrnn.evaluate_perplexity(make_model(6, 4), [], ctx)


def test_scored_minibatches_carry_the_state_and_line_up_the_labels(seed, ctx, make_model):
    from d2lrnn.evaluate import scored_minibatches
    model = make_model(6, 8)
    corpus = [int(i) for i in onp.random.default_rng(1).integers(0, 6, size=41)]
    data = d2lrnn.seq_data_iter_eval(corpus, 1, 10)
    scored = list(scored_minibatches(model, data, ctx))
    assert len(scored) == 4
    # Carried over: the four minibatches give what one pass over 40 steps gives.
    whole, _ = model(np.array([corpus[:40]]), model.begin_state(1, ctx))
    py = np.concatenate([p for p, _ in scored], axis=0)
    assert onp.allclose(py.asnumpy(), whole.asnumpy(), atol=1e-6)
    assert [int(t) for _, y in scored for t in y.asnumpy()] == corpus[1:41]
    # With use_random_iter every minibatch starts again from a zero state.
    fresh = list(scored_minibatches(model, data, ctx, use_random_iter=True))
    first, _ = model(np.array([corpus[10:20]]), model.begin_state(1, ctx))
    assert onp.allclose(fresh[1][0].asnumpy(), first.asnumpy(), atol=1e-6)


# ------------------------------------------------------------ streamed, for texts too large to hold

def pieces(corpus, rng):
    """A read_ids over `corpus` that yields each stretch in pieces of random sizes."""
    def read(start, stop):
        while start < stop:
            size = rng.randint(1, 7)
            yield onp.array(corpus[start:min(start + size, stop)])
            start += size
    return read


@pytest.mark.parametrize('length, batch_size, num_steps', [
    (41, 1, 10), (100, 3, 5), (21, 4, 5), (2000, 8, 10), (1234, 32, 7)])
def test_streamed_minibatches_are_the_listed_ones_value_for_value(length, batch_size,
                                                                  num_steps):
    corpus = [int(i) for i in onp.random.default_rng(length).integers(0, 28, size=length)]
    listed = d2lrnn.seq_data_iter_eval(corpus, batch_size, num_steps)
    streamed = list(seq_data_stream_eval(pieces(corpus, random.Random(0)), length,
                                         batch_size, num_steps))
    assert len(streamed) == len(listed) >= 1
    for (X, Y), (X_, Y_) in zip(listed, streamed):
        assert X.dtype == X_.dtype == onp.float32 and X.shape == X_.shape
        onp.testing.assert_array_equal(X.asnumpy(), X_.asnumpy())
        onp.testing.assert_array_equal(Y.asnumpy(), Y_.asnumpy())


def test_streamed_perplexity_is_the_listed_one_bit_for_bit(seed, ctx, time_machine,
                                                             native_library):
    corpus, vocab = time_machine
    model = d2lrnn.FastRNNScratch(len(vocab), 32, ctx)
    listed = d2lrnn.evaluate_perplexity(model, d2lrnn.seq_data_iter_eval(corpus, 8, 10), ctx)
    streamed = d2lrnn.evaluate_perplexity(
        model, seq_data_stream_eval(pieces(corpus, random.Random(1)), len(corpus), 8, 10), ctx)
    assert streamed == listed


def test_streaming_refuses_what_the_list_refuses():
    with pytest.raises(ValueError, match='too few to score.*at least 21'):
        next(seq_data_stream_eval(pieces(list(range(20)), None), 20, 4, 5))
    with pytest.raises(ValueError, match='fewer ids than asked'):
        list(seq_data_stream_eval(lambda start, stop: iter([onp.arange(3)]), 100, 3, 5))


def test_bits_per_char():
    assert d2lrnn.bits_per_char(2.0) == 1.0
    assert bits_per_char(28.0) == pytest.approx(math.log2(28))

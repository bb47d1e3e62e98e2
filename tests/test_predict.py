"""predict_ch8 (D2L 8.5.4) and its sampling variant (exercise 3)."""
import numpy as onp
import pytest
from mxnet import np

import d2lrnn
from d2lrnn.predict import _sample


@pytest.fixture
def model(seed, time_machine, make_model):
    """An untrained model whose weights are large enough for clear preferences."""
    model = make_model(len(time_machine[1]), 32)
    for p in model.params:
        p[:] = p * 100
    return model


def greedy_by_hand(prefix, num_predicts, model, vocab):
    """Greedy decoding written again: one step at a time through `rnn`, argmax in NumPy."""
    state = model.begin_state(1, None)
    ids = [vocab[c] for c in prefix]
    for i in ids[:-1]:
        _, state = model(np.array([[i]]), state)
    for _ in range(num_predicts):
        Y, state = model(np.array([[ids[-1]]]), state)
        ids.append(int(onp.argmax(Y.asnumpy()[0])))
    return ''.join(vocab.to_tokens(ids))


def test_greedy_prediction(model, time_machine, ctx):
    vocab = time_machine[1]
    got = d2lrnn.predict_ch8('time traveller ', 10, model, vocab, ctx)
    assert len(got) == len('time traveller ') + 10
    assert got == greedy_by_hand('time traveller ', 10, model, vocab)
    assert d2lrnn.predict_ch8('ab', 0, model, vocab, ctx) == 'ab'


def test_characters_outside_the_vocabulary_read_as_unk(model, time_machine, ctx):
    assert d2lrnn.predict_ch8('T', 0, model, time_machine[1], ctx) == '<unk>'


def test_the_same_seed_gives_the_same_sample(model, time_machine, ctx):
    vocab = time_machine[1]
    def sample(seed):
        return d2lrnn.predict_ch8('time', 40, model, vocab, ctx, sample=True, seed=seed)
    assert sample(5) == sample(5)
    assert len({sample(s) for s in range(4)}) > 1


def test_a_huge_alpha_is_greedy(model, time_machine, ctx):
    vocab = time_machine[1]
    greedy = d2lrnn.predict_ch8('time', 40, model, vocab, ctx)
    assert d2lrnn.predict_ch8('time', 40, model, vocab, ctx,
                              sample=True, alpha=1e9, seed=1) == greedy


def test_samples_follow_p_to_the_power_alpha():
    logits = np.array([[0.0, 1.0, 2.0, -1.0]])
    p = onp.exp([0.0, 1.0, 2.0, -1.0])
    p /= p.sum()
    rng = onp.random.default_rng(0)
    for alpha in (0.5, 2):
        q = p ** alpha / (p ** alpha).sum()
        draws = [_sample(logits, alpha, rng) for _ in range(5000)]
        freq = onp.bincount(draws, minlength=4) / len(draws)
        onp.testing.assert_allclose(freq, q, atol=0.03)  # 4 standard errors


@pytest.mark.parametrize('kwargs, message', [
    (dict(prefix=''), 'prefix must be a non-empty string'),
    (dict(prefix=None), 'prefix must be a non-empty string'),
    (dict(num_predicts=-1), r'num_predicts must be an integer >= 0'),
    (dict(num_predicts=2.5), r'num_predicts must be an integer >= 0'),
    (dict(sample=True, alpha=0), 'alpha must be a finite number > 0'),
    (dict(sample=True, alpha=-2), 'alpha must be a finite number > 0'),
    (dict(sample=True, alpha=float('inf')), 'alpha must be a finite number > 0'),
    (dict(sample=True, alpha='2'), 'alpha must be a finite number > 0')])
def test_bad_arguments_are_refused(model, time_machine, ctx, kwargs, message):
    args = dict(prefix='time', num_predicts=5, model=model, vocab=time_machine[1], ctx=ctx)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        d2lrnn.predict_ch8(**args)

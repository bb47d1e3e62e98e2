"""d2lrnn.checks: one way to validate arguments, one clear error for each."""
import types

import numpy as onp
import pytest

from d2lrnn import checks, data


@pytest.mark.parametrize('value', [1, 0.5, onp.float32(0.25), onp.float64(3.0), onp.int64(2)])
def test_check_positive_number_accepts_finite_positive_numbers(value):
    checks.check_positive_number(lr=value)


@pytest.mark.parametrize('value', [0, -1, 0.0, float('inf'), float('nan'), onp.float64('nan'),
                                   True, '1', None])
def test_check_positive_number_names_the_argument(value):
    with pytest.raises(ValueError, match='lr must be a finite number > 0'):
        checks.check_positive_number(lr=value)


@pytest.mark.parametrize('check, good, bad, message', [
    (checks.check_positive, [1, onp.int64(3)], [0, -1, 2.0, True, '2', None],
     'must be a positive integer'),
    (checks.check_nonnegative, [0, 5, onp.int32(2)], [-1, 0.5, False, '0', None],
     'must be an integer >= 0'),
    (checks.check_positive_number, [1, 0.5, onp.float32(0.25)],
     [0, -1, float('inf'), float('nan'), True, '1', None], 'must be a finite number > 0'),
    (checks.check_fraction, [0, 0.5, onp.float64(0.99)], [1, -0.1, float('nan'), True, '0.5'],
     'must be at least 0 and below 1'),
    (checks.check_nonempty_string, ['a', 'time'], ['', None, 3, ['a']],
     'must be a non-empty string'),
    (checks.check_nonnegative_number, [0, 0.5, onp.float32(2)],
     [-1, float('inf'), float('nan'), True, '0', None], 'must be a finite number >= 0'),
    (checks.check_open_fraction, [0.5, onp.float64(0.9), 1e-9],
     [0, 1, 1.5, float('nan'), True, '0.5', None], 'must lie strictly between 0 and 1')])
def test_each_check_names_the_argument_and_the_value(check, good, bad, message):
    for value in good:
        check(setting=value)
    for value in bad:
        with pytest.raises(ValueError) as e:
            check(setting=value)
        assert str(e.value) == f'setting {message}, got {value!r}.'


def test_a_check_of_several_arguments_names_the_first_bad_one():
    with pytest.raises(ValueError, match='^num_steps must be a positive integer, got 0'):
        checks.check_positive(batch_size=2, num_steps=0, num_hiddens=-1)


def test_infinity_is_a_clipping_threshold_none_means_no_clipping():
    checks.check_clipping_threshold(float('inf'))
    checks.check_theta_or_none(None)
    checks.check_theta_or_none(0.5)
    with pytest.raises(ValueError, match=r'finite number > 0 or None \(no clipping\), got inf'):
        checks.check_theta_or_none(float('inf'))


def test_alpha_is_checked_only_when_sampling():
    model, vocab = types.SimpleNamespace(vocab_size=3), 'abc'  # sizes fit
    checks.check_prediction('t', 0, model, vocab, sample=False, alpha=-1)
    with pytest.raises(ValueError, match='alpha must be a finite number > 0, got -1'):
        checks.check_prediction('t', 0, model, vocab, sample=True, alpha=-1)


def test_a_model_must_have_room_for_every_token_of_the_vocabulary():
    checks.check_vocab_fits(types.SimpleNamespace(vocab_size=28), range(28))
    checks.check_vocab_fits(types.SimpleNamespace(vocab_size=30), range(28))
    checks.check_vocab_fits(object(), range(28))  # a model that does not say
    with pytest.raises(ValueError, match='has 28 tokens but the model was built for 27'):
        checks.check_vocab_fits(types.SimpleNamespace(vocab_size=27), range(28))


def test_token_ids_must_lie_in_the_vocabulary():
    checks.check_token_ids(onp.array([[0, 27]]), 28)
    checks.check_token_ids(onp.zeros((0, 3)), 28)  # no ids, nothing to refuse
    for ids in ([[0, 28]], [[-1, 3]]):
        with pytest.raises(ValueError, match=r'token ids must lie in \[0, 28\)'):
            checks.check_token_ids(onp.array(ids), 28)


def test_check_sha1_returns_the_path_it_checked():
    assert checks.check_sha1(data.TIME_MACHINE, data.TIME_MACHINE_SHA1) == data.TIME_MACHINE


def test_check_at_least_and_check_one_of_name_the_bound_and_the_choices():
    checks.check_at_least(1, order=1, vocab_size=onp.int64(3))
    for value in (0, 1.0, True, '2', None):
        with pytest.raises(ValueError) as e:
            checks.check_at_least(1, order=value)
        assert str(e.value) == f'order must be an integer >= 1, got {value!r}.'
    checks.check_one_of(('tanh', 'relu'), activation='relu')
    with pytest.raises(ValueError) as e:
        checks.check_one_of(('tanh', 'relu'), activation='sigmoid')
    assert str(e.value) == "activation must be one of ('tanh', 'relu'), got 'sigmoid'."


def test_check_that_makes_a_check_for_a_rule_the_others_lack():
    check_even = checks.check_that(lambda v: checks.is_integer(v) and v % 2 == 0,
                                   'be an even integer')
    check_even(a=2, b=onp.int32(4))
    with pytest.raises(ValueError) as e:
        check_even(a=2, b=3, c=5)
    assert str(e.value) == 'b must be an even integer, got 3.'


# --- the package's functions check with these: a wrong type is a ValueError too ---


def _bad_arguments():
    from mxnet import npx

    import d2lrnn
    from d2lrnn.optim import Adam, cosine_schedule
    return [
        (lambda: d2lrnn.FastRNNScratch(28, 8, npx.cpu(), dropout='0.1'),
         "dropout must be at least 0 and below 1, got '0.1'"),
        (lambda: d2lrnn.FastRNNScratch(28, 8, npx.cpu(), dropout=1.0),
         'dropout must be at least 0 and below 1, got 1.0'),
        (lambda: cosine_schedule(1., 10, warmup_steps='2'),
         "warmup_steps must be an integer at least 0 and below total_steps=10, got '2'"),
        (lambda: cosine_schedule(1., 10, warmup_steps=2.5),
         'warmup_steps must be an integer at least 0 and below total_steps=10, got 2.5'),
        (lambda: cosine_schedule(1., 10, final_lr='0'),
         r"final_lr must lie in \[0, base_lr=1.0\], got '0'"),
        (lambda: cosine_schedule(1., 10)('3'), "step must be an integer >= 0, got '3'"),
        (lambda: Adam([], weight_decay=float('inf')),
         'weight_decay must be a finite number >= 0, got inf'),
        (lambda: Adam([], weight_decay='0.1'),
         "weight_decay must be a finite number >= 0, got '0.1'"),
        (lambda: Adam([], betas=(0.9, '0.999')),
         "beta2 must be at least 0 and below 1, got '0.999'"),
        (lambda: d2lrnn.split_corpus(list(range(10)), '0.5'),
         "train_fraction must lie strictly between 0 and 1, got '0.5'"),
        (lambda: d2lrnn.split_train_valid_test(list(range(10)), '0.1'),
         'valid_fraction and test_fraction must be positive and sum to less than 1'),
        (lambda: d2lrnn.NGramLM('2', 28), "order must be an integer >= 1, got '2'"),
        (lambda: d2lrnn.NGramLM(2, 28, discount='0.5'),
         r"discount must lie in \(0, 1\], or be None .*, got '0.5'"),
        (lambda: d2lrnn.NGramLM(2, 28, k=float('inf')), 'k must be a finite number > 0, got inf'),
    ]


@pytest.mark.parametrize('index', range(len(_bad_arguments())))
def test_bad_arguments_raise_one_value_error_naming_them(index):
    call, message = _bad_arguments()[index]
    with pytest.raises(ValueError, match=message):
        call()

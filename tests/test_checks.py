"""d2lrnn.checks: one way to validate arguments, one clear error for each."""
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
     'must be a non-empty string')])
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
    checks.check_prediction('t', 0, sample=False, alpha=-1)
    with pytest.raises(ValueError, match='alpha must be a finite number > 0, got -1'):
        checks.check_prediction('t', 0, sample=True, alpha=-1)


def test_token_ids_must_lie_in_the_vocabulary():
    checks.check_token_ids(onp.array([[0, 27]]), 28)
    checks.check_token_ids(onp.zeros((0, 3)), 28)  # no ids, nothing to refuse
    for ids in ([[0, 28]], [[-1, 3]]):
        with pytest.raises(ValueError, match=r'token ids must lie in \[0, 28\)'):
            checks.check_token_ids(onp.array(ids), 28)


def test_check_sha1_returns_the_path_it_checked():
    assert checks.check_sha1(data.TIME_MACHINE, data.TIME_MACHINE_SHA1) == data.TIME_MACHINE

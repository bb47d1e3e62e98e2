"""experiments/relu_vs_tanh.py on a tiny configuration, and its committed results."""
import json
import math

import pytest

from d2lrnn import results
from experiments import common
from experiments import relu_vs_tanh as script

SEEDS = [0, 1]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('relu') / 'relu.json'
    result = script.main(['--tiny', '--quiet', '--out', str(out), '--seeds',
                          *map(str, SEEDS)])
    return result, out


def runs_of(result, setting, activation):
    return [r for r in result['runs']
            if r['setting'] == setting and r['activation'] == activation]


def check_run(run, epochs, theta):
    assert run['epoch'] == list(range(1, epochs + 1))
    assert len(run['train_ppl']) == epochs
    # an epoch's training perplexity is exp of its mean loss: ReLU's first
    # epoch can overflow it (steps with huge losses before clipping and the
    # warm-up rein them in), so only the end must be finite
    assert all(p > 1 for p in run['train_ppl'])
    assert math.isfinite(run['train_ppl'][-1])
    assert run['diverged_at_step'] is None
    g = run['grad_norm']
    for key in ('median', 'max', 'clipped_share', 'steps'):
        assert len(g[key]) == epochs, key
    assert all(0 <= s <= 1 for s in g['clipped_share'])
    assert all(0 < m <= x for m, x in zip(g['median'], g['max']))
    assert sum(g['steps']) == g['overall']['steps']
    assert g['overall']['max'] == max(g['max'])
    # the overall share is the steps-weighted mean of the epochs' shares
    assert g['overall']['clipped_share'] == pytest.approx(
        sum(s * n for s, n in zip(g['clipped_share'], g['steps']))
        / g['overall']['steps'])
    assert (g['overall']['clipped_share'] > 0) == (g['overall']['max'] > theta)
    assert run['final_train_ppl'] == run['train_ppl'][-1]
    assert run['final_valid_ppl'] == run['valid_ppl'][-1]
    # the epoch chosen on validation, read once on test
    best = min(range(len(run['valid_ppl'])), key=lambda i: run['valid_ppl'][i])
    assert run['best_epoch'] == run['valid_epoch'][best]
    assert run['best_valid_ppl'] == run['valid_ppl'][best]
    assert run['test_ppl'] > 1
    assert run['test_bpc'] == pytest.approx(math.log2(run['test_ppl']))
    assert run['hidden'][0]['epoch'] == 0
    assert isinstance(run['native'], bool)
    for h in run['hidden']:
        assert 0 <= h['zero_share'] <= 1 and 0 <= h['saturated_share'] <= 1
        assert 0 <= h['H_mean'] <= h['H_max'] and h['spectral_W_hh'] > 0


@pytest.mark.slow
def test_every_run_records_its_curves_and_gradient_norms(tiny_run):
    result, out = tiny_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result['tiny'] and result['settings_run'] == ['section', 'heldout']
    section = result['settings']['section']
    heldout = result['settings']['heldout']
    for activation in ('tanh', 'relu'):
        runs = runs_of(result, 'section', activation)
        assert [r['seed'] for r in runs] == SEEDS
        for run in runs:
            check_run(run, section['num_epochs'], section['theta'])
            every = section['eval_every']
            assert run['valid_epoch'] == [
                e for e in range(1, section['num_epochs'] + 1)
                if e % every == 0 or e == section['num_epochs']]
            assert [h['epoch'] for h in run['hidden']] == [0] + run[
                'valid_epoch']
        runs = runs_of(result, 'heldout', activation)
        assert [r['seed'] for r in runs] == SEEDS
        for run in runs:
            check_run(run, heldout['num_epochs'], heldout['theta'])
            assert len(run['valid_ppl']) == heldout['num_epochs']
            assert run['best_valid_ppl'] == min(run['valid_ppl'])
            assert len(run['hidden']) == heldout['num_epochs'] + 1


@pytest.mark.slow
def test_relu_and_tanh_start_alike_and_then_differ(tiny_run):
    result, _ = tiny_run
    for setting in ('section', 'heldout'):
        for tanh, relu in zip(runs_of(result, setting, 'tanh'),
                              runs_of(result, setting, 'relu')):
            assert tanh['seed'] == relu['seed']
            # same seed, same initial parameters
            assert (tanh['hidden'][0]['spectral_W_hh']
                    == relu['hidden'][0]['spectral_W_hh'])
            assert tanh['train_ppl'] != relu['train_ppl']
            assert tanh['valid_ppl'] != relu['valid_ppl']
            # tanh stays below 1 and is never exactly 0; ReLU, from the
            # same start, switches units off
            assert all(h['H_max'] < 1 and h['zero_share'] == 0
                       for h in tanh['hidden'])
            assert relu['hidden'][0]['zero_share'] > 0.2
        seeds = runs_of(result, setting, 'relu')
        assert seeds[0]['train_ppl'] != seeds[1]['train_ppl']


@pytest.mark.slow
def test_the_summary_is_the_spread_over_seeds(tiny_run):
    result, _ = tiny_run
    for setting in ('section', 'heldout'):
        for activation in ('tanh', 'relu'):
            row = result['summary'][setting][activation]
            runs = runs_of(result, setting, activation)
            final = [r['final_valid_ppl'] for r in runs]
            assert row['final_valid_ppl']['n'] == len(SEEDS)
            assert row['final_valid_ppl']['mean'] == pytest.approx(
                sum(final) / len(final))
            assert row['final_valid_ppl']['min'] == min(final)
            test = [r['test_ppl'] for r in runs]
            assert row['test_ppl']['mean'] == pytest.approx(sum(test) / len(test))
            assert 0 <= row['clipped_share']['mean'] <= 1
            assert row['diverged'] == 0
    assert result['baselines']['uniform_ppl'] == 28
    counts = result['baselines']['counts']
    assert counts['section']['train_tokens'] == result['settings']['section']['max_tokens']
    assert counts['heldout']['train_tokens'] == result['texts']['train_tokens']


@pytest.mark.slow
def test_merge_reruns_one_setting_and_keeps_the_other(tiny_run, tmp_path):
    result, out = tiny_run
    merged = script.main(['--tiny', '--quiet', '--seeds', *map(str, SEEDS),
                          '--settings', 'heldout', '--heldout-epochs', '1',
                          '--merge', str(out),
                          '--out', str(tmp_path / 'm.json')])
    assert merged['settings_run'] == ['section', 'heldout']
    assert runs_of(merged, 'section', 'relu') == runs_of(result, 'section',
                                                         'relu')
    assert merged['settings']['section'] == result['settings']['section']
    assert merged['settings']['heldout']['num_epochs'] == 1
    assert all(len(r['epoch']) == 1 for r in merged['runs']
               if r['setting'] == 'heldout')
    assert merged['merged']['command'] == result['command']


@pytest.mark.slow
def test_merge_adds_seeds_and_a_seed_repeats_itself(tiny_run, tmp_path):
    result, out = tiny_run
    merged = script.main(['--tiny', '--quiet', '--seeds', '1',
                          '--settings', 'section', '--merge', str(out),
                          '--native', 'auto',
                          '--out', str(tmp_path / 'm.json')])
    # the same seed gives the same run, bit for bit; the order is kept
    assert [(r['setting'], r['seed'], r['activation'])
            for r in merged['runs']] == [
        (r['setting'], r['seed'], r['activation']) for r in result['runs']]
    for new, old in zip(merged['runs'], result['runs']):
        for key in ('train_ppl', 'valid_ppl', 'grad_norm', 'hidden'):
            assert new[key] == old[key], key
    assert merged['seeds'] == SEEDS
    assert merged['settings']['section']['seeds'] == SEEDS


def test_the_committed_results_are_complete():
    result = results.load('relu_vs_tanh.json')
    assert not result['tiny'] and result['seeds'] == [0, 1, 2]
    assert result['texts'] == common.describe(common.load_texts())
    section, heldout = (result['settings'][s] for s in ('section', 'heldout'))
    assert (section['num_epochs'], section['num_hiddens'],
            section['max_tokens'], section['lr']) == (500, 512, 10_000, 1.0)
    # the held-out setting runs the recipe for its full length
    assert {k: heldout[k] for k in common.RECIPE} == common.RECIPE
    baselines = results.load('baselines.json')['fits']
    for setting, fit in (('section', 'first_10k'), ('heldout', 'train_80pct')):
        counts = result['baselines']['counts'][setting]
        assert counts['test_ppl'] == pytest.approx(
            baselines[fit]['chosen']['kneser_ney']['test_ppl'])
        for activation in ('tanh', 'relu'):
            runs = runs_of(result, setting, activation)
            assert [r['seed'] for r in runs] == result['settings'][
                setting]['seeds'] == [0, 1, 2]
            for run in runs:
                assert isinstance(run['native'], bool)
                assert run['minutes'] > 0
                if run['diverged_at_step'] is None:
                    check_run(run, result['settings'][setting]['num_epochs'],
                              result['settings'][setting]['theta'])


def test_the_held_out_tanh_runs_are_the_shipped_recipes_seeds():
    """Same recipe, seeds, texts, reading and path: the same figures as
    experiments/results/best_rnn.json, so the two pages agree."""
    result = results.load('relu_vs_tanh.json')
    seeds = {r['seed']: r for r in results.load('best_rnn.json')['runs']}
    for run in runs_of(result, 'heldout', 'tanh'):
        twin = seeds[run['seed']]
        assert run['native'] == twin['native']
        assert run['valid_ppl'] == twin['valid_ppl']
        assert (run['best_epoch'], run['test_ppl']) == (twin['best_epoch'], twin['test_ppl'])

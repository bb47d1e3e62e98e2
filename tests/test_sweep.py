"""experiments/sweep_perplexity.py end to end on a tiny configuration (a few
seconds), and its committed results."""
import json
import math

import pytest

from d2lrnn import results
from experiments import common, sweep_perplexity


def sweep(argv):
    return sweep_perplexity.main(argv)


def check_layout(result):
    """Curves and epochs on validation; the chosen run, and each run of the
    section's own setting, read once on test; counts on the same text."""
    assert result['runs'], 'no run recorded'
    for run in result['runs']:
        if run['diverged_at_step'] is None:  # a run without clipping may stop early
            assert len(run['train_ppl']) == run['num_epochs'] == run['epoch'][-1]
            assert run['valid_epoch'][-1] == run['num_epochs']
        assert all(p > 1 for p in run['train_ppl'] + run['valid_ppl'])
        best = min(range(len(run['valid_ppl'])), key=lambda i: run['valid_ppl'][i])
        assert run['best_epoch'] == run['valid_epoch'][best]
        assert run['best_valid_ppl'] == run['valid_ppl'][best]
        counts = result['counts'][run['train_text']]
        assert counts['train_tokens'] == run['train_tokens']
        assert counts['valid_ppl'] == min(counts['valid_ppl_by_order'].values())
    full = [r for r in result['runs'] if r['max_train_tokens'] <= 0]
    chosen = min(full, key=lambda r: r['best_valid_ppl'])
    assert result['chosen']['name'] == chosen['name']
    assert result['chosen']['chosen_among'] == [r['name'] for r in full]
    assert result['chosen']['test_ppl'] == chosen['test_ppl'] > 1
    assert result['chosen']['counts'] == result['counts']['train_80pct']
    read_on_test = {r['name'] for r in result['runs'] if 'test_ppl' in r}
    assert read_on_test == {chosen['name']} | {
        r['name'] for r in result['runs'] if r['max_train_tokens'] > 0}
    cross = result['cross_book']
    assert cross['best_setting'] == chosen['name']
    assert cross['same_token_set'] is True
    assert cross['unknown_fraction'] == {'war_of_the_worlds_in_tm_vocab': 0,
                                        'time_machine_in_wotw_vocab': 0}
    assert cross['perplexity']['time_machine']['time_machine'] == chosen['test_ppl']
    assert (cross['perplexity']['war_of_the_worlds']['war_of_the_worlds']
            == cross['war_of_the_worlds_run']['test_ppl'])
    for model in ('time_machine', 'war_of_the_worlds'):
        for text in ('time_machine', 'war_of_the_worlds'):
            assert math.isfinite(cross['perplexity'][model][text])
        sample = cross['samples'][model]
        assert sample['argmax'].startswith(sample['prefix'])
        assert sample['sampled'].startswith(sample['prefix'])


@pytest.mark.slow
def test_tiny_sweep(tmp_path):
    out = tmp_path / 'sweep.json'
    result = sweep(['--tiny', '--quiet', '--model', 'scratch', '--out', str(out),
                    '--model-dir', str(tmp_path / 'models')])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r['name'] for r in result['runs']] == ['base', 'hidden8', 'small']
    assert [r['train_text'] for r in result['runs']] == [
        'train_80pct', 'train_80pct', 'first_500']
    check_layout(result)
    # The War of the Worlds run copies the best setting.
    best = next(r for r in result['runs'] if r['name'] == result['cross_book']['best_setting'])
    assert result['cross_book']['war_of_the_worlds_run']['num_hiddens'] == best['num_hiddens']


@pytest.mark.slow
def test_tiny_sweep_is_repeatable(tmp_path):
    args = ['--tiny', '--quiet', '--model', 'scratch', '--only', 'base',
            '--model-dir', str(tmp_path / 'models')]
    a = sweep(args + ['--out', str(tmp_path / 'a.json')])
    b = sweep(args + ['--out', str(tmp_path / 'b.json')])
    assert a['runs'][0]['valid_ppl'] == b['runs'][0]['valid_ppl']
    # --resume keeps the finished run (its saved parameters give the same cross-book scores).
    c = sweep(args + ['--out', str(tmp_path / 'a.json'), '--resume'])
    assert c['runs'][0] == a['runs'][0]
    assert c['cross_book']['perplexity'] == a['cross_book']['perplexity']


def test_unknown_run_name(tmp_path):
    with pytest.raises(SystemExit):
        sweep(['--tiny', '--only', 'nonsense', '--out', str(tmp_path / 'x.json')])


def test_committed_results_are_complete():
    result = results.load('sweep_perplexity.json')
    check_layout(result)
    assert result['texts'] == common.describe(common.load_texts())
    assert [r['name'] for r in result['runs']] == [r['name'] for r in sweep_perplexity.FULL]
    # what exercise 4 reads: the section's recipe with and without clipping
    runs = {r['name']: r for r in result['runs']}
    for name in ('section10k', 'section10k_noclip'):
        run = runs[name]
        assert (run['num_hiddens'], run['num_epochs'], run['lr'], run['train_tokens']) == (
            512, 500, 1.0, common.SECTION_TOKENS)
        assert run['max_grad_norm'] > 0 and 0 <= run['clipped_fraction'] <= 1
        assert len(run['epoch']) == len(run['train_ppl'])
    # each run's count line is the one experiments/baselines.py chose on the same text
    baselines = results.load('baselines.json')['fits']
    for name, counts in result['counts'].items():
        chosen = baselines[name]['chosen']['kneser_ney']
        assert (counts['order'], counts['test_ppl']) == pytest.approx(
            (chosen['order'], chosen['test_ppl']))

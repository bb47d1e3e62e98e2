"""experiments/sweep_perplexity.py runs end to end on a tiny configuration (a few seconds)."""
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'experiments' / 'sweep_perplexity.py'
COMMITTED = SCRIPT.parent / 'results' / 'sweep_perplexity.json'


@pytest.fixture(scope='module')
def sweep(bench_script):
    """The script's main, from a freshly loaded module at every call."""
    return lambda argv: bench_script('sweep_perplexity').main(argv)


def check_layout(result):
    assert result['runs'], 'no run recorded'
    for run in result['runs']:
        if run['diverged_at_step'] is not None:  # a run without clipping may stop early
            assert len(run['train_ppl']) < run['num_epochs']
            continue
        assert len(run['train_ppl']) == run['num_epochs'] == run['epoch'][-1]
        assert run['valid_epoch'][-1] == run['num_epochs']
        assert all(p > 1 for p in run['train_ppl'] + run['valid_ppl'])
    cross = result['cross_book']
    assert cross['same_token_set'] is True
    assert cross['unknown_fraction'] == {'war_of_the_worlds_in_tm_vocab': 0,
                                        'time_machine_in_wotw_vocab': 0}
    for model in ('time_machine', 'war_of_the_worlds'):
        for text in ('time_machine', 'war_of_the_worlds'):
            assert math.isfinite(cross['perplexity'][model][text])
        sample = cross['samples'][model]
        assert sample['argmax'].startswith(sample['prefix'])
        assert sample['sampled'].startswith(sample['prefix'])


@pytest.mark.slow
def test_tiny_sweep(tmp_path, sweep):
    out = tmp_path / 'sweep.json'
    result = sweep(['--tiny', '--quiet', '--model', 'scratch', '--out', str(out),
                    '--model-dir', str(tmp_path / 'models')])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r['name'] for r in result['runs']] == ['base', 'hidden8', 'small']
    check_layout(result)
    # The War of the Worlds run copies the best setting.
    best = next(r for r in result['runs'] if r['name'] == result['cross_book']['best_setting'])
    assert result['cross_book']['war_of_the_worlds_run']['num_hiddens'] == best['num_hiddens']


@pytest.mark.slow
def test_tiny_sweep_is_repeatable(tmp_path, sweep):
    args = ['--tiny', '--quiet', '--model', 'scratch', '--only', 'base',
            '--model-dir', str(tmp_path / 'models')]
    a = sweep(args + ['--out', str(tmp_path / 'a.json')])
    b = sweep(args + ['--out', str(tmp_path / 'b.json')])
    assert a['runs'][0]['valid_ppl'] == b['runs'][0]['valid_ppl']
    # --resume keeps the finished run (its saved parameters give the same cross-book scores).
    c = sweep(args + ['--out', str(tmp_path / 'a.json'), '--resume'])
    assert c['runs'][0] == a['runs'][0]
    assert c['cross_book']['perplexity'] == a['cross_book']['perplexity']


def test_unknown_run_name(tmp_path, sweep):
    with pytest.raises(SystemExit):
        sweep(['--tiny', '--only', 'nonsense', '--out', str(tmp_path / 'x.json')])


@pytest.mark.skipif(not COMMITTED.exists(), reason='the full sweep has not been committed yet')
def test_committed_results_are_complete():
    check_layout(json.loads(COMMITTED.read_text()))

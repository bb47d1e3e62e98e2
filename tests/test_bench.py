"""bench/bench_speed.py runs, on a tiny configuration, and writes the JSON the book reads."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / 'bench' / 'bench_speed.py'
VARIANTS = ['faithful', 'fast', 'gluon']


@pytest.mark.slow
def test_quick_benchmark_writes_the_expected_json(tmp_path):
    out = tmp_path / 'speed.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run([sys.executable, str(BENCH), '--quick', '--out', str(out),
                    '--variants', *VARIANTS], check=True, env=env, timeout=300,
                   stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    assert {'cpu_model', 'cores', 'mxnet_version', 'omp_num_threads', 'date'} <= set(report['machine'])
    assert report['machine']['omp_num_threads'] == '1'
    assert report['config']['variants'] == VARIANTS and report['config']['quick']
    assert report['matmul']['onednn_gflops'] > 0 and report['matmul']['openblas_gflops'] > 0
    for v in VARIANTS:
        speed = report['speed'][v]
        assert len(speed['tokens_per_s']) == report['config']['repeats']
        assert speed['median_tokens_per_s'] > 0 and speed['median_cpu_tokens_per_s'] > 0
        assert speed['ratio_to_faithful'] > 0
        assert report['memory'][v]['peak_rss_growth_mib'] > 0
        assert report['perplexity'][v]['epochs'] == 1 and report['perplexity'][v]['perplexity'] > 1
    assert report['speed']['faithful']['ratio_to_faithful'] == 1
    # the same mathematics from the same seed: the same perplexity
    assert (abs(report['perplexity']['fast']['perplexity']
                - report['perplexity']['faithful']['perplexity'])
            < 1e-4 * report['perplexity']['faithful']['perplexity'])
    assert report['long_run'] is None


@pytest.mark.slow
@pytest.mark.parametrize('against', ['fast', 'fast-native'])
def test_long_run_on_several_seeds_summarises_every_pair(tmp_path, against):
    out = tmp_path / 'long.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    epochs = 80  # enough for some pairs to part (500 in the real study)
    subprocess.run([sys.executable, str(BENCH), '--long', '--against', against,
                    '--epochs', str(epochs), '--seeds', '3', '5', '--num-hiddens', '8',
                    '--max-tokens', '1200', '--out', str(out)],
                   check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    assert report['config']['seeds'] == [3, 5] and report['config']['epochs'] == epochs
    assert report['config']['variants'] == ['faithful', against]
    summary = report['summary']
    for v in ('faithful', against):
        runs = report['runs'][v]
        assert [r['seed'] for r in runs] == [3, 5]
        assert all(len(r['perplexities']) == epochs for r in runs)
        assert summary[v]['final'] == [r['perplexity'] for r in runs]
        assert summary[v]['mean_final'] == pytest.approx(sum(summary[v]['final']) / 2)
    # different seeds start from different parameters
    assert report['runs']['faithful'][0]['perplexities'][0] != report['runs']['faithful'][1]['perplexities'][0]
    assert summary['difference_of_means'] == pytest.approx(
        abs(summary[against]['mean_final'] - summary['faithful']['mean_final']))
    for pair, a, b in zip(summary['pairs'], report['runs']['faithful'], report['runs'][against]):
        assert pair['seed'] == a['seed'] == b['seed']
        assert pair['difference_final'] == pytest.approx(abs(a['perplexity'] - b['perplexity']))
        gaps = [abs(x - y) / x for x, y in zip(a['perplexities'], b['perplexities'])]
        assert pair['agreed_for_epochs'] >= 1  # the same mathematics: the first epoch agrees
        assert all(g <= 1e-5 for g in gaps[:pair['agreed_for_epochs']])
        assert pair['agreed_for_epochs'] == epochs or gaps[pair['agreed_for_epochs']] > 1e-5
        parted = [g > 1e-3 for g in gaps]
        assert pair['parted_at_epoch'] == (parted.index(True) + 1 if any(parted) else None)


@pytest.mark.parametrize('args, message', [
    (['--repeats', '0'], '--repeats must be a positive integer'),
    (['--long', '--seeds', '1', '1'], '--seeds must not repeat a seed'),
    (['--long', '--jobs', '0'], '--jobs must be a positive integer'),
])
def test_bad_option_is_refused(args, message):
    result = subprocess.run([sys.executable, str(BENCH), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr


def test_the_machine_is_described_by_its_processor(monkeypatch, tmp_path):
    from d2lrnn import results
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: Some CPU 9000\n'
                       'flags\t\t: fpu avx2 fma sse\n')
    monkeypatch.setattr(results, 'CPUINFO', cpuinfo)
    machine = results.machine()
    assert machine['cpu_model'] == results.cpu_model() == 'Some CPU 9000'
    assert machine['simd'] == ['avx2', 'fma']
    assert {'cores', 'mxnet_version', 'python_version', 'omp_num_threads',
            'date', 'load_average_at_start'} <= set(machine)
    monkeypatch.setattr(results, 'CPUINFO', tmp_path / 'missing')
    monkeypatch.setattr(results.platform, 'processor', lambda: '')
    assert results.cpu_model() == 'unknown' and results.machine()['simd'] == []


def test_seed_all_repeats_python_and_mxnet_draws():
    import random

    import mxnet as mx

    from d2lrnn.results import seed_all

    def draws():
        return random.random(), mx.np.random.uniform(size=3).asnumpy().tolist()
    seed_all(7)
    first = draws()
    seed_all(7)
    assert draws() == first
    seed_all(8)
    assert draws() != first

"""bench/bench_speed.py runs, on a tiny configuration, and writes the JSON the book reads."""
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / 'bench' / 'bench_speed.py'
VARIANTS = ['faithful', 'fast', 'gluon']


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


def test_bad_option_is_refused():
    result = subprocess.run([sys.executable, str(BENCH), '--repeats', '0'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and '--repeats must be a positive integer' in result.stderr

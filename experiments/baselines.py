"""Count-model baselines for the character RNN: n-gram perplexity on text never trained on.

Character n-gram models (d2lrnn.ngram.NGramLM) of orders 1 to 8 on the RNN's
own tokens (the Time Machine vocabulary, 28 ids), interpolated modified
Kneser-Ney and, for reference, add-k for a few k, in three settings:

* split_90_10: fitted on the first 90 % of The Time Machine, scored on the
  last 10 % (the split of d2lrnn.split_corpus that the RNN's held-out
  perplexity uses);
* section_10k: fitted on the first 10,000 characters (what the section
  trains on), scored on characters 10,000 to 20,000;
* cross_book: fitted on the first 90 % of The Time Machine, scored on The War
  of the Worlds read through the Time Machine vocabulary, the whole book and
  its last 10 % (the part exercise 2's sweep scores the RNN on).

Every text is scored from its second character on, each character given the
ones before it in that text. add-k is reported for every k of the grid: picking
the k that does best on the held-out text would tune it on the test data and
flatter it. About 13 s of CPU time (orders 1 to 8, four smoothings, 64 fits):

    nice -n 10 .venv/bin/python experiments/baselines.py --out experiments/results/baselines.json
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import d2lrnn
from d2lrnn import corpora
from d2lrnn.ngram import NGramLM

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / 'results' / 'baselines.json'
TRAIN_FRACTION = 0.9
SECTION_TOKENS = 10000
ORDERS = list(range(1, 9))
ADD_K = [0.01, 0.1, 1.0]


def cpu_model():
    """The processor's name from /proc/cpuinfo (None where there is no such file)."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return None
    return next((line.split(':', 1)[1].strip() for line in lines
                 if line.startswith('model name')), None)


def texts():
    """The training texts, each with the test texts scored by its models, and the vocabulary.

    {training name: (training ids, {test name: test ids})}. The cross-book
    tests share the 90 % fit with the held-out 10 %, so it is fitted once.
    """
    corpus, vocab = d2lrnn.load_corpus_time_machine()
    train, valid = d2lrnn.split_corpus(corpus, TRAIN_FRACTION)
    wotw = corpora.encode(corpora.read_war_of_the_worlds(), vocab)
    _, wotw_valid = d2lrnn.split_corpus(wotw, TRAIN_FRACTION)
    fits = {
        'time_machine_first_90pct': (train, {'time_machine_last_10pct': valid,
                                             'war_of_the_worlds_whole': wotw,
                                             'war_of_the_worlds_last_10pct': wotw_valid}),
        'time_machine_first_10k': (corpus[:SECTION_TOKENS], {
            'time_machine_10k_to_20k': corpus[SECTION_TOKENS:2 * SECTION_TOKENS]}),
    }
    return fits, vocab


# The three settings: which fit, scored on which texts.
SETTINGS = {
    'split_90_10': ('time_machine_first_90pct', ['time_machine_last_10pct']),
    'section_10k': ('time_machine_first_10k', ['time_machine_10k_to_20k']),
    'cross_book': ('time_machine_first_90pct', ['war_of_the_worlds_whole',
                                                'war_of_the_worlds_last_10pct']),
}


def timed(fn, *args):
    """(fn(*args), wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def fit_and_score(model, train, tests):
    """Fit `model` on `train`, score each test text: figures and the seconds each took."""
    _, wall, cpu = timed(model.fit, train)
    result = {'fit_seconds': round(wall, 4), 'fit_cpu_seconds': round(cpu, 4), 'scores': {}}
    if model.smoothing == 'kneser-ney':
        # (D1, D2, D3+) of each order, lowest first.
        result['discounts'] = [[round(d, 6) for d in ds] for ds in model.discounts]
    for name, ids in tests.items():
        log_probs, wall, cpu = timed(model.log_probs, ids)
        nll = -float(np.mean(log_probs))
        result['scores'][name] = {'perplexity': math.exp(nll), 'bits_per_char': nll / math.log(2),
                                  'score_seconds': round(wall, 4),
                                  'score_cpu_seconds': round(cpu, 4)}
    return result


def model_makers(vocab_size, ks):
    """{name: order -> unfitted NGramLM}: Kneser-Ney, then add-k for each k."""
    makers = {'kneser_ney': lambda n: NGramLM(n, vocab_size, 'kneser-ney')}
    for k in ks:
        makers[f'add_k_{k:g}'] = lambda n, k=k: NGramLM(n, vocab_size, 'add-k', k=k)
    return makers


def run_fit(train, tests, makers, orders, log):
    """{model name: {order: fit_and_score(...)}} for one training text."""
    out = {}
    for name, make in makers.items():
        out[name] = {}
        for n in orders:
            out[name][str(n)] = fit_and_score(make(n), train, tests)
            figures = ', '.join(f"{t} {s['perplexity']:.4f}"
                                for t, s in out[name][str(n)]['scores'].items())
            log(f'  {name} order {n}: {figures}')
    return out


def best_order(by_order, test):
    """{order, perplexity, bits_per_char} of the order with the lowest perplexity on `test`."""
    n, result = min(by_order.items(), key=lambda item: item[1]['scores'][test]['perplexity'])
    score = result['scores'][test]
    return {'order': int(n), 'perplexity': score['perplexity'],
            'bits_per_char': score['bits_per_char']}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='the JSON file to write')
    parser.add_argument('--orders', type=int, nargs='+', default=ORDERS,
                        help='n-gram orders (default 1 to 8)')
    parser.add_argument('--ks', type=float, nargs='+', default=ADD_K,
                        help='the k of add-k smoothing (default 0.01 0.1 1)')
    args = parser.parse_args(argv)
    if min(args.orders) < 1 or min(args.ks) <= 0:
        parser.error('orders must be >= 1 and every k > 0.')

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    wall, cpu = time.perf_counter(), time.process_time()
    load_at_start = list(os.getloadavg())
    fits, vocab = texts()
    makers = model_makers(len(vocab), args.ks)
    report = {
        'description': "Character n-gram count models on the RNN's tokens: perplexity and "
                       'bits per character on text they were not fitted on. Written by '
                       'experiments/baselines.py.',
        'command': 'experiments/baselines.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
        'vocab_size': len(vocab),
        'orders': args.orders,
        'add_k': args.ks,
        'kneser_ney': 'interpolated modified Kneser-Ney: discounts D1, D2, D3+ per order '
                      'estimated from count-of-counts; lower orders on continuation counts; '
                      'the lowest order interpolated with the uniform distribution',
        'scoring': 'every token from the second on, given the previous order - 1 tokens '
                   'of the same text (fewer at its start)',
        'note_add_k': 'every k of the grid is reported: choosing k on the held-out text '
                      'would tune on the test data and flatter add-k',
        'settings': {name: {'fit': fit, 'tests': tests}
                     for name, (fit, tests) in SETTINGS.items()},
        'fits': {},
        'machine': {'cpu_model': cpu_model(), 'cores': os.cpu_count(),
                    'python': platform.python_version(), 'numpy': np.__version__,
                    'load_average_at_start': load_at_start},
    }
    for name, (train, tests) in fits.items():
        log(f'{name}: {len(train)} tokens')
        results, seconds, cpu_seconds = timed(run_fit, train, tests, makers, args.orders, log)
        report['fits'][name] = {
            'train_tokens': len(train),
            'test_tokens': {t: len(ids) for t, ids in tests.items()},
            'unknown_fraction': {t: corpora.unknown_fraction(ids, vocab)
                                 for t, ids in tests.items()},
            'results': results,
            'best_kneser_ney': {t: best_order(results['kneser_ney'], t) for t in tests},
            'seconds': round(seconds, 3), 'cpu_seconds': round(cpu_seconds, 3),
        }
    report['machine']['load_average_at_end'] = list(os.getloadavg())
    report['total_seconds'] = round(time.perf_counter() - wall, 3)
    report['total_cpu_seconds'] = round(time.process_time() - cpu, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    log(f'wrote {args.out} in {report["total_seconds"]} s')


if __name__ == '__main__':
    main()

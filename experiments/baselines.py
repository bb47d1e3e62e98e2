"""Count-model baselines for the character RNN: n-gram perplexity on text never fitted on.

Character n-gram models (d2lrnn.ngram.NGramLM) of orders 1 to 8 on the RNN's
own tokens (the Time Machine vocabulary, 28 ids), interpolated modified
Kneser-Ney and, for reference, add-k for a few k, fitted on two training
texts, the same ones the RNNs train on:

* train_80pct: the training part (first 80%) of The Time Machine;
* first_10k: its first 10,000 characters (what the section trains on).

Every model is scored on the validation part (next 10%) and the test part
(last 10%), the same two texts for both fits; the 80% fit also on The War of
the Worlds read through the Time Machine vocabulary (another book; nothing
is chosen on it). For each fit the order of Kneser-Ney, the order and k of
add-k, and the better of the two are chosen on validation and recorded with
their test figures ('chosen'). Every text is scored from its second
character on, each character given the ones before it in that text. About
half a minute of CPU time; from the repository's root:

    nice -n 10 .venv/bin/python -m experiments.baselines
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from d2lrnn import corpora
from d2lrnn.ngram import NGramLM
from d2lrnn.results import EXPERIMENTS, machine

from . import common

DEFAULT_OUT = EXPERIMENTS / 'baselines.json'
ADD_K = [0.01, 0.1, 1.0]


def texts():
    """{fit name: (training ids, {text name: ids scored})} and the vocabulary."""
    t = common.load_texts()
    scored = {'valid': t.valid, 'test': t.test}
    section = common.SECTION_TOKENS
    fits = {common.train_text_name(-1): (t.train, dict(scored, war_of_the_worlds=t.wotw)),
            common.train_text_name(section): (t.train[:section], scored)}
    return fits, t.vocab


def timed(fn, *args):
    """(fn(*args), wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def fit_and_score(model, train, scored):
    """Fit `model` on `train`, score each text: figures and the seconds each took."""
    _, wall, cpu = timed(model.fit, train)
    result = {'fit_seconds': round(wall, 4), 'fit_cpu_seconds': round(cpu, 4), 'scores': {}}
    if model.smoothing == 'kneser-ney':
        # (D1, D2, D3+) of each order, lowest first.
        result['discounts'] = [[round(d, 6) for d in ds] for ds in model.discounts]
    for name, ids in scored.items():
        log_probs, wall, cpu = timed(model.log_probs, ids)
        nll = -float(np.mean(log_probs))
        result['scores'][name] = {'perplexity': math.exp(nll), 'bits_per_char': nll / math.log(2),
                                  'score_seconds': round(wall, 4),
                                  'score_cpu_seconds': round(cpu, 4)}
    return result


def model_makers(vocab_size, ks):
    """{name: (order -> unfitted NGramLM, k or None)}: Kneser-Ney, then add-k for each k."""
    makers = {'kneser_ney': (lambda n: NGramLM(n, vocab_size, 'kneser-ney'), None)}
    for k in ks:
        makers[f'add_k_{k:g}'] = (lambda n, k=k: NGramLM(n, vocab_size, 'add-k', k=k), k)
    return makers


def run_fit(train, scored, makers, orders, log):
    """{model name: {order: fit_and_score(...)}} for one training text."""
    out = {}
    for name, (make, _) in makers.items():
        out[name] = {}
        for n in orders:
            out[name][str(n)] = fit_and_score(make(n), train, scored)
            figures = ', '.join(f"{t} {s['perplexity']:.4f}"
                                for t, s in out[name][str(n)]['scores'].items())
            log(f'  {name} order {n}: {figures}')
    return out


def choose(results, names, makers):
    """The model among `names` (every order) with the lowest validation
    perplexity, with its figures on every scored text."""
    name, n = min(((name, n) for name in names for n in results[name]),
                  key=lambda c: results[c[0]][c[1]]['scores']['valid']['perplexity'])
    row = {'model': name, 'order': int(n), 'k': makers[name][1], 'chosen_on': 'valid'}
    for text, score in results[name][n]['scores'].items():
        row[f'{text}_ppl'] = score['perplexity']
        row[f'{text}_bpc'] = score['bits_per_char']
    return row


def chosen(results, makers):
    """Kneser-Ney's order, add-k's order and k, and the better of the two,
    each chosen on validation."""
    add_k = [name for name in results if name != 'kneser_ney']
    rows = {'kneser_ney': choose(results, ['kneser_ney'], makers)}
    if add_k:
        rows['add_k'] = choose(results, add_k, makers)
    rows['best'] = min(rows.values(), key=lambda r: r['valid_ppl'])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='the JSON file to write')
    parser.add_argument('--orders', type=int, nargs='+', default=list(common.COUNT_ORDERS),
                        help='n-gram orders (default 1 to 8)')
    parser.add_argument('--ks', type=float, nargs='+', default=ADD_K,
                        help='the k of add-k smoothing (default 0.01 0.1 1)')
    args = parser.parse_args(argv)
    if min(args.orders) < 1 or min(args.ks) <= 0:
        parser.error('orders must be >= 1 and every k > 0.')

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    wall, cpu = time.perf_counter(), time.process_time()
    fits, vocab = texts()
    makers = model_makers(len(vocab), args.ks)
    report = {
        'description': "Character n-gram count models on the RNN's tokens, fitted on the "
                       "RNNs' training texts: perplexity and bits per character on the "
                       'validation and test parts; order (and k) chosen on validation. '
                       'Written by experiments/baselines.py.',
        'command': ' '.join(['python -m experiments.baselines']
                            + (sys.argv[1:] if argv is None else argv)),
        'split': common.SPLIT, 'protocol': common.PROTOCOL,
        'vocab_size': len(vocab), 'orders': args.orders, 'add_k': args.ks,
        'kneser_ney': 'interpolated modified Kneser-Ney: discounts D1, D2, D3+ per order '
                      'estimated from count-of-counts; lower orders on continuation counts; '
                      'the lowest order interpolated with the uniform distribution',
        'scoring': 'every token from the second on, given the previous order - 1 tokens '
                   'of the same text (fewer at its start)',
        'fits': {},
        'machine': machine(),
    }
    for name, (train, scored) in fits.items():
        log(f'{name}: {len(train)} tokens')
        results, seconds, cpu_seconds = timed(run_fit, train, scored, makers, args.orders, log)
        report['fits'][name] = {
            'train_tokens': len(train),
            'scored_tokens': {t: len(ids) for t, ids in scored.items()},
            'unknown_fraction': {t: corpora.unknown_fraction(ids, vocab)
                                 for t, ids in scored.items()},
            'chosen': chosen(results, makers),
            'results': results,
            'seconds': round(seconds, 3), 'cpu_seconds': round(cpu_seconds, 3),
        }
    report['machine']['load_average_at_end'] = list(os.getloadavg())
    report['total_seconds'] = round(time.perf_counter() - wall, 3)
    report['total_cpu_seconds'] = round(time.process_time() - cpu, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    log(f'wrote {args.out} in {report["total_seconds"]} s')
    return report


if __name__ == '__main__':
    main()

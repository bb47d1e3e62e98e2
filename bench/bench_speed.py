"""How fast do the RNNs of D2L 8.5 train on this CPU? Tokens/s, memory, perplexity.

Variants, all trained as ``train_epoch_ch8`` trains (clipping at 1, SGD, lr 1):

    faithful          RNNModelScratch(get_params, init_rnn_state, rnn): the section's model
    fast              FastRNNScratch (d2lrnn/fast.py): same mathematics, hand-written BPTT
    fast-hybrid       FastRNNScratch(variant='hybrid'): autograd through a cached graph
    fast-imperative   FastRNNScratch(variant='imperative'): the same operators, no caching
    gluon             gluon.rnn.RNN + Dense, hybridized, gluon Trainer (the concise model, D2L 8.6)

Speed: all variants live in this one process; each repeat trains every variant
for one epoch (the same seeded minibatches), in an order that rotates from
repeat to repeat, so that a change in the machine's load hits all of them
alike. Reported: medians over repeats of tokens per second of wall time (what
``train_epoch_ch8`` reports) and of process CPU time (less sensitive to other
programs on a shared machine), and the median of the per-repeat ratios to
``faithful``.

Memory and perplexity: each variant trains for ``--epochs`` epochs from seed 0
in a subprocess of its own, which reports its peak resident memory (VmHWM)
minus its resident memory just before the model is built (after importing
MXNet and loading the data; the peak is reset there through
/proc/self/clear_refs), and the perplexity of the last epoch. One more subprocess
runs a product and a tanh through oneDNN and nothing else: the memory that any
model using oneDNN pays once, and the section's model (OpenBLAS and MXNet's own
loops) does not.

``--long`` trains faithful and fast for 500 epochs from each of ``--seeds``
(two subprocesses at a time, one per core) and writes results/long_run.json,
which later runs copy into their JSON. With ``--against fast-native`` the
second model is FastRNNScratch on the native operators of
d2lrnn/csrc/rnn_op.cc instead, and the results go to
results/long_run_native.json. One seed is not enough to compare
perplexities after 500 epochs: at lr 1 training is chaotic, so float32
rounding differences (1e-7) grow until the two runs' loss spikes fall on
different epochs. The JSON therefore holds every seed's curve and a summary:
means over seeds, the spread, and the epoch where each pair parted.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_speed.py          # or: bash dev.sh bench
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_speed.py --quick --out /tmp/s.json
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/bench_speed.py --long --seeds 0 1 2 3 4
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_speed.py --long --against fast-native --seeds 0 1 2 3 4
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
from mxnet import gluon, init, np, npx

import d2lrnn
from d2lrnn import (FastRNNScratch, RNNModelScratch, get_params, init_rnn_state, rnn,
                    sgd, train_epoch_ch8)
from d2lrnn.results import BENCH as RESULTS, machine, seed_all

VARIANTS = ('faithful', 'fast', 'fast-hybrid', 'fast-imperative', 'gluon')
# what --long can set against the faithful model, and the JSON each one writes
LONG_AGAINST = {'fast': 'long_run.json', 'fast-native': 'long_run_native.json'}
CTX = npx.cpu()
LR = 1
LONG_EPOCHS = 500


class RNNModelConcise(gluon.HybridBlock):
    """gluon.rnn.RNN (tanh) and a Dense output layer, as the concise implementation (D2L 8.6)."""

    def __init__(self, vocab_size, num_hiddens):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = gluon.rnn.RNN(num_hiddens, activation='tanh')
        self.dense = gluon.nn.Dense(vocab_size, flatten=False)

    def hybrid_forward(self, F, inputs, state):
        X = F.npx.one_hot(inputs.T, self.vocab_size)  # (num_steps, batch_size, vocab_size)
        Y, state = self.rnn(X, list(state))  # (num_steps, batch_size, num_hiddens)
        return self.dense(Y).reshape(-1, self.vocab_size), state

    def begin_state(self, batch_size, ctx):
        return self.rnn.begin_state(batch_size=batch_size, ctx=ctx)


def make_model(variant, vocab_size, num_hiddens, native=False):
    """A model and its updater, parameters drawn from MXNet's current seed.

    `native` goes to ``FastRNNScratch`` (bench_native.py sets it).
    """
    if variant == 'gluon':
        model = RNNModelConcise(vocab_size, num_hiddens)
        model.initialize(init.Normal(0.01), ctx=CTX)
        model.hybridize(static_alloc=True, static_shape=True)
        trainer = gluon.Trainer(model.collect_params(), 'sgd', {'learning_rate': LR})
        return model, trainer.step
    if variant == 'faithful':
        model = RNNModelScratch(vocab_size, num_hiddens, CTX, get_params, init_rnn_state, rnn)
    elif variant == 'fast-native':  # fails if the operators cannot be built
        model = FastRNNScratch(vocab_size, num_hiddens, CTX, native=True)
    elif variant.startswith('fast'):
        # native=False by default: the Python path these figures were
        # measured on (bench_native.py measures the native operator)
        model = FastRNNScratch(vocab_size, num_hiddens, CTX, native=native,
                               variant={'fast': 'bptt'}.get(variant, variant[5:]))
    else:
        raise ValueError(f'unknown variant {variant!r}: choose from {VARIANTS}.')
    return model, lambda batch_size: sgd(model.params, LR, batch_size)


def one_epoch(model, updater, train_iter, seed):
    """Train one epoch on seeded minibatches; return (perplexity, wall tokens/s, CPU tokens/s)."""
    random.seed(seed)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    npx.waitall()
    cpu = time.process_time()
    ppl, speed = train_epoch_ch8(model, train_iter, loss, updater, CTX, False)
    npx.waitall()
    cpu = time.process_time() - cpu
    num_tokens = sum(X.size for X, _ in _seeded(train_iter, seed))
    return ppl, speed, num_tokens / cpu


def _seeded(train_iter, seed):
    random.seed(seed)
    return list(train_iter)


# ---------------------------------------------------------------- speed (one process)

def measure_speed(args, train_iter, vocab_size):
    """Tokens/s of every variant, alternating variants within each repeat."""
    models = {}
    for variant in args.variants:
        mx.random.seed(0)
        models[variant] = make_model(variant, vocab_size, args.num_hiddens)
        one_epoch(*models[variant], train_iter, seed=-1)  # warm-up: builds cached graphs
    wall = {v: [] for v in args.variants}
    cpu = {v: [] for v in args.variants}
    for r in range(args.repeats):
        k = r % len(args.variants)
        for variant in args.variants[k:] + args.variants[:k]:  # rotate the order
            _, w, c = one_epoch(*models[variant], train_iter, seed=r)
            wall[variant].append(w)
            cpu[variant].append(c)
        print(f'repeat {r + 1}/{args.repeats}: ' + ', '.join(
            f'{v} {wall[v][-1]:,.0f}' for v in args.variants) + ' tokens/s', flush=True)
    return {v: summarise(wall, cpu, v) for v in args.variants}


def summarise(wall, cpu, variant):
    def ratios(times):
        if 'faithful' not in times:
            return None
        return statistics.median(a / b for a, b in zip(times[variant], times['faithful']))
    return {'tokens_per_s': wall[variant], 'cpu_tokens_per_s': cpu[variant],
            'median_tokens_per_s': statistics.median(wall[variant]),
            'median_cpu_tokens_per_s': statistics.median(cpu[variant]),
            'ratio_to_faithful': ratios(wall), 'cpu_ratio_to_faithful': ratios(cpu)}


def matmul_gflops(n=2048, repeats=5):
    """GFLOP/s of an (n, n) x (n, n) float32 product through oneDNN and through np.dot
    (OpenBLAS), and of the recurrence's own (32, 512) x (512, 512) product through oneDNN,
    as it stands and transposed.

    Per second of process CPU time, the best of `repeats`: comparable with the CPU-time
    tokens/s, and hardly disturbed by other programs on a shared machine.
    """
    def rate(f, flops, number):
        f()
        npx.waitall()
        best = float('inf')
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(number):
                f()
            npx.waitall()
            best = min(best, (time.process_time() - start) / number)
        return flops / best / 1e9
    mx.random.seed(0)
    A, B = np.random.normal(size=(n, n)), np.random.normal(size=(n, n))
    H, W = np.random.normal(size=(32, 512)), np.random.normal(size=(512, 512))
    return {'n': n,
            # the same product with the state transposed, W^T H^T, as FastRNNScratch computes it
            'onednn_512x512x32_gflops': rate(
                lambda: npx.fully_connected(W, H, no_bias=True, num_hidden=32),
                2 * 32 * 512 * 512, 200),
            'onednn_gflops': rate(lambda: npx.fully_connected(A, B, no_bias=True, num_hidden=n),
                                  2 * n ** 3, 3),
            'openblas_gflops': rate(lambda: np.dot(A, B), 2 * n ** 3, 1),
            'onednn_32x512x512_gflops': rate(
                lambda: npx.fully_connected(H, W, no_bias=True, num_hidden=512),
                2 * 32 * 512 * 512, 200)}


# ---------------------------------------------------------------- memory and perplexity (subprocesses)

def rss_kib(field):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def reset_peak_rss():
    """Reset the peak (VmHWM) to the current resident memory; return that, in KiB."""
    npx.waitall()
    Path('/proc/self/clear_refs').write_text('5')
    return rss_kib('VmRSS')


def peak_rss_growth_mib(baseline):
    """How far the resident memory rose above `baseline` (KiB) at its peak, in MiB."""
    return (rss_kib('VmHWM') - baseline) / 1024


def onednn_runtime():
    """Print, as a JSON line, how much resident memory oneDNN takes on first use.

    One product and one tanh through oneDNN, each of the shapes of the recurrence:
    what any model that uses oneDNN pays once (generated code, work buffers),
    and the section's model, made of OpenBLAS and MXNet's own loops, does not.
    """
    H, W = np.random.normal(size=(32, 512)), np.random.normal(size=(512, 512))
    baseline = reset_peak_rss()
    npx.fully_connected(W, H, no_bias=True, num_hidden=32)
    npx.fully_connected(H, W, no_bias=True, num_hidden=512)
    npx.activation(H, act_type='tanh')
    npx.waitall()
    print(json.dumps({'peak_rss_growth_mib': peak_rss_growth_mib(baseline)}))


def child(args):
    """Train one variant for args.epochs epochs from args.seed; print a JSON line."""
    if args.child == 'onednn-runtime':
        return onednn_runtime()
    random.seed(0)
    train_iter, vocab = d2lrnn.load_data_time_machine(
        args.batch_size, args.num_steps, max_tokens=args.max_tokens)
    baseline = reset_peak_rss()
    seed_all(args.seed)
    model, updater = make_model(args.child, len(vocab), args.num_hiddens)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    ppls, start = [], time.perf_counter()
    progress = open(args.progress, 'w') if args.progress else None
    for epoch in range(args.epochs):
        ppls.append(train_epoch_ch8(model, train_iter, loss, updater, CTX, False)[0])
        if progress:  # a long run that is stopped still leaves its curve so far
            progress.write(json.dumps({'epoch': epoch + 1, 'perplexity': ppls[-1],
                                       'seconds': time.perf_counter() - start}) + '\n')
            progress.flush()
    npx.waitall()
    print(json.dumps({'variant': args.child, 'seed': args.seed, 'epochs': args.epochs,
                      'perplexity': ppls[-1],
                      'perplexities': ppls, 'seconds': time.perf_counter() - start,
                      'baseline_rss_mib': baseline / 1024,
                      'peak_rss_growth_mib': peak_rss_growth_mib(baseline)}))


def run_children(args, variants, epochs, seeds=(0,), jobs=1, progress=None):
    """Run `child` for each variant and seed, `jobs` processes at a time.

    Returns {variant: [its JSON for each seed]}. `progress`: the long run's JSON path,
    next to which the children write their curves.
    """
    def command(variant, seed):
        return [sys.executable, __file__, '--child', variant, '--epochs', str(epochs),
                '--num-hiddens', str(args.num_hiddens), '--batch-size', str(args.batch_size),
                '--num-steps', str(args.num_steps), '--max-tokens', str(args.max_tokens),
                '--seed', str(seed)
                ] + (['--progress', str(progress_path(progress, variant, seed))] if progress else [])
    queue = [(v, s) for v in variants for s in seeds]  # the slow variant first
    running, results = [], {}
    while queue or running:
        while queue and len(running) < jobs:
            v, s = queue.pop(0)
            running.append((v, s, subprocess.Popen(command(v, s), stdout=subprocess.PIPE, text=True)))
        done = next((r for r in running if r[2].poll() is not None), None)
        if done is None:
            time.sleep(0.5)  # children print one line at the end, so their pipes never fill
            continue
        running.remove(done)
        v, s, proc = done
        results[v, s] = _result(proc, f'{v} (seed {s})')
    return {v: [results[v, s] for s in seeds] for v in variants}


def _result(proc, variant):
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f'the {variant} subprocess failed (exit code {proc.returncode}).')
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

def print_table(report):
    speed, memory, ppl = report['speed'], report['memory'], report['perplexity']
    epochs = report['config']['epochs']
    print(f"\n{'variant':16} {'tokens/s':>9} {'x faithful':>10} {'CPU tok/s':>10} "
          f"{'x faithful':>10} {'peak MiB':>9} {f'ppl@{epochs}':>9}")
    for v in report['config']['variants']:
        s = speed[v]
        ratio = s['ratio_to_faithful'] or float('nan')
        cpu_ratio = s['cpu_ratio_to_faithful'] or float('nan')
        print(f"{v:16} {s['median_tokens_per_s']:9,.0f} {ratio:10.2f} "
              f"{s['median_cpu_tokens_per_s']:10,.0f} {cpu_ratio:10.2f} "
              f"{memory[v]['peak_rss_growth_mib']:9.1f} {ppl[v]['perplexity']:9.3f}")
    m = report['matmul']
    print(f"matmul {m['n']}^3: oneDNN {m['onednn_gflops']:.0f} GFLOP/s, "
          f"OpenBLAS {m['openblas_gflops']:.0f} GFLOP/s; (32x512)(512x512) oneDNN "
          f"{m['onednn_32x512x512_gflops']:.0f} GFLOP/s, transposed "
          f"{m['onednn_512x512x32_gflops']:.0f} GFLOP/s")
    print(f"oneDNN's first use: {report['onednn_runtime_mib']:.1f} MiB of resident memory")
    if report.get('long_run'):
        print_long(report['long_run'])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=7, help='speed repeats (default 7)')
    p.add_argument('--epochs', type=int, default=None,
                   help=f'epochs for the perplexity and memory runs (default 10), '
                        f'or of --long (default {LONG_EPOCHS})')
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    p.add_argument('--num-hiddens', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--num-steps', type=int, default=35)
    p.add_argument('--max-tokens', type=int, default=10000)
    p.add_argument('--quick', action='store_true',
                   help='a smoke run in seconds: 2 repeats, 1 epoch, 64 hidden units, 2,000 tokens')
    p.add_argument('--long', action='store_true',
                   help=f'train faithful and fast (or --against) for --epochs ({LONG_EPOCHS}) '
                        'epochs from each of --seeds; write results/long_run.json')
    p.add_argument('--against', choices=list(LONG_AGAINST), default='fast',
                   help='--long: the model trained beside the faithful one (default fast, '
                        'the Python path; fast-native: the native operators, written to '
                        'results/long_run_native.json)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0],
                   help='seeds for --long (default 0)')
    p.add_argument('--jobs', type=int, default=2,
                   help='--long runs this many trainings at a time (default 2)')
    p.add_argument('--merge-long', action='store_true',
                   help='only copy results/long_run.json into the existing speed JSON')
    p.add_argument('--out', type=Path, default=None,
                   help='the JSON to write (default results/speed.json; with --long, '
                        'long_run.json or long_run_native.json)')
    p.add_argument('--child', choices=VARIANTS + ('fast-native', 'onednn-runtime'),
                   help=argparse.SUPPRESS)
    p.add_argument('--progress', type=Path, help=argparse.SUPPRESS)
    p.add_argument('--seed', type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = LONG_EPOCHS if args.long else 10
    if args.quick:
        args.repeats, args.epochs, args.num_hiddens, args.max_tokens = 2, 1, 64, 2000
    if len(set(args.seeds)) != len(args.seeds):
        p.error('--seeds must not repeat a seed.')
    for name in ('repeats', 'epochs', 'num_hiddens', 'batch_size', 'num_steps', 'max_tokens', 'jobs'):
        if getattr(args, name) <= 0:
            p.error(f'--{name.replace("_", "-")} must be a positive integer.')
    return args


def main_long(args):
    """--epochs (500) of faithful and args.against from every seed; write the curves and
    their summary."""
    out = args.out or RESULTS / LONG_AGAINST[args.against]
    progress_path(out, args.against, 0).parent.mkdir(parents=True, exist_ok=True)
    runs = run_children(args, ['faithful', args.against], args.epochs, seeds=args.seeds,
                        jobs=args.jobs, progress=out)
    report = {'machine': machine(),
              'config': dict(config(args), seeds=args.seeds,
                             variants=['faithful', args.against]),
              'runs': runs, 'summary': summarise_long(runs)}
    write(out, report)
    print_long(report)


def summarise_long(runs, agree=1e-5, parted=1e-3, last=50):
    """Per variant: final perplexities, their mean and spread, the mean of the last `last`
    epochs; per seed: the difference at the end, for how many epochs the two runs agree
    within `agree` (relative: float32 rounding), and the first epoch where they differ by
    more than `parted`. `runs`: {'faithful': [...], other: [...]}, the same seeds."""
    other, = (v for v in runs if v != 'faithful')
    summary = {}
    for v, rs in runs.items():
        finals = [r['perplexity'] for r in rs]
        tails = [statistics.fmean(r['perplexities'][-last:]) for r in rs]
        summary[v] = {'final': finals, 'mean_final': statistics.fmean(finals),
                      'sd_final': statistics.stdev(finals) if len(finals) > 1 else None,
                      'min_final': min(finals), 'max_final': max(finals),
                      f'mean_last_{last}': tails, f'mean_of_mean_last_{last}': statistics.fmean(tails)}
    pairs = []
    for a, b in zip(runs['faithful'], runs[other]):
        gaps = [abs(x - y) / x for x, y in zip(a['perplexities'], b['perplexities'])]
        pairs.append({'seed': a['seed'], 'difference_final': abs(a['perplexity'] - b['perplexity']),
                      'agreed_for_epochs': next((i for i, g in enumerate(gaps) if g > agree), len(gaps)),
                      'parted_at_epoch': next((i + 1 for i, g in enumerate(gaps) if g > parted), None)})
    summary['pairs'] = pairs
    summary['difference_of_means'] = abs(summary[other]['mean_final'] - summary['faithful']['mean_final'])
    summary['agree'], summary['parted'], summary['last'] = agree, parted, last
    return summary


def print_long(report):
    s = report['summary']
    print(f"after {report['config']['epochs']} epochs, seeds {report['config']['seeds']}:")
    for v in report['runs']:
        sd = s[v]['sd_final']
        print(f"  {v:11} " + ' '.join(f'{p:.4f}' for p in s[v]['final'])
              + f"   mean {s[v]['mean_final']:.4f}" + (f' sd {sd:.4f}' if sd is not None else ''))
    print(f"  difference of the means: {s['difference_of_means']:.4f}; parted at epochs "
          + ', '.join(str(p['parted_at_epoch']) for p in s['pairs']))


def config(args):
    return {'batch_size': args.batch_size, 'num_steps': args.num_steps,
            'num_hiddens': args.num_hiddens, 'max_tokens': args.max_tokens, 'lr': LR,
            'repeats': args.repeats, 'epochs': args.epochs,
            'variants': list(args.variants), 'quick': args.quick}


def progress_path(out, variant, seed):
    """Where a long run's child writes its curve as it goes, next to the JSON `out`."""
    return out.parent / f'{out.stem}_progress' / f'{variant}_seed{seed}.jsonl'


def read_long_run():
    """The 500-epoch results, if `--long` has written them (in this version's format)."""
    path = RESULTS / 'long_run.json'
    report = json.loads(path.read_text()) if path.exists() else None
    if report is not None and 'summary' not in report:
        print(f'{path} predates multi-seed runs: ignored; run --long again.', file=sys.stderr)
        return None
    return report


def merge_long(out):
    """Copy the 500-epoch results into a finished speed report (they take long to make)."""
    report, long_run = json.loads(out.read_text()), read_long_run()
    if long_run is None:
        raise SystemExit(f'{RESULTS / "long_run.json"} does not exist yet: run --long first.')
    report['long_run'] = long_run
    print_table(report)
    write(out, report)


def write(path, report):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + '\n')
    print(f'wrote {path}')


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.long:
        return main_long(args)
    out = args.out or RESULTS / 'speed.json'
    if args.merge_long:
        return merge_long(out)
    report = {'machine': machine(), 'config': config(args)}
    report['matmul'] = matmul_gflops(512 if args.quick else 2048)
    random.seed(0)
    train_iter, vocab = d2lrnn.load_data_time_machine(
        args.batch_size, args.num_steps, max_tokens=args.max_tokens)
    report['speed'] = measure_speed(args, train_iter, len(vocab))
    runs = {v: r[0] for v, r in run_children(args, args.variants, args.epochs).items()}
    report['memory'] = {v: {k: r[k] for k in ('baseline_rss_mib', 'peak_rss_growth_mib')}
                        for v, r in runs.items()}
    report['onednn_runtime_mib'] = _result(subprocess.Popen(
        [sys.executable, __file__, '--child', 'onednn-runtime'], stdout=subprocess.PIPE, text=True),
        'onednn-runtime')['peak_rss_growth_mib']
    report['perplexity'] = {v: {k: r[k] for k in ('epochs', 'perplexity', 'perplexities')}
                            for v, r in runs.items()}
    report['long_run'] = None if args.quick else read_long_run()
    report['machine']['load_average_at_end'] = list(os.getloadavg())
    write(out, report)
    print_table(report)


if __name__ == '__main__':
    main()

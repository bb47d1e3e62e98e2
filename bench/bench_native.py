"""The native RNN operator against the Python path and MXNet's fused RNN, side by side.

Variants, each trained as ``train_epoch_ch8`` trains (clipping at 1, SGD, lr 1) on the
section's data (512 hidden units, minibatches of 32 x 35, the first 10,000 characters,
vocabulary 28):

    faithful      RNNModelScratch(get_params, init_rnn_state, rnn): the section's model
    fast-python   FastRNNScratch(native=False): cached MXNet graphs, hand-written BPTT
    fast-native   FastRNNScratch(native=True): the two operators of d2lrnn/csrc/rnn_op.cc
    gluon-fused   gluon.rnn.RNN (tanh, MXNet's fused operator) + Dense, hybridized

Speed: all four live in ONE process on ONE thread (OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS are set to 1 before MXNet is imported). Each repeat trains
every variant for one epoch on the same seeded minibatches, in an order that rotates
from repeat to repeat, so that the load of other programs hits all alike; reported are
medians over repeats of the seconds per epoch (wall and process CPU time) and the
medians of the per-repeat ratios. The load average is recorded before and after.

Where the time goes: each model's forward and backward pass alone on one minibatch
(no loss, clipping or update, which all of them share); the floating-point
operations of the products in one minibatch divided by the native operators' time
for it, against the rate of the step's own product, (32, 512) x (512, 512),
through OpenBLAS (which the operator uses for its other products; the step
product has a kernel of its own) and through oneDNN (``npx.fully_connected``,
which the Python path and the fused RNN use): how close the operator runs to the
product's rate.

Memory: each variant trains ``--epochs`` epochs in a subprocess of its own, which
reports its peak resident memory (``ru_maxrss``) and how far it rose above the
resident memory just before the model was built (VmHWM after /proc/self/clear_refs).

    .venv/bin/python bench/bench_native.py              # writes bench/results/native.json
    .venv/bin/python bench/bench_native.py --quick --out /tmp/n.json
"""
import os

# one thread for every library, before any of them is loaded
os.environ['OMP_NUM_THREADS'] = os.environ['OPENBLAS_NUM_THREADS'] = '1'

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import d2lrnn  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as onp  # noqa: E402
from mxnet import autograd, gluon, np, npx  # noqa: E402

from d2lrnn import FastRNNScratch, native, train_epoch_ch8  # noqa: E402
from d2lrnn.results import BENCH as RESULTS, machine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_speed  # noqa: E402
from bench_speed import peak_rss_growth_mib, reset_peak_rss  # noqa: E402

VARIANTS = ('faithful', 'fast-python', 'fast-native', 'gluon-fused')
CTX = npx.cpu()


# each variant as bench_speed.py makes it: (its name there, native)
AS_IN_BENCH_SPEED = {'faithful': ('faithful', False),
                     'fast-python': ('fast', False),
                     'fast-native': ('fast', True),
                     'gluon-fused': ('gluon', False)}


def make_model(variant, vocab_size, num_hiddens):
    """A model and its updater, parameters drawn from MXNet's current seed."""
    if variant not in AS_IN_BENCH_SPEED:
        raise ValueError(f'unknown variant {variant!r}: choose from {VARIANTS}.')
    name, native = AS_IN_BENCH_SPEED[variant]
    return bench_speed.make_model(name, vocab_size, num_hiddens, native=native)


def one_epoch(model, updater, train_iter, seed):
    """Train one epoch on seeded minibatches; return (perplexity, wall s, CPU s)."""
    random.seed(seed)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    npx.waitall()
    wall, cpu = time.perf_counter(), time.process_time()
    ppl, _ = train_epoch_ch8(model, train_iter, loss, updater, CTX, False)
    npx.waitall()
    return ppl, time.perf_counter() - wall, time.process_time() - cpu


def measure_speed(args, train_iter, vocab_size):
    """Seconds per epoch of every variant, rotating the order from repeat to repeat."""
    models = {}
    for variant in VARIANTS:
        mx.random.seed(0)
        models[variant] = make_model(variant, vocab_size, args.num_hiddens)
        one_epoch(*models[variant], train_iter, seed=-1)  # warm-up: graphs, buffers
    wall = {v: [] for v in VARIANTS}
    cpu = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        k = r % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:
            _, w, c = one_epoch(*models[variant], train_iter, seed=r)
            wall[variant].append(w)
            cpu[variant].append(c)
        print(f'repeat {r + 1}/{args.repeats}: ' + ', '.join(
            f'{v} {wall[v][-1]:.3f}' for v in VARIANTS) + ' s/epoch', flush=True)

    def ratio(times, a, b):  # how many times faster a is than b, median over repeats
        return statistics.median(y / x for x, y in zip(times[a], times[b]))
    speed = {v: {'wall_s_per_epoch': wall[v], 'cpu_s_per_epoch': cpu[v],
                 'median_wall_s_per_epoch': statistics.median(wall[v]),
                 'median_cpu_s_per_epoch': statistics.median(cpu[v])} for v in VARIANTS}
    ratios = {}
    for a, b in [('fast-native', 'gluon-fused'), ('fast-native', 'fast-python'),
                 ('fast-native', 'faithful'), ('fast-python', 'gluon-fused'),
                 ('fast-python', 'faithful'), ('gluon-fused', 'faithful')]:
        ratios[f'{a} / {b}'] = {'wall': ratio(wall, a, b), 'cpu': ratio(cpu, a, b)}
    return speed, ratios


def timed(f, number, repeats):
    """(best CPU seconds, median wall seconds) per call of f, over `repeats` rounds."""
    f()
    npx.waitall()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        for _ in range(number):
            f()
        npx.waitall()
        cpu.append((time.process_time() - c) / number)
        wall.append((time.perf_counter() - w) / number)
    return min(cpu), statistics.median(wall)


def product_rates(args):
    """GFLOP/s of the step's product (32, 512) x (512, 512), OpenBLAS and oneDNN."""
    import scipy_openblas32
    lib = ctypes.CDLL(str(Path(scipy_openblas32.get_lib_dir()) / 'libscipy_openblas.so'))
    lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
    B, H = args.batch_size, args.num_hiddens
    flops = 2 * B * H * H
    A = onp.random.rand(B, H).astype('float32')
    W = onp.random.rand(H, H).astype('float32')
    C = onp.zeros((B, H), 'float32')
    ptr = [Z.ctypes.data_as(ctypes.c_void_p) for Z in (A, W, C)]
    one, zero = ctypes.c_float(1), ctypes.c_float(0)

    def openblas():  # row-major, no transposes: C = A W
        lib.scipy_cblas_sgemm(101, 111, 111, B, H, H, one, ptr[0], H, ptr[1], H, zero,
                              ptr[2], H)
    Hn, Wn = np.array(A), np.array(W)

    def onednn():
        npx.fully_connected(Hn, Wn, no_bias=True, num_hidden=H)
    out = {'shape': f'({B}, {H}) x ({H}, {H})', 'flops': flops,
           'openblas_core': lib.scipy_openblas_get_corename().decode(),
           'openblas_threads': lib.scipy_openblas_get_num_threads()}
    # the two libraries in alternate rounds, so that both meet the same load
    times = {'openblas': [], 'onednn': []}
    for _ in range(args.rate_repeats):
        for name, f in (('openblas', openblas), ('onednn', onednn)):
            times[name].append(timed(f, 200, 1))
    for name, t in times.items():
        cpu, wall = min(c for c, _ in t), statistics.median(w for _, w in t)
        out[f'{name}_gflops_cpu'] = flops / cpu / 1e9
        out[f'{name}_gflops_wall'] = flops / wall / 1e9
        out[f'{name}_us_wall'] = wall * 1e6
    return out


def model_times(args, vocab_size, rates):
    """Each model's forward and backward on one minibatch, nothing else.

    No loss, clipping or update: the recurrence and the output layer alone,
    with a gradient of ones on the outputs; the variants in alternate
    rounds. For the native operators, also their products' rate.
    """
    B, T, H, V = args.batch_size, args.num_steps, args.num_hiddens, vocab_size
    X = np.random.randint(0, V, size=(B, T)).astype('float32')
    calls = {}
    for variant in VARIANTS:
        mx.random.seed(0)
        model, _ = make_model(variant, V, H)
        state = model.begin_state(batch_size=B, ctx=CTX)

        def both(model=model, state=state):
            with autograd.record():
                Y, _ = model(X, state)
            Y.backward(np.ones_like(Y))
        calls[variant] = both

    def forward_native(model=FastRNNScratch(V, H, CTX, native=True)):
        with autograd.record():
            model(X, model.begin_state(B, CTX))
    times = {v: [] for v in VARIANTS}
    fwd = []
    for _ in range(args.rate_repeats):
        for variant in VARIANTS:
            times[variant].append(timed(calls[variant], 5, 1))
        fwd.append(timed(forward_native, 5, 1))
    out = {}
    for variant, t in times.items():
        out[variant] = {'forward_backward_ms_cpu': 1e3 * min(c for c, _ in t),
                        'forward_backward_ms_wall':
                            1e3 * statistics.median(w for _, w in t)}
    # forward: T step products, the output layer; backward: T step products,
    # dY W_hq^T, dW_hh, dW_hq
    flops_forward = 2 * T * B * H * H + 2 * T * B * H * V
    flops_backward = (2 * T * B * H * H + 2 * T * B * V * H + 2 * H * H * T * B
                      + 2 * H * V * T * B)
    flops = flops_forward + flops_backward
    native_s = out['fast-native']['forward_backward_ms_cpu'] / 1e3
    fwd_s = min(c for c, _ in fwd)
    out['native_products'] = {
        'gflop_per_minibatch': flops / 1e9,
        'forward_ms_cpu': fwd_s * 1e3,
        'forward_gflops_cpu': flops_forward / fwd_s / 1e9,
        'step_product_share_of_flops': 2 * T * 2 * B * H * H / flops,
        'effective_gflops_cpu': flops / native_s / 1e9,
        'share_of_openblas_step_rate_cpu':
            flops / native_s / 1e9 / rates['openblas_gflops_cpu']}
    out['fast-native / gluon-fused'] = (
        out['gluon-fused']['forward_backward_ms_cpu']
        / out['fast-native']['forward_backward_ms_cpu'])
    return out


def child(args):
    """Train one variant for args.epochs epochs; print its memory as a JSON line."""
    random.seed(0)
    train_iter, vocab = d2lrnn.load_data_time_machine(args.batch_size, args.num_steps,
                                                      max_tokens=args.max_tokens)
    baseline = reset_peak_rss()
    mx.random.seed(0)
    model, updater = make_model(args.child, len(vocab), args.num_hiddens)
    for epoch in range(args.epochs):
        ppl, _, _ = one_epoch(model, updater, train_iter, seed=epoch)
    print(json.dumps({'variant': args.child, 'perplexity': ppl,
                      'ru_maxrss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      'baseline_rss_mib': baseline / 1024,
                      'peak_rss_growth_mib': peak_rss_growth_mib(baseline)}))


def measure_memory(args):
    """Peak memory of each variant, each in a subprocess of its own."""
    out = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, '--child', variant, '--epochs', str(args.epochs),
               '--num-hiddens', str(args.num_hiddens), '--batch-size', str(args.batch_size),
               '--num-steps', str(args.num_steps), '--max-tokens', str(args.max_tokens)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=9, help='speed repeats (default 9)')
    p.add_argument('--rate-repeats', type=int, default=7,
                   help='rounds for the product rates and the breakdown (default 7)')
    p.add_argument('--epochs', type=int, default=3,
                   help='epochs of each memory subprocess (default 3)')
    p.add_argument('--num-hiddens', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--num-steps', type=int, default=35)
    p.add_argument('--max-tokens', type=int, default=10000)
    p.add_argument('--quick', action='store_true',
                   help='a smoke run: 2 repeats, 1 epoch, 64 hidden units, 2,000 tokens')
    p.add_argument('--out', type=Path, default=RESULTS / 'native.json')
    p.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.rate_repeats, args.epochs = 2, 2, 1
        args.num_hiddens, args.max_tokens = 64, 2000
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    native.load(required=True)
    load_start = os.getloadavg()
    random.seed(0)
    train_iter, vocab = d2lrnn.load_data_time_machine(args.batch_size, args.num_steps,
                                                      max_tokens=args.max_tokens)
    speed, ratios = measure_speed(args, train_iter, len(vocab))
    rates = product_rates(args)
    breakdown = model_times(args, len(vocab), rates)
    load_after_speed = os.getloadavg()
    memory = measure_memory(args)
    report = {'machine': dict(machine(), load_average_at_start=list(load_start),
                              load_average_after_speed=list(load_after_speed),
                              load_average_at_end=list(os.getloadavg())),
              'config': {'variants': list(VARIANTS), 'repeats': args.repeats,
                         'num_hiddens': args.num_hiddens, 'batch_size': args.batch_size,
                         'num_steps': args.num_steps, 'max_tokens': args.max_tokens,
                         'vocab_size': len(vocab), 'memory_epochs': args.epochs,
                         'quick': args.quick, 'native_library': str(native._loaded)},
              'speed': speed, 'ratios': ratios, 'product_rates': rates,
              'model_times': breakdown, 'memory': memory}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    print(f"\n{report['machine']['cpu_model']}, load {load_start[0]:.1f} at start")
    for v in VARIANTS:
        print(f"{v:12} {speed[v]['median_wall_s_per_epoch']:7.3f} s/epoch wall "
              f"{speed[v]['median_cpu_s_per_epoch']:7.3f} CPU; peak "
              f"{memory[v]['ru_maxrss_mib']:.0f} MiB (+{memory[v]['peak_rss_growth_mib']:.0f})")
    for k, r in ratios.items():
        print(f"{k:28} {r['wall']:.2f}x wall, {r['cpu']:.2f}x CPU")
    for v in VARIANTS:
        print(f"{v:12} forward and backward alone: "
              f"{breakdown[v]['forward_backward_ms_cpu']:.1f} ms CPU")
    print(f"native / fused, forward and backward alone: "
          f"{breakdown['fast-native / gluon-fused']:.2f}x")
    print(f"step product: OpenBLAS {rates['openblas_gflops_cpu']:.1f}, oneDNN "
          f"{rates['onednn_gflops_cpu']:.1f} GFLOP/s; native minibatch "
          f"{breakdown['native_products']['effective_gflops_cpu']:.1f} GFLOP/s")
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()

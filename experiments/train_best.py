"""The best scratch RNN for text it never saw: tune it, train it, ship it.

Trains ``FastRNNScratch`` (the section's tanh RNN, hand-written BPTT) on the
training part (first 80%) of The Time Machine with a recipe (Adam with a
warm-up and a cosine schedule, dropout before the output layer, gradient
clipping, optionally a moving average of the parameters; ``d2lrnn.optim``),
scores the validation part (next 10%) after every epoch and keeps the best
epoch.

``--tune`` runs the tuning (``TUNING``): from a starting recipe, one change
at a time (learning rate, dropout, rows per minibatch, averaging, schedule
length), then the best changes at full length; seed 0, one row each (what
changed, best validation perplexity, its epoch, minutes) in the 'tuning' of
the JSON, every row read alike (``common.EVAL``). The best row is the recipe
(``experiments.common.RECIPE``).

Without ``--tune``, every seed of ``--seeds`` trains the recipe once and is
scored once on the test part (last 10%) at its best epoch; the seed with the
best *validation* perplexity is the one shipped (``--checkpoint DIR``, the
package's checkpoint format, which ``d2lrnn generate`` and ``d2lrnn
evaluate`` read). The seeds are read as ``d2lrnn evaluate`` reads that
checkpoint: ``seq_data_iter_eval`` with the recipe's batch_size and
num_steps. The JSON also holds the count model fitted on the same training
part (order chosen on validation), a mixture of the two (weight chosen on
validation), and every model scored on The War of the Worlds. From the
repository's root:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m experiments.train_best \\
        --tune --native on
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m experiments.train_best \\
        --native on --checkpoint d2lrnn/models/time-machine-best
    .venv/bin/python -m experiments.train_best --tiny --out /tmp/b.json
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as onp
from mxnet import npx

from d2lrnn import checkpoint as ckpt
from d2lrnn.data import TIME_MACHINE
from d2lrnn.exercises import target_probabilities
from d2lrnn.evaluate import bits_per_char
from d2lrnn.results import EXPERIMENTS, machine

from . import common
from .common import EVAL, RECIPE, START, TINY_EVAL, TINY_RECIPE

DEFAULT_OUT = EXPERIMENTS / 'best_rnn.json'
# The tuning: seed 0, one row per run, each a change from START. First one
# change at a time in short runs (10 epochs, the cosine schedule compressed
# into them: enough to rank the changes, not to finish training), then the
# best changes, alone and together, at the full length.
TUNING = {
    'start, 10 epochs': dict(num_epochs=10),
    'lr 2e-3': dict(num_epochs=10, lr=2e-3),
    'lr 1e-2': dict(num_epochs=10, lr=1e-2),
    'lr 2e-2': dict(num_epochs=10, lr=2e-2),
    'dropout 0.1': dict(num_epochs=10, dropout=0.1),
    'dropout 0.4': dict(num_epochs=10, dropout=0.4),
    '8 rows per minibatch': dict(num_epochs=10, batch_size=8),
    '16 rows per minibatch': dict(num_epochs=10, batch_size=16),
    '64 rows per minibatch': dict(num_epochs=10, batch_size=64),
    'no parameter averaging': dict(num_epochs=10, average_decay=0.0),
    'start, 30 epochs': dict(num_epochs=30),
    '16 rows, 30 epochs': dict(num_epochs=30, batch_size=16),
    '16 rows, lr 1e-2, 30 epochs': dict(num_epochs=30, batch_size=16, lr=1e-2),
    '16 rows, no averaging, 30 epochs': dict(num_epochs=30, batch_size=16,
                                             average_decay=0.0),
    '16 rows, 40 epochs': dict(num_epochs=40, batch_size=16),
}
TINY_TUNING = {'tiny recipe': {}, 'tiny lr 3e-2': dict(lr=3e-2)}
TUNING_PROTOCOL = (
    "seed 0; each row changes experiments.common.START as its 'changed' "
    'says; 10-epoch rows rank one change at a time (the cosine schedule '
    'compressed into 10 epochs), 30- and 40-epoch rows are full length; '
    'every row reads the validation part alike (32 streams of 35 steps); '
    'the row with the lowest best validation perplexity is the recipe')
WEIGHTS = [round(w, 2) for w in onp.linspace(0, 1, 21)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--out', type=Path, default=DEFAULT_OUT,
                   help='the JSON to write (a --tune run adds its rows to '
                        'it; a seeds run keeps its tuning rows)')
    p.add_argument('--checkpoint', type=Path, metavar='DIR',
                   help="write the shipped seed's best epoch here")
    p.add_argument('--tune', nargs='*', metavar='NAME',
                   help='run these tuning rows (all if none is named) '
                        'instead of the seeds')
    p.add_argument('--tiny', action='store_true',
                   help=f'tiny model on the first {common.TINY_TOKENS} '
                        'characters (seconds; for the tests)')
    p.add_argument('--no-counts', action='store_true',
                   help='skip the count model and the mixture')
    p.add_argument('--native', choices=list(common.NATIVE), default='auto',
                   help="FastRNNScratch's native operator: if it can be "
                        'built (auto), required (on) or not used (off); '
                        'each run records which ran')
    p.add_argument('--quiet', action='store_true')
    for key, value in RECIPE.items():  # every setting can be changed
        start = '' if START[key] == value else f' ({START[key]} with --tune)'
        p.add_argument('--' + key.replace('_', '-'), type=type(value),
                       metavar=key.upper(), help=f'default {value}{start}')
    args = p.parse_args(argv)
    known = TINY_TUNING if args.tiny else TUNING
    unknown = sorted(set(args.tune or ()) - set(known))
    if unknown:
        p.error(f'unknown tuning rows {unknown}; known: {sorted(known)}')
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


def command(argv):
    return ' '.join(['python -m experiments.train_best'] + argv)


def write(path, out):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + '\n')


def main(argv=None):
    args = parse_args(argv)
    cfg = recipe(args)

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    ctx = npx.cpu()
    texts = common.load_texts(args.tiny)
    previous = (json.loads(args.out.read_text()) if args.out.exists()
                else {})
    if args.tune is not None:  # every row read alike
        ev = TINY_EVAL if args.tiny else EVAL
        return tune(args, cfg, texts, ctx, ev, previous, log)
    # read as `d2lrnn evaluate` reads the checkpoint
    return train_seeds(args, cfg, texts, ctx, common.reading(cfg), previous,
                       log)


def recipe(args):
    """RECIPE (START to --tune, TINY_RECIPE with --tiny) with the options'
    changes."""
    cfg = dict(TINY_RECIPE if args.tiny else
               START if args.tune is not None else RECIPE)
    for key in RECIPE:
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def epoch_logger(log, name):
    def on_epoch(epoch, rec):
        log(f'  {name} epoch {epoch}: train {rec["train_ppl"][-1]:.3f} '
            f'valid {rec["valid_ppl"][-1]:.3f} ({rec["seconds"][-1]:.1f} s)')
    return on_epoch


def tune(args, cfg, texts, ctx, ev, out, log):
    """Run the tuning rows `args.tune` (all if none is named), each a change
    from `cfg`, into ``out['tuning']``, replacing rows of the same name."""
    rows = TINY_TUNING if args.tiny else TUNING
    out.setdefault('tuning', [])
    for name in args.tune or list(rows):
        settings = dict(cfg, **rows[name])
        log(f'{name}: {settings}')
        _, rec = common.train_recipe(
            settings, 0, texts, ctx, ev, native=common.NATIVE[args.native],
            on_epoch=epoch_logger(log, name))
        row = dict(name=name,
                   changed={k: v for k, v in settings.items() if v != cfg[k]},
                   settings=settings, seed=0,
                   best_valid_ppl=rec['best_valid_ppl'],
                   best_epoch=rec['best_epoch'], minutes=rec['minutes'],
                   native=rec['native'], epoch=rec['epoch'],
                   valid_ppl=rec['valid_ppl'], train_ppl=rec['train_ppl'],
                   diverged_at_step=rec['diverged_at_step'],
                   cpu_model=machine()['cpu_model'])
        out['tuning'] = [r for r in out['tuning'] if r['name'] != name]
        out['tuning'].append(row)
        write(args.out, out)
    return out


def train_seeds(args, cfg, texts, ctx, ev, previous, log):
    """Every seed of the recipe, each scored once on test; the shipped seed
    chosen on validation; counts and mixture on the same texts."""
    out = dict(
        description='The best scratch RNN (FastRNNScratch, tanh) trained on '
                    'the training part of The Time Machine; each seed\'s '
                    'epoch chosen on the validation part, scored once on '
                    'the test part; the shipped seed chosen on validation. '
                    'Written by experiments/train_best.py.',
        command=command(args.argv), settings=cfg, seeds=args.seeds,
        eval_batch_size=ev[0], eval_num_steps=ev[1],
        texts=common.describe(texts), native_option=args.native,
        machine=machine(), runs=[])
    start = time.perf_counter()
    models = {}
    for seed in args.seeds:
        log(f'seed {seed}: {cfg}')
        model, rec = common.train_recipe(
            cfg, seed, texts, ctx, ev, native=common.NATIVE[args.native],
            on_epoch=epoch_logger(log, f'seed {seed}'))
        rec.update(common.gradient_summary(rec.pop('step_norm'),
                                           cfg['theta']))
        rec.update(common.test_figures(model, texts, ctx, ev))
        rec['wotw_ppl'] = common.score(model, texts.wotw, ctx, ev)
        rec['wotw_bpc'] = bits_per_char(rec['wotw_ppl'])
        out['runs'].append(rec)
        models[seed] = model
    runs = out['runs']
    out['summary'] = {key: common.spread([r[key] for r in runs]) for key in
                      ('best_valid_ppl', 'test_ppl', 'best_epoch',
                       'wotw_ppl', 'minutes')}
    out['summary']['seconds_per_epoch'] = common.spread(
        [s for r in runs for s in r['seconds']])
    shipped = min(runs, key=lambda r: r['best_valid_ppl'])
    out['shipped'] = dict(
        seed=shipped['seed'], epoch=shipped['best_epoch'],
        chosen_on='validation', valid_ppl=shipped['best_valid_ppl'],
        valid_bpc=shipped['best_valid_bpc'], test_ppl=shipped['test_ppl'],
        test_bpc=shipped['test_bpc'], wotw_ppl=shipped['wotw_ppl'],
        native=shipped['native'], checkpoint=None)
    if not args.no_counts:
        add_counts(out, models[shipped['seed']], texts, ctx, ev, args.tiny)
    out['tuning'] = previous.get('tuning', [])
    out['tuning_protocol'] = TUNING_PROTOCOL
    if args.checkpoint is not None:
        write_checkpoint(args.checkpoint, models[shipped['seed']],
                         texts.vocab, cfg, shipped, args.tiny)
        out['shipped']['checkpoint'] = str(args.checkpoint)
    out['total_minutes'] = (time.perf_counter() - start) / 60
    write(args.out, out)
    s = out['summary']
    log(f"valid {s['best_valid_ppl']['mean']:.3f}, test "
        f"{s['test_ppl']['mean']:.3f} over {len(runs)} seeds; {args.out}")
    return out


def add_counts(out, model, texts, ctx, ev, tiny):
    """The count model on the same training part (order chosen on
    validation) and its mixture with `model` (weight chosen on validation),
    each scored once on test."""
    orders = common.TINY_COUNT_ORDERS if tiny else common.COUNT_ORDERS
    counts, out['counts'] = common.chosen_counts(
        texts.train, texts.valid, texts.test, len(texts.vocab), orders,
        others={'wotw': texts.wotw})
    valid = mixture(model, counts, texts.valid, ctx, ev)
    weight = min(WEIGHTS, key=valid)
    test = mixture(model, counts, texts.test, ctx, ev)
    wotw = mixture(model, counts, texts.wotw, ctx, ev)
    out['mixture'] = dict(
        order=out['counts']['order'], rnn_weight=weight,
        chosen_on='validation',
        scored='the tokens the RNN scores (seq_data_iter_eval)',
        valid_ppl=valid(weight),
        valid_ppl_by_weight={str(w): valid(w) for w in WEIGHTS},
        test_ppl=test(weight), test_bpc=bits_per_char(test(weight)),
        test_rnn_alone_ppl=test(1.0), test_counts_alone_ppl=test(0.0),
        wotw_ppl=wotw(weight), wotw_rnn_alone_ppl=wotw(1.0),
        wotw_counts_alone_ppl=wotw(0.0))


def scored_positions(num_tokens, batch_size, num_steps):
    """The position in the text of every label that ``target_probabilities``
    returns, in its order (seq_data_iter_eval: `batch_size` streams read
    `num_steps` at a time, labels one ahead, rows step by step)."""
    usable = ((num_tokens - 1) // batch_size) * batch_size
    length = usable // batch_size
    num_batches = length // num_steps
    pos = []
    for i in range(num_batches):
        for t in range(num_steps):
            for b in range(batch_size):
                pos.append(b * length + i * num_steps + t + 1)
    return onp.array(pos)


def mixture(model, counts, ids, ctx, ev):
    """The perplexity of w * p_rnn + (1 - w) * p_counts as a function of w.

    Measured on the tokens of `ids` that the RNN scores (the tail that
    fills no minibatch is left out), so that w = 1 is the RNN alone and
    w = 0 the count model alone on exactly the same tokens.
    """
    p_rnn = target_probabilities(model, ids, *ev, ctx)
    p_counts = onp.exp(counts.log_probs(ids))[
        scored_positions(len(ids), *ev) - 1]

    def ppl(w):
        return float(onp.exp(-onp.log(w * p_rnn + (1 - w) * p_counts).mean()))
    return ppl


def write_checkpoint(directory, model, vocab, cfg, rec, tiny):
    """Write `model`, the run `rec` at its best epoch, as a checkpoint."""
    raw = TIME_MACHINE.read_bytes()
    config = dict(cfg, model='FastRNNScratch', seed=rec['seed'],
                  use_random_iter=False, max_tokens=-1,
                  # the part it never trained on: validation and test
                  val_fraction=round(common.VALID_FRACTION
                                     + common.TEST_FRACTION, 10),
                  valid_fraction=common.VALID_FRACTION,
                  test_fraction=common.TEST_FRACTION, text=None,
                  text_sha256=hashlib.sha256(raw).hexdigest(),
                  optimizer='adam', trained_by='experiments/train_best.py',
                  tiny=tiny)
    best = rec['best_epoch']
    history = [{'epoch': e, 'perplexity': p, 'val_perplexity': v}
               for e, p, v in zip(rec['epoch'], rec['train_ppl'],
                                  rec['valid_ppl'])][:best]
    params = {name: p.asnumpy()
              for name, p in zip(ckpt.PARAM_NAMES, model.params)}
    # No Python random state: `d2lrnn train --resume` (plain SGD) cannot
    # continue this Adam recipe, and refuses a checkpoint without it.
    progress = {'epoch': best, 'history': history}
    ckpt.save(directory, ckpt.Checkpoint(params, vocab, config, progress))


if __name__ == '__main__':
    main()

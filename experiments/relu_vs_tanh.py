"""ReLU against tanh in the scratch RNN (exercise 6), several seeds each.

Two settings, each run with both activations and every seed of ``--seeds``
(``FastRNNScratch(..., activation=...)``; the same seed gives both the same
initial parameters and the same minibatches):

* ``section``: the section's recipe. The first 10,000 characters of The
  Time Machine (``load_data_time_machine(32, 35)``), 512 hidden units, SGD
  at learning rate 1, clipping at norm 1, 500 epochs of sequential
  minibatches (``experiments.train_run``). The characters 10,000 to 20,000,
  which the model never trains on, are scored every ``--eval-every`` epochs
  and at the end.
* ``heldout``: the recipe of ``experiments/train_best.py`` (Adam with a cosine
  schedule, dropout, clipping, a moving average of the parameters;
  ``d2lrnn.optim.fit``) on the first 90% of the book, scored on the last
  10% after every epoch, but for ``--heldout-epochs`` epochs only (10 by
  default, against the 30 of the shipped model: the schedule is the same
  cosine, compressed into those epochs).

For every run the JSON holds the training curve, the held-out curve, the
gradient norm before clipping summarised per epoch (median, maximum, share
of steps above the threshold, i.e. clipped), whether the run diverged, and
the size of the hidden values (largest, mean, share exactly zero, share
beyond 0.99) on the first held-out minibatch, with the largest singular
value of W_hh, at every scoring. The results are written after every run,
so a run cut short keeps the finished ones.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/relu_vs_tanh.py
    .venv/bin/python experiments/relu_vs_tanh.py --tiny --out /tmp/r.json  # seconds
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as onp
from mxnet import npx

import d2lrnn
from d2lrnn.evaluate import seq_data_iter_eval
from d2lrnn.experiments import train_run
from d2lrnn.optim import fit

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / 'results' / 'relu_vs_tanh.json'
BASELINES = ROOT / 'results' / 'baselines.json'


def _load_train_best():
    """experiments/train_best.py as a module (its recipe and helpers)."""
    spec = importlib.util.spec_from_file_location('train_best',
                                                  ROOT / 'train_best.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


best = _load_train_best()

ACTIVATIONS = ('tanh', 'relu')
SETTINGS = ('section', 'heldout')
# The section's recipe (D2L 8.5): 10,000 characters, scored on the next
# 10,000.
SECTION = dict(max_tokens=10_000, valid_tokens=10_000, num_hiddens=512,
               num_steps=35, batch_size=32, lr=1.0, theta=1.0,
               num_epochs=500, eval_every=25)
TINY_SECTION = dict(max_tokens=2000, valid_tokens=2000, num_hiddens=16,
                    num_steps=10, batch_size=8, lr=1.0, theta=1.0,
                    num_epochs=4, eval_every=2)
HELDOUT_EPOCHS, TINY_HELDOUT_EPOCHS = 10, 2


def summarise_norms(norms, bounds, theta):
    """Per epoch: median and largest pre-clipping norm, share clipped.

    `bounds` are the numbers of steps taken at the end of each epoch.
    """
    out = dict(median=[], max=[], clipped_share=[], steps=[])
    start = 0
    for end in bounds:
        part = norms[start:end]
        if part:
            out['median'].append(statistics.median(part))
            out['max'].append(max(part))
            out['clipped_share'].append(
                sum(n > theta for n in part) / len(part))
            out['steps'].append(len(part))
        start = end
    finite = [n for n in norms if onp.isfinite(n)]
    out['overall'] = dict(
        steps=len(norms), median=statistics.median(finite) if finite else None,
        max=max(finite) if finite else None,
        clipped_share=sum(n > theta for n in norms) / len(norms)
        if norms else None)
    return out


def hidden_stats(model, X, ctx):
    """Sizes of the hidden values over the minibatch X, step by step, from a
    zero state, and the largest singular value of W_hh."""
    state, hs = model.begin_state(X.shape[0], ctx), []
    X = X.as_in_ctx(ctx)
    for t in range(X.shape[1]):
        _, state = model(X[:, t:t + 1], state)
        hs.append(state[0].asnumpy())
    H = onp.abs(onp.stack(hs))
    W_hh = model.params[1].asnumpy()
    return dict(H_max=float(H.max()), H_mean=float(H.mean()),
                zero_share=float((H == 0).mean()),
                saturated_share=float((H > 0.99).mean()),
                spectral_W_hh=float(onp.linalg.norm(W_hh, 2)))


def run_section(activation, seed, cfg, ctx, log, native=None):
    best.seed_all(seed)
    train_iter, vocab = d2lrnn.load_data_time_machine(
        cfg['batch_size'], cfg['num_steps'], max_tokens=cfg['max_tokens'])
    corpus, _ = d2lrnn.load_corpus_time_machine()
    unseen = corpus[cfg['max_tokens']:cfg['max_tokens'] + cfg['valid_tokens']]
    probe = seq_data_iter_eval(unseen, cfg['batch_size'],
                               cfg['num_steps'])[0][0]
    model = d2lrnn.FastRNNScratch(len(vocab), cfg['num_hiddens'], ctx,
                                  activation=activation, native=native)
    bounds, hidden = [], [dict(epoch=0, **hidden_stats(model, probe, ctx))]
    timer = time.perf_counter()

    def on_epoch(epoch, rec):
        bounds.append(len(rec['step_norm']))
        if epoch % cfg['eval_every'] == 0 or epoch == cfg['num_epochs']:
            hidden.append(dict(epoch=epoch,
                               **hidden_stats(model, probe, ctx)))
            log(f'  section {activation} seed {seed} epoch {epoch}: train '
                f'{rec["train_ppl"][-1]:.3f} unseen {rec["valid_ppl"][-1]:.3f}'
                f' ({time.perf_counter() - timer:.0f} s)')

    rec = train_run(model, train_iter, cfg['lr'], cfg['num_epochs'], ctx,
                    theta=cfg['theta'], valid_corpus=unseen,
                    eval_every=cfg['eval_every'],
                    eval_batch_size=cfg['batch_size'],
                    eval_num_steps=cfg['num_steps'], on_epoch=on_epoch)
    if rec['diverged_at_step'] is not None:
        bounds.append(len(rec['step_norm']))
    norms = rec['step_norm']
    return dict(
        setting='section', activation=activation, seed=seed,
        native=bool(model.native),
        epoch=rec['epoch'], train_ppl=rec['train_ppl'],
        valid_epoch=rec['valid_epoch'], valid_ppl=rec['valid_ppl'],
        final_train_ppl=rec['train_ppl'][-1] if rec['train_ppl'] else None,
        final_valid_ppl=rec['valid_ppl'][-1] if rec['valid_ppl'] else None,
        best_valid_ppl=min(rec['valid_ppl']) if rec['valid_ppl'] else None,
        diverged_at_step=rec['diverged_at_step'],
        grad_norm=summarise_norms(norms, bounds, cfg['theta']),
        hidden=hidden, seconds=time.perf_counter() - timer)


def run_heldout(activation, seed, cfg, texts, ctx, ev, log, native=None):
    train, valid, vocab = texts
    best.seed_all(seed)
    model = d2lrnn.FastRNNScratch(len(vocab), cfg['num_hiddens'], ctx,
                                  dropout=cfg['dropout'],
                                  activation=activation, native=native)
    if cfg['init'] == 'xavier':
        best.xavier_rescale(model.params)
    train_iter = d2lrnn.SeqDataLoader(cfg['batch_size'], cfg['num_steps'],
                                      False, -1, corpus=train, vocab=vocab)
    probe = seq_data_iter_eval(valid, *ev)[0][0]
    bounds, hidden = [], [dict(epoch=0, **hidden_stats(model, probe, ctx))]
    timer = time.perf_counter()

    def on_epoch(epoch, rec):
        bounds.append(len(rec['step_norm']))
        hidden.append(dict(epoch=epoch, **hidden_stats(model, probe, ctx)))
        log(f'  heldout {activation} seed {seed} epoch {epoch}: train '
            f'{rec["train_ppl"][-1]:.3f} valid {rec["valid_ppl"][-1]:.3f}'
            f' ({rec["seconds"][-1]:.0f} s)')

    rec = fit(model, train_iter, valid, ctx, cfg['num_epochs'], lr=cfg['lr'],
              theta=cfg['theta'], weight_decay=cfg['weight_decay'],
              warmup_steps=cfg['warmup_steps'], final_lr=cfg['final_lr'],
              average_decay=cfg['average_decay'],
              eval_batch_size=ev[0], eval_num_steps=ev[1], on_epoch=on_epoch)
    if rec['diverged_at_step'] is not None:
        bounds.append(len(rec['step_norm']))
    return dict(
        setting='heldout', activation=activation, seed=seed,
        native=bool(model.native),
        epoch=rec['epoch'], train_ppl=rec['train_ppl'],
        valid_epoch=rec['epoch'], valid_ppl=rec['valid_ppl'],
        valid_ppl_raw=rec.get('valid_ppl_raw'), lr=rec['lr'],
        final_train_ppl=rec['train_ppl'][-1] if rec['train_ppl'] else None,
        final_valid_ppl=rec['valid_ppl'][-1] if rec['valid_ppl'] else None,
        best_valid_ppl=rec['best_valid_ppl'], best_epoch=rec['best_epoch'],
        diverged_at_step=rec['diverged_at_step'],
        grad_norm=summarise_norms(rec['step_norm'], bounds, cfg['theta']),
        hidden=hidden, seconds=time.perf_counter() - timer)


def summary(runs):
    """Mean, spread, min and max over seeds, per setting and activation."""
    out = {}
    for setting in SETTINGS:
        for activation in ACTIVATIONS:
            rs = [r for r in runs if r['setting'] == setting
                  and r['activation'] == activation]
            if not rs:
                continue
            fields = dict(
                final_train_ppl=[r['final_train_ppl'] for r in rs],
                final_valid_ppl=[r['final_valid_ppl'] for r in rs],
                best_valid_ppl=[r['best_valid_ppl'] for r in rs],
                clipped_share=[r['grad_norm']['overall']['clipped_share']
                               for r in rs],
                median_grad_norm=[r['grad_norm']['overall']['median']
                                  for r in rs],
                max_grad_norm=[r['grad_norm']['overall']['max'] for r in rs],
                final_H_max=[r['hidden'][-1]['H_max'] for r in rs],
                final_H_mean=[r['hidden'][-1]['H_mean'] for r in rs],
                final_spectral_W_hh=[r['hidden'][-1]['spectral_W_hh']
                                     for r in rs],
                seconds=[r['seconds'] for r in rs])
            row = {k: best.spread([v for v in vs if v is not None])
                   for k, vs in fields.items()
                   if any(v is not None for v in vs)}
            row['diverged'] = sum(r['diverged_at_step'] is not None
                                  for r in rs)
            out.setdefault(setting, {})[activation] = row
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--settings', nargs='+', choices=SETTINGS,
                   default=list(SETTINGS))
    p.add_argument('--out', type=Path, default=DEFAULT_OUT)
    p.add_argument('--section-epochs', type=int,
                   help=f'default {SECTION["num_epochs"]}')
    p.add_argument('--heldout-epochs', type=int,
                   help=f'default {HELDOUT_EPOCHS}')
    p.add_argument('--tiny', action='store_true',
                   help='tiny models on a few thousand characters (seconds; '
                        'for the tests)')
    p.add_argument('--merge', type=Path, metavar='JSON',
                   help='keep the runs of this earlier output that this '
                        'call does not redo (another setting, other seeds)')
    p.add_argument('--native', choices=('auto', 'on', 'off'), default='auto',
                   help="FastRNNScratch's native operators: where they can "
                        "be built (auto), required (on) or not used (off); "
                        "the same function, not to the same bits, so a run "
                        "repeats bit for bit only on the same path (each "
                        "run records its own)")
    p.add_argument('--quiet', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    section = dict(TINY_SECTION if args.tiny else SECTION)
    if args.section_epochs is not None:
        section['num_epochs'] = args.section_epochs
    heldout = dict(best.TINY if args.tiny else best.RECIPE)
    heldout['num_epochs'] = (args.heldout_epochs or (
        TINY_HELDOUT_EPOCHS if args.tiny else HELDOUT_EPOCHS))
    ev = best.TINY_EVAL if args.tiny else best.EVAL
    ctx = npx.cpu()
    train, valid, _, vocab = best.load_texts(args.tiny)
    out = dict(
        description='ReLU against tanh in FastRNNScratch (exercise 6), '
                    'several seeds each, in two settings. Written by '
                    'experiments/relu_vs_tanh.py.',
        command=' '.join(['experiments/relu_vs_tanh.py'] + list(
            sys.argv[1:] if argv is None else argv)),
        tiny=args.tiny, activations=list(ACTIVATIONS),
        settings=dict(
            section=dict(
                section, optimizer='sgd', iterator='sequential',
                train_text=f'The Time Machine, characters 0 to '
                           f'{section["max_tokens"]}',
                valid_text=f'The Time Machine, characters '
                           f'{section["max_tokens"]} to '
                           f'{section["max_tokens"] + section["valid_tokens"]}'
                           ' (never trained on)',
                trainer='d2lrnn.experiments.train_run'),
            heldout=dict(
                heldout, optimizer='adam', recipe='experiments/train_best.py RECIPE',
                recipe_epochs=best.RECIPE['num_epochs'],
                note=f'{heldout["num_epochs"]} epochs instead of the '
                     f'recipe\'s {best.RECIPE["num_epochs"]} (time budget); '
                     'the cosine schedule spans these epochs',
                train_fraction=best.TRAIN_FRACTION,
                eval_batch_size=ev[0], eval_num_steps=ev[1],
                train_tokens=len(train), valid_tokens=len(valid),
                trainer='d2lrnn.optim.fit')),
        settings_run=args.settings, native_option=args.native,
        hidden_probe='the first minibatch of the held-out text '
                     '(seq_data_iter_eval), read one step at a time from a '
                     'zero state; |H| over all steps, rows and units',
        baselines=dict(uniform_ppl=len(vocab), vocab_size=len(vocab),
                       count_models=str(BASELINES.relative_to(ROOT.parent))),
        machine=dict(cpu_model=best.cpu_model(), cores=os.cpu_count(),
                     python=platform.python_version(), mxnet=mx.__version__,
                     omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                     load_average_at_start=list(os.getloadavg())),
        runs=[])
    if args.merge is not None:
        # Keep the earlier runs that this call does not redo.
        earlier = json.loads(args.merge.read_text())
        if earlier['tiny'] != args.tiny:
            raise SystemExit(f'{args.merge} was run with another --tiny; it '
                             'cannot be merged')
        out['runs'] = [r for r in earlier['runs']
                       if not (r['setting'] in args.settings
                               and r['seed'] in args.seeds)]
        for setting in {r['setting'] for r in out['runs']}:
            then = dict(earlier['settings'][setting], seeds=None)
            if (setting in args.settings
                    and then != dict(out['settings'][setting], seeds=None)):
                raise SystemExit(f'{args.merge} ran {setting} with other '
                                 'settings; it cannot be merged')
            out['settings'][setting] = earlier['settings'][setting]
        out['settings_run'] = [s for s in SETTINGS if s in args.settings
                               or s in earlier['settings_run']]
        out['merged'] = dict(runs=len(out['runs']),
                             command=earlier['command'],
                             machine=earlier['machine'],
                             total_seconds=earlier.get('total_seconds'))
    start = time.perf_counter()

    def save():
        for setting in out['settings_run']:  # the seeds each setting has run
            out['settings'][setting]['seeds'] = sorted(
                {r['seed'] for r in out['runs'] if r['setting'] == setting})
        out['seeds'] = sorted({r['seed'] for r in out['runs']})
        out['summary'] = summary(out['runs'])
        out['total_seconds'] = time.perf_counter() - start
        out['machine']['load_average_at_end'] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + '\n')

    for setting in args.settings:
        for seed in args.seeds:
            for activation in ACTIVATIONS:
                log(f'{setting} {activation} seed {seed}')
                native = dict(auto=None, on=True, off=False)[args.native]
                if setting == 'section':
                    rec = run_section(activation, seed, section, ctx, log,
                                      native)
                else:
                    rec = run_heldout(activation, seed, heldout,
                                      (train, valid, vocab), ctx, ev, log,
                                      native)
                out['runs'].append(rec)
                save()
    out['runs'].sort(key=lambda r: (SETTINGS.index(r['setting']), r['seed'],
                                    ACTIVATIONS.index(r['activation'])))
    save()
    log(f'{args.out} ({out["total_seconds"]:.0f} s)')
    return out


if __name__ == '__main__':
    main()

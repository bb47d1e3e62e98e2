"""ReLU against tanh in the scratch RNN (exercise 6), several seeds each.

Two settings, each run with both activations and every seed of ``--seeds``
(``FastRNNScratch(..., activation=...)``; the same seed gives both the same
initial parameters and the same minibatches). Both read the same unseen
text: the validation part of The Time Machine (characters 80% to 90%) for
the curves and the chosen epoch, the test part (last 10%) once, at that
epoch (``experiments.common``'s protocol).

* ``section``: the section's recipe. The first 10,000 characters of The
  Time Machine (``load_data_time_machine(32, 35)``), 512 hidden units, SGD
  at learning rate 1, clipping at norm 1, 500 epochs of sequential
  minibatches (``experiments.train_run``); the validation part is scored
  every ``--eval-every`` epochs and at the end.
* ``heldout``: the recipe of ``experiments/train_best.py`` (Adam with a
  cosine schedule, dropout, clipping, a moving average of the parameters;
  ``d2lrnn.optim.fit``) on the training part (first 80%), the validation
  part scored after every epoch, for the recipe's full length unless
  ``--heldout-epochs`` says otherwise (the cosine schedule then spans those
  epochs). Every held-out text is read with the recipe's batch_size and
  num_steps, as train_best.py reads its seeds, so that the tanh runs give
  its figures.

For every run the JSON holds the training curve, the validation curve, the
chosen epoch and its test figure, the gradient norm before clipping
summarised per epoch (median, maximum, share of steps above the threshold,
i.e. clipped), whether the run diverged, and the size of the hidden values
(largest, mean, share exactly zero, share beyond 0.99) on the first
validation minibatch, with the largest singular value of W_hh, at every
scoring; and the count model of each setting's training text (order chosen
on validation). The results are written after every run, so a run cut
short keeps the finished ones. From the repository's root:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m experiments.relu_vs_tanh
    .venv/bin/python -m experiments.relu_vs_tanh --tiny --out /tmp/r.json  # seconds
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as onp
from mxnet import npx

import d2lrnn
from d2lrnn.evaluate import seq_data_iter_eval
from d2lrnn.exercises import train_run
from d2lrnn.results import EXPERIMENTS, machine, seed_all

from . import common

DEFAULT_OUT = EXPERIMENTS / 'relu_vs_tanh.json'

ACTIVATIONS = ('tanh', 'relu')
SETTINGS = ('section', 'heldout')
# The section's recipe (D2L 8.5): its first 10,000 characters.
SECTION = dict(max_tokens=common.SECTION_TOKENS, num_hiddens=512,
               num_steps=35, batch_size=32, lr=1.0, theta=1.0,
               num_epochs=500, eval_every=10)
TINY_SECTION = dict(max_tokens=common.TINY_TOKENS, num_hiddens=16,
                    num_steps=10, batch_size=8, lr=1.0, theta=1.0,
                    num_epochs=4, eval_every=2)
TINY_HELDOUT_EPOCHS = 2


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


def run_section(activation, seed, cfg, texts, ctx, log, native=None):
    seed_all(seed)
    train_iter, vocab = d2lrnn.load_data_time_machine(
        cfg['batch_size'], cfg['num_steps'], max_tokens=cfg['max_tokens'])
    ev = (cfg['batch_size'], cfg['num_steps'])
    probe = seq_data_iter_eval(texts.valid, *ev)[0][0]
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
                f'{rec["train_ppl"][-1]:.3f} valid {rec["valid_ppl"][-1]:.3f}'
                f' ({time.perf_counter() - timer:.0f} s)')

    best = common.BestEpoch(model, then=on_epoch)
    rec = train_run(model, train_iter, cfg['lr'], cfg['num_epochs'], ctx,
                    theta=cfg['theta'], valid_corpus=texts.valid,
                    eval_every=cfg['eval_every'], eval_batch_size=ev[0],
                    eval_num_steps=ev[1], on_epoch=best)
    seconds = time.perf_counter() - timer
    if rec['diverged_at_step'] is not None:
        bounds.append(len(rec['step_norm']))
    test = (common.test_figures(model, texts, ctx, ev) if best.restore()
            else dict(test_ppl=None, test_bpc=None))
    return dict(
        setting='section', activation=activation, seed=seed,
        native=bool(model.native),
        epoch=rec['epoch'], train_ppl=rec['train_ppl'],
        valid_epoch=rec['valid_epoch'], valid_ppl=rec['valid_ppl'],
        final_train_ppl=rec['train_ppl'][-1] if rec['train_ppl'] else None,
        final_valid_ppl=rec['valid_ppl'][-1] if rec['valid_ppl'] else None,
        best_epoch=best.epoch,
        best_valid_ppl=best.valid_ppl if best.epoch else None, **test,
        diverged_at_step=rec['diverged_at_step'],
        grad_norm=summarise_norms(rec['step_norm'], bounds, cfg['theta']),
        hidden=hidden, seconds=seconds, minutes=seconds / 60)


def run_heldout(activation, seed, cfg, texts, ctx, ev, log, native=None):
    model = common.recipe_model(cfg, seed, texts.vocab, ctx, activation,
                                native)
    probe = seq_data_iter_eval(texts.valid, *ev)[0][0]
    bounds, hidden = [], [dict(epoch=0, **hidden_stats(model, probe, ctx))]

    def on_epoch(epoch, rec):
        bounds.append(len(rec['step_norm']))
        hidden.append(dict(epoch=epoch, **hidden_stats(model, probe, ctx)))
        log(f'  heldout {activation} seed {seed} epoch {epoch}: train '
            f'{rec["train_ppl"][-1]:.3f} valid {rec["valid_ppl"][-1]:.3f}'
            f' ({rec["seconds"][-1]:.0f} s)')

    rec = common.fit_recipe(model, cfg, texts, ctx, ev, on_epoch)
    if rec['diverged_at_step'] is not None:
        bounds.append(len(rec['step_norm']))
    test = (common.test_figures(model, texts, ctx, ev)
            if rec['best_epoch'] is not None
            else dict(test_ppl=None, test_bpc=None))
    return dict(
        setting='heldout', activation=activation, seed=seed,
        native=rec['native'],
        epoch=rec['epoch'], train_ppl=rec['train_ppl'],
        valid_epoch=rec['epoch'], valid_ppl=rec['valid_ppl'],
        valid_ppl_raw=rec.get('valid_ppl_raw'), lr=rec['lr'],
        final_train_ppl=rec['train_ppl'][-1] if rec['train_ppl'] else None,
        final_valid_ppl=rec['valid_ppl'][-1] if rec['valid_ppl'] else None,
        best_valid_ppl=rec['best_valid_ppl'], best_epoch=rec['best_epoch'],
        **test, diverged_at_step=rec['diverged_at_step'],
        grad_norm=summarise_norms(rec['step_norm'], bounds, cfg['theta']),
        hidden=hidden, seconds=60 * rec['minutes'], minutes=rec['minutes'])


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
                best_epoch=[r['best_epoch'] for r in rs],
                test_ppl=[r['test_ppl'] for r in rs],
                clipped_share=[r['grad_norm']['overall']['clipped_share']
                               for r in rs],
                median_grad_norm=[r['grad_norm']['overall']['median']
                                  for r in rs],
                max_grad_norm=[r['grad_norm']['overall']['max'] for r in rs],
                final_H_max=[r['hidden'][-1]['H_max'] for r in rs],
                final_H_mean=[r['hidden'][-1]['H_mean'] for r in rs],
                final_spectral_W_hh=[r['hidden'][-1]['spectral_W_hh']
                                     for r in rs],
                minutes=[r['minutes'] for r in rs])
            row = {k: common.spread([v for v in vs if v is not None])
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
                   help=f"default the recipe's {common.RECIPE['num_epochs']}")
    p.add_argument('--tiny', action='store_true',
                   help='tiny models on a few thousand characters (seconds; '
                        'for the tests)')
    p.add_argument('--merge', type=Path, metavar='JSON',
                   help='keep the runs of this earlier output that this '
                        'call does not redo (another setting, other seeds)')
    p.add_argument('--native', choices=list(common.NATIVE), default='auto',
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
    recipe = common.TINY_RECIPE if args.tiny else common.RECIPE
    heldout = dict(recipe)
    heldout['num_epochs'] = (args.heldout_epochs or (
        TINY_HELDOUT_EPOCHS if args.tiny else recipe['num_epochs']))
    ev = common.reading(heldout)  # as experiments/train_best.py reads it
    ctx = npx.cpu()
    texts = common.load_texts(args.tiny)
    orders = common.TINY_COUNT_ORDERS if args.tiny else common.COUNT_ORDERS
    out = dict(
        description='ReLU against tanh in FastRNNScratch (exercise 6), '
                    'several seeds each, in two settings; curves and the '
                    'chosen epoch on the validation part, the test part '
                    'scored once. Written by experiments/relu_vs_tanh.py.',
        command=' '.join(['python -m experiments.relu_vs_tanh'] + list(
            sys.argv[1:] if argv is None else argv)),
        tiny=args.tiny, activations=list(ACTIVATIONS),
        texts=common.describe(texts),
        settings=dict(
            section=dict(
                section, optimizer='sgd', iterator='sequential',
                train_text=f'The Time Machine, its first '
                           f'{section["max_tokens"]} characters',
                eval_batch_size=section['batch_size'],
                eval_num_steps=section['num_steps'],
                trainer='d2lrnn.exercises.train_run'),
            heldout=dict(
                heldout, optimizer='adam',
                recipe='experiments.common.RECIPE (experiments/train_best.py)',
                recipe_epochs=recipe['num_epochs'],
                train_text='The Time Machine, its training part (first 80%)',
                eval_batch_size=ev[0], eval_num_steps=ev[1],
                train_tokens=len(texts.train), trainer='d2lrnn.optim.fit')),
        settings_run=args.settings, native_option=args.native,
        hidden_probe='the first minibatch of the validation part '
                     '(seq_data_iter_eval), read one step at a time from a '
                     'zero state; |H| over all steps, rows and units',
        baselines=dict(
            uniform_ppl=len(texts.vocab), vocab_size=len(texts.vocab),
            counts={setting: common.chosen_counts(
                texts.train[:tokens], texts.valid, texts.test,
                len(texts.vocab), orders)[1]
                for setting, tokens in (('section', section['max_tokens']),
                                        ('heldout', None))}),
        machine=machine(), runs=[])
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
                native = common.NATIVE[args.native]
                if setting == 'section':
                    rec = run_section(activation, seed, section, texts,
                                      ctx, log, native)
                else:
                    rec = run_heldout(activation, seed, heldout, texts,
                                      ctx, ev, log, native)
                out['runs'].append(rec)
                save()
    out['runs'].sort(key=lambda r: (SETTINGS.index(r['setting']), r['seed'],
                                    ACTIVATIONS.index(r['activation'])))
    save()
    log(f'{args.out} ({out["total_seconds"]:.0f} s)')
    return out


if __name__ == '__main__':
    main()

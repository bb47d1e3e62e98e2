"""Exercise 2: how low can held-out perplexity go, and how does a model do on another book?

Trains character RNNs on the training part (first 80%) of The Time Machine
with the section's plain SGD, one hyperparameter changed at a time, scoring
the validation part (next 10%) after every epoch: each run's curve and best
epoch are on validation, and the run with the best validation perplexity is
scored once on the test part (last 10%), at its best epoch. The section's
own recipe (512 units, the first 10,000 characters, 500 epochs, with and
without clipping) is scored on the same two parts. Each run is read against
the count model fitted on its own training text (order chosen on
validation). Then the chosen setting trains on The War of the Worlds (split
the same way) and both models are scored on both books' test parts.
Everything goes to one JSON file that the exercise pages read; it is
rewritten after every run, so a stopped sweep keeps what it finished. From
the repository's root:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m experiments.sweep_perplexity
    .venv/bin/python -m experiments.sweep_perplexity --tiny --out /tmp/s.json  # seconds
"""
import argparse
import collections
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as onp
from mxnet import np, npx

import d2lrnn
from d2lrnn import corpora
from d2lrnn.exercises import train_run
from d2lrnn.evaluate import bits_per_char
from d2lrnn.results import EXPERIMENTS, machine, seed_all

from . import common

DEFAULT_OUT = EXPERIMENTS / 'sweep_perplexity.json'

BASE = dict(num_hiddens=256, lr=1.0, num_steps=35, batch_size=32, num_epochs=10,
            max_train_tokens=-1)
# One change at a time from BASE, plus the section's own recipe, unchanged: 512
# units, the first 10,000 characters only, 500 epochs (the memorisation case).
FULL = [
    dict(name='base'),
    dict(name='hidden128', num_hiddens=128),
    dict(name='hidden512', num_hiddens=512),
    dict(name='lr0.5', lr=0.5),
    dict(name='lr2', lr=2.0),
    dict(name='steps70', num_steps=70),
    dict(name='section10k', num_hiddens=512, max_train_tokens=common.SECTION_TOKENS,
         num_epochs=500, eval_every=10),
    # The same without gradient clipping (exercise 4, at full length).
    dict(name='section10k_noclip', num_hiddens=512, max_train_tokens=common.SECTION_TOKENS,
         num_epochs=500, eval_every=10, theta=None),
]
TINY_BASE = dict(num_hiddens=16, lr=1.0, num_steps=10, batch_size=4, num_epochs=2,
                 max_train_tokens=-1)
TINY = [dict(name='base'), dict(name='hidden8', num_hiddens=8),
        dict(name='small', max_train_tokens=500, num_epochs=3)]
PREFIXES = {'time_machine': 'the time traveller', 'war_of_the_worlds': 'the martians'}


def model_class(which):
    """(name, maker of a model of `vocab_size`, `num_hiddens` on `ctx`)."""
    if which in ('auto', 'fast'):
        return 'FastRNNScratch', lambda v, h, ctx: d2lrnn.FastRNNScratch(
            v, h, ctx, native=None if which == 'auto' else True)
    return 'RNNModelScratch', lambda v, h, ctx: d2lrnn.RNNModelScratch(
        v, h, ctx, d2lrnn.get_params, d2lrnn.init_rnn_state, d2lrnn.rnn)


def train_one(cfg, train, valid, vocab, make_model, ctx, ev, seed, log):
    """Train one run; (model at its best validation epoch, record)."""
    seed_all(seed)
    data = d2lrnn.SeqDataLoader(cfg['batch_size'], cfg['num_steps'], False, -1,
                                corpus=train, vocab=vocab)
    model = make_model(len(vocab), cfg['num_hiddens'], ctx)

    def progress(e, r):
        scored = r['valid_epoch'] and r['valid_epoch'][-1] == e
        log(f"  epoch {e}: train {r['train_ppl'][-1]:.2f}"
            + (f", valid {r['valid_ppl'][-1]:.2f}" if scored else ''))

    best = common.BestEpoch(model, then=progress)
    start = time.perf_counter()
    rec = train_run(model, data, cfg['lr'], cfg['num_epochs'], ctx, theta=cfg.get('theta', 1),
                    valid_corpus=valid, eval_every=cfg.get('eval_every', 1),
                    eval_batch_size=ev[0], eval_num_steps=ev[1], on_epoch=best)
    seconds = time.perf_counter() - start
    best.restore()
    norms = rec['step_norm']
    result = dict(cfg, train_text=common.train_text_name(cfg['max_train_tokens']),
                  train_tokens=len(train),
                  seconds=round(seconds, 1), minutes=seconds / 60,
                  native=bool(getattr(model, 'native', False)),
                  tokens_per_sec=round(rec['tokens_per_sec']),
                  epoch=rec['epoch'], train_ppl=rec['train_ppl'],
                  valid_epoch=rec['valid_epoch'], valid_ppl=rec['valid_ppl'],
                  best_epoch=best.epoch,
                  best_valid_ppl=best.valid_ppl if best.epoch else None,
                  diverged_at_step=rec['diverged_at_step'],
                  max_grad_norm=max(norms), steps=len(norms),
                  clipped_fraction=sum(n > 1 for n in norms) / len(norms))
    return model, result


def cfg_key(cfg):
    """A short name for a configuration, for the file that keeps its trained parameters."""
    text = json.dumps({k: cfg[k] for k in sorted(cfg)}, sort_keys=True)
    return f"{cfg['name']}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def save_params(model, path):
    onp.savez(path, *[p.asnumpy() for p in model.params])


def load_params(model, path):
    with onp.load(path) as arrays:
        for i, p in enumerate(model.params):
            p[:] = np.array(arrays[f'arr_{i}'], ctx=p.ctx)


def test_record(model, ids, ctx, ev):
    """The one reading of a final model on a test part."""
    ppl = common.score(model, ids, ctx, ev)
    return dict(test_ppl=ppl, test_bpc=bits_per_char(ppl))


# The War of the Worlds, split as The Time Machine is, in its own
# vocabulary; and each book's test part as the other book's model reads it.
OtherBook = collections.namedtuple(
    'OtherBook', 'train valid test vocab tm_test_in_its_vocab its_test_in_tm_vocab')


def wotw_texts(tm_vocab, tiny):
    """The War of the Worlds for its own model and for the cross-book test."""
    tm_lines, wotw_lines = (corpora.read_named_book(n)
                            for n in ('time_machine', 'war_of_the_worlds'))
    corpus, vocab = corpora.load_corpus(wotw_lines)
    parts = list(d2lrnn.split_train_valid_test(corpus))
    tests = [d2lrnn.split_train_valid_test(corpora.encode(lines, v))[2]
             for lines, v in ((tm_lines, vocab), (wotw_lines, tm_vocab))]
    if tiny:
        parts[0] = parts[0][:common.TINY_TOKENS]
        parts[1:], tests = ([ids[:common.TINY_TOKENS] for ids in x]
                            for x in (parts[1:], tests))
    return OtherBook(*parts, vocab, *tests)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT)
    parser.add_argument('--tiny', action='store_true',
                        help='a few seconds: tiny models on 2,000 characters (for the tests)')
    parser.add_argument('--only', nargs='*', help='names of the Time Machine runs to do')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', choices=['auto', 'scratch', 'fast'], default='auto',
                        help='FastRNNScratch with its native operator if it can be built '
                             '(auto) or required (fast), or RNNModelScratch (scratch)')
    parser.add_argument('--quiet', action='store_true')
    parser.add_argument('--resume', action='store_true',
                        help='keep the runs of --out whose configuration and saved '
                             'parameters (in --model-dir) match, train the rest')
    parser.add_argument('--model-dir', type=Path, default=None,
                        help='where trained parameters are kept for --resume '
                             '(default: d2lrnn-sweep-models in the temporary folder)')
    args = parser.parse_args(argv)
    runs = TINY if args.tiny else FULL
    if args.only:
        unknown = set(args.only) - {r['name'] for r in runs}
        if unknown:
            parser.error(f'unknown run names {sorted(unknown)}')
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


def main(argv=None):
    args = parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    ctx = npx.cpu()
    base, runs = (TINY_BASE, TINY) if args.tiny else (BASE, FULL)
    if args.only:
        runs = [r for r in runs if r['name'] in args.only]
    model_name, make_model = model_class(args.model)
    tm = common.load_texts(args.tiny)
    wotw = wotw_texts(tm.vocab, args.tiny)
    ev = common.TINY_EVAL if args.tiny else common.EVAL
    out = dict(
        description='Exercise 2 sweep: character RNNs trained with plain SGD on the '
                    'training part of The Time Machine, curves and best epoch on its '
                    'validation part, the chosen run scored once on its test part. '
                    'Written by experiments/sweep_perplexity.py.',
        command=' '.join(['python -m experiments.sweep_perplexity'] + args.argv),
        model=model_name, seed=args.seed, texts=common.describe(tm),
        eval_batch_size=ev[0], eval_num_steps=ev[1], clip_theta=1,
        base=base, machine=machine(),
        books={'time_machine': dict(train_tokens=len(tm.train), vocab=tm.vocab.idx_to_token),
               'war_of_the_worlds': dict(train_tokens=len(wotw.train),
                                         valid_tokens=len(wotw.valid),
                                         test_tokens=len(wotw.test),
                                         vocab=wotw.vocab.idx_to_token)},
        runs=[], chosen=None, counts={}, cross_book=None, total_seconds=None)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        args.out.write_text(json.dumps(out, indent=1) + '\n')

    model_dir = args.model_dir or Path(tempfile.gettempdir()) / 'd2lrnn-sweep-models'
    model_dir.mkdir(parents=True, exist_ok=True)
    previous = {}
    if args.resume and args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get('seed') == args.seed and old.get('model') == model_name:
            previous = {r['name']: r for r in old['runs']}
    t0 = time.perf_counter()
    seconds_before = 0.0
    models = {}
    for run in runs:
        cfg = dict(base, **run)
        train = tm.train[:cfg['max_train_tokens']] if cfg['max_train_tokens'] > 0 else tm.train
        params_file = model_dir / (cfg_key(cfg) + '.npz')
        old = previous.get(cfg['name'])
        if old is not None and all(old.get(k) == v for k, v in cfg.items()) \
                and params_file.exists():
            log(f"{cfg['name']}: kept from {args.out}")
            model = make_model(len(tm.vocab), cfg['num_hiddens'], ctx)
            load_params(model, params_file)
            result = old
            seconds_before += old['seconds']
        else:
            log(f"{cfg['name']}: {cfg}")
            model, result = train_one(cfg, train, tm.valid, tm.vocab, make_model, ctx,
                                      ev, args.seed, log)
            save_params(model, params_file)
        models[cfg['name']] = model
        out['runs'].append(result)
        out['total_seconds'] = round(seconds_before + time.perf_counter() - t0, 1)
        save()

    add_counts(out, tm, args.tiny)
    # The chosen setting: the best validation perplexity among the runs on the
    # whole training part. The section's own runs are each the one model of
    # their setting: each is scored once on test too.
    full = [r for r in out['runs'] if r['max_train_tokens'] <= 0 and r['best_epoch']]
    best = min(full or out['runs'], key=lambda r: r['best_valid_ppl'])
    for r in out['runs']:
        if r is best or (r['max_train_tokens'] > 0 and r['best_epoch']):
            r.update(test_record(models[r['name']], tm.test, ctx, ev))
    out['chosen'] = dict(name=best['name'], chosen_on='validation',
                         chosen_among=[r['name'] for r in full],
                         best_epoch=best['best_epoch'], valid_ppl=best['best_valid_ppl'],
                         test_ppl=best['test_ppl'], test_bpc=best['test_bpc'],
                         counts=out['counts'][best['train_text']])
    out['cross_book'] = cross_book(best, models[best['name']], base, tm, wotw, make_model,
                                   ctx, ev, args, log)
    out['total_seconds'] = round(seconds_before + time.perf_counter() - t0, 1)
    save()
    log(f"done in {out['total_seconds']} s: {args.out}")
    log(json.dumps(out['cross_book']['perplexity'], indent=1))
    return out


def add_counts(out, tm, tiny):
    """The count model of each run's training text, order chosen on validation."""
    orders = common.TINY_COUNT_ORDERS if tiny else common.COUNT_ORDERS
    for r in out['runs']:
        name = r['train_text']
        if name not in out['counts']:
            train = tm.train[:r['max_train_tokens']] if r['max_train_tokens'] > 0 else tm.train
            out['counts'][name] = common.chosen_counts(train, tm.valid, tm.test,
                                                       len(tm.vocab), orders)[1]


def cross_book(best, tmodel, base, tm, wotw, make_model, ctx, ev, args, log):
    """The chosen setting trained on The War of the Worlds for as many tokens,
    its epoch chosen on that book's validation part; both models scored on
    both books' test parts (each through its own vocabulary)."""
    tokens_seen = best['num_epochs'] * best['train_tokens']
    wcfg = {k: best[k] for k in base}
    wcfg.update(name='war_of_the_worlds', max_train_tokens=-1,
                num_epochs=max(1, round(tokens_seen / len(wotw.train))))
    log(f"war_of_the_worlds, like {best['name']}: {wcfg}")
    wmodel, wresult = train_one(wcfg, wotw.train, wotw.valid, wotw.vocab, make_model, ctx,
                                ev, args.seed, log)
    wresult.update(test_record(wmodel, wotw.test, ctx, ev))

    def samples(model, vocab, book):
        prefix = PREFIXES[book]
        return dict(prefix=prefix,
                    argmax=d2lrnn.predict_ch8(prefix, 120, model, vocab, ctx),
                    sampled=d2lrnn.predict_ch8(prefix, 120, model, vocab, ctx,
                                               sample=True, seed=args.seed))

    return dict(
        best_setting=best['name'],
        war_of_the_worlds_run=wresult,
        scored='the test part (last 10%) of each book, each model reading it '
               'through its own vocabulary',
        same_token_set=sorted(tm.vocab.idx_to_token) == sorted(wotw.vocab.idx_to_token),
        unknown_fraction=dict(
            war_of_the_worlds_in_tm_vocab=corpora.unknown_fraction(
                wotw.its_test_in_tm_vocab, tm.vocab),
            time_machine_in_wotw_vocab=corpora.unknown_fraction(
                wotw.tm_test_in_its_vocab, wotw.vocab)),
        # perplexity[model][text]: the test part of each book
        perplexity={
            'time_machine': {
                'time_machine': best['test_ppl'],
                'war_of_the_worlds': common.score(tmodel, wotw.its_test_in_tm_vocab, ctx, ev)},
            'war_of_the_worlds': {
                'time_machine': common.score(wmodel, wotw.tm_test_in_its_vocab, ctx, ev),
                'war_of_the_worlds': wresult['test_ppl']}},
        samples={'time_machine': samples(tmodel, tm.vocab, 'time_machine'),
                 'war_of_the_worlds': samples(wmodel, wotw.vocab, 'war_of_the_worlds')})


if __name__ == '__main__':
    main()

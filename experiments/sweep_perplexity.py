"""Exercise 2: how low can validation perplexity go, and how does a model do on another book?

Trains a few character RNNs on The Time Machine with one hyperparameter
changed at a time, scores each on the last 10% of the book (never trained
on), then trains the best setting on The War of the Worlds and scores both
models on both books. Everything goes to one JSON file that the notebook
book/exercises/ex2-perplexity.ipynb reads; it is rewritten after every run,
so a stopped sweep keeps what it finished.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python experiments/sweep_perplexity.py
    .venv/bin/python experiments/sweep_perplexity.py --tiny --out /tmp/s.json   # seconds, for tests
"""
import argparse
import hashlib
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as onp
from mxnet import np, npx

import d2lrnn
from d2lrnn import corpora
from d2lrnn.evaluate import evaluate_perplexity, seq_data_iter_eval, split_corpus
from d2lrnn.experiments import train_run

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / 'results' / 'sweep_perplexity.json'

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
    dict(name='section10k', num_hiddens=512, max_train_tokens=10000, num_epochs=500,
         eval_every=10),
    # The same without gradient clipping (exercise 4, at full length).
    dict(name='section10k_noclip', num_hiddens=512, max_train_tokens=10000, num_epochs=500,
         eval_every=10, theta=None),
]
TINY_BASE = dict(num_hiddens=16, lr=1.0, num_steps=10, batch_size=4, num_epochs=2,
                 max_train_tokens=2000)
TINY = [dict(name='base'), dict(name='hidden8', num_hiddens=8),
        dict(name='small', max_train_tokens=500, num_epochs=3)]
TRAIN_FRACTION = 0.9
EVAL_BATCH, EVAL_STEPS = 32, 35
PREFIXES = {'time_machine': 'the time traveller', 'war_of_the_worlds': 'the martians'}


def model_class(which):
    fast = getattr(d2lrnn, 'FastRNNScratch', None)
    if which == 'fast' or (which == 'auto' and fast is not None):
        if fast is None:
            raise SystemExit('--model fast: d2lrnn.FastRNNScratch does not exist yet.')
        return 'FastRNNScratch', lambda v, h, ctx: fast(v, h, ctx)
    return 'RNNModelScratch', lambda v, h, ctx: d2lrnn.RNNModelScratch(
        v, h, ctx, d2lrnn.get_params, d2lrnn.init_rnn_state, d2lrnn.rnn)


def seed_all(seed):
    random.seed(seed)
    npx.random.seed(seed)


def train_one(cfg, train, valid, vocab, make_model, ctx, seed, log):
    seed_all(seed)
    data = d2lrnn.SeqDataLoader(cfg['batch_size'], cfg['num_steps'], False, -1,
                                corpus=train, vocab=vocab)
    model = make_model(len(vocab), cfg['num_hiddens'], ctx)
    start = time.perf_counter()
    rec = train_run(model, data, cfg['lr'], cfg['num_epochs'], ctx, theta=cfg.get('theta', 1),
                    valid_corpus=valid, eval_every=cfg.get('eval_every', 1),
                    eval_batch_size=EVAL_BATCH, eval_num_steps=EVAL_STEPS,
                    on_epoch=lambda e, r: log(f"  epoch {e}: train {r['train_ppl'][-1]:.2f}"
                                              + (f", valid {r['valid_ppl'][-1]:.2f}"
                                                 if r['valid_epoch'] and r['valid_epoch'][-1] == e
                                                 else '')))
    seconds = time.perf_counter() - start
    result = dict(cfg, train_tokens=len(train), seconds=round(seconds, 1),
                  tokens_per_sec=round(rec['tokens_per_sec']),
                  epoch=rec['epoch'], train_ppl=rec['train_ppl'],
                  valid_epoch=rec['valid_epoch'], valid_ppl=rec['valid_ppl'],
                  diverged_at_step=rec['diverged_at_step'],
                  max_grad_norm=max(rec['step_norm']), steps=len(rec['step_norm']),
                  clipped_fraction=sum(n > 1 for n in rec['step_norm']) / len(rec['step_norm']))
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


def score(model, ids, ctx):
    return evaluate_perplexity(model, seq_data_iter_eval(ids, EVAL_BATCH, EVAL_STEPS), ctx)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT)
    parser.add_argument('--tiny', action='store_true',
                        help='a few seconds: tiny models on 2,000 characters (for the tests)')
    parser.add_argument('--only', nargs='*', help='names of the Time Machine runs to do')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--model', choices=['auto', 'scratch', 'fast'], default='auto',
                        help='auto: FastRNNScratch if d2lrnn has it, else RNNModelScratch')
    parser.add_argument('--quiet', action='store_true')
    parser.add_argument('--resume', action='store_true',
                        help='keep the runs of --out whose configuration and saved '
                             'parameters (in --model-dir) match, train the rest')
    parser.add_argument('--model-dir', type=Path, default=None,
                        help='where trained parameters are kept for --resume '
                             '(default: d2lrnn-sweep-models in the temporary folder)')
    args = parser.parse_args(argv)

    def log(msg):
        if not args.quiet:
            print(msg, flush=True)

    ctx = npx.cpu()
    base, runs = (TINY_BASE, TINY) if args.tiny else (BASE, FULL)
    if args.only:
        unknown = set(args.only) - {r['name'] for r in runs}
        if unknown:
            parser.error(f'unknown run names {sorted(unknown)}')
        runs = [r for r in runs if r['name'] in args.only]
    model_name, make_model = model_class(args.model)
    max_valid = 2000 if args.tiny else -1

    def load(name, vocab=None):
        train, valid, vocab = corpora.load_book_split(name, TRAIN_FRACTION, vocab=vocab)
        return train, (valid[:max_valid] if max_valid > 0 else valid), vocab

    tm_train, tm_valid, tm_vocab = load('time_machine')
    wotw_train, wotw_valid, wotw_vocab = load('war_of_the_worlds')
    out = dict(
        description='Exercise 2 sweep: character RNNs trained on the first 90% of a book, '
                    'perplexity on the last 10%. Written by experiments/sweep_perplexity.py.',
        command=' '.join(['experiments/sweep_perplexity.py'] + (argv if argv is not None else sys.argv[1:])),
        model=model_name, seed=args.seed, train_fraction=TRAIN_FRACTION,
        eval_batch_size=EVAL_BATCH, eval_num_steps=EVAL_STEPS, clip_theta=1, base=base,
        python=platform.python_version(), threads_note='OMP_NUM_THREADS=1 on CPU',
        books={'time_machine': dict(train_tokens=len(tm_train), valid_tokens=len(tm_valid),
                                    vocab=tm_vocab.idx_to_token),
               'war_of_the_worlds': dict(train_tokens=len(wotw_train),
                                         valid_tokens=len(wotw_valid),
                                         vocab=wotw_vocab.idx_to_token)},
        runs=[], cross_book=None, total_seconds=None)
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
        train = tm_train[:cfg['max_train_tokens']] if cfg['max_train_tokens'] > 0 else tm_train
        params_file = model_dir / (cfg_key(cfg) + '.npz')
        old = previous.get(cfg['name'])
        if old is not None and all(old.get(k) == v for k, v in cfg.items()) \
                and params_file.exists():
            log(f"{cfg['name']}: kept from {args.out}")
            model = make_model(len(tm_vocab), cfg['num_hiddens'], ctx)
            load_params(model, params_file)
            result = old
            seconds_before += old['seconds']
        else:
            log(f"{cfg['name']}: {cfg}")
            model, result = train_one(cfg, train, tm_valid, tm_vocab, make_model, ctx,
                                      args.seed, log)
            save_params(model, params_file)
        models[cfg['name']] = model
        out['runs'].append(result)
        out['total_seconds'] = round(seconds_before + time.perf_counter() - t0, 1)
        save()

    # The best setting trained on the whole training text, judged by its final
    # validation perplexity, is trained again on the other book, on as many tokens.
    full = [r for r in out['runs'] if r['max_train_tokens'] <= 0 or args.tiny]
    full = [r for r in full if r['valid_ppl']] or out['runs']
    best = min(full, key=lambda r: r['valid_ppl'][-1])
    tokens_seen = best['num_epochs'] * best['train_tokens']
    wcfg = {k: best[k] for k in base}
    wcfg.update(name='war_of_the_worlds', max_train_tokens=base['max_train_tokens'],
                num_epochs=max(1, round(tokens_seen / len(wotw_train))))
    wtrain = (wotw_train[:wcfg['max_train_tokens']] if wcfg['max_train_tokens'] > 0
              else wotw_train)
    if wcfg['max_train_tokens'] > 0:
        wcfg['num_epochs'] = best['num_epochs']
    log(f"war_of_the_worlds, like {best['name']}: {wcfg}")
    wmodel, wresult = train_one(wcfg, wtrain, wotw_valid, wotw_vocab, make_model, ctx,
                                args.seed, log)
    tmodel = models[best['name']]
    # Each model reads the other book through its own vocabulary.
    tm_lines, wotw_lines = (corpora.read_named_book(n)
                            for n in ('time_machine', 'war_of_the_worlds'))
    wotw_as_tm = split_corpus(corpora.encode(wotw_lines, tm_vocab), TRAIN_FRACTION)[1]
    tm_as_wotw = split_corpus(corpora.encode(tm_lines, wotw_vocab), TRAIN_FRACTION)[1]
    if max_valid > 0:
        wotw_as_tm, tm_as_wotw = wotw_as_tm[:max_valid], tm_as_wotw[:max_valid]

    def samples(model, vocab, book):
        prefix = PREFIXES[book]
        return dict(prefix=prefix,
                    argmax=d2lrnn.predict_ch8(prefix, 120, model, vocab, ctx),
                    sampled=d2lrnn.predict_ch8(prefix, 120, model, vocab, ctx,
                                               sample=True, seed=args.seed))

    out['cross_book'] = dict(
        best_setting=best['name'],
        war_of_the_worlds_run=wresult,
        same_token_set=sorted(tm_vocab.idx_to_token) == sorted(wotw_vocab.idx_to_token),
        unknown_fraction=dict(
            war_of_the_worlds_in_tm_vocab=corpora.unknown_fraction(wotw_as_tm, tm_vocab),
            time_machine_in_wotw_vocab=corpora.unknown_fraction(tm_as_wotw, wotw_vocab)),
        # perplexity[model][text]: validation text of each book
        perplexity={
            'time_machine': {'time_machine': score(tmodel, tm_valid, ctx),
                             'war_of_the_worlds': score(tmodel, wotw_as_tm, ctx)},
            'war_of_the_worlds': {'time_machine': score(wmodel, tm_as_wotw, ctx),
                                  'war_of_the_worlds': score(wmodel, wotw_valid, ctx)}},
        samples={'time_machine': samples(tmodel, tm_vocab, 'time_machine'),
                 'war_of_the_worlds': samples(wmodel, wotw_vocab, 'war_of_the_worlds')})
    out['total_seconds'] = round(seconds_before + time.perf_counter() - t0, 1)
    save()
    log(f"done in {out['total_seconds']} s: {args.out}")
    log(json.dumps(out['cross_book']['perplexity'], indent=1))
    return out


if __name__ == '__main__':
    main()

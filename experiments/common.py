"""What the scripts of experiments/ share: the texts, the counts, the recipe.

One protocol for every held-out figure. The Time Machine is cut into
contiguous training (80%), validation (10%) and test (10%) parts
(``d2lrnn.split_train_valid_test``). Every choice (a hyperparameter, the
epoch, a count model's order, a mixture weight) is made on the validation
part; each final model is scored once on the test part. A model and the
count model it is read against are fitted on the same training text. *The
War of the Worlds*, read through the same vocabulary, is a test from
another book: nothing is chosen on it.
"""
import collections
import statistics
import time

import d2lrnn
from d2lrnn import corpora
from d2lrnn.evaluate import bits_per_char, corpus_perplexity
from d2lrnn.ngram import NGramLM
from d2lrnn.optim import fit
from d2lrnn.results import seed_all

VALID_FRACTION = TEST_FRACTION = 0.1
SPLIT = ('The Time Machine cut into contiguous training (first 80%), '
         'validation (next 10%) and test (last 10%) parts '
         '(d2lrnn.split_train_valid_test)')
PROTOCOL = ('every setting, epoch, count-model order and mixture weight is '
            'chosen on the validation part; each final model is scored once '
            'on the test part; a model and its count baseline are fitted on '
            'the same training text; The War of the Worlds: nothing is '
            'chosen on it')
# How held-out text is read (seq_data_iter_eval's batch_size, num_steps).
# A table of runs (the sweep, the tuning) reads every row alike, with EVAL;
# a final model is read as `d2lrnn evaluate` reads its checkpoint, with its
# own batch_size and num_steps (``reading``).
EVAL = (32, 35)
TINY_EVAL = (4, 10)
TINY_TOKENS, TINY_HELDOUT = 2000, 500  # the tiny runs' text, for the tests
SECTION_TOKENS = 10_000  # the section trains on the first 10,000 characters
COUNT_ORDERS, TINY_COUNT_ORDERS = range(1, 9), range(1, 4)
# FastRNNScratch(native=...): --native auto, on, off
NATIVE = {'auto': None, 'on': True, 'off': False}

# Where the tuning of experiments/train_best.py started (the recipe chosen
# before on the old 90/10 split), and the recipe it chose on the validation
# part (results/best_rnn.json, 'tuning': each row a change from START; the
# best, '16 rows, no averaging, 30 epochs', is within a hundredth of the
# same with averaging).
START = dict(num_hiddens=512, num_steps=35, batch_size=32, num_epochs=30,
             lr=5e-3, final_lr=0.0, warmup_steps=200, theta=1.0,
             dropout=0.25, weight_decay=0.0, average_decay=0.998)
RECIPE = dict(START, batch_size=16, average_decay=0.0)
# Seconds, not minutes: for the tests.
TINY_RECIPE = dict(num_hiddens=16, num_steps=10, batch_size=8, num_epochs=3,
                   lr=1e-2, final_lr=0.0, warmup_steps=5, theta=1.0,
                   dropout=0.1, weight_decay=0.0, average_decay=0.0)

Texts = collections.namedtuple('Texts', 'train valid test wotw vocab')


def load_texts(tiny=False):
    """The Time Machine's three parts, The War of the Worlds read through
    its vocabulary, and that vocabulary (`tiny`: the first few thousand
    characters of each part)."""
    corpus, vocab = d2lrnn.load_corpus_time_machine()
    wotw = corpora.encode(corpora.read_named_book('war_of_the_worlds'), vocab)
    train, valid, test = d2lrnn.split_train_valid_test(
        corpus, VALID_FRACTION, TEST_FRACTION)
    if tiny:
        train = train[:TINY_TOKENS]
        valid, test, wotw = (ids[:TINY_HELDOUT] for ids in (valid, test, wotw))
    return Texts(train, valid, test, wotw, vocab)


def train_text_name(max_tokens):
    """How results name a training text: 'train_80pct' (the whole training
    part, `max_tokens` <= 0) or its first `max_tokens` ('first_10k')."""
    if max_tokens <= 0:
        return 'train_80pct'
    return (f'first_{max_tokens // 1000}k' if max_tokens % 1000 == 0
            else f'first_{max_tokens}')


def describe(texts):
    """The sizes of `texts` and the split, JSON-ready."""
    return dict(split=SPLIT, protocol=PROTOCOL, vocab_size=len(texts.vocab),
                train_tokens=len(texts.train), valid_tokens=len(texts.valid),
                test_tokens=len(texts.test), wotw_tokens=len(texts.wotw))


def reading(cfg):
    """(batch_size, num_steps) of `cfg`: how its final model is read."""
    return cfg['batch_size'], cfg['num_steps']


def score(model, ids, ctx, ev=EVAL):
    """Perplexity of `model` on `ids`, read by ``seq_data_iter_eval``."""
    return corpus_perplexity(model, ids, *ev, ctx)


def spread(values):
    """Mean, standard deviation, least and largest of `values`."""
    return dict(mean=statistics.mean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), n=len(values))


def chosen_counts(train, valid, test, vocab_size, orders, others=None):
    """The Kneser-Ney count model fitted on `train` whose order does best on
    `valid`, scored once on `test` (and on each text of `others`).

    Returns (model, record): the record holds the validation perplexity of
    every order, the chosen order, and its figures.
    """
    by_order = {n: NGramLM(n, vocab_size).fit(train).perplexity(valid)
                for n in orders}
    order = min(by_order, key=by_order.get)
    model = NGramLM(order, vocab_size).fit(train)
    test_ppl = model.perplexity(test)
    record = dict(smoothing='kneser-ney', order=order,
                  train_tokens=len(train), chosen_on='validation',
                  valid_ppl_by_order={str(n): p for n, p in by_order.items()},
                  valid_ppl=by_order[order],
                  valid_bpc=bits_per_char(by_order[order]),
                  test_ppl=test_ppl, test_bpc=bits_per_char(test_ppl))
    for name, ids in (others or {}).items():
        record[f'{name}_ppl'] = model.perplexity(ids)
    return model, record


def recipe_model(cfg, seed, vocab, ctx, activation='tanh', native=None):
    """A new FastRNNScratch for `cfg` (a RECIPE), drawn from `seed`."""
    seed_all(seed)
    return d2lrnn.FastRNNScratch(len(vocab), cfg['num_hiddens'], ctx,
                                 dropout=cfg['dropout'],
                                 activation=activation, native=native)


def fit_recipe(model, cfg, texts, ctx, ev, on_epoch=None):
    """Train `model` by `cfg` on the training part, its epoch chosen on the
    validation part (``d2lrnn.optim.fit``, which leaves that epoch's
    parameters in the model): fit's record, with minutes and whether the
    native operator ran."""
    train_iter = d2lrnn.SeqDataLoader(cfg['batch_size'], cfg['num_steps'],
                                      False, -1, corpus=texts.train,
                                      vocab=texts.vocab)
    start = time.perf_counter()
    rec = fit(model, train_iter, texts.valid, ctx, cfg['num_epochs'],
              lr=cfg['lr'], theta=cfg['theta'],
              weight_decay=cfg['weight_decay'],
              warmup_steps=cfg['warmup_steps'], final_lr=cfg['final_lr'],
              average_decay=cfg['average_decay'], eval_batch_size=ev[0],
              eval_num_steps=ev[1], on_epoch=on_epoch)
    rec.update(native=bool(model.native),
               minutes=(time.perf_counter() - start) / 60)
    if rec['best_epoch'] is not None:
        rec['best_valid_bpc'] = bits_per_char(rec['best_valid_ppl'])
    return rec


def train_recipe(cfg, seed, texts, ctx, ev, activation='tanh', native=None,
                 on_epoch=None):
    """``recipe_model`` trained by ``fit_recipe``: (model at its best
    validation epoch, record with the seed)."""
    model = recipe_model(cfg, seed, texts.vocab, ctx, activation, native)
    rec = fit_recipe(model, cfg, texts, ctx, ev, on_epoch)
    rec['seed'] = seed
    return model, rec


def test_figures(model, texts, ctx, ev):
    """The model's one reading of the test part: perplexity and bits."""
    test_ppl = score(model, texts.test, ctx, ev)
    return dict(test_ppl=test_ppl, test_bpc=bits_per_char(test_ppl))


def gradient_summary(norms, theta):
    """Largest and median norm before clipping, and the share clipped."""
    finite = [n for n in norms if n == n and n != float('inf')]
    return dict(steps=len(norms),
                max_grad_norm=max(finite) if finite else None,
                median_grad_norm=statistics.median(finite) if finite else None,
                clipped_fraction=(sum(n > theta for n in norms) / len(norms)
                                  if norms else None))


class BestEpoch:
    """An ``on_epoch`` for ``d2lrnn.exercises.train_run``: keeps a copy of
    the parameters of the epoch with the lowest validation perplexity.

    ``restore()`` puts them back into the model (``d2lrnn.optim.fit`` does
    the same by itself).
    """

    def __init__(self, model, then=None):
        self.model, self.then = model, then
        self.epoch, self.valid_ppl, self.params = None, float('inf'), None

    def __call__(self, epoch, rec):
        scored = rec['valid_epoch'] and rec['valid_epoch'][-1] == epoch
        if scored and rec['valid_ppl'][-1] < self.valid_ppl:
            self.epoch, self.valid_ppl = epoch, rec['valid_ppl'][-1]
            self.params = [p.copy() for p in self.model.params]
        if self.then is not None:
            self.then(epoch, rec)

    def restore(self):
        """Put the best epoch's parameters back; False if none was scored."""
        if self.params is None:
            return False
        for p, best in zip(self.model.params, self.params):
            p[:] = best
        return True

"""The code listings of pages 01-07 stay the size of the section's own.

Each page shows the package's functions with ``d2lrnn.show_source(...)``.
This finds every such call in book/0[1-7]*.ipynb, resolves the objects and
counts the lines that ``show_source`` displays for them, then holds the
listings to the original's size: all together at most 1.15 times the
original's lines for the same functions, and none more than 5 lines longer
than the original's counterpart. Argument checks and long explanations
belong in ``d2lrnn.checks``, in helpers called in one line, and in module
docstrings, not in the lines a reader studies.
"""
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

import d2lrnn

BOOK = Path(__file__).resolve().parents[1] / 'book'
MAX_RATIO = 1.15  # all listings together, against the original's lines
MAX_EXTRA = 5     # lines a single listing may add to its counterpart's

# Lines of each shown object's counterpart in the MXNet original, counted
# as the original prints them (def line, docstring, comments and blank
# lines inside the body). Functions of the section (8.5) are those of d2l
# 0.17.6, whose notebooks and d2l/mxnet.py agree with the scraped section in
# /work/shared/spec/rnn-scratch-section.txt once the lines its scraper lost
# are restored (see the README there); the data pipeline (D2L 8.3) and sgd
# (D2L 3.2) are those of d2l 0.17.6's d2l/mxnet.py, whose generated
# docstrings end with a "Defined in :numref:`...`" line.
# 0: the object is part of a function the original writes as one, and the
# original's lines are counted at that function's entry.
# None: the original has no counterpart (a helper of this package); its
# lines count towards the total, and its listing has no size of its own to
# keep to.
ORIGINAL = {
    # read_time_machine (8.3): def, 3-line docstring, open, readlines,
    # return of the re.sub comprehension.
    'd2lrnn.data.read_time_machine': 7,
    'd2lrnn.data.clean': 0,             # its re.sub line
    'd2lrnn.data.preprocess_lines': 0,  # its strip().lower() comprehension
    # tokenize (8.3): def, 3-line docstring, word / char branches, an else
    # that prints an error.
    'd2lrnn.data.tokenize': 10,
    # Vocab (8.3): the class with __init__ (reserved_tokens, the frequency
    # sort and the loop over it), __len__, __getitem__, to_tokens and the
    # properties unk and token_freqs.
    'd2lrnn.data.Vocab': 43,
    # load_corpus_time_machine (8.3): def, 3-line docstring, lines, tokens,
    # vocab, a 2-line comment, the corpus, the max_tokens cut, return.
    'd2lrnn.data.load_corpus_time_machine': 13,
    'd2lrnn.data.corpus_of': 0,         # its tokens, vocab and corpus lines
    # seq_data_iter_random (8.3): with its comments and the inner data().
    'd2lrnn.data.seq_data_iter_random': 28,
    'd2lrnn.data._random_batches': 0,   # its body
    # seq_data_iter_sequential (8.3).
    'd2lrnn.data.seq_data_iter_sequential': 16,
    'd2lrnn.data._sequential_batches': 0,  # its body
    # SeqDataLoader (8.3), as measured for the book: 13.
    'd2lrnn.data.SeqDataLoader': 13,
    # load_data_time_machine (8.3): 2-line def, 3-line docstring, 2-line
    # SeqDataLoader call, return.
    'd2lrnn.data.load_data_time_machine': 8,
    # get_params (8.5.2), as measured for the book: 17.
    'd2lrnn.model.get_params': 17,
    # init_rnn_state (8.5.3): def and return.
    'd2lrnn.model.init_rnn_state': 2,
    # rnn (8.5.3): def, 2 shape comments, unpacking, loop, return.
    'd2lrnn.model.rnn': 11,
    # RNNModelScratch (8.5.3): class, docstring, 2-line __init__ with its
    # generated docstring, __call__, begin_state.
    'd2lrnn.model.RNNModelScratch': 15,
    # predict_ch8 (8.5.4), as measured for the book: 15.
    'd2lrnn.predict.predict_ch8': 15,
    # grad_clipping (8.5.5), as measured for the book: 12.
    'd2lrnn.train.grad_clipping': 12,
    # train_epoch_ch8 (8.5.6), as measured for the book: 24.
    'd2lrnn.train.train_epoch_ch8': 24,
    # sgd (3.2): def, 3-line docstring, loop, update.
    'd2lrnn.train.sgd': 6,
    # train_ch8 (8.5.6), as measured for the book: 27.
    'd2lrnn.train.train_ch8': 27,
    # The original prints a prediction every 10 epochs inside train_ch8;
    # page 07 hands that job to a ProgressLog, which it shows.
    'd2lrnn.train.ProgressLog': None,
}
CALL = re.compile(r'd2lrnn\.show_source\(([^)]*)\)')


def resolve(dotted):
    """The object a dotted name like ``d2lrnn.data.clean`` names."""
    parts = dotted.split('.')
    obj = importlib.import_module(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part)
    return obj


def full_name(obj):
    return f'{obj.__module__}.{obj.__qualname__}'


def listings():
    """(page, [objects]) for every show_source call on pages 01-07."""
    found = []
    for page in sorted(BOOK.glob('0[1-7]*.ipynb')):
        for cell in json.loads(page.read_text(encoding='utf-8'))['cells']:
            if cell['cell_type'] != 'code':
                continue
            for match in CALL.finditer(''.join(cell['source'])):
                names = [a.strip() for a in match.group(1).split(',')]
                found.append((page.name, [resolve(n) for n in names if n]))
    return found


def shown_lines(objs):
    """The lines show_source displays for `objs`, less the gaps between."""
    sources = [inspect.getsource(obj) for obj in objs]
    shown = d2lrnn.show_source(*objs).data
    assert shown == '\n\n'.join(sources)  # what is counted is what is shown
    return sum(len(source.splitlines()) for source in sources)


LISTINGS = listings()


def test_every_page_with_code_is_found():
    pages = {page[:2] for page, _ in LISTINGS}
    # Page 02 shows no function of the package; the others all do.
    assert pages == {'01', '03', '04', '05', '06', '07'}, pages


@pytest.mark.parametrize('page, objs', LISTINGS,
                         ids=[f'{p[:2]}-{o[0].__name__}' for p, o in LISTINGS])
def test_a_listing_is_at_most_5_lines_longer_than_the_original(page, objs):
    names = [full_name(obj) for obj in objs]
    unknown = [n for n in names if n not in ORIGINAL]
    assert not unknown, (f'{page} shows {unknown}: add their counterparts '
                         'in the original to ORIGINAL')
    counterparts = [ORIGINAL[n] for n in names if ORIGINAL[n] is not None]
    if not counterparts:
        return  # a helper of this package: it counts towards the total
    lines, original = shown_lines(objs), sum(counterparts)
    assert lines <= original + MAX_EXTRA, (
        f'{page}: {", ".join(names)} take {lines} lines, the original '
        f'{original}; at most {original + MAX_EXTRA}')


def test_all_listings_together_are_at_most_115_percent_of_the_original():
    total = sum(shown_lines(objs) for _, objs in LISTINGS)
    names = [full_name(obj) for _, objs in LISTINGS for obj in objs]
    original = sum(ORIGINAL[n] or 0 for n in names)
    assert original >= 250  # the section's functions, all found
    assert total <= MAX_RATIO * original, (
        f'the listings of pages 01-07 take {total} lines, '
        f'{total / original:.2f} times the original\'s {original}')

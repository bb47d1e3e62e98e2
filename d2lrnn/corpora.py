"""Other books for exercise 2 (book/exercises/ex2-perplexity.ipynb).

Other books than The Time Machine, read as in section 8.3 (exercise 2).

A Project Gutenberg file wraps the book in Gutenberg's own text: a header
before a line ``*** START OF ...`` and the licence after a line
``*** END OF ...``. A model trained on the file would learn that legal text
too, so ``strip_gutenberg`` keeps only what lies between the two markers::

    Project Gutenberg's The War of the Worlds, by H. G. Wells  <- header
    ...
    *** START OF THIS PROJECT GUTENBERG EBOOK THE WAR OF THE WORLDS ***
    The War of the Worlds ... (the book) ...                   <- kept
    End of the Project Gutenberg EBook of ...                  <- dropped too
    *** END OF THIS PROJECT GUTENBERG EBOOK THE WAR OF THE WORLDS ***
    ... licence ...                                            <- dropped

Then the lines go through the same cleaning as The Time Machine (lower
case, every run of non-letters becomes one space) and become character
ids.
"""
import re

from .checks import check_has_letters, check_sha1
from .data import (TEXTS, corpus_of, preprocess_lines, read_text,
                   read_time_machine)

WAR_OF_THE_WORLDS = TEXTS / 'war_of_the_worlds.txt'
WAR_OF_THE_WORLDS_SHA1 = 'fdf575eff02987ac9da1ca5623679883b38cdfdd'
# The bundled file is Windows-1252 (curly quotes are bytes 0x91-0x94), not
# UTF-8, although its header claims UTF-8.
WAR_OF_THE_WORLDS_ENCODING = 'cp1252'

_START = re.compile(r'^\*\*\* ?START OF', re.MULTILINE)
_END = re.compile(r'^\*\*\* ?END OF', re.MULTILINE)
_TRAILER = re.compile(r'^\s*End of (the )?Project Gutenberg', re.IGNORECASE)


def strip_gutenberg(text):
    """The book inside a Project Gutenberg file, between START and END.

    The marker lines themselves are dropped, and so is a closing
    "End of the Project Gutenberg EBook ..." line just before the END
    marker. Raises ``ValueError`` if either marker is missing, or if END
    comes before START.
    """
    start, end = _START.search(text), _END.search(text)
    if start is None or end is None:
        missing = ' and '.join(name for name, m in (('START', start),
                                                     ('END', end))
                               if m is None)
        raise ValueError(
            f"no '*** {missing} OF' line: this does not look like a Project "
            'Gutenberg file; read it with gutenberg=False.')
    if end.start() < start.start():
        raise ValueError("the '*** END OF' line comes before the "
                         "'*** START OF' line: the file is damaged.")
    body_start = text.find('\n', start.start())
    body = text[body_start + 1 if body_start >= 0 else start.end():end.start()]
    # Lines end at '\n' only, as in data.preprocess_lines (not
    # str.splitlines()).
    lines = body.split('\n')
    # Drop blank lines at the end, then a closing "End of the Project
    # Gutenberg" line.
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and _TRAILER.match(lines[-1]):
        lines.pop()
        while lines and not lines[-1].strip():
            lines.pop()
    return '\n'.join(lines) + '\n'


def read_book(path, encoding='utf-8', gutenberg=True, sha1=None):
    """Lines of the book at `path`, cleaned as in section 8.3.

    That is, lower case, letters and spaces. ``gutenberg=True`` keeps only
    the text between Gutenberg's START and END lines. With `sha1` the file
    is checked first. Raises ``ValueError`` for a text without a single
    letter, which would give a model nothing to learn.
    """
    if sha1 is not None:
        check_sha1(path, sha1)
    text = read_text(path, encoding, errors='strict')
    if gutenberg:
        text = strip_gutenberg(text)
    lines = preprocess_lines(text)
    check_has_letters(lines, path)
    return lines


def read_war_of_the_worlds():
    """Lines of *The War of the Worlds*, without Gutenberg's own text.

    The book is bundled and checked against its SHA-1.
    """
    return read_book(WAR_OF_THE_WORLDS, WAR_OF_THE_WORLDS_ENCODING,
                     gutenberg=True, sha1=WAR_OF_THE_WORLDS_SHA1)


BOOKS = {'time_machine': read_time_machine,
         'war_of_the_worlds': read_war_of_the_worlds}


def read_named_book(name):
    """Lines of a bundled book: 'time_machine' or 'war_of_the_worlds'."""
    if name not in BOOKS:
        raise ValueError(
            f'unknown book {name!r}: use one of {sorted(BOOKS)}.')
    return BOOKS[name]()


def encode(lines, vocab):
    """Character ids of `lines` through `vocab`.

    Characters that `vocab` lacks become ``<unk>``.
    """
    return corpus_of(lines, vocab)[0]


def load_corpus(lines, vocab=None):
    """(character ids, vocabulary) of `lines`.

    The vocabulary is built from `lines` unless given: pass another book's
    vocabulary to read this text as that book's model sees it.
    """
    return corpus_of(lines, vocab)


def unknown_fraction(ids, vocab):
    """The fraction of `ids` that are ``<unk>``.

    That is how much of a text a vocabulary misses.
    """
    if len(ids) == 0:
        raise ValueError('the text is empty: there are no ids to count.')
    return sum(1 for i in ids if i == vocab.unk) / len(ids)


__all__ = ['WAR_OF_THE_WORLDS', 'WAR_OF_THE_WORLDS_SHA1', 'strip_gutenberg',
           'read_book', 'read_war_of_the_worlds', 'read_named_book',
           'encode', 'load_corpus', 'unknown_fraction']

"""d2lrnn.corpora: Gutenberg stripping, The War of the Worlds, clear errors."""
import hashlib

import pytest

import d2lrnn
from d2lrnn import corpora

GUTENBERG = """\ufeffThe Project Gutenberg EBook of A Tiny Book
Header text that is not the book.
*** START OF THIS PROJECT GUTENBERG EBOOK A TINY BOOK ***

Once upon a time,
there was a Book.

End of the Project Gutenberg EBook of A Tiny Book

*** END OF THIS PROJECT GUTENBERG EBOOK A TINY BOOK ***
Licence: lots of legal text.
"""


def test_strip_gutenberg_keeps_only_the_book():
    body = corpora.strip_gutenberg(GUTENBERG)
    assert body == '\nOnce upon a time,\nthere was a Book.\n'
    for gone in ('Header', 'START', 'END', 'Licence', 'End of the Project'):
        assert gone not in body


@pytest.mark.parametrize('text, missing', [
    ('no markers at all\n', 'START and END'),
    ('*** START OF X ***\nbook\n', 'END'),
    ('book\n*** END OF X ***\n', 'START'),
])
def test_strip_gutenberg_without_markers_says_which(text, missing):
    with pytest.raises(ValueError, match=f'{missing} OF'):
        corpora.strip_gutenberg(text)


def test_strip_gutenberg_end_before_start():
    with pytest.raises(ValueError, match='before'):
        corpora.strip_gutenberg('*** END OF X ***\n*** START OF X ***\n')


def test_read_book_cleans_like_section_8_3(tmp_path):
    path = tmp_path / 'tiny.txt'
    path.write_text(GUTENBERG, encoding='utf-8')
    assert corpora.read_book(path) == ['', 'once upon a time ', 'there was a book ']
    assert corpora.read_book(path, gutenberg=False)[1] == 'header text that is not the book '


def test_read_book_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file'):
        corpora.read_book(tmp_path / 'missing.txt')
    digits = tmp_path / 'digits.txt'
    digits.write_text('123 456\n--- !!!\n')
    with pytest.raises(ValueError, match='no letters'):
        corpora.read_book(digits, gutenberg=False)
    cp = tmp_path / 'cp1252.txt'
    cp.write_bytes(b'\x93quoted\x94\n')
    with pytest.raises(ValueError, match='not valid utf-8'):
        corpora.read_book(cp, gutenberg=False)
    assert corpora.read_book(cp, encoding='cp1252', gutenberg=False) == [' quoted ']
    with pytest.raises(ValueError, match='SHA-1'):
        corpora.read_book(cp, encoding='cp1252', gutenberg=False, sha1='0' * 40)


def test_war_of_the_worlds_is_the_shipped_file_without_gutenberg():
    data = corpora.WAR_OF_THE_WORLDS.read_bytes()
    assert hashlib.sha1(data).hexdigest() == corpora.WAR_OF_THE_WORLDS_SHA1
    assert data[:1] == b'?'  # the stray first byte, part of the header that is dropped
    lines = corpora.read_war_of_the_worlds()
    text = ' '.join(lines)
    assert 'the war of the worlds' in text
    assert 'gutenberg' not in text and 'license' not in text
    assert lines[-1].startswith('that i have counted her')


def test_both_books_have_the_same_28_tokens_in_different_orders():
    _, tm_vocab = corpora.load_corpus(d2lrnn.read_time_machine())
    ids, wotw_vocab = corpora.load_corpus(corpora.read_war_of_the_worlds())
    assert len(tm_vocab) == len(wotw_vocab) == 28
    assert sorted(tm_vocab.idx_to_token) == sorted(wotw_vocab.idx_to_token)
    assert tm_vocab.idx_to_token != wotw_vocab.idx_to_token
    assert corpora.unknown_fraction(ids, wotw_vocab) == 0
    as_tm = corpora.encode(corpora.read_war_of_the_worlds(), tm_vocab)
    assert tm_vocab.to_tokens(as_tm[:20]) == wotw_vocab.to_tokens(ids[:20])


def test_load_corpus_of_time_machine_matches_data_module():
    corpus, vocab = corpora.load_corpus(d2lrnn.read_time_machine())
    ref, ref_vocab = d2lrnn.load_corpus_time_machine()
    assert corpus == ref and vocab.idx_to_token == ref_vocab.idx_to_token


def test_an_unknown_book_is_refused_by_name():
    with pytest.raises(ValueError, match='unknown book'):
        corpora.read_named_book('the_invisible_man')


def test_encode_and_unknown_fraction_errors():
    _, vocab = corpora.load_corpus(['abc'])
    with pytest.raises(ValueError, match='no letters'):
        corpora.encode(['', '   '], vocab)
    with pytest.raises(ValueError, match='empty'):
        corpora.unknown_fraction([], vocab)
    assert corpora.unknown_fraction(corpora.encode(['abz'], vocab), vocab) == pytest.approx(1 / 3)


def test_no_letters_uses_the_shared_check(tmp_path):
    path = tmp_path / 'punct.txt'
    path.write_text('*** START OF X ***\n12, 34!\n\n*** END OF X ***\n')
    with pytest.raises(ValueError, match=r'punct\.txt holds no letters'):
        corpora.read_book(path)
    with pytest.raises(ValueError, match='holds no letters'):
        corpora.load_corpus([' ', ''])


def test_gutenberg_lines_end_at_newline_only(tmp_path):
    # A form feed or U+2028 inside a line does not split it (as in data.preprocess_lines).
    text = '*** START OF X ***\nab\x0ccd\u2028ef\nxy\n*** END OF X ***\n'
    assert corpora.strip_gutenberg(text) == 'ab\x0ccd\u2028ef\nxy\n'
    path = tmp_path / 'ff.txt'
    path.write_text(text, encoding='utf-8')
    assert corpora.read_book(path) == ['ab cd ef', 'xy']
    assert corpora.read_book(path) == d2lrnn.data.preprocess_lines(corpora.strip_gutenberg(text))

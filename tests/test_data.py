"""The data pipeline of D2L 8.3, against the rules in spec/README.md."""
import collections
import io
import json
import random
import shutil

import numpy as onp
import pytest

import d2lrnn
from d2lrnn import checkpoint, data


def as_lists(batches):
    """Minibatches of MXNet arrays as plain lists of ints."""
    return [(X.asnumpy().astype(int).tolist(), Y.asnumpy().astype(int).tolist())
            for X, Y in batches]


# --- the two iterators, written again from the spec's words, in plain Python ---

def reference_random(corpus, batch_size, num_steps):
    corpus = corpus[random.randint(0, num_steps):]
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = [k * num_steps for k in range(num_subseqs)]
    random.shuffle(starts)
    batches = []
    for b in range(num_subseqs // batch_size):
        chosen = starts[b * batch_size:(b + 1) * batch_size]
        batches.append(([corpus[s:s + num_steps] for s in chosen],
                        [corpus[s + 1:s + 1 + num_steps] for s in chosen]))
    return batches


def reference_sequential(corpus, batch_size, num_steps):
    corpus = corpus[random.randint(0, num_steps):]
    row_len = (len(corpus) - 1) // batch_size  # tokens per stream
    X_rows = [corpus[r * row_len:(r + 1) * row_len] for r in range(batch_size)]
    Y_rows = [corpus[r * row_len + 1:(r + 1) * row_len + 1] for r in range(batch_size)]
    return [([row[c:c + num_steps] for row in X_rows], [row[c:c + num_steps] for row in Y_rows])
            for c in range(0, row_len // num_steps * num_steps, num_steps)]


@pytest.mark.parametrize('ours, reference', [
    (d2lrnn.seq_data_iter_random, reference_random),
    (d2lrnn.seq_data_iter_sequential, reference_sequential)])
@pytest.mark.parametrize('batch_size, num_steps', [(2, 5), (3, 7), (32, 35)])
def test_iterators_match_the_spec_written_again(time_machine, ours, reference,
                                                batch_size, num_steps):
    corpus = time_machine[0]
    for s in range(4):
        random.seed(s)
        expected, after = reference(corpus, batch_size, num_steps), random.random()
        random.seed(s)
        got = as_lists(ours(corpus, batch_size, num_steps))
        assert got == expected
        assert random.random() == after  # the same draws from `random`, no more


# --- structure, on a corpus whose ids are their own positions ---

POSITIONS = list(range(1000))


@pytest.mark.parametrize('iterator', [d2lrnn.seq_data_iter_random,
                                      d2lrnn.seq_data_iter_sequential])
def test_rows_are_slices_and_labels_are_shifted_by_one(seed, iterator):
    for X, Y in iterator(POSITIONS, 4, 6):
        X, Y = X.asnumpy(), Y.asnumpy()
        assert X.shape == Y.shape == (4, 6)  # never a partial minibatch
        onp.testing.assert_array_equal(X, X[:, :1] + onp.arange(6))
        onp.testing.assert_array_equal(Y, X + 1)


def test_sequential_rows_continue_across_minibatches(seed):
    batches = [X.asnumpy() for X, _ in d2lrnn.seq_data_iter_sequential(POSITIONS, 4, 6)]
    assert len(batches) > 2
    for prev, cur in zip(batches, batches[1:]):
        onp.testing.assert_array_equal(cur[:, 0], prev[:, -1] + 1)


def test_random_subsequences_do_not_overlap(seed):
    starts = sorted(int(x) for X, _ in d2lrnn.seq_data_iter_random(POSITIONS, 4, 6)
                    for x in X.asnumpy()[:, 0])
    assert len(starts) % 4 == 0 and len(starts) >= 4 * ((1000 - 6 - 1) // 6 // 4)
    assert all(b - a >= 6 for a, b in zip(starts, starts[1:]))
    assert len({s % 6 for s in starts}) == 1  # all on one grid, set by the offset


def test_number_of_minibatches_drops_the_partial_one(seed):
    for s in range(10):
        random.seed(s)
        offset = random.randint(0, 6)
        random.seed(s)
        n = len(list(d2lrnn.seq_data_iter_random(POSITIONS, 4, 6)))
        assert n == (1000 - offset - 1) // 6 // 4


def test_consecutive_is_the_sequential_iterator():
    assert d2lrnn.seq_data_iter_consecutive is d2lrnn.seq_data_iter_sequential


# --- reading, tokens, vocabulary, corpus ---

def test_reading_rules(tmp_path):
    text = tmp_path / 'book.txt'
    text.write_bytes(b'  The Time-Machine!!  \r\nIt\'s 42 o\'clock...\n\nA\x0cb caf\xe9\n')
    assert d2lrnn.read_time_machine(text) == [
        'the time machine ', 'it s o clock ', '', 'a b caf ']


def test_vocabulary_is_unk_then_by_frequency_ties_alphabetical(time_machine):
    corpus, vocab = time_machine
    counts = collections.Counter(''.join(d2lrnn.read_time_machine()))
    expected = ['<unk>'] + sorted(counts, key=lambda tk: (-counts[tk], tk))
    assert len(vocab) == 28
    assert vocab.idx_to_token == expected
    assert vocab.to_tokens(vocab[list('time')]) == list('time')
    assert vocab['#'] == vocab['<unk>'] == 0


def test_corpus_is_the_first_10000_characters(time_machine):
    corpus, vocab = time_machine
    text = ''.join(d2lrnn.read_time_machine())
    assert len(corpus) == 10000
    assert ''.join(vocab.to_tokens(corpus)) == text[:10000]
    whole, _ = d2lrnn.load_corpus_time_machine()
    assert len(whole) == len(text)


def test_tokenize_words_and_characters():
    assert d2lrnn.tokenize(['the time', 'a'], 'word') == [['the', 'time'], ['a']]
    assert d2lrnn.tokenize(['ab '], 'char') == [['a', 'b', ' ']]


def test_vocab_state_survives_json(time_machine):
    for vocab in (time_machine[1], d2lrnn.Vocab([['b', 'a', 'b']], use_special_tokens=True)):
        state = json.loads(json.dumps(checkpoint.vocab_state(vocab)))
        back = checkpoint.vocab_from_state(state)
        assert back.idx_to_token == vocab.idx_to_token
        assert back.token_to_idx == vocab.token_to_idx
        assert back.token_freqs == vocab.token_freqs
        assert back.unk == vocab.unk and back['?'] == vocab['?']


# --- the loader ---

def test_loader_exposes_corpus_and_vocab_and_draws_a_new_offset_each_pass(seed, time_machine):
    train_iter, vocab = d2lrnn.load_data_time_machine(2, 5)
    assert train_iter.corpus == time_machine[0]
    assert vocab.idx_to_token == time_machine[1].idx_to_token
    firsts = {tuple(next(iter(train_iter))[0].asnumpy()[0]) for _ in range(10)}
    assert len(firsts) > 1
    random_iter, _ = d2lrnn.load_data_time_machine(2, 5, use_random_iter=True)
    assert random_iter.data_iter_fn is d2lrnn.seq_data_iter_random


def test_loader_reads_another_text(tmp_path):
    book = tmp_path / 'other.txt'
    book.write_text('Zebras zigzag; zebras zoom.\n' * 20)
    train_iter, vocab = d2lrnn.load_data_time_machine(2, 5, path=book)
    assert vocab.idx_to_token[1] == 'z'
    assert len(train_iter.corpus) == len('zebras zigzag zebras zoom ') * 20


def test_war_of_the_worlds_is_readable_though_not_utf8():
    # Exercise 2's book holds Windows-1252 bytes: they must read as spaces, not fail.
    corpus, vocab = d2lrnn.load_corpus_time_machine(path=data.TEXTS / 'war_of_the_worlds.txt')
    assert set(vocab.idx_to_token[1:]) <= set('abcdefghijklmnopqrstuvwxyz ')
    assert len(corpus) > 300000


# --- the bundled file's SHA-1 ---

@pytest.fixture
def book_copy(tmp_path, monkeypatch):
    copy = tmp_path / 'timemachine.txt'
    shutil.copy(data.TIME_MACHINE, copy)
    monkeypatch.setattr(data, 'TIME_MACHINE', copy)
    return copy


def test_altered_book_is_refused_naming_file_and_hash(book_copy):
    assert d2lrnn.read_time_machine()  # the intact copy passes
    book_copy.write_bytes(book_copy.read_bytes() + b'!')
    with pytest.raises(ValueError) as e:
        d2lrnn.read_time_machine()
    assert str(book_copy) in str(e.value) and data.TIME_MACHINE_SHA1 in str(e.value)


def test_missing_book_is_refused_naming_file_and_hash(book_copy):
    book_copy.unlink()
    with pytest.raises(FileNotFoundError) as e:
        d2lrnn.load_data_time_machine(2, 5)
    assert str(book_copy) in str(e.value) and data.TIME_MACHINE_SHA1 in str(e.value)


# --- bad input ---

@pytest.mark.parametrize('make', [
    lambda b, n: d2lrnn.seq_data_iter_random(POSITIONS, b, n),
    lambda b, n: d2lrnn.seq_data_iter_sequential(POSITIONS, b, n),
    lambda b, n: d2lrnn.load_data_time_machine(b, n)])
@pytest.mark.parametrize('batch_size, num_steps, name', [
    (0, 5, 'batch_size'), (-2, 5, 'batch_size'), (2, 0, 'num_steps'),
    (2.0, 5, 'batch_size'), (True, 5, 'batch_size')])
def test_sizes_must_be_positive_integers(make, batch_size, num_steps, name):
    with pytest.raises(ValueError, match=f'{name} must be a positive integer'):
        make(batch_size, num_steps)


@pytest.mark.parametrize('make', [
    d2lrnn.seq_data_iter_random, d2lrnn.seq_data_iter_sequential,
    lambda corpus, b, n: d2lrnn.SeqDataLoader(b, n, False, -1, corpus=corpus,
                                              vocab=d2lrnn.Vocab([]))])
def test_too_short_corpus_is_refused_at_once(make):
    # 4 rows of 10 steps, an offset of up to 10 and one label need 51 tokens.
    with pytest.raises(ValueError, match='too few for one minibatch.*at least 51'):
        make(list(range(50)), 4, 10)
    for s in range(30):  # 51 are enough whatever the offset
        random.seed(s)
        assert len(list(make(list(range(51)), 4, 10))) == 1


def test_too_short_book_is_refused_by_the_loader():
    with pytest.raises(ValueError, match='too few for one minibatch'):
        d2lrnn.load_data_time_machine(32, 35, max_tokens=1000)


def test_unknown_token_type_is_refused():
    with pytest.raises(ValueError, match="unknown token type 'byte': use 'word' or 'char'"):
        d2lrnn.tokenize(['abc'], 'byte')


def test_missing_text_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.txt: no such file'):
        d2lrnn.read_time_machine(tmp_path / 'nope.txt')


def test_preprocess_lines_takes_text_and_splits_as_readlines_does():
    assert data.preprocess_lines('One!\nTwo\x0cthree\n') == ['one ', 'two three']
    assert data.preprocess_lines('') == []
    assert data.preprocess_lines('a\n\n') == ['a', '']


@pytest.mark.parametrize('content', ['', '\n\n', '123 456\n--- !!!\n', '\x0c 42 \x1c\n'])
def test_text_without_letters_raises_naming_the_file(tmp_path, content):
    path = tmp_path / 'no_letters.txt'
    path.write_text(content)
    with pytest.raises(ValueError, match=r'no_letters\.txt holds no letters'):
        d2lrnn.load_corpus_time_machine(path=path)
    with pytest.raises(ValueError, match=r'no_letters\.txt holds no letters'):
        d2lrnn.load_data_time_machine(2, 3, path=path)


def test_read_text_strict_errors_name_the_file(tmp_path):
    path = tmp_path / 'cp.txt'
    path.write_bytes(b'\x93quoted\x94\n')
    assert data.preprocess_lines(data.read_text(path)) == [' quoted ']  # replaced, then a space
    with pytest.raises(ValueError, match=r'cp\.txt is not valid utf-8'):
        data.read_text(path, errors='strict')
    assert data.read_text(path, 'cp1252', errors='strict') == '\u201cquoted\u201d\n'


@pytest.mark.parametrize('max_tokens', [float('nan'), 2000.5, '2000', True, None])
def test_max_tokens_must_be_an_integer(max_tokens):
    """NaN used to compare false with 0 and silently keep the whole text."""
    with pytest.raises(ValueError, match='max_tokens must be an integer'):
        d2lrnn.load_data_time_machine(32, 35, max_tokens=max_tokens)
    with pytest.raises(ValueError, match='max_tokens must be an integer'):
        d2lrnn.load_corpus_time_machine(max_tokens)


@pytest.mark.parametrize('text, lines', [
    ('', []), ('\n', ['']), ('abc', ['abc']), ('a\nb', ['a', 'b']), ('a\nb\n', ['a', 'b']),
    ('A b!\n\n\n', ['a b ', '', '']), ('x\x0cy\u2028z\n', ['x y z'])])
def test_preprocess_lines_splits_as_readlines_does(text, lines):
    by_readlines = io.StringIO(text, newline='\n').readlines()  # at '\n' only
    assert [data.clean(line.strip()) for line in by_readlines] == lines
    assert data.preprocess_lines(text) == lines

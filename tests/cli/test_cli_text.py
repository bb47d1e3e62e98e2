"""Texts for train and evaluate: read in chunks exactly as data.py reads a whole file,
refused in one line when they are not UTF-8 text, read again in stretches to be scored."""
import collections
import hashlib
import random

import numpy as onp
import pytest

from cli_helpers import TINY, assert_refused, write
from d2lrnn import textfile
from d2lrnn.data import TIME_MACHINE, load_corpus_time_machine, read_time_machine
from d2lrnn.textfile import TextFileError, TextReader, scan_text

# Line ends of three systems, characters outside ASCII (some that lower-case to ASCII
# letters), separators that str.splitlines() would split at, and no final line end.
AWKWARD = ('The Time\r\nMachine, by H. G. Wells\rend\n\n'
           'caf\u00e9 na\u00efve \u2014 r\u00e9sum\u00e9 \u212a\u0130x \u2028y\x0c\r\n' * 40
           + 'last line')


@pytest.mark.parametrize('name, data, message', [
    ('missing.txt', None, 'no such file'),
    ('latin1.txt', 'caf\xe9 au lait'.encode('latin-1'), 'is not UTF-8 text (byte 3 is 0xe9)'),
    ('empty.txt', b'', 'holds no letters'),
    ('digits.txt', '1984 -- 2001 !!! \u00e9\u00e8\n', 'holds no letters'),
    ('short.txt', 'the time traveller\n', 'too few for one minibatch'),
])
def test_train_refuses_a_bad_text(capsys, good, tmp_path, name, data, message):
    text = tmp_path / name if data is None else write(tmp_path / name, data)
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--text', text],
                   message, good)


def test_train_refuses_a_directory_as_text(capsys, good, tmp_path):
    assert_refused(capsys, ['train', '--out', good, '--force', '--text', tmp_path],
                   'is not a file', good)


@pytest.mark.parametrize('encoding', ['UTF-16LE', 'UTF-16BE'])
@pytest.mark.parametrize('command', ['train', 'evaluate'])
def test_utf16_without_a_bom_is_refused_saying_how_to_convert_it(capsys, good, tmp_path,
                                                                 encoding, command):
    """UTF-16 of English is valid UTF-8 with a NUL after (or before) each letter."""
    text = write(tmp_path / 'utf16.txt', ('The Time Machine, by H. G. Wells\n' * 100)
                 .encode(encoding.lower().replace('utf-16', 'utf-16-')))
    args = {'train': ['train', *TINY, '--out', good, '--force', '--text', text],
            'evaluate': ['evaluate', '--checkpoint', good, '--text', text]}[command]
    assert_refused(capsys, args, (f'{text} is not UTF-8 text: ', 'bytes are NUL, as in '
                                  f'{encoding}; convert it, for example with `iconv -f '
                                  f'{encoding} -t UTF-8`.'), good)


def test_a_few_nul_bytes_read_as_spaces_as_before(tmp_path):
    text = write(tmp_path / 'nul.txt', 'the time\x00machine\n' * 20)
    scanned = scan_text(text, -1)
    assert scanned.chars == b'the time machine' * 20


# ---------------------------------------------------------------- as data.py reads

def test_scanning_reads_as_the_package_does(tmp_path):
    """The Time Machine and a text of three kinds of line ends: the lines read_time_machine
    reads, run together; the SHA-256 of the file's bytes."""
    for path in (None, write(tmp_path / 'crlf.txt',
                             'The Time\r\nMachine, by H. G. Wells\rend\n')):
        scanned = scan_text(path, -1)
        whole = ''.join(read_time_machine(path))
        assert scanned.chars == whole.encode('ascii') and scanned.length == len(whole)
        assert scanned.counts == collections.Counter(whole)
        raw = (TIME_MACHINE if path is None else path).read_bytes()
        assert scanned.sha256 == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize('chunk', [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize('max_tokens', [-1, 1, 50, 2000])
def test_scanning_in_chunks_reads_as_the_whole_text_is_read(tmp_path, monkeypatch, chunk,
                                                            max_tokens):
    text = write(tmp_path / 't.txt', AWKWARD)
    monkeypatch.setattr(textfile, 'CHUNK_BYTES', chunk)
    lines, sha256 = read_time_machine(text), hashlib.sha256(text.read_bytes()).hexdigest()
    scanned = scan_text(text, max_tokens)
    assert scanned.sha256 == sha256
    assert scanned.counts == collections.Counter(''.join(lines))
    whole = ''.join(lines)
    assert scanned.chars == (whole[:max_tokens] if max_tokens > 0 else whole).encode('ascii')
    vocab = scanned.vocab()
    expected, expected_vocab = load_corpus_time_machine(max_tokens, path=text)
    assert scanned.ids(vocab) == expected and vocab.token_freqs == expected_vocab.token_freqs
    assert vocab.idx_to_token == expected_vocab.idx_to_token


def test_scanning_the_time_machine_gives_the_books_corpus():
    text = scan_text(None, 10000)
    vocab = text.vocab()
    expected, expected_vocab = load_corpus_time_machine(10000)
    assert text.ids(vocab) == expected and vocab.idx_to_token == expected_vocab.idx_to_token
    assert vocab.token_freqs == expected_vocab.token_freqs


@pytest.mark.parametrize('chunk', [1, 4, 1 << 20])
def test_scanning_names_the_first_byte_that_is_not_utf8(tmp_path, monkeypatch, chunk):
    text = write(tmp_path / 'bad.txt', 'caf\u00e9 ok '.encode() + b'x\xe9y')
    monkeypatch.setattr(textfile, 'CHUNK_BYTES', chunk)
    with pytest.raises(TextFileError, match=r'is not UTF-8 text \(byte 10 is 0xe9\)'):
        scan_text(text, -1)


def test_scanning_without_keeping_holds_no_characters(tmp_path):
    text = write(tmp_path / 't.txt', AWKWARD)
    kept, counted = scan_text(text, 100), scan_text(text, 100, keep=False)
    assert counted.chars is None and counted.length == kept.length == 100
    assert counted.counts == kept.counts and counted.sha256 == kept.sha256


# ---------------------------------------------------------------- read again, in stretches

@pytest.mark.parametrize('chunk, read', [(1 << 20, 1 << 16), (5, 3), (64, 1)])
@pytest.mark.parametrize('max_tokens', [-1, 500])
def test_a_reader_gives_any_stretch_of_the_scanned_characters(tmp_path, monkeypatch, chunk,
                                                              read, max_tokens):
    text = write(tmp_path / 't.txt', AWKWARD)
    monkeypatch.setattr(textfile, 'CHUNK_BYTES', chunk)
    monkeypatch.setattr(textfile, 'READ_BYTES', read)
    kept = scan_text(text, max_tokens).chars
    counted = scan_text(text, max_tokens, keep=False)
    vocab = counted.vocab()
    rng = random.Random(0)
    with TextReader(counted) as reader:
        for start, stop in [(0, len(kept)), (0, 1), (len(kept) - 1, len(kept)), (7, 7),
                            *((rng.randrange(len(kept)), rng.randrange(len(kept) + 1))
                              for _ in range(20))]:
            assert b''.join(reader.chars(start, stop)) == kept[start:stop]
            assert reader.counts(start, stop) == collections.Counter(
                kept[start:stop].decode('ascii'))
            ids = list(reader.ids(vocab)(start, stop))
            assert (onp.concatenate(ids).tolist() if ids else []) == [
                vocab.token_to_idx[c] for c in kept[start:stop].decode('ascii')]


def test_a_reader_refuses_a_text_changed_since_it_was_scanned(tmp_path):
    text = write(tmp_path / 't.txt', 'the time machine\n' * 100)
    scanned = scan_text(text, -1, keep=False)
    write(text, 'the time machine\n' * 99)
    with pytest.raises(TextFileError, match='changed while it was read; run the command '
                                            'again'):
        with TextReader(scanned):
            pass


def test_evaluate_refuses_a_text_that_changes_while_it_is_scored(capsys, abc_checkpoint,
                                                                 tmp_path, monkeypatch):
    text = write(tmp_path / 'text.txt', 'abc cab bca abc\n' * 50)
    real = TextReader.chars

    def chars_then_change(self, start, stop):
        write(text, 'cab\n' * 150)  # rewritten in place while the reader reads it
        yield from real(self, start, stop)

    monkeypatch.setattr(TextReader, 'chars', chars_then_change)
    assert_refused(capsys, ['evaluate', '--checkpoint', abc_checkpoint, '--text', text,
                            '--device', 'cpu'], 'changed while it was read', abc_checkpoint)

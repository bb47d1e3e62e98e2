r"""Text files for `d2lrnn train` (book/command-line.ipynb).

A text file read as ``data.read_time_machine`` reads it, a chunk at a time.

``read_time_machine`` reads a whole file into one string, then its lines;
the command line reads texts of any size, so this module reads them in
chunks and keeps only what it is asked to keep::

    file ─chunks of CHUNK_BYTES─▶ blocks of whole lines (bytes)
         ─UTF-8, preprocess_lines─▶ cleaned characters: a-z and ' '
         ─▶ ScannedText: counts of the whole text, its first max_tokens
            characters (or only where they start in the file), SHA-256

The cleaning is ``data.preprocess_lines``, block by block: a line never
spans two blocks, and an empty line adds nothing, so the characters are
those of the whole text read at once. Unlike ``data.read_text``, a file
that is not UTF-8 is refused rather than read with replacement characters:
here a wrong encoding is more likely a mistake than a stray byte.

A ``TextReader`` reads any stretch of the cleaned characters again from
the file, so that a text can be scored without holding it in memory.
"""
import bisect
import collections
import hashlib
import math
import os
from pathlib import Path

import numpy as onp

from .checks import check_sha1
from .data import TIME_MACHINE, TIME_MACHINE_SHA1, Vocab, preprocess_lines

# Read at a time when scanning; a TextReader starts reading a stretch about
# this far before its first character at most.
CHUNK_BYTES = 1 << 18
READ_BYTES = 1 << 14  # read at a time by a TextReader, per stretch
# A text holding more NUL bytes than this share of its first bytes is
# UTF-16 or binary: as UTF-8 its NULs would read as spaces.
MAX_NUL_SHARE = 0.25
NUL_SNIFF_BYTES = 64  # fewer bytes read are judged as if this many


class TextFileError(ValueError):
    """A text that cannot be read: the message says why and what to do."""


def describe_text(path):
    """The text's name for messages (`path` None: The Time Machine)."""
    return 'The Time Machine' if path is None else str(path)


class ScannedText:
    """What was learnt of a text in one pass over its file.

    ``counts``: how often each character occurs in the whole text, as
    section 8.3 reads it (the vocabulary is built from all of it);
    ``length``: its first `max_tokens` characters (all if not positive),
    counted; ``chars``: those characters as ASCII bytes (None if they were
    not kept); ``sha256``: of the file's bytes. ``file`` and ``starts``
    (file offset and character offset of each block) let a ``TextReader``
    read them again. Memory follows what is kept, not the size of the file.
    """

    def __init__(self, counts, length, chars, sha256, file, starts,
                 identity):
        self.counts, self.length, self.chars = counts, length, chars
        self.sha256, self.file, self.starts = sha256, file, starts
        self.identity = identity  # of the file read: see file_identity

    def vocab(self):
        """The vocabulary of the whole text (D2L 8.3), from its counts."""
        return Vocab(self.counts)  # Vocab counts a Counter as its counts

    def ids(self, vocab):
        """The kept characters as a list of ids in `vocab` (D2L 8.3)."""
        table = id_table(vocab)
        return table[onp.frombuffer(self.chars, dtype=onp.uint8)].tolist()


def id_table(vocab):
    """Each byte value's id in `vocab` (``vocab.unk`` if it is no token).

    In the smallest integers that hold every id (one byte for the book's
    28 tokens): a stretch of ids takes no more memory than its text.
    """
    return onp.array([vocab.token_to_idx.get(chr(byte), vocab.unk)
                      for byte in range(256)],
                     dtype=onp.min_scalar_type(len(vocab) - 1))


def scan_text(path, max_tokens, keep=True):
    """A ``ScannedText`` of the text at `path` (None: The Time Machine).

    The characters are kept only if `keep`. A file that is missing, not a
    file, unreadable, not UTF-8, UTF-16 or without a letter a-z raises
    ``TextFileError``.
    """
    if path is None:
        try:
            check_sha1(TIME_MACHINE, TIME_MACHINE_SHA1)
        except (OSError, ValueError) as e:
            raise TextFileError(str(e)) from None
        file = TIME_MACHINE
    else:
        file = check_text_file(path)
    try:
        with open(file, 'rb') as f:
            scanned = scan_file(f, file, max_tokens, keep)
    except OSError as e:
        raise TextFileError(f'{path} cannot be read ({e.strerror}); '
                            'check its permissions.') from None
    if not any(c != ' ' for c in scanned.counts):
        raise TextFileError(f'{path} holds no letters a-z: nothing to learn '
                            'from or score; give an English text.')
    return scanned


def check_text_file(path):
    """`path` as a Path, if it names a file; refuse it otherwise."""
    path = Path(path)
    if not path.exists():
        raise TextFileError(
            f'{path}: no such file; give the path of a UTF-8 text file.')
    if not path.is_file():
        raise TextFileError(
            f'{path} is not a file; give the path of a UTF-8 text file.')
    return path


def scan_file(f, file, max_tokens, keep):
    """A ``ScannedText`` of the open binary file `f`; see ``scan_text``."""
    sha, counts, kept, starts = (hashlib.sha256(), collections.Counter(),
                                 bytearray(), [])
    identity = file_identity(os.fstat(f.fileno()))
    left = max_tokens if max_tokens > 0 else math.inf
    length = 0
    for offset, block in line_blocks(checked_chunks(f, file, sha)):
        cleaned = clean_block(block, offset, file)
        count_bytes(cleaned, counts)
        if left > 0 and cleaned:
            starts.append((offset, length))
            piece = cleaned[:left] if left < len(cleaned) else cleaned
            length, left = length + len(piece), left - len(piece)
            if keep:
                kept += piece
    return ScannedText(counts, length, bytes(kept) if keep else None,
                       sha.hexdigest(), file, starts, identity)


def checked_chunks(f, file, sha):
    """The chunks of `f`, each added to `sha`; refuse a NUL-heavy file.

    Each chunk is checked before it is used: UTF-16 (say from Windows'
    Notepad) reads as valid UTF-8 with a NUL after every letter.
    """
    nuls, even, offset = 0, 0, 0  # even: NULs at even file offsets
    for chunk in iter(lambda: f.read(CHUNK_BYTES), b''):
        sha.update(chunk)
        zeros = onp.frombuffer(chunk, dtype=onp.uint8) == 0
        nuls += int(zeros.sum())
        even += int(zeros[offset % 2::2].sum())
        offset += len(chunk)
        if nuls > MAX_NUL_SHARE * max(offset, NUL_SNIFF_BYTES):
            # A NUL after each ASCII letter (odd offsets) is UTF-16LE.
            encoding = 'UTF-16BE' if 2 * even > nuls else 'UTF-16LE'
            raise TextFileError(
                f'{file} is not UTF-8 text: {nuls} of its first {offset} '
                f'bytes are NUL, as in {encoding}; convert it, for example '
                f'with `iconv -f {encoding} -t UTF-8`.')
        yield chunk


def line_blocks(chunks, offset=0):
    r"""(file offset, bytes) of blocks of whole lines, from byte chunks.

    A block ends at a line break (``\n`` or ``\r``), the last at the end of
    the file; `offset` is that of the first chunk. ``\r\n`` may be cut in
    two, which only adds an empty line.
    """
    carry = b''
    for chunk in chunks:
        data = carry + chunk
        cut = max(data.rfind(b'\n'), data.rfind(b'\r')) + 1
        if cut:
            yield offset, data[:cut]
            offset += cut
        carry = data[cut:]
    if carry:
        yield offset, carry


def clean_block(block, offset, file):
    r"""The characters of whole lines of UTF-8, as ``preprocess_lines``.

    Returned as ASCII bytes, the lines run together (as the corpus runs
    them); ``\r`` and ``\r\n`` end a line as ``\n`` does (text mode).
    `offset` is the block's in `file`, for the message on a byte that is
    not UTF-8.
    """
    try:
        text = block.decode('utf-8')
    except UnicodeDecodeError as e:
        raise TextFileError(
            f'{file} is not UTF-8 text (byte {offset + e.start} is '
            f'{block[e.start]:#04x}); convert it, for example with '
            '`iconv -t UTF-8`.') from None
    # preprocess_lines leaves only a-z and ' ': ASCII
    return ''.join(preprocess_lines(text.replace('\r', '\n'))).encode('ascii')


def count_bytes(data, counts):
    """Add to `counts` how often each byte value occurs in `data`.

    The cleaned characters are ASCII; a histogram of the bytes is many
    times faster than a Counter over characters.
    """
    histogram = onp.bincount(onp.frombuffer(data, dtype=onp.uint8),
                             minlength=256)
    for byte in onp.flatnonzero(histogram):
        counts[chr(byte)] += int(histogram[byte])


def file_identity(st):
    """What changes when a file is replaced or rewritten, from its stat."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class TextReader:
    """Reads stretches of a scanned text's characters again from its file.

    A context manager: the file stays open while it is used, and must be
    the file that was scanned, unchanged, until the reader is closed.
    Each stretch is read from the start of the block that holds its first
    character, ``READ_BYTES`` at a time.
    """

    def __init__(self, scanned):
        self.scanned = scanned
        self.char_offsets = [at for _, at in scanned.starts]

    def __enter__(self):
        try:
            self.fd = os.open(self.scanned.file, os.O_RDONLY)
        except OSError as e:
            raise TextFileError(f'{self.scanned.file} cannot be read again '
                                f'({e.strerror}); check its permissions.'
                                ) from None
        self.check_unchanged()
        return self

    def __exit__(self, kind, error, traceback):
        try:
            if kind is None:
                self.check_unchanged()
        finally:
            os.close(self.fd)

    def check_unchanged(self):
        if file_identity(os.fstat(self.fd)) != self.scanned.identity:
            raise TextFileError(f'{self.scanned.file} changed while it was '
                                'read; run the command again.')

    def chars(self, start, stop):
        """Yield the characters [start, stop) as ASCII bytes, in pieces."""
        if start >= stop:
            return
        block = bisect.bisect_right(self.char_offsets, start) - 1
        offset, at = self.scanned.starts[block]
        for where, lines in line_blocks(self.read_from(offset), offset):
            cleaned = clean_block(lines, where, self.scanned.file)
            if at + len(cleaned) > start:
                yield cleaned[max(start - at, 0):stop - at]
            at += len(cleaned)
            if at >= stop:
                return
        # The file ended first: it is not the file scanned any more.
        raise TextFileError(f'{self.scanned.file} changed while it was '
                            'read; run the command again.')

    def read_from(self, offset):
        """The file's bytes from `offset` on, in chunks of READ_BYTES."""
        while True:
            try:
                chunk = os.pread(self.fd, READ_BYTES, offset)
            except OSError as e:
                raise TextFileError(f'{self.scanned.file} cannot be read '
                                    f'({e.strerror}).') from None
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    def counts(self, start, stop):
        """How often each character occurs in [start, stop)."""
        counts = collections.Counter()
        for piece in self.chars(start, stop):
            count_bytes(piece, counts)
        return counts

    def ids(self, vocab):
        """A function (start, stop) -> pieces of the ids of those characters.

        The shape ``evaluate.seq_data_stream_eval`` reads a corpus in.
        """
        table = id_table(vocab)

        def read(start, stop):
            for piece in self.chars(start, stop):
                yield table[onp.frombuffer(piece, dtype=onp.uint8)]
        return read

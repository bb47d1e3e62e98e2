"""What the command line's tests share: how to run it, and what to assert.

End-to-end behaviour runs `python -m d2lrnn` in subprocesses (one thread,
tiny models); the many bad-input cases call ``d2lrnn.cli.main`` in this
process, which fails before MXNet does any work, so they cost milliseconds.
"""
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as onp
import pytest

from d2lrnn import checkpoint as ckpt
from d2lrnn import cli

TINY = ['--max-tokens', '2000', '--hidden', '32', '--batch-size', '8', '--num-steps', '10',
        '--device', 'cpu']
# A learning rate high enough that validation perplexity rises again after epoch 2:
# the best epoch is not the last.
UNSTABLE = (*TINY, '--lr', 4, '--val-fraction', 0.2)
ENV = dict(os.environ, OMP_NUM_THREADS='1')  # one thread: seeded runs repeat bit for bit
# `d2lrnn train` with every fsync slowed down, so that most of the time goes into
# writing checkpoints and a kill at a random moment mostly lands in the middle of one.
SLOW_FSYNC_TRAIN = '''
import os, sys, time
fsync = os.fsync
os.fsync = lambda fd: (time.sleep(0.03), fsync(fd))[1]
from d2lrnn.cli import main
sys.exit(main(sys.argv[1:]))
'''


def d2lrnn(*args, timeout=120):
    """Run `python -m d2lrnn ARGS`; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, '-m', 'd2lrnn', *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def start_d2lrnn(*args, code=None):
    """Start `python -m d2lrnn ARGS` (or `python -c CODE ARGS`) without waiting."""
    command = ['-c', code] if code else ['-m', 'd2lrnn']
    return subprocess.Popen([sys.executable, *command, *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_main(capsys, *args):
    """Run the command line in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse exits on a malformed command line
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_here(capsys, *args):
    """`d2lrnn train ARGS` in this process (no MXNet start-up); assert that it succeeded."""
    code, _, err = run_main(capsys, 'train', *args)
    assert code == 0, err


def snapshot_bytes(directory):
    """Every file of a directory with its bytes, to show that nothing was touched."""
    directory = Path(directory)
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob('*')) if p.is_file()}


def stderr_lines(text):
    """The lines of stderr, with a progress bar's carriage-return updates as lines too."""
    return [line for line in re.split(r'[\r\n]+', text) if line.strip()]


def assert_clean_stderr(text):
    """Only the progress bar and our own messages: no MXNet warnings, no traceback."""
    for line in stderr_lines(text):
        assert line.startswith(('train:', 'd2lrnn: ')), line


def assert_refused(capsys, args, message, directory, code=1):
    """One clear line on stderr, a non-zero status, and `directory` left byte for byte."""
    before = snapshot_bytes(directory)
    status, out, err = run_main(capsys, *args)
    assert status == code
    assert out == ''
    assert err.count('\n') == 1 and err.startswith('d2lrnn: error: '), err
    for fragment in ([message] if isinstance(message, str) else message):
        assert fragment in err, err
    assert snapshot_bytes(directory) == before


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode('utf-8'))
    return path


def load_params(directory):
    return ckpt.load(directory).params


def assert_same_params(a, b):
    for name in ckpt.PARAM_NAMES:
        assert onp.array_equal(a[name], b[name]), name


def assert_same_run(a, b):
    assert_same_params(a.params, b.params)
    assert a.progress['python_random'] == b.progress['python_random']
    assert ([h['perplexity'] for h in a.progress['history']]
            == [h['perplexity'] for h in b.progress['history']])
    assert ([h['val_perplexity'] for h in a.progress['history']]
            == [h['val_perplexity'] for h in b.progress['history']])


def wait_for_stderr(process, pattern, timeout=60):
    """Read the process's stderr in the background until `pattern` shows up; return the reader."""
    seen, found = [], threading.Event()

    def read():
        for chunk in iter(lambda: process.stderr.read(1), ''):
            seen.append(chunk)
            if pattern in ''.join(seen[-200:]):
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert found.wait(timeout), 'the pattern never appeared on stderr'
    return reader, seen


def wait_or_fail(process, seconds, message):
    """Wait for `process` to end; kill it and fail with `message` after `seconds`."""
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(message)


def wait_for_file(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f'{path} never appeared'
        time.sleep(0.01)

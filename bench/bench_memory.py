"""How much memory and time does `d2lrnn train` spend on the text it reads?

Builds a large text (The Time Machine repeated to ``--megabytes`` MB), then
runs ``d2lrnn train --text BIG --max-tokens 2000 --epochs 1`` (a tiny model)
in a subprocess and reports:

- its peak resident memory (``ru_maxrss`` of the child), and the same for
  a run on The Time Machine itself (180 KB): the difference is what the
  large text costs; divided by the text's size, the bytes per character;
- the preparation time: from the start of the process to the progress bar,
  which appears once the text is read, the vocabulary built and the model
  made, minus the same for The Time Machine (MXNet's import dominates it).

Run (about a minute):
``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py``.
The figures depend on the machine; no test times them.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIME_MACHINE = ROOT / 'd2lrnn' / 'texts' / 'timemachine.txt'
TINY = ['--max-tokens', '2000', '--hidden', '32', '--batch-size', '8',
        '--num-steps', '10', '--epochs', '1', '--device', 'cpu']


def big_text(directory, megabytes):
    """The Time Machine repeated to at least `megabytes` MB; its path."""
    book = TIME_MACHINE.read_bytes()
    path = Path(directory) / 'big.txt'
    with open(path, 'wb') as f:
        for _ in range(-(-megabytes * 10 ** 6 // len(book))):
            f.write(book)
    return path


def measure(text, out):
    """(peak resident MB, seconds to the progress bar) of one train run."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'd2lrnn', 'train', *TINY,
               '--out', str(out)]
    if text is not None:
        command += ['--text', str(text)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    seen = b''
    while b'train:' not in seen:
        byte = process.stderr.read(1)
        if not byte:
            break
        seen += byte
    ready = time.monotonic() - started
    process.stderr.read()
    if process.wait() != 0:
        raise SystemExit(f'train failed: {seen.decode()[-300:]}')
    # ru_maxrss of the children that have ended: this one (the largest so
    # far is kept, so the small run goes first).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return peak, ready


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--megabytes', type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_peak, base_ready = measure(None, Path(tmp) / 'small')
        text = big_text(tmp, args.megabytes)
        size = text.stat().st_size
        peak, ready = measure(text, Path(tmp) / 'big')
    extra = max(peak - base_peak, 0)
    print(f'The Time Machine (180 KB): peak {base_peak:.0f} MB, '
          f'{base_ready:.1f} s to the first epoch')
    print(f'{size / 1e6:.0f} MB text, --max-tokens 2000: peak {peak:.0f} MB, '
          f'{ready:.1f} s to the first epoch')
    print(f'the large text costs {extra:.0f} MB more '
          f'({extra * 2 ** 20 / size:.2f} bytes per character of text) and '
          f'{ready - base_ready:.1f} s more')


if __name__ == '__main__':
    main()

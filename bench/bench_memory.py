"""How much memory and time do `d2lrnn train` and `evaluate` spend on a text?

Builds a large text (The Time Machine repeated to ``--megabytes`` MB), then
runs each command below in a subprocess, on The Time Machine itself (180 KB)
and on the large text, and reports its peak resident memory (``ru_maxrss``
of that child) and its preparation time (from the start of the process to
the first progress bar, or to the end for ``evaluate``, which has none):

- ``train --max-tokens 2000 --epochs 1`` (a tiny model): the text is read
  in chunks and only 2,000 characters are kept, so the large text should
  cost little;
- ``train --max-tokens all --epochs 1`` (a tiny model, larger minibatches)
  on The Time Machine, whose checkpoint the next line scores;
- ``evaluate`` of that model on the whole text: the text is scored
  minibatch by minibatch, so it should cost about as little as the first;
- with ``--all-megabytes M``, also ``train --max-tokens all --epochs 1`` on
  a text of M MB, without and with a validation part: what training on a
  whole text costs per character, the figure ``d2lrnn train`` checks the
  available memory against (``d2lrnn.cli.config.TRAIN_BYTES_PER_CHAR``).

The difference from the run on The Time Machine is what the large text
costs; divided by its characters, the bytes per character.

Run (about two minutes; five with ``--all-megabytes 20``):
``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py``.
The figures depend on the machine; no test times them.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from d2lrnn.data import TIME_MACHINE
from d2lrnn.results import cpu_model

ROOT = Path(__file__).resolve().parent.parent
TINY = ['--max-tokens', '2000', '--hidden', '32', '--batch-size', '8',
        '--num-steps', '10', '--epochs', '1', '--device', 'cpu']
# Whole texts: larger minibatches, so that one pass over millions of
# characters takes seconds (memory per character hardly depends on them);
# evaluate scores with the minibatches of the model it is given, this one.
ALL = ['--max-tokens', 'all', '--hidden', '32', '--batch-size', '64',
       '--num-steps', '35', '--epochs', '1', '--device', 'cpu']


def big_text(directory, megabytes, name='big.txt'):
    """The Time Machine repeated to at least `megabytes` MB; its path."""
    book = TIME_MACHINE.read_bytes()
    path = Path(directory) / name
    with open(path, 'wb') as f:
        for _ in range(-(-megabytes * 10 ** 6 // len(book))):
            f.write(book)
    return path


def measure(*args):
    """(peak resident MB, seconds to the progress bar or the end) of a run.

    `args` follow ``python -m d2lrnn``.
    """
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'd2lrnn', *map(str, args)]
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
    seen += process.stderr.read()
    # wait4: the peak of this child alone (RUSAGE_CHILDREN would keep the
    # largest of all children so far).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f'{args[0]} failed: {seen.decode()[-300:]}')
    return usage.ru_maxrss / 1024, ready


def report(name, base, large, chars):
    """Print one command's figures, and what the large text costs.

    `chars`: the large file's size (ASCII: one byte per character).
    """
    (base_peak, base_ready), (peak, ready) = base, large
    extra = max(peak - base_peak, 0)
    print(f'{name}\n'
          f'  The Time Machine: peak {base_peak:.0f} MB, {base_ready:.1f} s\n'
          f'  {chars / 1e6:.0f} M characters: peak {peak:.0f} MB, '
          f'{ready:.1f} s\n'
          f'  the large text costs {extra:.0f} MB more '
          f'({extra * 2 ** 20 / chars:.2f} bytes per character of the file) '
          'and '
          f'{ready - base_ready:.1f} s more')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--megabytes', type=int, default=50)
    parser.add_argument('--all-megabytes', type=int, default=0,
                        help='also train on all of a text this large')
    args = parser.parse_args()
    print(f'CPU: {cpu_model()}')
    # Built once beforehand, so that no run's peak is the compiler's (a
    # machine without one trains on the Python path: no matter).
    subprocess.run([sys.executable, '-m', 'd2lrnn', 'build-native'],
                   cwd=ROOT, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = big_text(tmp, args.megabytes)
        size = text.stat().st_size
        base = measure('train', *TINY, '--out', tmp / 'small')
        large = measure('train', *TINY, '--text', text, '--out', tmp / 'big')
        report('train --max-tokens 2000 (the text is read, 2,000 '
               'characters kept)', base, large, size)
        model = tmp / 'all-small'
        all_base = measure('train', *ALL, '--out', model)
        base = measure('evaluate', '--checkpoint', model, '--text',
                       TIME_MACHINE, '--device', 'cpu')
        large = measure('evaluate', '--checkpoint', model, '--text', text,
                        '--device', 'cpu')
        report('evaluate (every character scored)', base, large, size)
        if args.all_megabytes:
            whole = big_text(tmp, args.all_megabytes, 'whole.txt')
            large = measure('train', *ALL, '--text', whole,
                            '--out', tmp / 'all-big')
            report('train --max-tokens all (every character kept)',
                   all_base, large, whole.stat().st_size)
            # The training and validation parts are copies of the ids.
            held = ['--val-fraction', '0.1']
            base = measure('train', *ALL, *held, '--out', tmp / 'val-small')
            large = measure('train', *ALL, *held, '--text', whole,
                            '--out', tmp / 'val-big')
            report('train --max-tokens all --val-fraction 0.1', base, large,
                   whole.stat().st_size)


if __name__ == '__main__':
    main()

"""d2lrnn train under Ctrl-C and kill -9: a loadable checkpoint every time, and a process
that always ends."""
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import (ENV, SLOW_FSYNC_TRAIN, TINY, assert_clean_stderr,
                         assert_same_params, assert_same_run, d2lrnn, run_main, start_d2lrnn,
                         stderr_lines, wait_for_file, wait_for_stderr, wait_or_fail)
from d2lrnn import checkpoint as ckpt


def test_ctrl_c_saves_the_last_finished_epoch_and_stops(tmp_path):
    out = tmp_path / 'run'
    process = start_d2lrnn('train', *TINY, '--epochs', 10000, '--checkpoint-every', 10000,
                           '--out', out)
    reader, seen = wait_for_stderr(process, 'ppl=')  # at least one epoch is done
    process.send_signal(signal.SIGINT)
    wait_or_fail(process, 60, f'still running 60 s after Ctrl-C: {"".join(seen)[-300:]!r}')
    stdout = process.stdout.read()  # the reader thread has stderr
    reader.join(10)
    stderr = ''.join(seen)
    assert process.returncode == 130 and stdout == ''
    assert_clean_stderr(stderr)
    last = stderr_lines(stderr)[-1]
    epoch = int(re.fullmatch(r'd2lrnn: interrupted: saved epoch (\d+) in .*; continue with '
                             r'`d2lrnn train --out .* --resume`\.', last).group(1))
    saved = ckpt.load(out)
    assert saved.progress['epoch'] == epoch >= 1
    # What was saved is the state at the end of that epoch: the same as a run of that length.
    whole = tmp_path / 'whole'
    assert d2lrnn('train', *TINY, '--epochs', epoch, '--out', whole).returncode == 0
    assert_same_run(ckpt.load(whole), saved)


SWALLOWING_TRAIN = '''
import sys
from d2lrnn import cli
from d2lrnn.cli import run
train_epoch = run.train_epoch_ch8

def swallowing(*args):
    # As when Ctrl-C's KeyboardInterrupt is raised inside a __del__ (MXNet
    # frees arrays there): Python reports it as ignored, and the code goes on.
    try:
        return train_epoch(*args)
    except KeyboardInterrupt:
        return train_epoch(*args)

run.train_epoch_ch8 = swallowing
sys.exit(cli.main(sys.argv[1:]))
'''


def test_a_ctrl_c_whose_exception_is_lost_still_stops_after_the_epoch(tmp_path):
    out = tmp_path / 'run'
    process = start_d2lrnn('train', *TINY, '--epochs', 10000, '--checkpoint-every', 10000,
                           '--out', out, code=SWALLOWING_TRAIN)
    reader, seen = wait_for_stderr(process, 'ppl=')
    process.send_signal(signal.SIGINT)
    wait_or_fail(process, 60, 'the lost Ctrl-C was not noticed: still training 60 s later')
    reader.join(10)
    assert process.returncode == 130
    last = stderr_lines(''.join(seen))[-1]
    assert re.fullmatch(r'd2lrnn: interrupted: saved epoch \d+ in .*', last), last
    assert ckpt.load(out).progress['epoch'] >= 1


def test_ctrl_c_during_a_save_writes_that_checkpoint_once(capsys, tmp_path, monkeypatch):
    saves, save = [], ckpt.save

    def save_then_ctrl_c(directory, checkpoint):
        save(directory, checkpoint)
        saves.append(checkpoint.progress['epoch'])
        os.kill(os.getpid(), signal.SIGINT)  # held back until the save is over

    monkeypatch.setattr(ckpt, 'save', save_then_ctrl_c)
    out = tmp_path / 'run'
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 3, '--checkpoint-every', 1,
                            '--out', out)
    assert code == 130 and saves == [1], err
    assert err.endswith(f'd2lrnn: interrupted: saved epoch 1 in {out}; continue with '
                        f'`d2lrnn train --out {out} --resume`.\n')
    assert ckpt.load(out).progress['epoch'] == 1


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    out, rng, epochs = tmp_path / 'run', random.Random(0), []
    for round in range(3):
        resume = ['--resume'] if round else []
        process = start_d2lrnn('train', *TINY, '--epochs', 100000, '--checkpoint-every', 1,
                               '--out', out, *resume, code=SLOW_FSYNC_TRAIN)
        reader, _ = wait_for_stderr(process, 'ppl=')
        wait_for_file(out / 'manifest.json')
        time.sleep(rng.uniform(0, 0.5))
        process.kill()  # SIGKILL: no handler, no clean-up
        process.wait()
        reader.join(10)
        saved = ckpt.load(out)  # raises if the checkpoint were half-written
        epochs.append(saved.progress['epoch'])
        assert len(saved.progress['history']) == epochs[-1]
    assert epochs == sorted(epochs) and epochs[-1] >= 1


class Crash(BaseException):
    """The process dying at this point (raised where a kill could strike)."""


def test_a_save_cut_short_at_any_step_leaves_the_old_or_the_new_checkpoint(
        abc_checkpoint, monkeypatch):
    """Die before each fsync and rename of a save in turn: each time one whole checkpoint loads.

    The old checkpoint holds until the manifest, the fifth file, is renamed into place.
    """
    old = ckpt.load(abc_checkpoint)
    new = ckpt.Checkpoint({k: v + 1 for k, v in old.params.items()}, old.vocab, old.config,
                          {'epoch': 1, 'history': []})
    real = {'fsync': os.fsync, 'replace': os.replace}
    for step in range(100):
        done = []

        def dying(name):
            def call(*args):
                if len(done) == step:
                    raise Crash
                result = real[name](*args)
                done.append(name)
                return result
            return call

        monkeypatch.setattr(ckpt.os, 'fsync', dying('fsync'))
        monkeypatch.setattr(ckpt.os, 'replace', dying('replace'))
        try:
            ckpt.save(abc_checkpoint, new)
        except Crash:
            pass
        monkeypatch.undo()
        loaded = ckpt.load(abc_checkpoint)
        expected = new if done.count('replace') == 5 else old
        assert loaded.progress == expected.progress
        assert_same_params(loaded.params, expected.params)
        if len(done) < step:  # the save finished before this step: all steps were cut
            break
        ckpt.save(abc_checkpoint, old)  # the next step starts from the old checkpoint again
    assert 10 < step < 99


# ---------------------------------------------------------------- Ctrl-C always ends

# A model large enough that the first minibatch takes a while: an exception that leaves
# it early used to block MXNet's shutdown for ever after "interrupted: saved epoch 0".
LARGE = ['--max-tokens', '20000', '--hidden', '1024', '--device', 'cpu']


def ctrl_c_after(out, pattern, delay, *extra, code=None):
    """Start train, wait for `pattern` on stderr and `delay` s more, send SIGINT.

    Returns (exit status, seconds from SIGINT to exit, stderr); fails if the
    process has not ended 30 s after the signal.
    """
    process = start_d2lrnn('train', *LARGE, '--epochs', 1000, '--checkpoint-every', 1,
                           '--out', out, *extra, code=code)
    reader, seen = wait_for_stderr(process, pattern, timeout=180)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    wait_or_fail(process, 30, f'still running 30 s after Ctrl-C: {"".join(seen)[-300:]!r}')
    elapsed = time.monotonic() - sent
    reader.join(10)
    process.stdout.close()
    return process.returncode, elapsed, ''.join(seen)


@pytest.mark.parametrize('delay', [0.3, 1.0, 2.0])
def test_ctrl_c_in_the_first_minibatch_ends_the_process(tmp_path, delay):
    out = tmp_path / 'run'
    # the whole book in each epoch: even a fast CPU is still in the first one 2 s in
    code, elapsed, stderr = ctrl_c_after(out, 'train:', delay, '--max-tokens', '200000')
    assert code == 130, stderr
    assert stderr_lines(stderr)[-1].startswith('d2lrnn: interrupted: saved epoch 0 in')
    assert ckpt.load(out).progress['epoch'] == 0


def test_the_console_script_is_the_launcher():
    from importlib.metadata import entry_points
    script, = [e for e in entry_points(group='console_scripts') if e.name == 'd2lrnn']
    assert script.value == 'd2lrnn_launch:main'


# What the console script runs; sitecustomize (on PYTHONPATH) makes MXNet's import take
# 5 s more, so that a Ctrl-C 1 s after the start lands inside it.
LAUNCH = 'import sys; from d2lrnn_launch import main; sys.exit(main())'
SLOW_MXNET_IMPORT = """import sys, time
class Slow:
    def find_spec(self, name, path=None, target=None):
        if name == 'mxnet':
            sys.meta_path.remove(self)
            print('importing mxnet', file=sys.stderr, flush=True)
            time.sleep(5)
sys.meta_path.insert(0, Slow())
"""


def test_ctrl_c_while_the_command_imports_mxnet_ends_it_in_one_line(tmp_path):
    (tmp_path / 'sitecustomize.py').write_text(SLOW_MXNET_IMPORT)
    env = dict(ENV, PYTHONPATH=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, '-c', LAUNCH, 'train', *TINY, '--out', tmp_path / 'run'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader, seen = wait_for_stderr(process, 'importing mxnet', timeout=60)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    wait_or_fail(process, 30, f'still running 30 s after Ctrl-C: {"".join(seen)!r}')
    reader.join(10)
    process.stdout.close()
    assert process.returncode == 130
    assert stderr_lines(''.join(seen)) == [
        'importing mxnet', 'd2lrnn: interrupted while starting; nothing was done.']
    assert not (tmp_path / 'run').exists()


def test_ctrl_c_during_a_save_ends_the_process_with_that_checkpoint(tmp_path):
    out = tmp_path / 'run'
    # Every fsync slowed down: the signal lands in the middle of the first save.
    code, elapsed, stderr = ctrl_c_after(
        out, 'ppl=', 0.05, code=SLOW_FSYNC_TRAIN.replace('main(sys.argv[1:])', 'main()'))
    assert code == 130, stderr
    epoch = int(re.search(r'interrupted: saved epoch (\d+)', stderr).group(1))
    assert ckpt.load(out).progress['epoch'] == epoch >= 1

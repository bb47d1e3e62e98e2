"""d2lrnn train: what it writes and reports, the best epoch, resume, a locked --out,
and never a model that is not finite."""
import json
import random
import re
import shutil

import numpy as onp
import pytest

from cli_helpers import (TINY, UNSTABLE, assert_clean_stderr, assert_same_params,
                         assert_same_run, d2lrnn, load_params, run_main, snapshot_bytes,
                         start_d2lrnn, stderr_lines, train_here, wait_for_file,
                         wait_for_stderr, write)
from d2lrnn import checkpoint as ckpt
from d2lrnn.cli import commands
from d2lrnn.cli.run import BEST, LOCK


def test_train_writes_a_checkpoint_and_reports(trained):
    out, result = trained
    assert_clean_stderr(result.stderr)
    assert 'val_ppl=' in result.stderr  # the progress bar shows the validation perplexity
    lines = result.stdout.splitlines()
    assert re.fullmatch(r'epoch 4: perplexity [\d.]+, validation perplexity [\d.]+, '
                        r'\d+ tokens/sec on cpu\(0\)', lines[0])
    assert lines[1].startswith('time traveller') and len(lines[1]) == len('time traveller') + 50
    assert lines[2] == f'checkpoint: {out}'
    saved = ckpt.load(out)
    assert saved.progress['epoch'] == 4 and len(saved.progress['history']) == 4
    assert saved.config['num_hiddens'] == 32 and len(saved.vocab) == 28
    assert all(h['val_perplexity'] > 1 for h in saved.progress['history'])
    # Nothing in the directory but the manifest, the four files it names, and the
    # (empty) lock file that keeps a second `train` out while one runs.
    manifest = json.loads((out / 'manifest.json').read_text())
    assert {p.name for p in out.iterdir()} == (
        {'manifest.json', LOCK, BEST}
        | {f['name'] for f in manifest['files'].values()})
    assert (out / LOCK).stat().st_size == 0


# ---------------------------------------------------------------- the best epoch

def test_train_keeps_the_best_validation_epoch_not_the_last(capsys, unstable, tmp_path):
    history = ckpt.load(unstable).progress['history']
    vals = [h['val_perplexity'] for h in history]
    best = vals.index(min(vals)) + 1
    assert best < len(vals) == 5  # else this test would not tell best from last
    kept = ckpt.load(unstable / BEST)
    assert kept.progress['epoch'] == best and kept.progress['history'] == history[:best]
    # The parameters are those of a run stopped at the best epoch, bit for bit.
    again = tmp_path / 'again'
    train_here(capsys, *UNSTABLE, '--epochs', best, '--out', again)
    assert_same_params(kept.params, load_params(again))
    assert not onp.array_equal(kept.params['W_hh'], load_params(unstable)['W_hh'])


def test_train_names_the_best_checkpoint(capsys, tmp_path):
    out = tmp_path / 'run'
    code, stdout, _ = run_main(capsys, 'train', *UNSTABLE, '--epochs', 3, '--out', out)
    vals = [h['val_perplexity'] for h in ckpt.load(out).progress['history']]
    best = vals.index(min(vals)) + 1
    assert code == 0 and stdout.splitlines()[-1] == (
        f'best validation perplexity {min(vals):.2f}, epoch {best}: {out / BEST}')


def test_without_validation_no_best_checkpoint_and_force_drops_a_stale_one(
        capsys, unstable, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(unstable, out)
    train_here(capsys, *TINY, '--epochs', 1, '--force', '--out', out)
    assert not (out / BEST).exists()  # the old run's best is not this run's


# ---------------------------------------------------------------- resume

@pytest.mark.parametrize('iteration', ['sequential', 'random'])
def test_resume_gives_the_uninterrupted_result(capsys, tmp_path, iteration):
    """4 epochs == 2 epochs, then 2 more after --resume, bit for bit.

    In this process, so both runs use the same number of threads, whatever it is.
    """
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    args = (*TINY, '--iter', iteration, '--seed', 3, '--val-fraction', 0.2)
    train_here(capsys, *args, '--epochs', 4, '--out', whole)
    train_here(capsys, *args, '--epochs', 2, '--out', part)
    random.seed(12345)  # whatever happened in between, the checkpoint's state counts
    train_here(capsys, '--resume', '--epochs', 4, '--out', part)
    assert_same_run(ckpt.load(whole), ckpt.load(part))


# ---------------------------------------------------------------- one run per --out

@pytest.mark.slow
def test_a_second_train_on_the_same_out_stops_while_the_first_runs(tmp_path):
    out = tmp_path / 'run'
    first = start_d2lrnn('train', *TINY, '--epochs', 100000, '--checkpoint-every', 1,
                         '--out', out)
    try:
        reader, _ = wait_for_stderr(first, 'ppl=')
        wait_for_file(out / 'manifest.json')
        for mode in ('--force', '--resume'):
            second = d2lrnn('train', *TINY, '--epochs', 100000, '--out', out, mode)
            assert second.returncode == 1, second.stderr
            assert stderr_lines(second.stderr) == [
                f'd2lrnn: error: another `d2lrnn train` is writing to {out}; wait for it to '
                'end, or choose another --out.']
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.kill()  # SIGKILL: the kernel releases the lock all the same
        first.wait()
        reader.join(10)
    done = ckpt.load(out).progress['epoch']
    resumed = d2lrnn('train', *TINY, '--epochs', done + 1, '--out', out, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert ckpt.load(out).progress['epoch'] == done + 1


def test_a_checkpoint_written_while_train_starts_is_not_overwritten(capsys, good, tmp_path,
                                                                    monkeypatch):
    # Another run saves after this one has checked --out but before it takes the lock.
    out, ensure_writable = tmp_path / 'run', commands.ensure_writable

    def another_run_saves(directory):
        ensure_writable(directory)
        shutil.copytree(good, directory, dirs_exist_ok=True)

    monkeypatch.setattr(commands, 'ensure_writable', another_run_saves)
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', out)
    assert code == 1
    assert err == (f'd2lrnn: error: the checkpoint in {out} changed while this command '
                   'started; run it again.\n')
    assert snapshot_bytes(out) == {**snapshot_bytes(good), LOCK: b''}


def test_a_lock_that_is_a_symlink_is_not_followed(capsys, tmp_path):
    out, outside = tmp_path / 'run', tmp_path / 'elsewhere' / 'lock'
    out.mkdir()
    outside.parent.mkdir()
    (out / LOCK).symlink_to(outside)
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', out)
    assert code == 1 and f'{out / LOCK} cannot be opened' in err
    assert not outside.exists() and not ckpt.exists(out)


def test_an_empty_out_is_refused_and_nothing_is_written_here(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', '')
    assert code == 1 and err.startswith("d2lrnn: error: --out '' names no directory")
    assert list(tmp_path.iterdir()) == []


def test_an_out_below_a_regular_file_is_one_line(capsys, tmp_path):
    file = write(tmp_path / 'file.txt', 'text')
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', file / 'run')
    assert code == 1 and err.count('\n') == 1 and err.startswith('d2lrnn: error: '), err
    assert file.read_text() == 'text'


# ---------------------------------------------------------------- never a model that is not finite

def test_a_learning_rate_that_overflows_saves_nothing(capsys, tmp_path):
    """--lr 3e38 turns the parameters into infinities and NaN in the first update."""
    out = tmp_path / 'run'
    code, stdout, err = run_main(capsys, 'train', *TINY, '--lr', '3e38', '--epochs', 2,
                                 '--val-fraction', 0.2, '--out', out)
    assert code == 1 and stdout == ''
    assert_clean_stderr(err)
    last = stderr_lines(err)[-1]
    assert re.fullmatch(r'd2lrnn: error: epoch 1: .*diverged.* nothing of this run was '
                        r'saved; run it again with a smaller --lr\.', last), last
    assert not ckpt.exists(out) and not (out / BEST).exists()


def test_divergence_never_replaces_a_finite_checkpoint(capsys, good):
    saved = ckpt.load(good)
    saved.config['lr'] = 3e38  # as if the run had been started with it
    ckpt.save(good, saved)
    before = snapshot_bytes(good)
    code, _, err = run_main(capsys, 'train', '--out', good, '--resume', '--epochs', 8,
                            '--checkpoint-every', 1)
    assert code == 1
    assert stderr_lines(err)[-1].endswith(
        f'the last checkpoint in {good}, of epoch 4, is kept; start afresh with --force '
        'and a smaller --lr.')
    assert snapshot_bytes(good) == before
    ckpt.load(good)  # still loads: finite


# ---------------------------------------------------------------- a full disk

def fail_writing_params_at(epochs, monkeypatch):
    """npx.save fails (as on a full disk) when saving one of `epochs`."""
    real, calls = ckpt.npx.save, []

    def save(path, arrays):
        calls.append(path)
        if len(calls) in epochs:
            raise ckpt.mx.base.MXNetError('Traceback (most recent call last):\n'
                                          'MXNetError: Check failed: No space left on '
                                          'device')
        return real(path, arrays)
    monkeypatch.setattr(ckpt.npx, 'save', save)


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_old_checkpoint(
        capsys, good, monkeypatch):
    before = snapshot_bytes(good)
    fail_writing_params_at({1}, monkeypatch)
    code, _, err = run_main(capsys, 'train', '--out', good, '--resume', '--epochs', 6,
                            '--checkpoint-every', 1)
    assert code == 1 and 'Traceback' not in err
    last = stderr_lines(err)[-1]  # the first save of epoch 5: best/ or the checkpoint
    assert last.startswith(f'd2lrnn: error: cannot write the checkpoint to {good}')
    assert last.endswith('(the parameters could not be written: MXNetError: Check failed: '
                         'No space left on device); the previous one is kept.')
    assert snapshot_bytes(good) == before


def test_a_full_disk_before_any_save_says_nothing_was_saved(capsys, tmp_path, monkeypatch):
    fail_writing_params_at({1}, monkeypatch)
    out = tmp_path / 'run'
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 2, '--out', out)
    assert code == 1
    assert stderr_lines(err)[-1].endswith('No space left on device); nothing was saved.')

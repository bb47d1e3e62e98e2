"""The command line: train, generate, evaluate; checkpoints that survive Ctrl-C, kill -9
and bad input.

End-to-end behaviour runs `python -m d2lrnn` in subprocesses (one thread, tiny
models); the many bad-input cases call ``d2lrnn.cli.main`` in this process,
which fails before MXNet does any work, so they cost milliseconds.
"""
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as onp
import pytest

from d2lrnn import checkpoint as ckpt
from d2lrnn import cli
from d2lrnn.data import TIME_MACHINE, Vocab, load_corpus_time_machine, read_time_machine, tokenize
from d2lrnn.evaluate import evaluate_perplexity, seq_data_iter_eval
from d2lrnn.predict import predict_ch8

TINY = ['--max-tokens', '2000', '--hidden', '32', '--batch-size', '8', '--num-steps', '10',
        '--device', 'cpu']
ENV = dict(os.environ, OMP_NUM_THREADS='1')  # one thread: seeded runs repeat bit for bit


def d2lrnn(*args, timeout=120):
    """Run `python -m d2lrnn ARGS`; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, '-m', 'd2lrnn', *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def start_d2lrnn(*args, code=None):
    """Start `python -m d2lrnn ARGS` (or `python -c CODE ARGS`) without waiting."""
    command = ['-c', code] if code else ['-m', 'd2lrnn']
    return subprocess.Popen([sys.executable, *command, *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def run_main(capsys, *args):
    """Run the command line in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse exits on a malformed command line
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 4-epoch run with a validation split: (directory, CompletedProcess)."""
    out = tmp_path_factory.mktemp('trained') / 'run'
    result = d2lrnn('train', *TINY, '--epochs', 4, '--val-fraction', 0.2, '--out', out)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture()
def good(trained, tmp_path):
    """A copy of the trained checkpoint that a test may try (and fail) to damage."""
    out = tmp_path / 'good'
    shutil.copytree(trained[0], out)
    return out


def load_params(directory):
    return ckpt.load(directory).params


def assert_same_params(a, b):
    for name in ckpt.PARAM_NAMES:
        assert onp.array_equal(a[name], b[name]), name


# ---------------------------------------------------------------- the three commands

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
        {'manifest.json', cli.LOCK, cli.BEST}
        | {f['name'] for f in manifest['files'].values()})
    assert (out / cli.LOCK).stat().st_size == 0


def test_generate_greedy_continues_as_the_trained_model_did(trained):
    out, result = trained
    generated = d2lrnn('generate', '--checkpoint', out, '--prefix', 'Time Traveller',
                       '-n', 50, '--device', 'cpu')
    assert generated.returncode == 0 and generated.stderr == ''
    # The same text as the model printed before it was saved: the round trip is exact.
    assert generated.stdout == result.stdout.splitlines()[1] + '\n'


def test_generate_sample_is_repeatable_with_a_seed(trained):
    out, _ = trained
    result = d2lrnn('generate', '--checkpoint', out, '--prefix', 'the ', '-n', 40, '--sample',
                    '--alpha', 0.5, '--seed', 7, '--device', 'cpu')
    assert result.returncode == 0 and result.stderr == ''
    # The same draws here, with predict_ch8 itself and the same seed.
    saved = ckpt.load(out)
    ctx = cli.npx.cpu()
    model = cli.WithoutUnk(ckpt.to_model(saved, ctx), len(saved.vocab),
                           saved.vocab.unk, ctx)
    expected = predict_ch8('the ', 40, model, saved.vocab, ctx,
                           sample=True, alpha=0.5, seed=7)
    assert result.stdout == expected + '\n'
    # A flat distribution (alpha 0.5) still never draws <unk>, which training never saw.
    assert len(expected) == len('the ') + 40 and '<unk>' not in expected


def test_evaluate_scores_a_text_deterministically(trained):
    out, _ = trained
    result = d2lrnn('evaluate', '--checkpoint', out, '--text', TIME_MACHINE,
                    '--max-tokens', 3000, '--device', 'cpu')
    assert result.returncode == 0 and result.stderr == ''
    match = re.fullmatch(r'perplexity ([\d.]+), [\d.]+ bits per character, on 3000 '
                         r'characters of .*\n', result.stdout)
    # The same number computed here, from the checkpoint, the section's way.
    saved = ckpt.load(out)
    model = ckpt.to_model(saved, cli.npx.cpu())
    corpus, vocab = load_corpus_time_machine(3000)
    assert vocab.idx_to_token == saved.vocab.idx_to_token
    ppl = evaluate_perplexity(model, seq_data_iter_eval(corpus, 8, 10), cli.npx.cpu())
    assert match.group(1) == f'{ppl:.2f}'


# A learning rate high enough that validation perplexity rises again after epoch 2:
# the best epoch is not the last.
UNSTABLE = (*TINY, '--lr', 4, '--val-fraction', 0.2)


@pytest.fixture(scope='module')
def unstable(tmp_path_factory):
    """The directory of a 5-epoch run whose best validation epoch is not the last."""
    out = tmp_path_factory.mktemp('unstable') / 'run'
    code = cli.main(['train', *map(str, UNSTABLE), '--epochs', '5', '--out', str(out)])
    assert code == 0
    return out


def test_train_keeps_the_best_validation_epoch_not_the_last(capsys, unstable, tmp_path):
    history = ckpt.load(unstable).progress['history']
    vals = [h['val_perplexity'] for h in history]
    best = vals.index(min(vals)) + 1
    assert best < len(vals) == 5  # else this test would not tell best from last
    kept = ckpt.load(unstable / cli.BEST)
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
        f'best validation perplexity {min(vals):.2f}, epoch {best}: {out / cli.BEST}')


def test_without_validation_no_best_checkpoint_and_force_drops_a_stale_one(
        capsys, unstable, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(unstable, out)
    train_here(capsys, *TINY, '--epochs', 1, '--force', '--out', out)
    assert not (out / cli.BEST).exists()  # the old run's best is not this run's


@pytest.mark.parametrize('which', ['best', 'last'])
def test_evaluate_val_fraction_scores_what_training_held_out(capsys, unstable, which):
    """evaluate --val-fraction F on the training text gives training's validation perplexity.

    Both cut the same characters (cli.holdout_split) and score them the same way
    (cli.eval_batches, from the first character, the state carried along).
    """
    directory = unstable / cli.BEST if which == 'best' else unstable
    saved = ckpt.load(directory)
    expected = saved.progress['history'][-1]['val_perplexity']
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', directory, '--text',
                              TIME_MACHINE, '--val-fraction', 0.2, '--device', 'cpu')
    assert code == 0 and err == ''
    match = re.fullmatch(r'perplexity ([\d.]+), ([\d.]+) bits per character, on the last '
                         r'400 of 2000 characters of .*\n', out)
    assert match.group(1) == f'{expected:.2f}'
    assert match.group(2) == f'{onp.log2(expected):.2f}'


def test_evaluate_val_fraction_cuts_as_training_cut(capsys, unstable):
    """The cut itself: the ids evaluate scores are training's validation ids."""
    config = ckpt.load(unstable).config
    corpus, _ = cli.training_corpus(cli.scan_text(None, -1), config['max_tokens'])
    _, valid = cli.split_for_validation(corpus, config)
    args = cli.build_parser().parse_args(
        ['evaluate', '--checkpoint', str(unstable), '--text', str(TIME_MACHINE),
         '--val-fraction', '0.2'])
    scored, _ = cli.corpus_in_vocab(args.text, ckpt.load(unstable).vocab,
                                    cli.evaluate_max_tokens(args, config))
    assert cli.holdout_split(scored, 0.2)[1] == valid


def test_load_text_reads_as_the_package_does(tmp_path):
    lines, sha256 = cli.load_text(None)
    assert lines == read_time_machine()
    assert sha256 == hashlib.sha256(TIME_MACHINE.read_bytes()).hexdigest()
    text = write(tmp_path / 'crlf.txt', 'The Time\r\nMachine, by H. G. Wells\rend\n')
    assert cli.load_text(text) == (read_time_machine(text),
                                   hashlib.sha256(text.read_bytes()).hexdigest())


# ---------------------------------------------------------------- resume, Ctrl-C, kill -9

def train_here(capsys, *args):
    """`d2lrnn train ARGS` in this process (no MXNet start-up); assert that it succeeded."""
    code, _, err = run_main(capsys, 'train', *args)
    assert code == 0, err


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
import d2lrnn.cli as cli
train_epoch = cli.train_epoch_ch8

def swallowing(*args):
    # As when Ctrl-C's KeyboardInterrupt is raised inside a __del__ (MXNet
    # frees arrays there): Python reports it as ignored, and the code goes on.
    try:
        return train_epoch(*args)
    except KeyboardInterrupt:
        return train_epoch(*args)

cli.train_epoch_ch8 = swallowing
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


def wait_for_file(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f'{path} never appeared'
        time.sleep(0.01)


# `d2lrnn train` with every fsync slowed down, so that most of the time goes into
# writing checkpoints and a kill at a random moment mostly lands in the middle of one.
SLOW_FSYNC_TRAIN = '''
import os, sys, time
fsync = os.fsync
os.fsync = lambda fd: (time.sleep(0.03), fsync(fd))[1]
from d2lrnn.cli import main
sys.exit(main(sys.argv[1:]))
'''


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


# ---------------------------------------------------------------- bad input

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


def test_bad_input_from_the_console_script_is_one_line_and_no_traceback(good):
    script = Path(sys.executable).parent / 'd2lrnn'
    command = [script] if script.exists() else [sys.executable, '-m', 'd2lrnn']
    before = snapshot_bytes(good)
    result = subprocess.run([*command, 'train', '--out', good, '--force',
                             '--text', 'no/such/book.txt'],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr == ('d2lrnn: error: no/such/book.txt: no such file; '
                             'give the path of a UTF-8 text file.\n')
    assert snapshot_bytes(good) == before


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


@pytest.mark.parametrize('option, value', [
    ('--hidden', 0), ('--lr', -1), ('--lr', 'inf'), ('--epochs', 0), ('--batch-size', -5),
    ('--num-steps', 'two'), ('--max-tokens', 0), ('--checkpoint-every', 0),
    ('--val-fraction', 1), ('--seed', -1)])
def test_train_refuses_bad_numbers(capsys, good, option, value):
    assert_refused(capsys, ['train', '--out', good, '--force', option, value],
                   f'argument {option}: must be', good, code=2)


def test_train_refuses_to_overwrite_a_checkpoint(capsys, good):
    assert_refused(capsys, ['train', *TINY, '--out', good],
                   'already holds a checkpoint; continue it with --resume, or replace it '
                   'with --force', good)


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
    out, ensure_writable = tmp_path / 'run', cli.ensure_writable

    def another_run_saves(directory):
        ensure_writable(directory)
        shutil.copytree(good, directory, dirs_exist_ok=True)

    monkeypatch.setattr(cli, 'ensure_writable', another_run_saves)
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', out)
    assert code == 1
    assert err == (f'd2lrnn: error: the checkpoint in {out} changed while this command '
                   'started; run it again.\n')
    assert snapshot_bytes(out) == {**snapshot_bytes(good), cli.LOCK: b''}


def test_train_refuses_resume_and_force_together(capsys, good):
    assert_refused(capsys, ['train', '--out', good, '--resume', '--force'],
                   '--resume continues', good)


def test_resume_refuses_other_settings(capsys, good):
    assert_refused(capsys, ['train', '--out', good, '--resume', '--hidden', 64],
                   '--hidden 64 differs from the checkpoint (32)', good)


def test_resume_refuses_fewer_epochs_than_done(capsys, good):
    assert_refused(capsys, ['train', '--out', good, '--resume', '--epochs', 2],
                   'has done 4 epochs already', good)


def test_resume_refuses_another_text(capsys, good, tmp_path):
    other = write(tmp_path / 'other.txt', 'another book entirely\n' * 200)
    assert_refused(capsys, ['train', '--out', good, '--resume', '--text', other],
                   'is not the text this checkpoint was trained on', good)


def test_resume_needs_a_checkpoint(capsys, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert_refused(capsys, ['train', '--out', empty, '--resume'], 'holds no checkpoint', empty)


def test_train_refuses_a_validation_part_too_short(capsys, good):
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--val-fraction', 0.001],
                   'characters for validation', good)


def test_train_refuses_a_training_part_too_short(capsys, good):
    # The training part is the empty one here: the message must say so.
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--max-tokens', 5,
                            '--val-fraction', 0.9],
                   '0 characters to train on are too few for one minibatch of --batch-size 8 '
                   'x --num-steps 10 (at least 91 are needed)', good)


def test_train_refuses_a_gpu_that_is_not_there(capsys, good):
    if cli.npx.num_gpus() > 0:
        pytest.skip('this machine has a GPU')
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--device', 'gpu'],
                   'MXNet sees no GPU', good)


def test_generate_refuses_a_missing_checkpoint(capsys, tmp_path):
    assert_refused(capsys, ['generate', '--checkpoint', tmp_path / 'nothing', '--prefix', 'a'],
                   'no such directory', tmp_path)


def damage_truncate(directory):
    params = next(directory.glob('params-*.params'))
    params.write_bytes(params.read_bytes()[:100])


def damage_flip_a_byte(directory):
    params = next(directory.glob('params-*.params'))
    data = bytearray(params.read_bytes())
    data[-1] ^= 0xFF
    params.write_bytes(bytes(data))


def damage_manifest(directory):
    manifest = directory / 'manifest.json'
    manifest.write_bytes(manifest.read_bytes()[:40])


def damage_remove_vocab(directory):
    next(directory.glob('vocab-*.json')).unlink()


@pytest.mark.parametrize('damage, message', [
    (damage_truncate, 'has 100 bytes, the manifest says'),
    (damage_flip_a_byte, 'does not match its SHA-256'),
    (damage_manifest, 'manifest.json is unreadable'),
    (damage_remove_vocab, 'cannot be read'),
])
@pytest.mark.parametrize('command', ['generate', 'evaluate', 'resume'])
def test_a_damaged_checkpoint_is_refused(capsys, good, damage, message, command):
    damage(good)
    args = {'generate': ['generate', '--checkpoint', good, '--prefix', 'the'],
            'evaluate': ['evaluate', '--checkpoint', good, '--text', TIME_MACHINE],
            'resume': ['train', '--out', good, '--resume', '--epochs', 8]}[command]
    assert_refused(capsys, args, (f'the checkpoint in {good} is damaged (', message), good)


def rewrite_manifest(directory, change):
    manifest_path = directory / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.write_text(json.dumps(manifest))


def rewrite_role(directory, role, obj):
    """Replace one file of a checkpoint by `obj` as JSON, with a manifest that agrees."""
    data = json.dumps(obj).encode('utf-8')
    entry = ckpt._entry(role, data)
    (directory / entry['name']).write_bytes(data)
    rewrite_manifest(directory, lambda m: m['files'].update({role: entry}))


@pytest.mark.parametrize('role, obj, message', [
    ('vocab', [], 'its vocab file does not hold a vocabulary'),
    ('vocab', {'idx_to_token': 'abc', 'token_freqs': [], 'unk': 0},
     'its vocab file does not hold a vocabulary'),
    ('vocab', {'idx_to_token': ['<unk>', 'a'], 'token_freqs': [], 'unk': 5},
     'its vocab file does not hold a vocabulary'),
    ('progress', [], 'its progress file holds a list, not an object'),
    ('config', 'big', 'its config file holds a str, not an object'),
])
@pytest.mark.parametrize('command', ['generate', 'resume'])
def test_a_consistent_checkpoint_of_the_wrong_structure_is_refused(capsys, good, role, obj,
                                                                   message, command):
    rewrite_role(good, role, obj)
    args = {'generate': ['generate', '--checkpoint', good, '--prefix', 'the'],
            'resume': ['train', '--out', good, '--resume', '--epochs', 8]}[command]
    assert_refused(capsys, args, (f'the checkpoint in {good} is damaged (', message), good)


def test_another_format_version_is_refused(capsys, good):
    rewrite_manifest(good, lambda m: m.update(format_version=2))
    assert_refused(capsys, ['generate', '--checkpoint', good, '--prefix', 'the'],
                   'has format version 2, but this d2lrnn reads version 1', good)


def test_a_model_size_that_does_not_fit_is_refused(capsys, good):
    # A consistent manifest around a config that claims another size than the parameters.
    saved = ckpt.load(good)
    saved.config['num_hiddens'] = 64
    ckpt.save(good, saved)
    assert_refused(capsys, ['generate', '--checkpoint', good, '--prefix', 'the'],
                   'does not fit together: W_xh has shape (28, 32), but 28 tokens and '
                   'num_hiddens=64 need (28, 64)', good)


@pytest.fixture()
def abc_checkpoint(tmp_path):
    """A checkpoint whose vocabulary holds only 'a', 'b', 'c' and the space."""
    vocab = Vocab(tokenize(['abc cab bca'], 'char'))
    shapes = ckpt.param_shapes(len(vocab), 4)
    params = {name: onp.full(shape, 0.1, dtype='float32') for name, shape in shapes.items()}
    config = {**cli.DEFAULTS, 'num_hiddens': 4, 'batch_size': 2, 'num_steps': 3}
    out = tmp_path / 'abc'
    ckpt.save(out, ckpt.Checkpoint(params, vocab, config, {'epoch': 0, 'history': []}))
    return out


def test_resume_refuses_a_checkpoint_not_written_by_train(capsys, abc_checkpoint):
    assert_refused(capsys, ['train', '--out', abc_checkpoint, '--resume'],
                   'cannot be resumed (its config lacks text, text_sha256)', abc_checkpoint)


def test_generate_refuses_characters_outside_the_vocabulary(capsys, abc_checkpoint):
    assert_refused(capsys, ['generate', '--checkpoint', abc_checkpoint, '--prefix', 'A bad zebra'],
                   "the prefix has characters the model never saw: 'derz'; use only ' abc'",
                   abc_checkpoint)


def test_generate_reads_the_prefix_as_the_text_was_read(capsys, abc_checkpoint):
    code, out, err = run_main(capsys, 'generate', '--checkpoint', abc_checkpoint,
                              '--prefix', 'ABC, cab!', '-n', 3, '--device', 'cpu')
    assert code == 0 and err == '' and out.startswith('abc cab ')


@pytest.mark.parametrize('args, message', [
    (['--prefix', '1984!'], "the prefix '1984!' holds no letters"),
    (['--prefix', 'abc', '--seed', 1], '--alpha and --seed choose how to sample'),
])
def test_generate_refuses_bad_requests(capsys, abc_checkpoint, args, message):
    assert_refused(capsys, ['generate', '--checkpoint', abc_checkpoint, *args],
                   message, abc_checkpoint)


@pytest.mark.parametrize('option, value', [('-n', 0), ('--alpha', 0), ('--alpha', 'nan')])
def test_generate_refuses_bad_numbers(capsys, abc_checkpoint, option, value):
    assert_refused(capsys, ['generate', '--checkpoint', abc_checkpoint, '--prefix', 'abc',
                            '--sample', option, value], f'argument {option}: must be',
                   abc_checkpoint, code=2)


def test_evaluate_warns_about_characters_outside_the_vocabulary(capsys, abc_checkpoint, tmp_path):
    text = write(tmp_path / 'text.txt', 'abc cab xyz bca abc\n')
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', abc_checkpoint,
                              '--text', text, '--device', 'cpu')
    assert code == 0 and out.startswith('perplexity ')
    assert err == (f'd2lrnn: warning: {text} has characters the model never saw, '
                   "scored as <unk>: 'xyz'\n")


def test_evaluate_warns_only_about_the_characters_it_scores(capsys, abc_checkpoint, tmp_path):
    text = write(tmp_path / 'text.txt', 'abc cab bca abc xyz\n')
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', abc_checkpoint,
                              '--text', text, '--max-tokens', 15, '--device', 'cpu')
    assert code == 0 and err == '' and out.startswith('perplexity ')
    assert f'on 15 characters of {text}' in out
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', abc_checkpoint,
                              '--text', text, '--max-tokens', 17, '--device', 'cpu')
    assert code == 0 and err.endswith("scored as <unk>: 'x'\n")
    # With --val-fraction, only the held-out tail is scored: 'xyz' at the start is not.
    text = write(tmp_path / 'head.txt', 'xyz abc cab bca abc cab bca abc\n')
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', abc_checkpoint,
                              '--text', text, '--val-fraction', 0.5, '--max-tokens', 'all',
                              '--device', 'cpu')
    assert code == 0 and err == '' and 'on the last 16 of 31 characters' in out


@pytest.mark.parametrize('data, message', [
    (b'\xff\xfe abc', 'is not UTF-8 text'),
    ('abc', '3 characters are too few to score with --num-steps 3'),
])
def test_evaluate_refuses_a_bad_text(capsys, abc_checkpoint, tmp_path, data, message):
    text = write(tmp_path / 'text.txt', data)
    assert_refused(capsys, ['evaluate', '--checkpoint', abc_checkpoint, '--text', text],
                   message, abc_checkpoint)


def test_evaluate_refuses_a_config_without_its_minibatch_shape(capsys, abc_checkpoint, tmp_path):
    saved = ckpt.load(abc_checkpoint)
    del saved.config['batch_size']
    ckpt.save(abc_checkpoint, saved)
    text = write(tmp_path / 'text.txt', 'abc cab bca abc\n')
    assert_refused(capsys, ['evaluate', '--checkpoint', abc_checkpoint, '--text', text],
                   'has no valid batch_size and num_steps in its config', abc_checkpoint)


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
    assert not ckpt.exists(out) and not (out / cli.BEST).exists()


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


@pytest.mark.parametrize('key, value, message', [
    ('lr', float('nan'), 'lr must be a positive number, got nan'),
    ('lr', float('inf'), 'lr must be a positive number, got inf'),
    ('lr', '1', "lr must be a positive number, got '1'"),
    ('batch_size', '32', "batch_size must be a positive integer, got '32'"),
    ('num_hiddens', 32.0, None),  # caught by the shape check
    ('use_random_iter', 'yes', "use_random_iter must be true or false, got 'yes'"),
    ('val_fraction', 1.5, 'val_fraction must be at least 0 and below 1, got 1.5'),
    ('max_tokens', 'all', "max_tokens must be an integer, got 'all'"),
    ('seed', -1, 'seed must be an integer from 0 to 2**32 - 1, got -1'),
    ('num_epochs', True, 'num_epochs must be a positive integer, got True'),
])
def test_a_resumed_config_with_a_bad_value_is_refused_in_one_line(capsys, good, key, value,
                                                                  message):
    saved = ckpt.load(good)
    saved.config[key] = value
    ckpt.save(good, saved)
    if message is None:
        message = 'config has no valid num_hiddens'
    else:
        message = f'cannot be resumed (its config is not valid: {message})'
    assert_refused(capsys, ['train', '--out', good, '--resume', '--epochs', 8], message, good)


@pytest.mark.parametrize('change, message', [
    (lambda p: p.update(history=[1, 2, 3, 4]), 'its progress is incomplete'),
    (lambda p: p.update(epoch='4'), 'its progress is incomplete'),
    (lambda p: p.update(python_random=[3, [2 ** 40] * 625, None]),
     'holds no valid random state'),
    (lambda p: p.update(python_random=[3, 'abc', None]), 'holds no valid random state'),
    (lambda p: p.update(python_random=None), 'holds no valid random state'),
])
def test_a_resumed_progress_with_bad_values_is_refused_in_one_line(capsys, good, change,
                                                                   message):
    saved = ckpt.load(good)
    change(saved.progress)
    ckpt.save(good, saved)
    assert_refused(capsys, ['train', '--out', good, '--resume', '--epochs', 8], message, good)


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


# ---------------------------------------------------------------- one line, and only where it belongs

@pytest.mark.parametrize('value', ['1e-310', '1e39', 'nan'])
def test_a_learning_rate_float32_cannot_hold_is_refused(capsys, good, value):
    """1e-310 used to reach MXNet, whose refusal came with its traceback."""
    assert_refused(capsys, ['train', '--out', good, '--force', '--lr', value],
                   'argument --lr: must be a positive number from 1.2e-38 to 3.4e+38', good,
                   code=2)


@pytest.mark.parametrize('hidden, message', [
    (100000, 'more than MXNet\'s limit of 2,147,483,647 per array; choose at most 46340'),
    (46000, 'GB of memory here; choose fewer hidden units'),
])
def test_a_model_too_large_is_refused_saying_how_large(capsys, good, hidden, message):
    if hidden == 46000 and cli.physical_memory() > 4 * 4 * 46000 ** 2:
        pytest.skip('this machine could hold it')
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--hidden', hidden],
                   message, good)


def test_an_mxnet_error_is_one_line(capsys, good, monkeypatch):
    def fail(*args, **kwargs):
        raise cli.mx.base.MXNetError('Traceback (most recent call last):\n'
                                     '  File "../src/x.cc", line 1\n'
                                     'MXNetError: something broke')
    monkeypatch.setattr(cli, 'make_model', fail)
    code, out, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', good, '--force')
    assert code == 1 and err == 'd2lrnn: error: MXNet failed: something broke\n'


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


def test_a_lock_that_is_a_symlink_is_not_followed(capsys, tmp_path):
    out, outside = tmp_path / 'run', tmp_path / 'elsewhere' / 'lock'
    out.mkdir()
    outside.parent.mkdir()
    (out / cli.LOCK).symlink_to(outside)
    code, _, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', out)
    assert code == 1 and f'{out / cli.LOCK} cannot be opened' in err
    assert not outside.exists() and not ckpt.exists(out)


@pytest.mark.parametrize('command', ['generate', 'evaluate'])
def test_a_checkpoint_that_is_a_file_is_called_a_file(capsys, tmp_path, command):
    file = write(tmp_path / 'model.params', 'x')
    args = {'generate': ['generate', '--checkpoint', file, '--prefix', 'the'],
            'evaluate': ['evaluate', '--checkpoint', file, '--text', TIME_MACHINE]}[command]
    code, _, err = run_main(capsys, *args)
    assert code == 1 and f'{file} is a file, not a checkpoint directory' in err


@pytest.mark.parametrize('command', ['generate', 'resume'])
def test_a_manifest_linked_to_an_endless_device_is_refused_at_once(capsys, good, command):
    (good / 'manifest.json').unlink()
    (good / 'manifest.json').symlink_to('/dev/zero')
    args = {'generate': ['generate', '--checkpoint', good, '--prefix', 'the'],
            'resume': ['train', '--out', good, '--resume', '--epochs', 8]}[command]
    started = time.monotonic()
    assert_refused(capsys, args, 'manifest.json is not a regular file', good)
    assert time.monotonic() - started < 10


def fail_writing_params_at(epochs, monkeypatch):
    """npx.save fails (as on a full disk) when saving one of `epochs`."""
    real, calls = ckpt.npx.save, []

    def save(path, arrays):
        calls.append(path)
        if len(calls) in epochs:
            raise cli.mx.base.MXNetError('Traceback (most recent call last):\n'
                                         'MXNetError: Check failed: No space left on device')
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


# ---------------------------------------------------------------- memory: counts, not lists

@pytest.mark.parametrize('chunk', [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize('max_tokens', [-1, 1, 50, 2000])
def test_scanning_in_chunks_reads_as_the_whole_text_is_read(tmp_path, monkeypatch, chunk,
                                                            max_tokens):
    text = write(tmp_path / 't.txt', 'The Time\r\nMachine, by H. G. Wells\rend\n\n'
                 'caf\u00e9 na\u00efve \u2014 r\u00e9sum\u00e9 \u212a\u0130x \u2028y\x0c\r\n' * 40 + 'last line')
    monkeypatch.setattr(cli, 'CHUNK_BYTES', chunk)
    lines, sha256 = cli.load_text(text)
    scanned = cli.scan_text(text, max_tokens)
    assert scanned.sha256 == sha256
    assert scanned.counts == collections.Counter(''.join(lines))
    whole = ''.join(lines)
    assert scanned.chars == (whole[:max_tokens] if max_tokens > 0 else whole)
    (ids, vocab), (expected, expected_vocab) = (cli.training_corpus(scanned, max_tokens),
                                                cli.training_corpus(lines, max_tokens))
    assert ids == expected and vocab.token_freqs == expected_vocab.token_freqs
    assert vocab.idx_to_token == expected_vocab.idx_to_token


def test_scanning_the_time_machine_gives_the_books_corpus():
    corpus, vocab = cli.training_corpus(cli.scan_text(None, 10000), 10000)
    expected, expected_vocab = load_corpus_time_machine(10000)
    assert corpus == expected and vocab.idx_to_token == expected_vocab.idx_to_token
    assert vocab.token_freqs == expected_vocab.token_freqs


@pytest.mark.parametrize('chunk', [1, 4, 1 << 20])
def test_scanning_names_the_first_byte_that_is_not_utf8(tmp_path, monkeypatch, chunk):
    text = write(tmp_path / 'bad.txt', 'caf\u00e9 ok '.encode() + b'x\xe9y')
    monkeypatch.setattr(cli, 'CHUNK_BYTES', chunk)
    with pytest.raises(cli.CLIError, match=r'is not UTF-8 text \(byte 10 is 0xe9\)'):
        cli.scan_text(text, -1)

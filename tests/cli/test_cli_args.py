"""d2lrnn train refuses bad options and bad resumed settings in one line, before it writes
anything: numbers out of range, conflicting flags, a model or a text too large."""
import subprocess
import sys
from pathlib import Path

import pytest
from mxnet import npx

from cli_helpers import ENV, TINY, assert_refused, run_main, snapshot_bytes, write
from d2lrnn import checkpoint as ckpt
from d2lrnn import pretrained
from d2lrnn.cli import config


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


@pytest.mark.parametrize('option, value', [
    ('--hidden', 0), ('--lr', -1), ('--lr', 'inf'), ('--epochs', 0), ('--batch-size', -5),
    ('--num-steps', 'two'), ('--max-tokens', 0), ('--checkpoint-every', 0),
    ('--val-fraction', 1), ('--seed', -1)])
def test_train_refuses_bad_numbers(capsys, good, option, value):
    assert_refused(capsys, ['train', '--out', good, '--force', option, value],
                   f'argument {option}: must be', good, code=2)


@pytest.mark.parametrize('value', ['1e-310', '1e39', 'nan'])
def test_a_learning_rate_float32_cannot_hold_is_refused(capsys, good, value):
    """1e-310 used to reach MXNet, whose refusal came with its traceback."""
    assert_refused(capsys, ['train', '--out', good, '--force', '--lr', value],
                   'argument --lr: must be a positive number from 1.2e-38 to 3.4e+38', good,
                   code=2)


def test_train_refuses_to_overwrite_a_checkpoint(capsys, good):
    assert_refused(capsys, ['train', *TINY, '--out', good],
                   'already holds a checkpoint; continue it with --resume, or replace it '
                   'with --force', good)


def test_train_refuses_resume_and_force_together(capsys, good):
    assert_refused(capsys, ['train', '--out', good, '--resume', '--force'],
                   '--resume continues', good)


def test_train_refuses_a_validation_part_too_short(capsys, good):
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--val-fraction', 0.001],
                   'characters for validation', good)


def test_train_refuses_a_training_part_too_short(capsys, good):
    # The training part is the empty one here: the message must say so.
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--max-tokens', 5,
                            '--val-fraction', 0.9],
                   '0 characters to train on are too few for one minibatch of --batch-size 8 '
                   'x --num-steps 10 (at least 91 are needed)', good)


def test_train_refuses_a_gpu_that_is_not_there(capsys, good, monkeypatch):
    from d2lrnn.cli import commands
    monkeypatch.setattr(commands.npx, 'num_gpus', lambda: 0)  # any machine
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--device', 'gpu'],
                   'MXNet sees no GPU', good)


@pytest.fixture
def broken_gpu(monkeypatch):
    """One GPU that MXNet counts but that cannot run its kernels (a Hopper GPU
    under MXNet 1.9.1's CUDA wheels)."""
    from mxnet.base import MXNetError

    from d2lrnn import utils

    def fail(ctx):
        raise MXNetError('CUDA: no kernel image is available for execution on the device')
    monkeypatch.setattr(utils.npx, 'num_gpus', lambda: 1)
    monkeypatch.setattr(utils, '_run_one_operation', fail)
    utils._working_gpu.cache_clear()
    yield
    utils._working_gpu.cache_clear()


def test_device_auto_falls_back_from_a_gpu_that_cannot_run_mxnet(capsys, broken_gpu):
    from d2lrnn.cli.commands import choose_ctx
    assert choose_ctx('auto') == npx.cpu()
    err = capsys.readouterr().err
    assert 'cannot run MXNet: CUDA: no kernel image is available' in err
    assert 'using the CPU instead' in err


def test_device_gpu_refuses_a_gpu_that_cannot_run_mxnet(capsys, good, broken_gpu):
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--device', 'gpu'],
                   '--device gpu, but gpu(0) cannot run MXNet: CUDA: no kernel image is available '
                   'for execution on the device; use --device cpu.', good)


# ---------------------------------------------------------------- resume

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


def test_resume_refuses_a_checkpoint_not_written_by_train(capsys, abc_checkpoint):
    assert_refused(capsys, ['train', '--out', abc_checkpoint, '--resume'],
                   'cannot be resumed (its config lacks text, text_sha256)', abc_checkpoint)


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


# ---------------------------------------------------------------- too large

@pytest.mark.parametrize('hidden, message', [
    (100000, 'more than MXNet\'s limit of 2,147,483,647 per array; choose at most 46340'),
    (46000, 'more than the 4 GiB MXNet 1.9 can load again; choose at most about'),
    (32000, 'GB of memory here; choose fewer hidden units'),
])
def test_a_model_too_large_is_refused_saying_how_large(capsys, good, monkeypatch, hidden,
                                                       message):
    # A machine of 16 GB, whatever this one has: 32,000 hidden units need 16.4 GB (a
    # checkpoint of 3.8 GiB, which MXNet can load again; 46,000 units make 7.9 GiB).
    monkeypatch.setattr(config, 'physical_memory', lambda: 16 * 10 ** 9)
    assert_refused(capsys, ['train', *TINY, '--out', good, '--force', '--hidden', hidden],
                   message, good)


def test_a_text_too_large_for_memory_is_refused_before_training(capsys, good, monkeypatch):
    """--max-tokens all keeps the whole text; training needs TRAIN_BYTES_PER_CHAR per character."""
    # The 171,489 characters of The Time Machine need a few MB; say 5 MB are available.
    monkeypatch.setattr(config, 'available_memory', lambda: 5 * 10 ** 6)
    assert_refused(capsys, ['train', '--out', good, '--force', '--max-tokens', 'all'],
                   '--max-tokens all keeps 171,489 characters of The Time Machine; training '
                   f'on them needs about {171489 * config.TRAIN_BYTES_PER_CHAR / 1e6:.0f} MB '
                   f'({config.TRAIN_BYTES_PER_CHAR} bytes per character), more than the 5 MB '
                   'of memory available here; give a smaller --max-tokens.', good)
    # With enough memory the check lets it through (here to the next refusal).
    monkeypatch.setattr(config, 'available_memory',
                        lambda: 171489 * config.TRAIN_BYTES_PER_CHAR)
    assert_refused(capsys, ['train', '--out', good, '--force', '--max-tokens', 'all',
                            '--val-fraction', 0.00001], 'characters for validation', good)


def test_available_memory_is_what_the_kernel_and_a_cgroup_leave(tmp_path, monkeypatch):
    from d2lrnn import memory
    meminfo = write(tmp_path / 'meminfo', 'MemTotal: 8000 kB\nMemAvailable:    4000 kB\n')
    monkeypatch.setattr(memory, 'MEMINFO', meminfo)
    monkeypatch.setattr(memory, 'CGROUP', tmp_path / 'no-cgroup')
    assert memory.available_memory() == 4000 * 1024
    cgroup = tmp_path / 'cgroup'
    cgroup.mkdir()
    write(cgroup / 'memory.max', 'max\n')
    write(cgroup / 'memory.current', '1000\n')
    monkeypatch.setattr(memory, 'CGROUP', cgroup)
    assert memory.available_memory() == 4000 * 1024
    write(cgroup / 'memory.max', f'{3000 * 1024}\n')  # a container's limit, less than free
    assert memory.available_memory() == 3000 * 1024 - 1000
    monkeypatch.setattr(memory, 'MEMINFO', tmp_path / 'none')
    assert memory.available_memory() == 3000 * 1024 - 1000
    monkeypatch.setattr(memory, 'CGROUP', tmp_path / 'no-cgroup')
    assert memory.available_memory() is None


def test_an_mxnet_error_is_one_line(capsys, good, monkeypatch):
    def fail(*args, **kwargs):
        raise ckpt.mx.base.MXNetError('Traceback (most recent call last):\n'
                                      '  File "../src/x.cc", line 1\n'
                                      'MXNetError: something broke')
    monkeypatch.setattr(pretrained, 'new_model', fail)
    code, out, err = run_main(capsys, 'train', *TINY, '--epochs', 1, '--out', good, '--force')
    assert code == 1 and err == 'd2lrnn: error: MXNet failed: something broke\n'

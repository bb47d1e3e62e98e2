"""generate, evaluate and train --resume refuse a missing, damaged or foreign checkpoint
in one line, and leave it as it was."""
import json
import time

import pytest

from cli_helpers import assert_refused, run_main, write
from d2lrnn import checkpoint as ckpt
from d2lrnn.data import TIME_MACHINE


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

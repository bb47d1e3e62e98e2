"""d2lrnn generate and evaluate: the same text and the same numbers as the package computes
in Python, and one-line refusals of what they cannot use."""
import re

import numpy as onp
import pytest
from mxnet import npx

from cli_helpers import assert_refused, d2lrnn, run_main, write
from d2lrnn import checkpoint as ckpt
from d2lrnn import pretrained
from d2lrnn.cli.commands import WithoutUnk, evaluate_max_tokens, scored_part
from d2lrnn.cli.config import split_for_validation
from d2lrnn.cli.parser import build_parser
from d2lrnn.cli.run import BEST
from d2lrnn.data import TIME_MACHINE, load_corpus_time_machine
from d2lrnn.evaluate import evaluate_perplexity, seq_data_iter_eval, split_train_valid_test
from d2lrnn.predict import predict_ch8
from d2lrnn.textfile import TextReader, scan_text


# ---------------------------------------------------------------- generate

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
    ctx = npx.cpu()
    model = WithoutUnk(pretrained.to_model(saved, ctx), len(saved.vocab), saved.vocab.unk, ctx)
    expected = predict_ch8('the ', 40, model, saved.vocab, ctx,
                           sample=True, alpha=0.5, seed=7)
    assert result.stdout == expected + '\n'
    # A flat distribution (alpha 0.5) still never draws <unk>, which training never saw.
    assert len(expected) == len('the ') + 40 and '<unk>' not in expected


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


@pytest.mark.parametrize('option, value', [('-n', 0), ('-n', 10 ** 12), ('--alpha', 0),
                                           ('--alpha', 'nan')])
def test_generate_refuses_bad_numbers(capsys, abc_checkpoint, option, value):
    assert_refused(capsys, ['generate', '--checkpoint', abc_checkpoint, '--prefix', 'abc',
                            '--sample', option, value], f'argument {option}: must be',
                   abc_checkpoint, code=2)


# ---------------------------------------------------------------- evaluate

def test_evaluate_scores_a_text_deterministically(trained):
    out, _ = trained
    result = d2lrnn('evaluate', '--checkpoint', out, '--text', TIME_MACHINE,
                    '--max-tokens', 3000, '--device', 'cpu')
    assert result.returncode == 0 and result.stderr == ''
    match = re.fullmatch(r'perplexity ([\d.]+), [\d.]+ bits per character, on 3000 '
                         r'characters of .*\n', result.stdout)
    # The same number computed here, from the checkpoint, the section's way.
    saved = ckpt.load(out)
    model = pretrained.to_model(saved, npx.cpu())
    corpus, vocab = load_corpus_time_machine(3000)
    assert vocab.idx_to_token == saved.vocab.idx_to_token
    ppl = evaluate_perplexity(model, seq_data_iter_eval(corpus, 8, 10), npx.cpu())
    assert match.group(1) == f'{ppl:.2f}'


@pytest.mark.parametrize('which', ['best', 'last'])
def test_evaluate_val_fraction_scores_what_training_held_out(capsys, unstable, which):
    """evaluate --val-fraction F on the training text gives training's validation perplexity.

    Both cut the same characters (config.holdout_split) and score them the same way
    (from the first character, the state carried along).
    """
    directory = unstable / BEST if which == 'best' else unstable
    saved = ckpt.load(directory)
    expected = saved.progress['history'][-1]['val_perplexity']
    code, out, err = run_main(capsys, 'evaluate', '--checkpoint', directory, '--text',
                              TIME_MACHINE, '--val-fraction', 0.2, '--device', 'cpu')
    assert code == 0 and err == ''
    match = re.fullmatch(r'perplexity ([\d.]+), ([\d.]+) bits per character, on the last '
                         r'400 of 2000 characters of .*\n', out)
    assert match.group(1) == f'{expected:.2f}'
    assert match.group(2) == f'{onp.log2(expected):.2f}'


def test_evaluate_val_fraction_cuts_as_training_cut(unstable):
    """The cut itself: the ids evaluate scores are training's validation ids."""
    saved = ckpt.load(unstable)
    text = scan_text(None, saved.config['max_tokens'])
    _, valid = split_for_validation(text.ids(text.vocab()), saved.config)
    args = build_parser().parse_args(
        ['evaluate', '--checkpoint', str(unstable), '--text', str(TIME_MACHINE),
         '--val-fraction', '0.2'])
    text = scan_text(args.text, evaluate_max_tokens(args, saved.config), keep=False)
    scored, _ = scored_part(text.length, args)
    with TextReader(text) as reader:
        ids = reader.ids(saved.vocab)(scored.start, scored.stop)
        assert onp.concatenate(list(ids)).tolist() == valid


def python_perplexity(directory, corpus):
    """The perplexity of a checkpoint on ids, computed here the section's way."""
    saved = ckpt.load(directory)
    steps = saved.config['num_steps']
    batch_size = min(saved.config['batch_size'], (len(corpus) - 1) // steps)
    model = pretrained.to_model(saved, npx.cpu())
    return evaluate_perplexity(model, seq_data_iter_eval(corpus, batch_size, steps),
                               npx.cpu())


@pytest.mark.parametrize('split', ['valid', 'test'])
def test_evaluate_split_scores_that_part_of_the_three_way_split(capsys, trained, split):
    """--split: the part of split_train_valid_test, scored as evaluate_perplexity scores it."""
    out, _ = trained
    code, stdout, err = run_main(capsys, 'evaluate', '--checkpoint', out, '--text',
                                 TIME_MACHINE, '--max-tokens', 3000, '--split', split,
                                 '--device', 'cpu')
    assert code == 0 and err == ''
    match = re.fullmatch(rf'perplexity ([\d.]+), ([\d.]+) bits per character, on the {split} '
                         r'part \(300 of 3000 characters\) of .*\n', stdout)
    corpus, _ = load_corpus_time_machine(3000)
    _, valid, test = split_train_valid_test(corpus)
    ppl = python_perplexity(out, valid if split == 'valid' else test)
    assert match.group(1) == f'{ppl:.2f}'
    assert match.group(2) == f'{onp.log2(ppl):.2f}'


def test_evaluate_split_test_of_the_whole_book_is_its_last_tenth(capsys, trained):
    """Without --max-tokens, --split test is the last tenth of the whole text."""
    out, _ = trained
    code, stdout, _ = run_main(capsys, 'evaluate', '--checkpoint', out, '--text', TIME_MACHINE,
                               '--split', 'test', '--device', 'cpu')
    whole = run_main(capsys, 'evaluate', '--checkpoint', out, '--text', TIME_MACHINE,
                     '--val-fraction', 0.1, '--max-tokens', 'all', '--device', 'cpu')[1]
    assert code == 0 and 'on the test part (17149 of 171489 characters)' in stdout
    assert stdout.split(' on ')[0] == whole.split(' on ')[0]


@pytest.mark.parametrize('args, message', [
    (['--split', 'test', '--val-fraction', 0.1], '--split and --val-fraction both choose'),
    (['--split', 'valid', '--max-tokens', 5],
     '5 characters are too few to split into training, validation and test parts'),
])
def test_evaluate_refuses_a_split_it_cannot_make(capsys, abc_checkpoint, args, message):
    assert_refused(capsys, ['evaluate', '--checkpoint', abc_checkpoint, '--text', TIME_MACHINE,
                            *args], message, abc_checkpoint)


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

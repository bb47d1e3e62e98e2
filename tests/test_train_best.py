"""experiments/train_best.py on a tiny configuration, its committed results,
and the model the package ships."""
import json
import math

import pytest
from mxnet import npx

from d2lrnn import checkpoint as ckpt
from d2lrnn import cli, pretrained, results
from d2lrnn.data import TIME_MACHINE
from experiments import common, train_best

CTX = npx.cpu()


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('best')
    out, directory = tmp / 'best.json', tmp / 'ckpt'
    result = train_best.main(['--tiny', '--quiet', '--seeds', '0', '1',
                              '--out', str(out), '--checkpoint', str(directory)])
    return result, out, directory


def check_protocol(result):
    """Every choice made on validation, every final model read once on test."""
    for run in result['runs']:
        epochs = len(run['valid_ppl'])
        best = min(range(epochs), key=lambda i: run['valid_ppl'][i])
        assert run['best_epoch'] == best + 1
        assert run['best_valid_ppl'] == run['valid_ppl'][best]
        assert run['test_ppl'] > 1 and run['wotw_ppl'] > 1
        assert run['test_bpc'] == pytest.approx(math.log2(run['test_ppl']))
    shipped = result['shipped']
    chosen = min(result['runs'], key=lambda r: r['best_valid_ppl'])
    assert shipped['chosen_on'] == 'validation'
    assert (shipped['seed'], shipped['epoch'], shipped['test_ppl']) == (
        chosen['seed'], chosen['best_epoch'], chosen['test_ppl'])
    counts = result['counts']
    by_order = counts['valid_ppl_by_order']
    assert counts['valid_ppl'] == min(by_order.values())
    assert by_order[str(counts['order'])] == counts['valid_ppl']
    assert counts['train_tokens'] == result['texts']['train_tokens']
    mix = result['mixture']
    by_weight = mix['valid_ppl_by_weight']
    assert mix['valid_ppl'] == min(by_weight.values())
    assert by_weight[str(mix['rnn_weight'])] == mix['valid_ppl']
    assert mix['order'] == counts['order']
    # the mixture's ends are the two models alone, on the RNN's tokens
    assert mix['test_rnn_alone_ppl'] == pytest.approx(shipped['test_ppl'],
                                                      rel=1e-4)
    assert 'test_ppl_by_weight' not in mix


@pytest.mark.slow
def test_tiny_run_chooses_on_validation_and_reads_test_once(tiny_run):
    result, out, _ = tiny_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    epochs = result['settings']['num_epochs']
    assert [r['seed'] for r in result['runs']] == [0, 1]
    for run in result['runs']:
        assert run['epoch'] == list(range(1, epochs + 1))
        assert len(run['train_ppl']) == epochs
    check_protocol(result)
    texts = result['texts']
    assert (texts['train_tokens'], texts['valid_tokens'], texts['test_tokens']) == (
        common.TINY_TOKENS, common.TINY_HELDOUT, common.TINY_HELDOUT)
    assert result['summary']['test_ppl']['n'] == 2
    assert result['machine']['cpu_model'] == results.cpu_model()


@pytest.mark.slow
def test_the_checkpoint_holds_the_shipped_epoch_and_the_cli_reads_it(
        tiny_run, capsys):
    result, _, directory = tiny_run
    shipped = result['shipped']
    checkpoint = ckpt.load(directory)
    assert checkpoint.progress['epoch'] == shipped['epoch']
    assert checkpoint.config['seed'] == shipped['seed']
    assert checkpoint.config['num_hiddens'] == result['settings']['num_hiddens']
    # its parameters score the kept epoch's figures on validation and test
    # read as `d2lrnn evaluate` reads it: the checkpoint's rows and steps
    ev = (checkpoint.config['batch_size'], checkpoint.config['num_steps'])
    assert ev == (result['eval_batch_size'], result['eval_num_steps'])
    texts = common.load_texts(tiny=True)
    model = pretrained.to_model(checkpoint, CTX)
    for part, key in ((texts.valid, 'valid_ppl'), (texts.test, 'test_ppl')):
        assert common.score(model, part, CTX, ev) == pytest.approx(
            shipped[key], rel=1e-6)
    assert cli.main(['generate', '--checkpoint', str(directory), '--prefix',
                     'time traveller', '-n', '20', '--device', 'cpu']) == 0
    assert capsys.readouterr().out.startswith('time traveller')
    assert cli.main(['evaluate', '--checkpoint', str(directory), '--text',
                     str(TIME_MACHINE), '--max-tokens', '2000',
                     '--device', 'cpu']) == 0
    assert 'perplexity' in capsys.readouterr().out
    # an Adam recipe cannot be resumed by `d2lrnn train` (plain SGD)
    assert cli.main(['train', '--out', str(directory), '--resume']) == 1
    assert 'cannot be resumed' in capsys.readouterr().err


def test_tuning_rows_are_kept_by_the_run_that_follows(tmp_path):
    out = tmp_path / 'best.json'
    tiny = ['--tiny', '--quiet', '--out', str(out), '--num-epochs', '2']
    tuned = train_best.main(tiny + ['--tune'])
    rows = {r['name']: r for r in tuned['tuning']}
    assert set(rows) == set(train_best.TINY_TUNING)
    for name, row in rows.items():
        assert row['changed'] == train_best.TINY_TUNING[name]
        assert row['best_valid_ppl'] == min(row['valid_ppl'])
        assert row['epoch'][row['best_epoch'] - 1] == row['best_epoch']
        assert row['minutes'] > 0 and isinstance(row['native'], bool)
    # one row again: replaced, the other kept
    again = train_best.main(tiny + ['--tune', 'tiny recipe', '--lr', '0.02'])
    assert [r['name'] for r in again['tuning']] == ['tiny lr 3e-2', 'tiny recipe']
    assert again['tuning'][1]['settings']['lr'] == 0.02
    kept = train_best.main(tiny + ['--seeds', '0', '--no-counts'])
    assert kept['tuning'] == again['tuning'] and 'counts' not in kept


def test_an_unknown_tuning_row_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_best.main(['--tune', 'nonsense', '--out', str(tmp_path / 'x.json')])
    assert "unknown tuning rows ['nonsense']" in capsys.readouterr().err


# The committed results and the shipped model ------------------------------

@pytest.fixture(scope='module')
def committed():
    return results.load('best_rnn.json')


def test_the_committed_results_follow_the_protocol(committed):
    assert committed['settings'] == common.RECIPE
    assert len(committed['runs']) >= 3
    assert all(len(r['epoch']) == common.RECIPE['num_epochs']
               for r in committed['runs'])
    check_protocol(committed)
    full = common.load_texts()
    assert committed['texts'] == common.describe(full)
    # every tuning row is its change from the start, and the recipe is the
    # row with the best validation perplexity
    rows = committed['tuning']
    assert committed['tuning_protocol'] == train_best.TUNING_PROTOCOL
    assert [r['name'] for r in rows] == list(train_best.TUNING)
    for row in rows:
        assert row['settings'] == dict(common.START, **train_best.TUNING[row['name']])
        assert row['best_valid_ppl'] == min(row['valid_ppl'])
        assert row['minutes'] > 0 and row['seed'] == 0
    best = min(rows, key=lambda r: r['best_valid_ppl'])
    assert best['settings'] == common.RECIPE
    # the recipe's seed 0 trains as that row's run, on the same path, to the
    # bit (the row is read like every row, the seeds as their checkpoint)
    seed0 = next(r for r in committed['runs'] if r['seed'] == 0)
    assert seed0['native'] == best['native']
    assert seed0['train_ppl'] == best['train_ppl']
    assert (committed['eval_batch_size'], committed['eval_num_steps']) == (
        common.reading(common.RECIPE))


def test_the_shipped_model_scores_its_test_figure():
    """The model the package ships (``pretrained.load_model()``), read as
    ``d2lrnn evaluate`` reads the test part, scores what the results say."""
    committed = results.load('best_rnn.json')
    model, vocab = pretrained.load_model()
    texts = common.load_texts()
    assert vocab.idx_to_token == texts.vocab.idx_to_token
    shipped = committed['shipped']
    assert shipped['checkpoint'] == 'd2lrnn/models/time-machine-best'
    ev = (committed['eval_batch_size'], committed['eval_num_steps'])
    for part, key in ((texts.test, 'test_ppl'), (texts.valid, 'valid_ppl')):
        ppl = common.score(model, part, CTX, ev)
        assert abs(ppl - shipped[key]) < 1e-3, key
    checkpoint = ckpt.load(ckpt.SHIPPED_MODEL)
    assert checkpoint.progress['epoch'] == shipped['epoch']
    assert (checkpoint.config['batch_size'], checkpoint.config['num_steps']) == ev


def test_d2lrnn_evaluate_prints_the_shipped_test_figure(capsys):
    """The last tenth of the book, which ``--val-fraction 0.1`` scores, is
    the test part."""
    shipped = results.load('best_rnn.json')['shipped']
    assert cli.main(['evaluate', '--checkpoint', str(ckpt.SHIPPED_MODEL),
                     '--text', str(TIME_MACHINE), '--val-fraction', '0.1',
                     '--device', 'cpu']) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"perplexity {shipped['test_ppl']:.2f}, "
                          f"{shipped['test_bpc']:.2f} bits per character")

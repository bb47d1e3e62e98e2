"""experiments/train_best.py on a tiny configuration, and the checkpoint it ships."""
import json
import math
from pathlib import Path

import pytest
from mxnet import npx

import d2lrnn
from d2lrnn import checkpoint as ckpt
from d2lrnn import cli
from d2lrnn.data import TIME_MACHINE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'experiments' / 'results' / 'best_rnn.json'
SHIPPED = ROOT / 'd2lrnn' / 'models' / 'time-machine-best'
CTX = npx.cpu()


@pytest.fixture(scope='module')
def train_best(bench_script):
    """The script's main, from a freshly loaded module at every call."""
    return lambda argv: bench_script('train_best').main(argv)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, train_best):
    tmp = tmp_path_factory.mktemp('best')
    out, directory = tmp / 'best.json', tmp / 'ckpt'
    result = train_best(['--tiny', '--quiet', '--seeds', '0', '1',
                         '--out', str(out), '--checkpoint', str(directory)])
    return result, out, directory


@pytest.mark.slow
def test_tiny_run_records_every_epoch_of_every_seed(tiny_run):
    result, out, _ = tiny_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    epochs = result['settings']['num_epochs']
    assert [r['seed'] for r in result['runs']] == [0, 1]
    for run in result['runs']:
        assert run['epoch'] == list(range(1, epochs + 1))
        assert len(run['valid_ppl']) == len(run['train_ppl']) == epochs
        best = min(range(epochs), key=lambda i: run['valid_ppl'][i])
        assert run['best_epoch'] == best + 1
        assert run['best_valid_bpc'] == pytest.approx(
            math.log2(run['best_valid_ppl']))
    summary = result['summary']['valid_ppl']
    assert summary['n'] == 2 and summary['min'] <= summary['mean']
    kn = result['baselines']['best_kneser_ney']
    assert kn['valid_ppl'] == min(
        row['valid_ppl']
        for row in result['baselines']['ngram']['kneser-ney'].values())
    assert 0 <= result['mixture']['rnn_weight'] <= 1


@pytest.mark.slow
def test_the_checkpoint_holds_the_best_epoch_and_the_cli_reads_it(
        tiny_run, capsys, bench_script):
    result, _, directory = tiny_run
    shipped = result['shipped']
    best = min(result['runs'], key=lambda r: r['best_valid_ppl'])
    assert shipped['seed'] == best['seed']
    assert shipped['epoch'] == best['best_epoch']
    checkpoint = ckpt.load(directory)
    assert checkpoint.progress['epoch'] == shipped['epoch']
    settings = result['settings']
    assert checkpoint.config['num_hiddens'] == settings['num_hiddens']
    # its parameters score the kept epoch's perplexity on the held-out text
    script = bench_script('train_best')
    _, valid, _, _ = script.load_texts(tiny=True)
    model = ckpt.to_model(checkpoint, CTX)
    assert script.score(model, valid, CTX, script.TINY_EVAL) == pytest.approx(
        shipped['valid_ppl'], rel=1e-6)
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


@pytest.mark.skipif(not RESULTS.exists(), reason='no committed results yet')
def test_the_shipped_checkpoint_scores_what_the_results_say():
    result = json.loads(RESULTS.read_text())
    checkpoint = ckpt.load(SHIPPED)
    assert checkpoint.progress['epoch'] == result['shipped']['epoch']
    corpus, vocab = d2lrnn.load_corpus_time_machine()
    assert checkpoint.vocab.idx_to_token == vocab.idx_to_token
    _, valid = d2lrnn.split_corpus(corpus, result['train_fraction'])
    model = ckpt.to_model(checkpoint, CTX)
    ppl = d2lrnn.evaluate_perplexity(model, d2lrnn.seq_data_iter_eval(
        valid, result['eval_batch_size'], result['eval_num_steps']), CTX)
    assert ppl == pytest.approx(result['shipped']['valid_ppl'], rel=1e-5)
    kn = result['baselines']['best_kneser_ney']['valid_ppl']
    assert result['summary']['valid_ppl']['n'] >= 3
    assert all(r['best_valid_ppl'] > 1 for r in result['runs']) and kn > 1


def test_a_rerun_keeps_the_tuning_runs_of_the_file_it_replaces(tmp_path, train_best):
    out = tmp_path / 'best.json'
    out.write_text(json.dumps({'sweep': [{'name': 'earlier', 'note': 'kept'}]}))
    args = ['--tiny', '--quiet', '--seeds', '0', '--no-baselines', '--out', str(out)]
    args[args.index('--tiny') + 1:args.index('--tiny') + 1] = ['--num-epochs', '1']
    assert train_best(args)['sweep'] == [{'name': 'earlier', 'note': 'kept'}]
    log = tmp_path / 'log.json'
    log.write_text(json.dumps([{'name': 'given'}]))
    assert train_best(args + ['--sweep-log', str(log)])['sweep'] == [{'name': 'given'}]

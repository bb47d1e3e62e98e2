"""Models from checkpoints: the shipped model, by the call the README documents."""
import os
import subprocess
import sys

from mxnet import npx

import d2lrnn
from d2lrnn import checkpoint as ckpt
from d2lrnn.data import load_corpus_time_machine
from d2lrnn.evaluate import seq_data_iter_eval


def test_the_documented_call_works_right_after_importing_d2lrnn(native_library):
    """`import d2lrnn; d2lrnn.load_model()`, in a fresh process (here other tests
    may have imported d2lrnn.pretrained already)."""
    code = ('import d2lrnn; model, vocab = d2lrnn.load_model(); '
            'print(type(model).__name__, len(vocab), d2lrnn.load_model is '
            'd2lrnn.pretrained.load_model)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'FastRNNScratch 28 True\n'


def test_the_shipped_model_holds_the_checkpoints_parameters(native_library):
    model, vocab = d2lrnn.load_model()
    saved = ckpt.load(ckpt.SHIPPED_MODEL)
    assert vocab.idx_to_token == saved.vocab.idx_to_token
    for param, name in zip(model.params, ckpt.PARAM_NAMES):
        assert (param.asnumpy() == saved.params[name]).all(), name
    # and it predicts as the book says a trained model does: far better than uniform
    corpus, _ = load_corpus_time_machine(2000)
    ppl = d2lrnn.evaluate_perplexity(model, seq_data_iter_eval(corpus, 4, 35), npx.cpu())
    assert ppl < 10 < len(vocab)

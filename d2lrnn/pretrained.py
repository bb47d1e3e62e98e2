"""Models from checkpoints: the shipped model, or any `d2lrnn train` run
(book/command-line.ipynb).

``checkpoint`` reads and writes the files; this module builds the model
they hold::

    model, vocab = d2lrnn.load_model()      # the shipped model
    predict_ch8('time traveller', 50, model, vocab, npx.cpu())
"""
from mxnet import np, npx

from . import checkpoint as ckpt
from .fast import FastRNNScratch


def new_model(vocab_size, num_hiddens, ctx):
    """The one place that builds the model checkpoints are read into.

    ``FastRNNScratch`` computes what ``RNNModelScratch(vocab_size,
    num_hiddens, ctx, get_params, init_rnn_state, rnn)`` computes, with the
    same five parameters in the same order, only faster; checkpoints hold
    just those parameters, so either class reads the other's checkpoints.
    """
    return FastRNNScratch(vocab_size, num_hiddens, ctx)


def set_params(model, params, ctx):
    """Copy saved parameters (NumPy arrays by name) into `model`, in place."""
    for param, name in zip(model.params, ckpt.PARAM_NAMES):
        param[:] = np.array(params[name], ctx=ctx)


def to_model(checkpoint, ctx):
    """A model on `ctx` holding a loaded checkpoint's parameters."""
    model = new_model(len(checkpoint.vocab), checkpoint.config['num_hiddens'],
                      ctx)
    set_params(model, checkpoint.params, ctx)
    return model


def load_model(directory=None, ctx=None):
    """(model, vocab) of a checkpoint: the shipped one if `directory` is None.

    The shipped model is ``checkpoint.SHIPPED_MODEL``. The model
    (``new_model``) is on `ctx` (the CPU if None); ``predict_ch8`` and
    ``evaluate_perplexity`` take it as they take the section's model.
    """
    saved = ckpt.load(ckpt.SHIPPED_MODEL if directory is None else directory)
    ctx = npx.cpu() if ctx is None else ctx
    return to_model(saved, ctx), saved.vocab

"""The package the book's pages import (book/index.md).

d2lrnn: the character-level RNN of D2L section 8.5 ("Implementation of
Recurrent Neural Networks from Scratch", MXNet edition), as a tested package.

Importing it switches MXNet to its NumPy interface (``npx.set_np()``), as the
section does in its first cell.
"""
from . import _compat  # noqa: F401  first: MXNet on 3.12 needs it (see there)
import warnings

with warnings.catch_warnings():
    # mxnet 1.9.1 touches names that NumPy 1.20+ and Python 3.10+
    # deprecate (np.bool, np.mirr, distutils): a dozen warnings on import,
    # not ours to fix.
    warnings.filterwarnings('ignore', category=DeprecationWarning,
                            module='mxnet')
    from mxnet import npx

from .data import (SeqDataLoader, Vocab, count_corpus,
                   load_corpus_time_machine, load_data_time_machine,
                   read_time_machine, seq_data_iter_consecutive,
                   seq_data_iter_random, seq_data_iter_sequential, tokenize)
from .evaluate import (bits_per_char, evaluate_perplexity, seq_data_iter_eval,
                       split_corpus, split_train_valid_test)
from .fast import FastRNNScratch
from .model import RNNModelScratch, get_params, init_rnn_state, rnn
from .ngram import NGramLM, ngram_perplexity
from .optim import Adam, ParamAverage, cosine_schedule
from .plot import Animator
from .predict import predict_ch8
from .pretrained import load_model
from . import checkpoint  # noqa: F401  d2lrnn.checkpoint.load(...)
from . import results  # noqa: F401  the committed results, for the book
from .train import (ProgressLog, grad_clipping, sgd, train_ch8,
                    train_epoch_ch8)
from .utils import Accumulator, Timer, show_source, try_gpu

npx.set_np()

__version__ = '0.1.0'

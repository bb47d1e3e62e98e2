"""Generating text, predict_ch8 (book/05-prediction.ipynb).

Text from a model: warm the state up on a prefix, then emit characters.

The characters come one at a time, each fed back as the next input.

By default each character is the most likely one (argmax), as in the
original. Beyond the original, ``sample=True`` draws it from q ∝ p**alpha
instead (exercise 3): ``alpha=1`` samples the model's own distribution, a
larger alpha sharpens it towards argmax, a smaller one flattens it towards
uniform; `seed` makes a sample repeatable. Characters of the prefix outside
the vocabulary are read as ``<unk>``, as the vocabulary maps them. An empty
prefix, a negative count or a bad alpha raise ``ValueError``
(``d2lrnn.checks``).
"""
import numpy as onp
from mxnet import np

from .checks import check_prediction


def predict_ch8(prefix, num_predicts, model, vocab, ctx,
                sample=False, alpha=1.0, seed=None):
    """`prefix` followed by `num_predicts` predicted characters (D2L 8.5.4)."""
    check_prediction(prefix, num_predicts, model, vocab, sample, alpha)
    rng = onp.random.default_rng(seed)  # used only with sample=True
    state = model.begin_state(batch_size=1, ctx=ctx)
    outputs = [vocab[prefix[0]]]

    def get_input():  # the last character: (batch_size=1, num_steps=1)
        return np.array([outputs[-1]], ctx=ctx).reshape(1, 1)

    for y in prefix[1:]:  # warm up: only the state matters here
        _, state = model(get_input(), state)
        outputs.append(vocab[y])
    for _ in range(num_predicts):
        Y, state = model(get_input(), state)  # (1, vocab_size) logits
        outputs.append(_sample(Y, alpha, rng) if sample
                       else int(Y.argmax(axis=1).reshape(1)))
    return ''.join([vocab.idx_to_token[i] for i in outputs])


def _sample(Y, alpha, rng):
    """Draw an index from softmax(alpha * logits): p**alpha renormalised."""
    logits = alpha * Y.asnumpy().astype('float64').reshape(-1)
    # Shifted, so that a large alpha cannot overflow.
    p = onp.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))

"""LegNet's soft-label training loss and its continuous read-out (Penzar et al. 2023).

Per-example, with ``keras.ops`` only, like the engine's losses (``seq2exp.engine.losses``): the
loop sums them and divides by the global batch. Maths in at least float32.
"""
from __future__ import annotations

import math

from keras import ops

from seq2exp.engine.losses import as_float, squeeze_last


def _normal_cdf(z):
    return 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))


def soft_labels(expression, n_bins=18, sigma=0.5):
    """LegNet's soft class targets from measured expression, shape ``(batch, n_bins)``.

    The measurement ``e`` is taken to hide a true level ``rho ~ Normal(e + 0.5, sigma)``;
    class ``i`` gets ``P(i <= rho < i + 1)``, with the first and last classes absorbing
    the tails, so every row sums to 1.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    e = squeeze_last(as_float(expression))
    if len(e.shape) != 1:
        raise ValueError(f"expression must have shape (batch,) or (batch, 1), got {e.shape}")
    edges = ops.cast(ops.arange(1, n_bins), e.dtype)  # inner edges 1 .. n_bins-1
    cdf = _normal_cdf((edges[None, :] - (e[:, None] + 0.5)) / sigma)
    zeros = ops.zeros_like(cdf[:, :1])
    bounded = ops.concatenate([zeros, cdf, zeros + 1.0], axis=1)
    probs = bounded[:, 1:] - bounded[:, :-1]
    # erf rounding can leave -1e-8 in far tails; KL needs non-negative targets.
    return ops.maximum(probs, 0.0)


def kl_soft_label(target_probs, logits):
    """KL(target || softmax(logits)) per example; 0 * log 0 counts as 0."""
    logits = as_float(logits)
    t = ops.cast(ops.convert_to_tensor(target_probs), logits.dtype)
    log_q = ops.log_softmax(logits, axis=-1)
    positive = t > 0
    # log of a dummy 1 where t == 0 keeps 0 * -inf (nan) out of the forward and backward pass.
    log_t = ops.log(ops.where(positive, t, ops.ones_like(t)))
    terms = ops.where(positive, t * (log_t - log_q), ops.zeros_like(t))
    return ops.sum(terms, axis=-1)


def soft_argmax_score(logits):
    """Expected class index under softmax(logits): LegNet's continuous prediction."""
    logits = as_float(logits)
    probs = ops.softmax(logits, axis=-1)
    idx = ops.cast(ops.arange(logits.shape[-1]), probs.dtype)
    return ops.sum(probs * idx, axis=-1)

"""Per-example losses for a custom ``strategy.run`` training loop.

Each loss returns shape ``(batch,)`` with no reduction, so the loop can sum and divide
by the GLOBAL batch size (``tf.nn.compute_average_loss``) and stay correct with any
number of replicas and a short final batch. Written with ``keras.ops`` only; maths is
done in at least float32 so mixed-precision (float16) outputs do not lose accuracy in
the log-softmax or the squared error.
"""
from __future__ import annotations

import functools
import math

from keras import ops

__all__ = [
    "huber",
    "mse",
    "soft_labels",
    "kl_soft_label",
    "soft_argmax_score",
    "get_loss",
    "LOSSES",
]


def _as_float(x):
    x = ops.convert_to_tensor(x)
    return x if x.dtype == "float64" else ops.cast(x, "float32")


def _squeeze_last(x):
    # (b, 1) -> (b,); stops (b,) - (b, 1) silently broadcasting to (b, b).
    if len(x.shape) == 2 and x.shape[-1] == 1:
        return ops.squeeze(x, axis=-1)
    return x


def _regression_pair(y_true, y_pred):
    y_pred = _squeeze_last(_as_float(y_pred))
    y_true = _squeeze_last(ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype))
    if len(y_true.shape) != len(y_pred.shape):
        raise ValueError(
            f"y_true shape {tuple(y_true.shape)} does not match y_pred shape {tuple(y_pred.shape)}"
        )
    return y_true, y_pred


def _per_example(x):
    """Mean over all non-batch axes (multi-output targets); (b,) passes through."""
    if len(x.shape) <= 1:
        return x
    return ops.mean(x, axis=tuple(range(1, len(x.shape))))


def huber(y_true, y_pred, delta=1.0):
    """Huber loss per example (CRMnet's loss): quadratic within ``delta``, linear beyond."""
    y_true, y_pred = _regression_pair(y_true, y_pred)
    err = ops.abs(y_true - y_pred)
    quad = ops.minimum(err, delta)
    return _per_example(0.5 * ops.square(quad) + delta * (err - quad))


def mse(y_true, y_pred):
    """Squared error per example."""
    y_true, y_pred = _regression_pair(y_true, y_pred)
    return _per_example(ops.square(y_true - y_pred))


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
    e = _squeeze_last(_as_float(expression))
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
    logits = _as_float(logits)
    t = ops.cast(ops.convert_to_tensor(target_probs), logits.dtype)
    log_q = ops.log_softmax(logits, axis=-1)
    positive = t > 0
    # log of a dummy 1 where t == 0 keeps 0 * -inf (nan) out of the forward and backward pass.
    log_t = ops.log(ops.where(positive, t, ops.ones_like(t)))
    terms = ops.where(positive, t * (log_t - log_q), ops.zeros_like(t))
    return ops.sum(terms, axis=-1)


def soft_argmax_score(logits):
    """Expected class index under softmax(logits): LegNet's continuous prediction."""
    logits = _as_float(logits)
    probs = ops.softmax(logits, axis=-1)
    idx = ops.cast(ops.arange(logits.shape[-1]), probs.dtype)
    return ops.sum(probs * idx, axis=-1)


LOSSES = {
    "huber": huber,
    "mse": mse,
    "kl_soft_label": kl_soft_label,
}


def get_loss(name, **kwargs):
    """Loss function by config name; extra kwargs (e.g. ``delta``) are bound to it."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    fn = LOSSES[key]
    return functools.partial(fn, **kwargs) if kwargs else fn

"""Per-example losses for a custom ``strategy.run`` training loop.

Model-specific losses live in their model package (LegNet's soft-label KL in `legnet_tf.losses`,
the DREAM peers' in `dream_peers.losses`) and reach the loop through `ModelSpec.loss`.
Each loss returns shape ``(batch,)`` with no reduction, so the loop can sum and divide
by the GLOBAL batch size (``tf.nn.compute_average_loss``) and stay correct with any
number of replicas and a short final batch. Written with ``keras.ops`` only; maths is
done in at least float32 so mixed-precision (float16) outputs do not lose accuracy in
the log-softmax or the squared error.
"""
from __future__ import annotations

import functools

from keras import ops

__all__ = [
    "huber",
    "mse",
    "as_float",
    "squeeze_last",
    "get_loss",
    "LOSSES",
]


def as_float(x):
    x = ops.convert_to_tensor(x)
    return x if x.dtype == "float64" else ops.cast(x, "float32")


def squeeze_last(x):
    # (b, 1) -> (b,); stops (b,) - (b, 1) silently broadcasting to (b, b).
    if len(x.shape) == 2 and x.shape[-1] == 1:
        return ops.squeeze(x, axis=-1)
    return x


def _regression_pair(y_true, y_pred):
    y_pred = squeeze_last(as_float(y_pred))
    y_true = squeeze_last(ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype))
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


LOSSES = {
    "huber": huber,
    "mse": mse,
}


def get_loss(name, **kwargs):
    """Loss function by config name; extra kwargs (e.g. ``delta``) are bound to it."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    fn = LOSSES[key]
    return functools.partial(fn, **kwargs) if kwargs else fn

"""Learning-rate schedules used by the papers we reproduce, as serialisable Keras 3 objects.

CRMnet's warm-up + cosine is Keras' own `CosineDecay` (its `warmup_target` / `warmup_steps` / `alpha` give
exactly the paper's schedule: tests/engine/test_schedules.py checks it against the formula). The one-cycle
and inverse-square-root schedules have no Keras counterpart, so they are written here.

All schedules compute with ``keras.ops`` on the optimizer's integer ``iterations``
(possibly a symbolic tensor inside a ``tf.function``), so they work unchanged inside a
distributed custom training loop and survive a ``.keras`` save/load with
``safe_mode=True`` (they are registered under the ``seq2exp`` package).
"""
from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["OneCycleCosine", "InverseSqrtWarmup", "warmup_cosine"]


def _step_as_float(step):
    # iterations is an int64 variable; cosines/divisions need a float.
    return ops.cast(step, "float32")


def _cos_anneal(start, end, pct):
    """Half-cosine from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * pct))


def warmup_cosine(
    steps_per_epoch,
    total_epochs,
    replicas=1,
    scale_with_replicas=True,
    warmup_epochs=10,
    base_lr=1e-4,
    peak_lr=1e-3,
    final_lr=1e-4,
):
    """Linear warm-up, cosine decay, then constant, in epochs (Keras' `CosineDecay`); the defaults are the CRMnet
    paper's: 1e-4*R -> 1e-3*R over 10 epochs, cosine down to 1e-4*R (CRMnet's ModelSpec names them all).
    Past the planned length the rate stays at `final_lr`, so an extra step never raises it again.

    R (``replicas``) scales all three rates, as the paper's linear-scaling rule does for
    the larger global batch; pass ``scale_with_replicas=False`` to keep them fixed. The
    cosine spans the epochs left after warm-up; if ``total_epochs <= warmup_epochs``
    the run simply ends while still warming up.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    scale = float(replicas) if scale_with_replicas else 1.0
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    # CosineDecay needs at least one decay step; a run no longer than its warm-up never reaches it
    decay_steps = max(int(total_epochs * steps_per_epoch) - warmup_steps, 1)
    peak = peak_lr * scale
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=base_lr * scale, decay_steps=decay_steps, alpha=final_lr / peak_lr if peak_lr else 0.0,
        warmup_target=peak, warmup_steps=warmup_steps, name="warmup_cosine")


@keras.saving.register_keras_serializable(package="seq2exp")
class OneCycleCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Two-phase cosine one-cycle policy (LegNet trains with this).

    Same values as PyTorch ``OneCycleLR(anneal_strategy='cos', three_phase=False)``
    stepped once per batch: phase 1 ends at step ``pct_start*total_steps - 1`` and
    phase 2 at ``total_steps - 1``. Beyond the last step the rate stays at the minimum
    instead of raising, so an extra step does not crash or re-warm training.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        if total_steps < 2:
            raise ValueError(f"total_steps must be >= 2, got {total_steps}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    @property
    def initial_lr(self):
        return self.max_lr / self.div_factor

    @property
    def min_lr(self):
        return self.initial_lr / self.final_div_factor

    def __call__(self, step):
        step = _step_as_float(step)
        up_end = self.pct_start * self.total_steps - 1.0
        last = float(self.total_steps - 1)
        # Guard the denominators only for degenerate tiny runs (PyTorch would divide by 0).
        up_len = max(up_end, 1e-8)
        down_len = max(last - up_end, 1e-8)
        up = _cos_anneal(self.initial_lr, self.max_lr, ops.clip(step / up_len, 0.0, 1.0))
        down_pct = ops.clip((step - up_end) / down_len, 0.0, 1.0)
        down = _cos_anneal(self.max_lr, self.min_lr, down_pct)
        return ops.where(step <= up_end, up, down)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


@keras.saving.register_keras_serializable(package="seq2exp")
class InverseSqrtWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """``d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)`` (the Macaron transformer's).

    Step 0 is treated as step 1 so the first update has a finite, tiny rate.
    """

    def __init__(self, d_model=512, warmup_steps=12500):
        if d_model <= 0 or warmup_steps <= 0:
            raise ValueError(
                f"d_model and warmup_steps must be positive, got {d_model}, {warmup_steps}"
            )
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.maximum(_step_as_float(step), 1.0)
        decay = ops.rsqrt(step)
        warm = step * (float(self.warmup_steps) ** -1.5)
        return (float(self.d_model) ** -0.5) * ops.minimum(decay, warm)

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps}

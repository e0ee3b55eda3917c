"""Optimizer + learning-rate schedule from plain config dicts (a model's `ModelSpec` defaults or YAML).

Schedules are stepped per optimizer update, so they need the run's length; that is why this
takes steps_per_epoch and epochs. The optimizer's own `iterations` drives the schedule, so a
resumed run (optimizer state restored) continues the schedule where it stopped. Keras only (no
TensorFlow import): the TF and JAX steps build their optimizers here alike.
"""
from __future__ import annotations

import keras

from seq2exp.engine.schedules import InverseSqrtWarmup, OneCycleCosine, warmup_cosine

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine", "one_cycle", "inverse_sqrt")
_OPT_KEYS = {"name", "beta_1", "beta_2", "epsilon", "amsgrad", "clipnorm", "clipvalue", "global_clipnorm",
             "weight_decay"}


def _check_keys(cfg: dict, allowed: set, what: str) -> None:
    unknown = set(cfg) - allowed
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}; allowed: {sorted(allowed)}")


def build_schedule(sched_cfg: dict, steps_per_epoch: int, epochs: int, replicas: int = 1):
    """A float or a `LearningRateSchedule`; `scale_with_replicas` applies the linear-scaling rule."""
    cfg = dict(sched_cfg or {"name": "constant", "lr": 1e-3})
    name = str(cfg.pop("name", "constant")).lower()
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be positive, got {steps_per_epoch}, {epochs}")
    total = int(steps_per_epoch * epochs)
    if name == "constant":
        _check_keys(cfg, {"lr", "scale_with_replicas"}, "constant schedule")
        scale = replicas if cfg.get("scale_with_replicas", False) else 1
        return float(cfg.get("lr", 1e-3)) * scale
    if name == "warmup_cosine":
        _check_keys(cfg, {"base_lr", "peak_lr", "final_lr", "warmup_epochs", "scale_with_replicas"},
                    "warmup_cosine schedule")
        return warmup_cosine(steps_per_epoch, epochs, replicas=replicas, **cfg)
    if name == "one_cycle":
        _check_keys(cfg, {"max_lr", "pct_start", "div_factor", "final_div_factor", "scale_with_replicas"},
                    "one_cycle schedule")
        scale = replicas if cfg.pop("scale_with_replicas", False) else 1
        max_lr = float(cfg.pop("max_lr", 1e-2)) * scale
        return OneCycleCosine(max_lr, total_steps=max(total, 2), **cfg)
    if name == "inverse_sqrt":
        _check_keys(cfg, {"d_model", "warmup_steps", "warmup_epochs"}, "inverse_sqrt schedule")
        if "warmup_epochs" in cfg:
            cfg["warmup_steps"] = max(int(cfg.pop("warmup_epochs") * steps_per_epoch), 1)
        return InverseSqrtWarmup(**cfg)
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def build_optimizer(opt_cfg: dict | None, sched_cfg: dict | None, steps_per_epoch: int, epochs: int,
                    replicas: int = 1, precision: str = "float32") -> keras.optimizers.Optimizer:
    """Keras optimizer for the custom loop; wrapped in dynamic loss scaling for mixed_float16."""
    cfg = dict(opt_cfg or {"name": "adam"})
    _check_keys(cfg, _OPT_KEYS, "optimizer")
    name = str(cfg.pop("name", "adam")).lower()
    # Keras takes one clipping setting; clipvalue with a norm means value first, then the norm
    value_first = cfg.pop("clipvalue") if cfg.get("clipvalue") and (cfg.get("clipnorm") or cfg.get("global_clipnorm")) \
        else None
    lr = build_schedule(sched_cfg, steps_per_epoch, epochs, replicas)
    if name == "adam":
        if cfg.pop("weight_decay", None):
            raise ValueError("optimizer 'adam' takes no weight_decay (L2-coupled decay); use 'adamw'")
        opt = keras.optimizers.Adam(learning_rate=lr, **cfg)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.pop("weight_decay", 0.01), **cfg)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if value_first is not None:
        clip_value_then_norm(opt, value_first)
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def clip_value_then_norm(opt, value: float) -> None:
    """Clip every gradient element to [-value, value], then apply the optimizer's own norm clipping.

    (The Macaron transformer's recipe: value 0.5, then global norm 1.0.) Runs inside `apply`,
    i.e. on the all-reduced gradient in the engine's loop.
    """
    inner = inner_optimizer(opt)
    value = float(value)
    if not value > 0:
        raise ValueError(f"clipvalue must be > 0, got {value}")
    norm_clip = inner._clip_gradients
    inner.clip_value_first = value  # not `clipvalue`: Keras' from_config refuses two clip settings
    inner._clip_gradients = lambda grads: norm_clip(
        [None if g is None else keras.ops.clip(g, -value, value) for g in grads])


def inner_optimizer(opt):
    """The optimizer doing the updates (unwraps loss scaling)."""
    return getattr(opt, "inner_optimizer", opt)


def current_lr(opt) -> float:
    """Learning rate the next update will use (schedules evaluated at `iterations`)."""
    return float(keras.ops.convert_to_numpy(inner_optimizer(opt).learning_rate))

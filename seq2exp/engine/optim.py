"""Optimizer + learning-rate schedule from plain config dicts (a model's `ModelSpec` defaults or YAML).

Schedules are stepped per optimizer update, so they need the run's length; that is why this
takes steps_per_epoch and epochs. The optimizer's own `iterations` drives the schedule, so a
resumed run (optimizer state restored) continues the schedule where it stopped. Keras only (no
TensorFlow import): the TF and JAX steps build their optimizers here alike.
"""
from __future__ import annotations

import inspect

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


def _defaults(fn) -> dict:
    """The keyword defaults of `fn` (a Keras optimizer class, a schedule class or factory): read, not restated.
    What the run's length decides (steps, epochs, replicas) is not a setting."""
    skip = {"self", "learning_rate", "name", "kwargs", "steps_per_epoch", "total_epochs", "replicas", "total_steps"}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if k not in skip and p.default is not inspect.Parameter.empty}


#: each schedule's settings and their defaults
_SCHEDULE_DEFAULTS = {
    "constant": lambda: {"lr": 1e-3, "scale_with_replicas": False},
    "warmup_cosine": lambda: _defaults(warmup_cosine),
    "one_cycle": lambda: {"max_lr": 1e-2, **_defaults(OneCycleCosine), "scale_with_replicas": False},
    "inverse_sqrt": lambda: _defaults(InverseSqrtWarmup),
}
#: AdamW's weight decay when none is given: PyTorch's AdamW default, which LegNet trains with (Keras' is 0.004)
ADAMW_WEIGHT_DECAY = 0.01


def effective_schedule(sched_cfg: dict | None) -> dict:
    """Every setting of the learning-rate schedule `sched_cfg` names, defaults filled in: config.yaml records
    this, so a rerun from it, or a diff of two runs' configs, sees every value."""
    cfg = dict(sched_cfg or {"name": "constant", "lr": 1e-3})
    name = str(cfg.pop("name", "constant")).lower()
    if name not in _SCHEDULE_DEFAULTS:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    full = _SCHEDULE_DEFAULTS[name]()
    if name == "inverse_sqrt" and "warmup_epochs" in cfg:  # the warm-up given in epochs instead of steps
        full["warmup_epochs"] = full.pop("warmup_steps")
    _check_keys(cfg, set(full), f"{name} schedule")
    return {"name": name, **full, **cfg}


def effective_optimizer(opt_cfg: dict | None) -> dict:
    """Every setting of the optimizer `opt_cfg` names, Keras' defaults filled in (see effective_schedule)."""
    cfg = dict(opt_cfg or {"name": "adam"})
    _check_keys(cfg, _OPT_KEYS, "optimizer")
    name = str(cfg.pop("name", "adam")).lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    full = {k: v for k, v in _defaults(_OPTIMIZER_CLASSES[name]()).items() if k in _OPT_KEYS}
    if name == "adamw":
        full["weight_decay"] = ADAMW_WEIGHT_DECAY
    else:
        full.pop("weight_decay", None)
        if cfg.pop("weight_decay", None):
            raise ValueError("optimizer 'adam' takes no weight_decay (L2-coupled decay); use 'adamw'")
    return {"name": name, **full, **cfg}


_OPTIMIZER_CLASSES = {"adam": lambda: keras.optimizers.Adam, "adamw": lambda: keras.optimizers.AdamW}


def build_schedule(sched_cfg: dict, steps_per_epoch: int, epochs: int, replicas: int = 1):
    """A float or a `LearningRateSchedule`; `scale_with_replicas` applies the linear-scaling rule."""
    cfg = effective_schedule(sched_cfg)
    name = cfg.pop("name")
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be positive, got {steps_per_epoch}, {epochs}")
    if name == "warmup_cosine":
        return warmup_cosine(steps_per_epoch, epochs, replicas=replicas, **cfg)
    if name == "inverse_sqrt":
        if "warmup_epochs" in cfg:
            cfg["warmup_steps"] = max(int(cfg.pop("warmup_epochs") * steps_per_epoch), 1)
        return InverseSqrtWarmup(**cfg)
    scale = replicas if cfg.pop("scale_with_replicas") else 1
    if name == "constant":
        return float(cfg["lr"]) * scale
    max_lr = float(cfg.pop("max_lr")) * scale  # one_cycle
    return OneCycleCosine(max_lr, total_steps=max(int(steps_per_epoch * epochs), 2), **cfg)


def build_optimizer(opt_cfg: dict | None, sched_cfg: dict | None, steps_per_epoch: int, epochs: int,
                    replicas: int = 1, precision: str = "float32") -> keras.optimizers.Optimizer:
    """Keras optimizer for the custom loop; wrapped in dynamic loss scaling for mixed_float16."""
    cfg = effective_optimizer(opt_cfg)
    name = cfg.pop("name")
    # Keras takes one clipping setting; clipvalue with a norm means value first, then the norm
    value_first = cfg.pop("clipvalue") if cfg.get("clipvalue") and (cfg.get("clipnorm") or cfg.get("global_clipnorm")) \
        else None
    opt = _OPTIMIZER_CLASSES[name]()(learning_rate=build_schedule(sched_cfg, steps_per_epoch, epochs, replicas), **cfg)
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

"""The settings of one training run: one dataclass, one default per setting, and the closed sets of values.

Nothing here imports TensorFlow, so command lines can check their flags before the slow imports.
The command-line `RunConfig` (seq2exp.cli.config) extends `TrainSettings` with what a command needs
besides the loop (data, model, strategy), so no setting is copied by hand between the two.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from data_prep.errors import Seq2ExpError

#: Keras dtype policies a run can use (the model's output layers stay float32)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: what a NaN/inf training loss does: "stop" raises NonFiniteLossError; "skip" drops that update
NAN_POLICIES = ("stop", "skip")
#: tf.distribute strategies by name ("auto": a TPU, TF_CONFIG's workers, all local GPUs or one device)
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
#: shard check before training: "sha256" (size + hash, ~1 s/GB) or "size" (instant; misses same-size damage)
VERIFY_MODES = ("sha256", "size")


class NonFiniteLossError(Seq2ExpError, RuntimeError):
    """Training produced a NaN/inf loss (or weights) under nan_policy="stop"."""


def check_choice(what: str, value, choices) -> None:
    """One-line error naming the setting and its valid values."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def setting(default=MISSING, *, help: str, choices: tuple | None = None, factory=None):
    """A dataclass field that carries its command-line help (and closed set of values, if any)."""
    meta = {"help": help, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainSettings:
    epochs: int = setting(50, help="training epochs (passes over the train split, or steps_per_epoch steps)")
    batch_size: int = setting(1024, help="PER-REPLICA batch size (the CRMnet paper's convention); global = this x "
                                          "replicas")
    steps_per_epoch: int | None = setting(None, help="steps per epoch (default: one pass over the train split)")
    steps_per_execution: int = setting(8, help="training steps per compiled call: fewer host round-trips (8 makes "
                                                  "the ~5 ms per-call dispatch a small share of a tiny model's step)")
    jit: bool = setting(False, help="XLA-compile the forward/backward pass")
    precision: str = setting("float32", choices=PRECISIONS,
                             help="Keras dtype policy; the model's output layers stay float32")
    optimizer: dict = setting(factory=dict, help="optimizer settings as JSON, e.g. '{\"name\": \"adamw\", "
                                                 "\"weight_decay\": 0.01}' (default: the model's)")
    schedule: dict = setting(factory=dict, help="learning-rate schedule as JSON, e.g. '{\"name\": \"one_cycle\", "
                                                "\"max_lr\": 0.005}' (default: the model's)")
    patience: int | None = setting(10, help="stop after this many epochs without a better validation R2 (0: never)")
    restore_best: bool = setting(True, help="end with the weights of the best validation epoch")
    seed: int = setting(0, help="seed of the initial weights, data order and dropout")
    keep_checkpoints: int = setting(3, help="training checkpoints kept on disk (the newest)")
    nan_policy: str = setting("stop", choices=NAN_POLICIES,
                              help="on a NaN/inf loss: 'stop' with an error, or 'skip' that update")
    log_every_seconds: float = setting(30.0, help="seconds between progress lines when stderr is not a terminal")
    tensorboard_every: int = setting(100, help="write per-step loss, learning rate and sequences/s to TensorBoard "
                                               "every this many steps (0: epoch scalars only)")
    sync_batch_norm: bool = setting(False, help="batch-norm statistics over the global batch (multi-replica)")
    stall_timeout_s: float | None = setting(1800.0, help="multi-worker: exit (status 75) after this many seconds "
                                                         "without progress instead of hanging on a stuck peer")

    def __post_init__(self):
        for f in fields(self):
            if f.metadata.get("choices"):
                check_choice(f.name, getattr(self, f.name), f.metadata["choices"])
        if self.epochs < 1 or self.batch_size < 1 or self.steps_per_execution < 1:
            raise ValueError("epochs, batch_size and steps_per_execution must be >= 1")

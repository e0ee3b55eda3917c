"""The settings of one training run: one dataclass, one default per setting, and the closed sets of values.

Nothing here imports TensorFlow, so command lines can check their flags before the slow imports.
The command-line `RunConfig` (seq2exp.cli.config) extends `TrainSettings` with what a command needs
besides the loop (data, model, strategy), so no setting is copied by hand between the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Keras dtype policies a run can use (the model's output layers stay float32)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: what a NaN/inf training loss does: "stop" raises NonFiniteLossError; "skip" drops that update
NAN_POLICIES = ("stop", "skip")
#: tf.distribute strategies by name ("auto": a TPU, TF_CONFIG's workers, all local GPUs or one device)
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
#: shard check before training: "sha256" (size + hash, ~1 s/GB) or "size" (instant; misses same-size damage)
VERIFY_MODES = ("sha256", "size")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss (or weights) under nan_policy="stop"."""


def check_choice(what: str, value, choices) -> None:
    """One-line error naming the setting and its valid values."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class TrainSettings:
    epochs: int = 50
    #: PER-REPLICA batch (as in the CRMnet paper); the global batch is this x replicas
    batch_size: int = 1024
    #: None = one pass over the train split (needs Trainer(train_examples=...)); set it when mixing datasets
    steps_per_epoch: int | None = None
    #: training steps per tf.function call (a tf.range loop inside it): fewer host round-trips
    steps_per_execution: int = 1
    #: XLA-compile the forward/backward pass
    jit: bool = False
    #: Keras dtype policy, one of PRECISIONS
    precision: str = "float32"
    #: optimizer / learning-rate schedule settings (seq2exp.engine.optim); empty = the model's ModelSpec defaults
    optimizer: dict = field(default_factory=dict)
    schedule: dict = field(default_factory=dict)
    #: early stopping on validation R^2 (None/0 = never stop early)
    patience: int | None = 10
    #: end with the weights of the best validation epoch
    restore_best: bool = True
    seed: int = 0
    #: training checkpoints kept on disk (the newest ones)
    keep_checkpoints: int = 3
    #: one of NAN_POLICIES
    nan_policy: str = "stop"
    #: seconds between progress lines
    log_every_seconds: float = 30.0
    #: batch statistics over the global batch, so multi-replica training matches one device
    sync_batch_norm: bool = False
    #: multi-worker only: exit (status 75) after this long without a finished step, evaluation batch or
    #: save, instead of hanging on a stuck peer; must exceed the slowest single tf.function call
    stall_timeout_s: float | None = 1800.0

    def __post_init__(self):
        check_choice("nan_policy", self.nan_policy, NAN_POLICIES)
        check_choice("precision", self.precision, PRECISIONS)
        if self.epochs < 1 or self.batch_size < 1 or self.steps_per_execution < 1:
            raise ValueError("epochs, batch_size and steps_per_execution must be >= 1")

"""Settings of one training run, kept apart from the loop so configs and CLIs can import them cheaply."""
from __future__ import annotations

from dataclasses import dataclass


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss (or weights) under nan_policy="stop"."""


@dataclass
class TrainSettings:
    epochs: int = 10
    #: PER-REPLICA batch (as in the CRMnet paper); the global batch is this x replicas
    batch_size: int = 32
    #: None = one pass over the train split (needs Trainer(train_examples=...)); set it when mixing datasets
    steps_per_epoch: int | None = None
    #: training steps per tf.function call (a tf.range loop inside it): fewer host round-trips
    steps_per_execution: int = 1
    #: XLA-compile the forward/backward pass
    jit: bool = False
    #: early stopping on validation R^2 (None/0 = never stop early)
    patience: int | None = 10
    restore_best: bool = True
    seed: int = 0
    keep_checkpoints: int = 3
    #: "stop": raise NonFiniteLossError on a NaN/inf loss; "skip": drop that update and go on
    nan_policy: str = "stop"
    log_every_seconds: float = 30.0
    #: batch statistics over the global batch, so multi-replica training matches one device
    sync_batch_norm: bool = False
    #: multi-worker only: exit (status 75) after this long without a finished step, evaluation batch or
    #: save, instead of hanging on a stuck peer; must exceed the slowest single tf.function call
    stall_timeout_s: float | None = 1800.0

    def __post_init__(self):
        if self.nan_policy not in ("stop", "skip"):
            raise ValueError(f"nan_policy must be 'stop' or 'skip', got {self.nan_policy!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.steps_per_execution < 1:
            raise ValueError("epochs, batch_size and steps_per_execution must be >= 1")

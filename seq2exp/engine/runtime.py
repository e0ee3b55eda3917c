"""The TensorFlow-free pieces of running a job, shared by both engine backends.

Precision policy, the stall watchdog of multi-process runs, and the errors a command reports in one
line. `seq2exp.engine.strategy` (TensorFlow) and `seq2exp.engine.distribution_jax` (JAX) build on them.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import keras

from data_prep.errors import Seq2ExpError
from seq2exp.engine.settings import PRECISIONS

#: longest wait inside one collective (a peer that is alive but stuck) before DeadlineExceeded; a dead
#: peer is noticed sooner (connection refused, or TF's coordination heartbeats: ~10 s measured)
DEFAULT_COLLECTIVE_TIMEOUT_S = 600.0


class StrategyError(Seq2ExpError, RuntimeError):
    """The requested strategy cannot be created here (no TPU, bad TF_CONFIG, ...)."""


def set_precision(policy: str = "float32") -> str:
    """Set Keras' global dtype policy; call BEFORE building a model (its output layer stays float32)."""
    name = str(policy or "float32").lower()
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {policy!r}; choose one of {PRECISIONS}")
    keras.mixed_precision.set_dtype_policy(name)
    return name


class WorkerLostError(Seq2ExpError, RuntimeError):
    """Multi-worker training lost a peer (dead, stalled past the collective timeout, unreachable)."""


class Watchdog:
    """Ends a multi-worker process that made no progress for `timeout_s` seconds.

    TensorFlow aborts collectives when a peer dies or stops heartbeating, and the collective
    timeout bounds a wait inside an all-reduce; neither helps a worker that is itself stuck
    outside a collective (a hung file system under its input pipeline). A job scheduler can
    restart an exited worker; it cannot restart a hung one. So after `timeout_s` without a
    `beat()` this prints why and calls `os._exit(EXIT_STALLED)`: the checkpoints on disk are
    complete (they are committed atomically), so `--resume` continues from the last one.
    """

    EXIT_STALLED = 75  # EX_TEMPFAIL: try again

    def __init__(self, timeout_s: float | None, where: str = ""):
        self.timeout_s, self.where = timeout_s, where
        self._last, self._doing = 0.0, "starting"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="seq2exp-watchdog", daemon=True)

    def beat(self, doing: str = "") -> None:
        self._last, self._doing = time.monotonic(), doing or self._doing

    def __enter__(self) -> Watchdog:
        if self.timeout_s and self.timeout_s > 0:
            self.beat("starting (restoring, tracing, first step)")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(self.timeout_s / 10, 5.0)):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                print(f"seq2exp watchdog: no training progress for {idle:.0f} s (> stall_timeout_s "
                      f"{self.timeout_s:g}) while {self._doing}{self.where}; another worker is probably dead or "
                      f"stuck. Exiting (status {self.EXIT_STALLED}) instead of hanging: restart every worker with "
                      "--resume to continue from the last complete checkpoint.", file=sys.stderr, flush=True)
                os._exit(self.EXIT_STALLED)

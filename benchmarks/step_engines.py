"""The training step ``benchmarks.step_time`` times, on either Keras backend, and its memory probes.

``EngineStep`` is the package's real engine step: a ``seq2exp.engine.trainer.Trainer`` (the model spec's loss,
optimizer + schedule, input transform, strategy / device placement, precision, ``jit``) fed by
``Trainer.distribute`` exactly as ``Trainer.fit`` feeds it, with ``Trainer.run_steps`` running
``steps_per_execution`` compiled steps per call. Under TensorFlow that is ``strategy.run`` in a
``tf.function``; under ``KERAS_BACKEND=jax`` the engine's ``jax.jit`` stateless step over
keras.distribution (nothing from TensorFlow is imported). Input: the reader the engine uses
(``seq2exp.engine.data.input_batches``: tf.data or the numpy reader) or fixed synthetic record batches.

Every ``step()`` returns the loss as a Python float: fetching it waits for the device, so the
clock is read after the step has really finished.
"""
from __future__ import annotations

import itertools
import os
import threading

import numpy as np

from benchmarks.legnet_step import synthetic_batches

# ----------------------------------------------------------------------------- out of memory

def oom_reason(err: BaseException) -> str | None:
    """Why ``err`` is an out-of-memory failure (None if it is not one).

    TF raises ResourceExhaustedError (and XLA's RESOURCE_EXHAUSTED inside Internal/Unknown errors),
    numpy and Python raise MemoryError, JAX raises XlaRuntimeError('RESOURCE_EXHAUSTED: ...').
    """
    if isinstance(err, MemoryError):
        return f"MemoryError: {str(err)[:200]}"
    name = type(err).__name__
    text = str(err)
    if name == "ResourceExhaustedError":
        return f"{name}: {text.splitlines()[0][:200] if text else ''}"
    lowered = text.lower()
    for marker in ("resource_exhausted", "out of memory", "oom when allocating", "failed to allocate"):
        if marker in lowered:
            first = next((line for line in text.splitlines() if marker in line.lower()), text)
            return f"{name}: {first.strip()[:200]}"
    return None


# ----------------------------------------------------------------------------- memory

def current_rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RSSSampler:
    """Peak process RSS above the level at ``start()``, sampled in a thread (CPU: no allocator stats)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s, self.base, self.peak = interval_s, 0, 0
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> RSSSampler:
        self.base = self.peak = current_rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, current_rss())

    @property
    def delta(self) -> int:
        return max(self.peak, current_rss()) - self.base

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.delta


# ----------------------------------------------------------------------------- inputs

def synthetic_records(layout, n_batches: int, batch: int, seed: int) -> dict:
    """``n_batches`` record batches of the layout's shape (uint8 codes, float32 label[, is_singleton])."""
    records = synthetic_batches(n_batches, batch, layout.length, seed)
    if not layout.has_singleton:
        records.pop("is_singleton")
    return records


def build_under_precision(precision: str, build):
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return build()
    finally:
        keras.config.set_dtype_policy(previous)


# ----------------------------------------------------------------------------- the engine step

def _accelerators() -> list:
    """(backend, devices with allocator statistics): TF's logical GPUs, or JAX's local non-CPU devices."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [d.name.replace("/device:", "") for d in tf.config.list_logical_devices("GPU")]
    import jax

    return [d for d in jax.local_devices() if d.platform != "cpu"]


class EngineStep:
    """``Trainer.run_steps`` of a registry model on the active backend (see module docstring)."""

    def __init__(self, spec, model_config: dict, strategy, precision: str, batch: int, jit: bool, seed: int,
                 run_dir: str, train_fn, steps_per_execution: int = 1, schedule_steps: int = 1000):
        import keras

        from seq2exp.engine.trainer import Trainer, TrainSettings

        self.backend = keras.backend.backend()
        # one schedule "epoch" of schedule_steps: the few timed steps stay near the schedule's start
        settings = TrainSettings(epochs=1, batch_size=batch, steps_per_epoch=schedule_steps, jit=jit, seed=seed,
                                 patience=None, nan_policy="skip", steps_per_execution=steps_per_execution,
                                 precision=precision)
        self.trainer = Trainer(spec, model_config, run_dir, strategy, settings)
        self.params = int(sum(int(np.prod(v.shape)) for v in self.trainer.model.trainable_variables))
        self.replicas, self.global_batch = self.trainer.replicas, self.trainer.global_batch
        self.steps_per_call = steps_per_execution
        self.iterator = self.trainer.distribute(train_fn, seed)
        self.bad_steps = 0
        self.devices = _accelerators()

    def step(self) -> float:
        total, bad, done = self.trainer.run_steps(self.iterator, self.steps_per_call)
        loss = float(total)  # waits for the step(s)
        self.bad_steps += int(bad)
        if int(done) != self.steps_per_call:
            raise RuntimeError(f"engine step ran {int(done)} of {self.steps_per_call} steps")
        return loss / self.steps_per_call

    # device memory: the allocator's statistics on GPU/TPU; None on CPU (the caller samples RSS instead).
    # TF resets its peak per configuration; JAX has no reset: its peak is the process's so far.
    def reset_memory(self) -> None:
        if self.backend == "tensorflow":
            import tensorflow as tf

            for d in self.devices:
                tf.config.experimental.reset_memory_stats(d)

    def peak_memory(self) -> int | None:
        if not self.devices:
            return None
        if self.backend == "tensorflow":
            import tensorflow as tf

            return max(int(tf.config.experimental.get_memory_info(d)["peak"]) for d in self.devices)
        stats = [d.memory_stats() or {} for d in self.devices]
        peaks = [int(s["peak_bytes_in_use"]) for s in stats if "peak_bytes_in_use" in s]
        return max(peaks) if peaks else None

    @property
    def memory_kind(self) -> str:
        if self.peak_memory() is None:
            return "host_rss_delta"
        return "device_peak" if self.backend == "tensorflow" else "device_peak_process"

    def close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if close is not None:  # the JAX engine's prefetch thread
            close()
        self.iterator = None
        self.trainer = None


def synthetic_train_fn(records: dict):
    """A ``train_fn(ctx, seed)`` cycling fixed record batches (no reader in the way).

    ``records`` holds (n_batches, b, ...) arrays: b = the per-replica batch under TensorFlow (tf.data
    per replica), the process's batch (every local device's rows) under JAX."""
    import keras

    n = next(iter(records.values())).shape[0]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def train_fn(ctx, seed):
            return tf.data.Dataset.from_tensor_slices(records).repeat().prefetch(2)
    else:
        def train_fn(ctx, seed):
            return ({k: v[i] for k, v in records.items()} for i in itertools.cycle(range(n)))

    return train_fn


def reader_train_fn(manifest, split: str, global_batch: int, shuffle_buffer: int):
    """The training reader, as ``seq2exp.api.runner`` builds it (tf.data or numpy by backend), repeating forever."""
    from seq2exp.engine.data import input_batches

    def train_fn(ctx, seed):
        return input_batches(manifest, split, global_batch, ctx, training=True, seed=seed, drop_remainder=True,
                             repeat=True, shuffle_buffer=shuffle_buffer)

    return train_fn

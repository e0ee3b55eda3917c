"""The training steps ``benchmarks.step_time`` times, one per Keras backend, and their memory probes.

* ``TFEngineStep``: the package's real engine step. A ``seq2exp.engine.trainer.Trainer`` (the model spec's
  loss, optimizer + schedule, input transform, strategy, precision, ``jit``) is fed by
  ``Trainer.distribute`` exactly as ``Trainer.fit`` feeds it, and ``Trainer.run_steps`` runs
  ``steps_per_execution`` compiled steps per call. Input: the TFRecord reader
  (``data_prep.dataset.make_dataset``) or synthetic uint8 record batches.
* ``JaxStep``: the engine's JAX step (``seq2exp.engine.step_jax.JaxTrainStep``) of the same registry
  model, loss and optimizer + schedule (``seq2exp.engine.optim``) under ``KERAS_BACKEND=jax``,
  ``jax.jit``-compiled with ``--jit``, on synthetic batches already on the device. Imports
  nothing from TensorFlow.

Every ``step()`` returns the loss as a Python float: fetching it waits for the device, so the
clock is read after the step has really finished.
"""
from __future__ import annotations

import os
import random
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


# ----------------------------------------------------------------------------- TensorFlow

class TFEngineStep:
    """``Trainer.run_steps`` of a registry model (see module docstring)."""

    backend = "tensorflow"

    def __init__(self, spec, model_config: dict, strategy, precision: str, batch: int, jit: bool, seed: int,
                 run_dir: str, train_fn, steps_per_execution: int = 1, schedule_steps: int = 1000):
        import tensorflow as tf

        from seq2exp.engine.trainer import Trainer, TrainSettings

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
        self.gpus = [d.name.replace("/device:", "") for d in tf.config.list_logical_devices("GPU")]

    def step(self) -> float:
        total, bad, done = self.trainer.run_steps(self.iterator, self.steps_per_call)
        loss = float(total)  # waits for the step(s)
        self.bad_steps += int(bad)
        if int(done) != self.steps_per_call:
            raise RuntimeError(f"engine step ran {int(done)} of {self.steps_per_call} steps")
        return loss / self.steps_per_call

    # device memory: TF's allocator stats on GPU/TPU; None on CPU (the caller samples RSS instead)
    def reset_memory(self) -> None:
        import tensorflow as tf

        for d in self.gpus:
            tf.config.experimental.reset_memory_stats(d)

    def peak_memory(self) -> int | None:
        import tensorflow as tf

        if not self.gpus:
            return None
        return max(int(tf.config.experimental.get_memory_info(d)["peak"]) for d in self.gpus)

    memory_kind = property(lambda self: "device_peak" if self.gpus else "host_rss_delta")

    def close(self) -> None:
        self.iterator = None
        self.trainer = None


def tf_synthetic_train_fn(records: dict):
    """A ``train_fn(ctx, seed)`` cycling fixed per-replica record batches (no reader in the way)."""
    import tensorflow as tf

    def train_fn(ctx, seed):
        return tf.data.Dataset.from_tensor_slices(records).repeat().prefetch(2)

    return train_fn


def tf_reader_train_fn(manifest, split: str, global_batch: int, shuffle_buffer: int):
    """The training reader, as ``seq2exp.cli.run`` builds it, repeating forever."""
    from data_prep.dataset import make_dataset

    def train_fn(ctx, seed):
        return make_dataset(manifest, split, global_batch, ctx, training=True, seed=seed, drop_remainder=True,
                            repeat=True, shuffle_buffer=shuffle_buffer)

    return train_fn


# ----------------------------------------------------------------------------- JAX

class JaxStep:
    """One jitted stateless training step of a registry model under the JAX backend."""

    backend = "jax"
    replicas = 1
    steps_per_call = 1

    def __init__(self, spec, model_config: dict, precision: str, batch: int, jit: bool, seed: int, records: dict,
                 schedule_steps: int = 1000):
        import jax

        from seq2exp.engine.optim import build_optimizer
        from seq2exp.engine.step_jax import JaxTrainStep

        # keras.utils.set_random_seed would import TensorFlow when it is installed; the default seeds of
        # Keras' initializers come from Python's `random` when no global Keras seed is set
        random.seed(seed)
        np.random.seed(seed)
        model = build_under_precision(precision, lambda: spec.build(model_config))
        # one schedule "epoch" of schedule_steps, as TFEngineStep: the timed steps stay near the schedule's start
        opt = build_optimizer(spec.optimizer, spec.schedule, schedule_steps, 1, precision=precision)
        opt.build(model.trainable_variables)
        engine = JaxTrainStep(spec, model, opt, jit=jit)
        self.params = int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
        self.global_batch = batch
        self._fn, self._state = engine.step, engine.initial_state()
        n = next(iter(records.values())).shape[0]
        self._batches = [jax.device_put({k: v[i] for k, v in records.items()}) for i in range(n)]
        self._i = 0
        self.bad_steps = 0
        self._device = jax.devices()[0]

    def step(self) -> float:
        loss, self._state = self._fn(self._state, self._batches[self._i % len(self._batches)])
        self._i += 1
        value = float(loss)  # waits for the step
        if not np.isfinite(value):
            self.bad_steps += 1
        return value

    def reset_memory(self) -> None:  # JAX has no reset: peak_bytes_in_use is the process's peak so far
        pass

    def peak_memory(self) -> int | None:
        stats = self._device.memory_stats() if hasattr(self._device, "memory_stats") else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    @property
    def memory_kind(self) -> str:
        return "device_peak_process" if self.peak_memory() is not None else "host_rss_delta"

    def close(self) -> None:
        self._state = self._batches = self._fn = None

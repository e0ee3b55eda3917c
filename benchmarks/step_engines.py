"""The training steps ``benchmarks.step_time`` times, one per Keras backend, and their memory probes.

* ``TFEngineStep``: the package's real engine step. A ``seq2exp.trainer.Trainer`` (the model spec's
  loss, optimizer + schedule, input transform, strategy, precision, ``jit``) is fed by
  ``distribute_datasets_from_function`` exactly as ``Trainer.fit`` feeds it, and its compiled
  ``Trainer._train_step`` runs ``steps_per_execution`` steps per call. Input: the TFRecord reader
  (``data_prep.dataset.make_dataset``) or synthetic uint8 record batches.
* ``JaxStep``: the same registry model and loss under ``KERAS_BACKEND=jax``: ``stateless_call`` +
  ``jax.value_and_grad`` + ``optimizer.stateless_apply``, ``jax.jit``-compiled with ``--jit on``,
  on synthetic batches already on the device. Imports nothing from TensorFlow. The learning-rate
  schedule is replaced by a constant (its cost is a few scalar ops; the update's cost does not
  depend on the value).

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

    def start(self) -> "RSSSampler":
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
    if not layout.singleton:
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
    """``Trainer._train_step`` of a registry model (see module docstring)."""

    backend = "tensorflow"

    def __init__(self, spec, model_config: dict, strategy, precision: str, batch: int, jit: bool, seed: int,
                 run_dir: str, train_fn, steps_per_execution: int = 1, schedule_steps: int = 1000):
        import tensorflow as tf

        from seq2exp.trainer import Trainer, TrainSettings

        # one schedule "epoch" of schedule_steps: the few timed steps stay near the schedule's start
        settings = TrainSettings(epochs=1, batch_size=batch, steps_per_epoch=schedule_steps, jit=jit, seed=seed,
                                 patience=None, nan_policy="skip", steps_per_execution=steps_per_execution)
        self.trainer = Trainer(spec, model_config, run_dir, strategy, precision, settings=settings)
        self.params = int(sum(int(np.prod(v.shape)) for v in self.trainer.model.trainable_variables))
        self.replicas, self.global_batch = self.trainer.replicas, self.trainer.global_batch
        self.steps_per_call = steps_per_execution
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: self.trainer._train_pipeline(train_fn, ctx, seed))
        self.iterator = iter(dist)
        self.n = tf.constant(steps_per_execution)
        self.bad_steps = 0
        self.gpus = [d.name.replace("/device:", "") for d in tf.config.list_logical_devices("GPU")]

    def step(self) -> float:
        total, bad, done = self.trainer._train_step(self.iterator, self.n)
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
    """The training reader, as ``seq2exp.cli`` builds it, repeating forever."""
    from data_prep.dataset import make_dataset

    def train_fn(ctx, seed):
        return make_dataset(manifest, split, global_batch, ctx, training=True, seed=seed, drop_remainder=True,
                            repeat=True, shuffle_buffer=shuffle_buffer)

    return train_fn


# ----------------------------------------------------------------------------- JAX

def _jax_optimizer(spec, precision: str):
    """(optimizer, clip value applied before it or None): seq2exp.optim's choices without TensorFlow."""
    import keras

    cfg = dict(spec.optimizer or {"name": "adam"})
    name = str(cfg.pop("name", "adam")).lower()
    # Keras takes one clipping setting; value clipping and a norm = value first, then the norm (as seq2exp.optim)
    value_first = cfg.pop("clipvalue") if cfg.get("clipvalue") and (cfg.get("clipnorm") or cfg.get(
        "global_clipnorm")) else None
    kwargs = {k: v for k, v in cfg.items()
              if k in ("beta_1", "beta_2", "epsilon", "global_clipnorm", "clipnorm", "clipvalue", "amsgrad")}
    if name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=cfg.get("weight_decay", 0.01), **kwargs)
    elif name == "adam":
        opt = keras.optimizers.Adam(learning_rate=1e-4, **kwargs)
    else:
        raise ValueError(f"JAX step: optimizer {name!r} of model {spec.name!r} is not supported (adam, adamw)")
    return (keras.optimizers.LossScaleOptimizer(opt) if precision == "mixed_float16" else opt), value_first


class JaxStep:
    """One jitted stateless training step of a registry model under the JAX backend."""

    backend = "jax"
    replicas = 1
    steps_per_call = 1

    def __init__(self, spec, model_config: dict, precision: str, batch: int, jit: bool, seed: int, records: dict):
        import jax
        import keras
        from keras import ops

        from seq2exp.losses import get_loss

        # keras.utils.set_random_seed would import TensorFlow when it is installed; the default seeds of
        # Keras' initializers come from Python's `random` when no global Keras seed is set
        random.seed(seed)
        np.random.seed(seed)
        model = build_under_precision(precision, lambda: spec.build(model_config))
        opt, clip_first = _jax_optimizer(spec, precision)
        opt.build(model.trainable_variables)
        loss_fn = get_loss(spec.loss)
        self.params = int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))
        self.global_batch = batch

        def compute(trainable, non_trainable, opt_vars, data):
            inputs = spec.inputs(data, True)
            out, updated = model.stateless_call(trainable, non_trainable, inputs, training=True)
            if spec.compute_loss is not None:  # may read model variables (e.g. label statistics): the traced ones
                mapping = list(zip(model.trainable_variables, trainable)) + list(
                    zip(model.non_trainable_variables, non_trainable))
                with keras.StatelessScope(state_mapping=mapping):
                    per_example = spec.compute_loss(model, data, inputs, out)
            else:
                per_example = loss_fn(spec.targets(data), out)
            non_trainable = updated
            loss = ops.mean(ops.cast(per_example, "float32"))
            with keras.StatelessScope(state_mapping=list(zip(opt.variables, opt_vars))):
                scaled = opt.scale_loss(loss)
            return scaled, (loss, non_trainable)

        grad_fn = jax.value_and_grad(compute, has_aux=True)

        def train_step(state, data):
            trainable, non_trainable, opt_vars = state
            (_, (loss, non_trainable)), grads = grad_fn(trainable, non_trainable, opt_vars, data)
            if clip_first:
                grads = [ops.clip(g, -clip_first, clip_first) for g in grads]
            trainable, opt_vars = opt.stateless_apply(opt_vars, grads, trainable)
            return loss, (trainable, non_trainable, opt_vars)

        self._fn = jax.jit(train_step, donate_argnums=0) if jit else train_step
        self._state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                       [v.value for v in opt.variables])
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

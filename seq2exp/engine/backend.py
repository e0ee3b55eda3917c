"""The engine's two backends behind one interface, chosen by KERAS_BACKEND (no TensorFlow import of its own).

`seq2exp.engine.trainer.Trainer` is the one training loop (epochs, exact validation, early stopping,
NaN policy, progress, TensorBoard, run folder). What differs per backend is an engine backend object,
`backend_tf.TFBackend` or `backend_jax.JaxBackend`, with the same members:

- `strategy` (a tf.distribute strategy / a `JaxPlacement`), `replicas`, `info` (for logs and metrics.json);
- `seed(seed)`, `scope()` (where variables are created), `check_settings(s)`, `prepare_model(model, s)`,
  `saving(model, s)` (context for writing model.keras);
- `train_step(spec, model, optimizer, global_batch, s)` -> a step with `distribute(train_fn, seed)`,
  `run_steps(iterator, n)` -> (loss sum, non-finite steps, steps done) and `sync_model()`;
- `eval_rows(spec, model, data, global_batch)` -> endless (rows, 4) [label, prediction, mask, loss] numpy arrays;
- `checkpoints(model, optimizer, run_dir, keep, say)` -> a `checkpoint_base.RunCheckpointsBase`;
- `lost_worker_error(err, epoch, last_checkpoint)` -> the error to raise instead, or None.

The command line resolves its `--strategy` here too (`resolve_strategy`, `describe`, `barrier`, `has_checkpoint`).
"""
from __future__ import annotations

import os

import keras

from seq2exp.engine.runtime import DEFAULT_COLLECTIVE_TIMEOUT_S, StrategyError, WorkerLostError  # noqa: F401

BACKENDS = ("tensorflow", "jax")


def backend_name() -> str:
    name = keras.backend.backend()
    if name not in BACKENDS:
        raise StrategyError(f"KERAS_BACKEND={name}: the training engine runs under {' or '.join(BACKENDS)}")
    return name


def engine_backend(strategy=None):
    """The engine backend object for KERAS_BACKEND, placed on `strategy` (None: the current default)."""
    if backend_name() == "jax":
        from seq2exp.engine.backend_jax import JaxBackend

        return JaxBackend(strategy)
    from seq2exp.engine.backend_tf import TFBackend

    return TFBackend(strategy)


def predict_fn(spec, model):
    """A compiled `batch -> (b,) predictions` of `spec.predict` for the active backend (one compilation per batch
    shape: callers pad their batches to a few fixed sizes)."""
    if backend_name() == "jax":
        from seq2exp.engine.step_jax import make_predict_fn
    else:
        from seq2exp.engine.step import make_predict_fn
    return make_predict_fn(spec, model)


def resolve_strategy(name: str = "auto", tpu: str | None = None,
                     collective_timeout_s: float | None = DEFAULT_COLLECTIVE_TIMEOUT_S):
    """`--strategy`: a tf.distribute strategy, or under JAX a `JaxPlacement` (distribution_jax's mapping)."""
    if backend_name() == "jax":
        from seq2exp.engine.distribution_jax import resolve_placement

        return resolve_placement(name, tpu)
    from seq2exp.engine.strategy import resolve_strategy as resolve_tf

    return resolve_tf(name, tpu, collective_timeout_s)


def describe(strategy) -> dict:
    """JSON-friendly summary of where a run trains (name, replicas, devices, workers, chief, ...)."""
    if backend_name() == "jax":
        return strategy.describe()
    from seq2exp.engine.strategy import describe as describe_tf

    return describe_tf(strategy)


def barrier(strategy) -> None:
    """Block until every worker / process gets here."""
    if backend_name() == "jax":
        strategy.barrier()
        return
    from seq2exp.engine.strategy import barrier as barrier_tf

    barrier_tf(strategy)


def has_checkpoint(run_dir: str) -> bool:
    """Whether a run folder holds a committed checkpoint, in this backend's format, to resume from."""
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if backend_name() == "jax":
        from seq2exp.engine.checkpointing_npz import committed

        return bool(committed(ckpt_dir))
    import tensorflow as tf

    return tf.train.latest_checkpoint(ckpt_dir) is not None

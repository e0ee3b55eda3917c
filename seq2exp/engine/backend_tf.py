"""The TensorFlow half of the engine: what `Trainer` needs that differs per backend (see seq2exp.engine.backend).

Compiled step: `strategy.run` (seq2exp.engine.step); placement: a `tf.distribute` strategy
(seq2exp.engine.strategy); input: tf.data; checkpoints: tf.train.Checkpoint
(seq2exp.engine.checkpointing).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from seq2exp.engine.checkpointing import RunCheckpoints
from seq2exp.engine.registry import ModelSpec
from seq2exp.engine.settings import TrainSettings
from seq2exp.engine.step import TFTrainStep, make_eval_step
from seq2exp.engine.strategy import describe, lost_worker_error


def _set_sync_bn(model: keras.Model, on: bool) -> None:
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = on


class TFBackend:
    """The engine's TensorFlow parts for one run under `strategy` (default: the current one)."""

    name = "tensorflow"

    def __init__(self, strategy: tf.distribute.Strategy | None = None):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.info = describe(self.strategy)
        self._eval_steps: dict = {}  # traced once per model, not once per evaluation

    def check_settings(self, s: TrainSettings) -> None:
        if s.jit and s.sync_batch_norm and self.replicas > 1:
            raise ValueError("jit cannot be combined with sync_batch_norm on several replicas: the batch-norm "
                             "all-reduce cannot run inside the XLA-compiled step; turn one of them off")

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)

    def scope(self):
        return self.strategy.scope()

    def prepare_model(self, model: keras.Model, s: TrainSettings) -> None:
        _set_sync_bn(model, s.sync_batch_norm)

    @contextlib.contextmanager
    def saving(self, model: keras.Model, s: TrainSettings):
        """The saved model should not need a replica context."""
        _set_sync_bn(model, False)
        try:
            yield
        finally:
            _set_sync_bn(model, s.sync_batch_norm)

    def checkpoints(self, model, optimizer, run_dir: str, keep: int, say: Callable[[str], None]) -> RunCheckpoints:
        return RunCheckpoints(model, optimizer, run_dir, self.strategy, self.info, keep, say)

    def train_step(self, spec: ModelSpec, model, optimizer, global_batch: int, s: TrainSettings) -> TFTrainStep:
        return TFTrainStep(spec, model, optimizer, self.strategy, global_batch, s.jit, s.nan_policy)

    def eval_rows(self, spec: ModelSpec, model, data, global_batch: int) -> Iterator[np.ndarray]:
        """Endless (global rows, 4) [label, prediction, mask, loss] arrays over `data` (fn(ctx) or a dataset)."""
        from seq2exp.engine.data import padded_batches

        def pipeline(ctx):
            ds = data.shard(ctx.num_input_pipelines, ctx.input_pipeline_id) if isinstance(data, tf.data.Dataset) \
                else data(ctx)
            return padded_batches(ds, ctx.get_per_replica_batch_size(global_batch))

        if id(model) not in self._eval_steps:
            self._eval_steps[id(model)] = make_eval_step(spec, model, self.strategy)
        step = self._eval_steps[id(model)]
        iterator = iter(self.strategy.distribute_datasets_from_function(pipeline))
        while True:
            yield step(iterator).numpy()


    def lost_worker_error(self, err: Exception, epoch: int, last_checkpoint: str | None):
        """The error to raise instead of `err` when a multi-worker peer was lost (None: `err` is something else)."""
        if not isinstance(err, tf.errors.OpError):
            return None
        return lost_worker_error(err, self.info, epoch, last_checkpoint)

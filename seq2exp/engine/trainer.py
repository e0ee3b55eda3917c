"""One custom training loop for the default, mirrored, multi-worker and TPU strategies.

`model.fit` breaks under MultiWorkerMirroredStrategy on TF 2.21 + Keras 3, so this loop drives
`strategy.run` itself through the step in `seq2exp.engine.step`. Validation gathers every
prediction from every replica for exact dataset-level metrics. Each epoch's data order depends only
on seed + epoch, so a killed-and-resumed run ends where an uninterrupted one does.

Crash safety (seq2exp.engine.checkpointing): a checkpoint counts only once the
`checkpoints/checkpoint` state file names it; history.json is written before that commit and cut
back to the committed epoch on resume; best/ and model.keras are written beside their final names
and renamed into place; a resume that finds the newest checkpoint unreadable falls back to the one
before. NaN/inf weights are never written.

Public step API (the benchmarks use it): `distribute(train_fn, seed)` gives the iterator `fit` feeds,
`run_steps(iterator, n)` runs n compiled steps and returns (loss sum, non-finite steps, steps done).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import keras
import tensorflow as tf

from seq2exp.engine import monitor
from seq2exp.engine.checkpointing import (
    CheckpointWriteError,  # noqa: F401  (public here too)
    RunCheckpoints,
    save_keras,
    write_history,
    write_text,
)
from seq2exp.engine.data import padded_batches
from seq2exp.engine.metrics import PredictionCollector
from seq2exp.engine.optim import build_optimizer, current_lr, inner_optimizer
from seq2exp.engine.registry import ModelSpec
from seq2exp.engine.settings import NonFiniteLossError, TrainSettings  # noqa: F401  (public here too)
from seq2exp.engine.step import TFTrainStep, make_eval_step
from seq2exp.engine.strategy import Watchdog, describe, is_chief, lost_worker_error, set_precision

log = logging.getLogger(__name__)
_METRICS = ("pearson", "spearman", "r2", "mse", "mae")


class Trainer:
    def __init__(self, spec: ModelSpec, model_config: dict | str | None, run_dir: str,
                 strategy: tf.distribute.Strategy | None = None, settings: TrainSettings | None = None, *,
                 train_examples: int | None = None, val_examples: int | None = None):
        """`train_examples` sizes an epoch when settings.steps_per_epoch is None; `val_examples` only
        estimates the first validation's duration for the ETA."""
        self.spec, self.run_dir, self.val_examples = spec, run_dir, val_examples
        self.settings = s = settings or TrainSettings()
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.global_batch = s.batch_size * self.replicas
        self.steps_per_epoch = s.steps_per_epoch or (train_examples // self.global_batch if train_examples else 0)
        if self.steps_per_epoch < 1:
            raise ValueError("set settings.steps_per_epoch, or pass train_examples >= the global batch "
                             f"({self.global_batch} = {s.batch_size} per replica x {self.replicas} replicas)")
        if s.jit and s.sync_batch_norm and self.replicas > 1:
            raise ValueError("jit cannot be combined with sync_batch_norm on several replicas: the batch-norm "
                             "all-reduce cannot run inside the XLA-compiled step; turn one of them off")
        self.chief, self.info = is_chief(self.strategy), describe(self.strategy)
        self.multiworker = self.info["workers"] > 1
        self.precision = s.precision
        if isinstance(model_config, str):
            model_config = spec.presets[model_config]()
        self.model_config = dict(model_config or {})

        keras.utils.set_random_seed(s.seed)  # same initial weights on every worker and every rerun
        previous = keras.config.dtype_policy()
        set_precision(s.precision)
        try:
            with self.strategy.scope():
                self.model = spec.build(self.model_config)
                self._set_sync_bn(s.sync_batch_norm)
                self.optimizer = build_optimizer(s.optimizer or spec.optimizer, s.schedule or spec.schedule,
                                                 self.steps_per_epoch, s.epochs, self.replicas, s.precision)
                self.optimizer.build(self.model.trainable_variables)  # eagerly: needed under multi-worker
                self.checkpoints = RunCheckpoints(self.model, self.optimizer, run_dir, self.strategy, self.info,
                                                  s.keep_checkpoints, self._say)
        finally:
            keras.config.set_dtype_policy(previous)
        self.ckpt_dir, self.best_prefix = self.checkpoints.ckpt_dir, self.checkpoints.best_prefix
        self.step = TFTrainStep(spec, self.model, self.optimizer, self.strategy, self.global_batch, s.jit,
                                s.nan_policy)
        self._eval_step = make_eval_step(spec, self.model, self.strategy)
        self._beat: Callable[[str], None] = lambda doing: None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ public step API
    def distribute(self, train_fn: Callable, seed: int):
        """Iterator over per-replica batches of `train_fn(input_context, seed)`, as `fit` feeds `run_steps`."""
        return self.step.distribute(train_fn, seed)

    def run_steps(self, iterator, n: int):
        """n compiled training steps: (sum of the finite losses, non-finite steps, steps done) as tensors."""
        return self.step.run(iterator, tf.constant(n))

    # ------------------------------------------------------------------ loop
    def _set_sync_bn(self, on: bool) -> None:
        for layer in self.model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = on

    def evaluate(self, data) -> dict:
        """Exact metrics over a whole split: `data` is `fn(input_context)` or a per-replica-batched dataset."""
        def pipeline(ctx):
            ds = data.shard(ctx.num_input_pipelines, ctx.input_pipeline_id) if isinstance(data, tf.data.Dataset) \
                else data(ctx)
            return padded_batches(ds, ctx.get_per_replica_batch_size(self.global_batch))

        dist = self.strategy.distribute_datasets_from_function(pipeline)
        collector, iterator = PredictionCollector(), iter(dist)
        while True:
            rows = self._eval_step(iterator).numpy()
            self._beat("evaluating")
            keep = rows[:, 2] > 0
            if not keep.any():  # every replica on every worker is padding: all agree to stop
                break
            collector.update(rows[:, 0], rows[:, 1], keep)
        if collector.n == 0:
            return {**{k: float("nan") for k in _METRICS}, "n": 0}
        return collector.result()

    def fit(self, train_fn: Callable, val_fn: Callable | None = None, resume: bool = False,
            init_from: str | None = None, on_epoch_end: Callable[[dict], None] | None = None) -> dict:
        """Train to settings.epochs; `train_fn(input_context, seed)` gives per-replica batches (drop_remainder=True).

        `on_epoch_end(row)` runs after each epoch's checkpoint (e.g. to stop on a time budget)."""
        s = self.settings
        watchdog = Watchdog(s.stall_timeout_s if self.multiworker else None,
                            f" (worker {self.info['worker_index']} of {self.info['workers']})")
        try:
            with watchdog:
                self._beat = self.checkpoints.beat = watchdog.beat
                return self._fit(train_fn, val_fn, resume, init_from, on_epoch_end)
        except tf.errors.OpError as err:
            lost = self.multiworker and lost_worker_error(err, self.info, int(self.checkpoints.epoch.numpy()) + 1,
                                                          tf.train.latest_checkpoint(self.ckpt_dir))
            if not lost:
                raise
            raise lost from err
        finally:
            self._beat = self.checkpoints.beat = lambda doing: None

    def _fit(self, train_fn, val_fn, resume, init_from, on_epoch_end) -> dict:
        s = self.settings
        if resume:
            history = self.checkpoints.resume()
            if history is None:
                log.warning("resume: no checkpoint in %s; starting from scratch", self.ckpt_dir)
            else:
                self.history = history
        elif init_from:
            self.load_weights(init_from)
        start = int(self.checkpoints.epoch.numpy())
        self._say(f"training {self.spec.name}: {self.info['name']} x{self.replicas} replicas, batch "
                  f"{s.batch_size}/replica = {self.global_batch} global, {self.steps_per_epoch} steps/epoch, "
                  f"epochs {start + 1}..{s.epochs}, precision {self.precision}")
        self._board = monitor.Board(self.run_dir, s.tensorboard_every, self.global_batch) if self.chief else None
        self._progress = monitor.Progress(s.epochs, self.steps_per_epoch, self.global_batch,
                                          self.val_examples if val_fn is not None else 0, s.log_every_seconds,
                                          bar=None if self.chief else False)
        for epoch in range(start, s.epochs):
            if self._stop_early():
                break
            row = self._train_epoch(train_fn, epoch, validating=val_fn is not None)
            t0 = time.perf_counter()
            val = self.evaluate(val_fn) if val_fn is not None else {}
            if val_fn is not None:
                self._progress.validation_done(time.perf_counter() - t0)
            row.update({f"val_{k}": val.get(k, float("nan")) for k in _METRICS + ("n",)})
            self._end_epoch(row, has_val=val_fn is not None)
            self._log_epoch(row)
            if self._board is not None:
                self._board.pause(time.perf_counter() - t0)
            if on_epoch_end is not None:
                on_epoch_end(row)
        return self._finish(has_val=val_fn is not None)

    def _train_epoch(self, train_fn: Callable, epoch: int, validating: bool = True) -> dict:
        s, total_steps = self.settings, self.steps_per_epoch
        iterator = self.distribute(train_fn, s.seed + epoch)  # same order after a resume
        step, loss_sum, skipped, t0 = 0, 0.0, 0, time.time()
        if self.chief:
            self._progress.start_epoch(epoch)
        try:
            while step < total_steps:
                total, bad, done = self.run_steps(iterator, min(s.steps_per_execution, total_steps - step))
                total, bad, done = float(total), int(bad), int(done)
                step, loss_sum, skipped = step + done, loss_sum + total, skipped + bad
                self._beat(f"training epoch {epoch + 1} step {step}")
                if bad and s.nan_policy == "stop":
                    raise NonFiniteLossError(
                        f"non-finite training loss at epoch {epoch + 1}, step {step}/{total_steps} (lr "
                        f"{current_lr(self.optimizer):.3g}); stopped without applying it. Checkpoints in "
                        f"{self.ckpt_dir} hold only finite weights. Lower the learning rate or use nan_policy='skip'.")
                if self.chief:
                    self._progress.update(step, done, loss_sum / max(step - skipped, 1), validating)
                    if done > bad:
                        self._board.steps(self._iterations(), total / (done - bad), lambda: current_lr(self.optimizer))
        finally:
            if self.chief:
                self._progress.end_epoch()
        seconds = time.time() - t0
        if skipped:
            log.warning("epoch %d: nan_policy='skip' dropped %d of %d updates with a non-finite loss "
                        "(history column skipped_steps)", epoch + 1, skipped, step)
            if skipped == step:
                raise NonFiniteLossError(f"every update of epoch {epoch + 1} had a non-finite loss; stopping. "
                                         f"Checkpoints in {self.ckpt_dir} hold only finite weights.")
        return {"epoch": epoch + 1, "step": self._iterations(),
                "lr": current_lr(self.optimizer), "loss": loss_sum / max(step - skipped, 1),
                "seconds": seconds, "seq_per_s": step * self.global_batch / max(seconds, 1e-9),
                "skipped_steps": skipped}

    def _iterations(self) -> int:
        return int(inner_optimizer(self.optimizer).iterations.numpy())

    def _stop_early(self) -> bool:
        p = self.settings.patience
        return bool(p) and int(self.checkpoints.bad_epochs.numpy()) >= p

    def _end_epoch(self, row: dict, has_val: bool) -> None:
        """History first, then the checkpoint (the commit point), then best/: a kill between any two
        leaves files that a resume reconciles with the committed epoch."""
        c = self.checkpoints
        score, improved = row["val_r2"], not has_val
        if has_val and math.isfinite(score) and score > float(c.best_score.numpy()):
            c.best_score.assign(score)
            c.bad_epochs.assign(0)
            improved = True
        elif has_val:
            c.bad_epochs.assign_add(1)
        if improved:
            c.best_epoch.assign(row["epoch"])
        c.epoch.assign(row["epoch"])
        self.history.append(row)
        if self.chief:
            write_history(self.run_dir, self.history)
        c.save(row["epoch"])
        if improved and has_val:
            c.save_best()

    def _log_epoch(self, row: dict) -> None:
        if not self.chief:
            return
        self._say("epoch {epoch}: loss {loss:.4f} val r2 {val_r2:.4f} pearson {val_pearson:.4f} "
                  "lr {lr:.3g} {seconds:.1f}s {seq_per_s:,.0f} seq/s".format(**row))
        self._board.epoch(row, row["step"])

    def _say(self, text: str) -> None:
        if self.chief:
            print(text, file=sys.stderr, flush=True)

    def load_weights(self, source: str) -> None:
        """Weights only (fine-tuning): a `.keras` file, a checkpoint prefix, a checkpoint dir or a run dir."""
        self.checkpoints.load_weights(source, self.spec.name)

    def _finish(self, has_val: bool) -> dict:
        s = self.settings
        best = int(self.checkpoints.best_epoch.numpy())
        if s.restore_best and has_val:
            self.checkpoints.restore_best()
        row = next((r for r in self.history if r["epoch"] == best), self.history[-1] if self.history else {})
        summary = {"model": self.spec.name, "best_epoch": best, "epochs_run": int(self.checkpoints.epoch.numpy()),
                   "stopped_early": self._stop_early(),
                   "val": {k: row.get(f"val_{k}") for k in _METRICS + ("n",)},
                   "train_seconds": sum(r["seconds"] for r in self.history), "replicas": self.replicas,
                   "global_batch_size": self.global_batch, "per_replica_batch_size": s.batch_size,
                   "steps_per_epoch": self.steps_per_epoch, "precision": self.precision, "strategy": self.info,
                   "settings": asdict(s), "model_config": self.model_config}
        if self.chief:
            write_text(os.path.join(self.run_dir, "metrics.json"), json.dumps(summary, indent=1, default=str))
            if self.history:
                write_text(os.path.join(self.run_dir, "curves.png"), monitor.curves_png(self.history))
            self._set_sync_bn(False)  # the saved model should not need a replica context
            save_keras(self.model, os.path.join(self.run_dir, "model.keras"))
            self._set_sync_bn(s.sync_batch_norm)
        self.checkpoints.barrier()
        return summary

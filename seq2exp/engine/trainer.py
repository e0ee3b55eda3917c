"""One custom training loop for both Keras backends and every strategy / device placement.

`model.fit` breaks under MultiWorkerMirroredStrategy on TF 2.21 + Keras 3, so this loop drives a
compiled step itself. What differs per backend (the compiled step, device placement, input
pipeline, checkpoint format, TensorBoard writer) sits behind `seq2exp.engine.backend`: under
TensorFlow `strategy.run` over a tf.distribute strategy (seq2exp.engine.step), under JAX a `jax.jit`
stateless step over keras.distribution (seq2exp.engine.step_jax). The loop, exact validation, early
stopping, NaN policy, progress, TensorBoard and the run folder are this one module for both.
Validation gathers every prediction from every replica for exact dataset-level metrics. Each
epoch's data order depends only on seed + epoch, so a killed-and-resumed run ends where an
uninterrupted one does.

Crash safety (seq2exp.engine.checkpoint_base): a checkpoint counts only once committed;
history.json is written before that commit and cut back to the committed epoch on resume; best/ and
model.keras are written beside their final names and renamed into place; a resume that finds the
newest checkpoint unreadable falls back to the one before. NaN/inf weights are never written.

Public step API (the benchmarks use it): `distribute(train_fn, seed)` gives the iterator `fit` feeds,
`run_steps(iterator, n)` runs n compiled steps and returns (loss sum, non-finite steps, steps done).
Under JAX the model's variables are brought up to date at the end of each epoch (`sync_model()`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import keras
import numpy as np

from seq2exp.engine import monitor
from seq2exp.engine.backend import engine_backend
from seq2exp.engine.files import (
    CheckpointWriteError,  # noqa: F401  (public here too)
    save_keras,
    write_history,
    write_text,
)
from seq2exp.engine.metrics import PredictionCollector
from seq2exp.engine.optim import build_optimizer, current_lr, inner_optimizer
from seq2exp.engine.registry import ModelSpec
from seq2exp.engine.runtime import Watchdog, set_precision
from seq2exp.engine.settings import NonFiniteLossError, TrainSettings  # noqa: F401  (public here too)

log = logging.getLogger(__name__)
_METRICS = ("pearson", "spearman", "r2", "mse", "mae")
#: what each epoch records of its validation: the training loss on the validation rows, then the metrics
_VAL_KEYS = ("loss", *_METRICS, "n")


class Trainer:
    def __init__(self, spec: ModelSpec, model_config: dict | str | None, run_dir: str, strategy=None,
                 settings: TrainSettings | None = None, *, train_examples: int | None = None,
                 val_examples: int | None = None):
        """`strategy`: a tf.distribute strategy (TensorFlow) or a `distribution_jax.JaxPlacement` (JAX); None: the
        current default (TF's default strategy; Keras' global distribution or one device under JAX).
        `train_examples` sizes an epoch when settings.steps_per_epoch is None; `val_examples` only
        estimates the first validation's duration for the ETA."""
        self.spec, self.run_dir, self.val_examples = spec, run_dir, val_examples
        self.settings = s = settings or TrainSettings()
        self.backend = backend = engine_backend(strategy)
        self.strategy, self.replicas = backend.strategy, backend.replicas
        self.global_batch = s.batch_size * self.replicas
        self.steps_per_epoch = s.steps_per_epoch or (train_examples // self.global_batch if train_examples else 0)
        if self.steps_per_epoch < 1:
            raise ValueError("set settings.steps_per_epoch, or pass train_examples >= the global batch "
                             f"({self.global_batch} = {s.batch_size} per replica x {self.replicas} replicas)")
        backend.check_settings(s)
        self.info = {**backend.info, "backend": backend.name}
        self.chief, self.multiworker = self.info["chief"], self.info["workers"] > 1
        self.precision = s.precision
        if isinstance(model_config, str):
            model_config = spec.presets[model_config]()
        self.model_config = dict(model_config or {})

        backend.seed(s.seed)  # same initial weights on every worker and every rerun
        previous = keras.config.dtype_policy()
        set_precision(s.precision)
        try:
            with backend.scope():
                self.model = spec.build(self.model_config)
                backend.prepare_model(self.model, s)
                self.optimizer = build_optimizer(s.optimizer or spec.optimizer, s.schedule or spec.schedule,
                                                 self.steps_per_epoch, s.epochs, self.replicas, s.precision)
                self.optimizer.build(self.model.trainable_variables)  # eagerly: needed under multi-worker
                self.checkpoints = backend.checkpoints(self.model, self.optimizer, run_dir, s.keep_checkpoints,
                                                       self._say)
        finally:
            keras.config.set_dtype_policy(previous)
        self.ckpt_dir, self.best_prefix = self.checkpoints.ckpt_dir, self.checkpoints.best_prefix
        self.step = backend.train_step(spec, self.model, self.optimizer, self.global_batch, s)
        self._beat: Callable[[str], None] = lambda doing: None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ public step API
    def distribute(self, train_fn: Callable, seed: int):
        """Iterator over the batches of `train_fn(input_context, seed)`, as `fit` feeds `run_steps`."""
        return self.step.distribute(train_fn, seed)

    def run_steps(self, iterator, n: int):
        """n compiled training steps: (sum of the finite losses, non-finite steps, steps done), device scalars."""
        return self.step.run_steps(iterator, n)

    def sync_model(self) -> None:
        """Bring the model's and optimizer's variables up to date with the compiled step (a no-op under TF)."""
        self.step.sync_model()

    # ------------------------------------------------------------------ loop
    def evaluate(self, data) -> dict:
        """Exact metrics over a whole split: `data` is `fn(input_context)`, or batches (a tf.data dataset; under
        JAX an iterable of numpy batch dicts)."""
        collector, loss_sum = PredictionCollector(), 0.0
        with contextlib.closing(self.backend.eval_rows(self.spec, self.model, data, self.global_batch)) as rows_of:
            for rows in rows_of:
                self._beat("evaluating")
                keep = rows[:, 2] > 0
                if not keep.any():  # every replica on every worker is padding: all agree to stop
                    break
                collector.update(rows[:, 0], rows[:, 1], keep)
                loss_sum += float(np.sum(rows[keep, 3], dtype=np.float64))
        if collector.n == 0:
            return {**{k: float("nan") for k in _VAL_KEYS}, "n": 0}
        return {"loss": loss_sum / collector.n, **collector.result()}

    def fit(self, train_fn: Callable, val_fn: Callable | None = None, resume: bool = False,
            init_from: str | None = None, on_epoch_end: Callable[[dict], None] | None = None,
            label_stats: dict | None = None) -> dict:
        """Train to settings.epochs; `train_fn(input_context, seed)` gives per-replica batches (drop_remainder=True).

        A fresh start (not resumed, no `init_from`) first runs the model's data-aware init (`spec.initialize`, e.g.
        the output bias at the label mean) with `label_stats` ({"mean", "std"} of the training labels), estimated
        from `train_fn`'s batches when not given: without it a model can start far off (validation R2 -3 after two
        epochs). `on_epoch_end(row)` runs after each epoch's checkpoint (e.g. to stop on a time budget)."""
        s = self.settings
        watchdog = Watchdog(s.stall_timeout_s if self.multiworker else None,
                            f" (worker {self.info['worker_index']} of {self.info['workers']})")
        try:
            with watchdog:
                self._beat = self.checkpoints.beat = watchdog.beat
                return self._fit(train_fn, val_fn, resume, init_from, on_epoch_end, label_stats)
        except Exception as err:
            lost = self.multiworker and self.backend.lost_worker_error(
                err, int(self.checkpoints.epoch.numpy()) + 1, self.checkpoints.latest())
            if not lost:
                raise
            raise lost from err
        finally:
            self._beat = self.checkpoints.beat = lambda doing: None

    def _fit(self, train_fn, val_fn, resume, init_from, on_epoch_end, label_stats) -> dict:
        s = self.settings
        history = None
        if resume:
            history = self.checkpoints.resume()
            if history is None:
                log.warning("resume: no checkpoint in %s; starting from scratch", self.ckpt_dir)
            else:
                self.history = history
        elif init_from:
            self.load_weights(init_from)
        if history is None and not init_from and self.spec.initialize is not None:
            self.initialize(label_stats or self.label_stats(train_fn))
        start = int(self.checkpoints.epoch.numpy())
        self._say(f"training {self.spec.name} ({self.backend.name}): {self.info['name']} x{self.replicas} "
                  f"replicas, batch "
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
            row.update({f"val_{k}": val.get(k, float("nan")) for k in _VAL_KEYS})
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
                    self.sync_model()  # the bad step was not applied: the variables hold the last finite update
                    raise NonFiniteLossError(
                        f"non-finite training loss at epoch {epoch + 1}, step {step}/{total_steps} (lr "
                        f"{self._lr():.3g}); stopped without applying it. Checkpoints in "
                        f"{self.ckpt_dir} hold only finite weights. Lower the learning rate or use nan_policy='skip'.")
                if self.chief:
                    self._progress.update(step, done, loss_sum / max(step - skipped, 1), validating)
                    if done > bad:
                        self._board.steps(self._iterations(), total / (done - bad), self._lr)
        finally:
            if hasattr(iterator, "close"):  # the JAX prefetcher: its thread stops and its batches are freed now
                iterator.close()
            if self.chief:
                self._progress.end_epoch()
        seconds = time.time() - t0
        self.sync_model()  # before anything reads the variables: evaluation, checkpoint, lr, step
        if skipped:
            log.warning("epoch %d: nan_policy='skip' dropped %d of %d updates with a non-finite loss "
                        "(history column skipped_steps)", epoch + 1, skipped, step)
            if skipped == step:
                raise NonFiniteLossError(f"every update of epoch {epoch + 1} had a non-finite loss; stopping. "
                                         f"Checkpoints in {self.ckpt_dir} hold only finite weights.")
        return {"epoch": epoch + 1, "step": self._iterations(),
                "lr": self._lr(), "loss": loss_sum / max(step - skipped, 1),
                "seconds": seconds, "seq_per_s": step * self.global_batch / max(seconds, 1e-9),
                "skipped_steps": skipped}

    def _iterations(self) -> int:
        """Optimizer updates so far (the compiled step's state, under JAX, mid-epoch too)."""
        return self.step.current(lambda: int(keras.ops.convert_to_numpy(inner_optimizer(self.optimizer).iterations)))

    def _lr(self) -> float:
        """The learning rate the next update uses (the compiled step's state, under JAX, mid-epoch too)."""
        return self.step.current(lambda: current_lr(self.optimizer))

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
        validated = math.isfinite(row.get("val_n", math.nan))
        val = "val r2 {val_r2:.4f} pearson {val_pearson:.4f} " if validated else ""
        self._say(("epoch {epoch}: loss {loss:.4f} " + val + "lr {lr:.3g} {seconds:.1f}s {seq_per_s:,.0f} seq/s")
                  .format(**row))
        self._board.epoch(row, row["step"])

    def _say(self, text: str) -> None:
        if self.chief:
            print(text, file=sys.stderr, flush=True)

    def load_weights(self, source: str) -> None:
        """Weights only (fine-tuning): a `.keras` file, a checkpoint prefix, a checkpoint dir or a run dir."""
        from seq2exp.engine.preflight import PreflightError

        try:
            self.checkpoints.load_weights(source, self.spec.name)
        except Exception as err:  # noqa: BLE001 - whatever the file is, it cannot start this model: one line
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if not text.startswith(source):
                text = f"{source}: cannot initialise {self.spec.name} from it ({text[:300]})"
            raise PreflightError(f"--init-from {text}") from err

    def initialize(self, stats: dict) -> None:
        """The model's data-aware init of fresh weights, from the training labels' {"mean", "std"}."""
        with self.backend.scope():
            self.spec.initialize(self.model, stats)

    def label_stats(self, train_fn: Callable, max_batches: int = 100) -> dict:
        """Mean and std of the labels in the first epoch's batches (up to `max_batches`): one input pipeline and the
        run's seed, so every worker gets the same numbers."""
        import numpy as np

        from seq2exp.engine.data import ProcessInput

        labels, batches = [], train_fn(ProcessInput(), self.settings.seed)
        for i, batch in enumerate(batches):
            if i >= min(max_batches, self.steps_per_epoch) or "label" not in batch:
                break
            labels.append(np.asarray(keras.ops.convert_to_numpy(batch["label"]), np.float64).reshape(-1))
        if hasattr(batches, "close"):
            batches.close()
        if not labels:
            raise ValueError("the data-aware init needs labels: train_fn's batches have no 'label' field")
        y = np.concatenate(labels)
        y = y[np.isfinite(y)]  # a NaN label poisons its batch's update (nan_policy), not the init
        if not y.size:
            raise ValueError("the data-aware init found no finite label in the first training batches")
        return {"mean": float(y.mean()), "std": float(y.std()), "count": int(y.size)}

    def _finish(self, has_val: bool) -> dict:
        s = self.settings
        best = int(self.checkpoints.best_epoch.numpy())
        if s.restore_best and has_val:
            self.checkpoints.restore_best()
        row = next((r for r in self.history if r["epoch"] == best), self.history[-1] if self.history else {})
        summary = {"model": self.spec.name, "best_epoch": best, "epochs_run": int(self.checkpoints.epoch.numpy()),
                   "stopped_early": self._stop_early(),
                   "val": {k: row.get(f"val_{k}") for k in _VAL_KEYS},
                   "train_seconds": sum(r["seconds"] for r in self.history), "replicas": self.replicas,
                   "global_batch_size": self.global_batch, "per_replica_batch_size": s.batch_size,
                   "steps_per_epoch": self.steps_per_epoch, "precision": self.precision, "strategy": self.info,
                   "validation": has_val, "best_weights": bool(s.restore_best and has_val),
                   "early_stopping": bool(s.patience and has_val),
                   "settings": asdict(s), "model_config": self.model_config}
        if self.chief:
            self._board.close()
            write_text(os.path.join(self.run_dir, "metrics.json"), json.dumps(summary, indent=1, default=str))
            if self.history:
                write_text(os.path.join(self.run_dir, "curves.png"), monitor.curves_png(self.history))
            with self.backend.saving(self.model, s):
                save_keras(self.model, os.path.join(self.run_dir, "model.keras"))
        self.checkpoints.barrier()
        return summary

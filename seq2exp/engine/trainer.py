"""One custom training loop for the default, mirrored, multi-worker and TPU strategies.

`model.fit` breaks under MultiWorkerMirroredStrategy on TF 2.21 + Keras 3, so this loop drives
`strategy.run` itself. Gradients are all-reduced once here (the optimizer's own reduction is
turned off) so the non-finite check and global-norm clipping see the global gradient on every
replica alike. Validation gathers every prediction from every replica for exact dataset-level
metrics. Checkpoints hold everything a resumed run needs (weights, optimizer slots and step,
dropout RNG state, early-stopping state) and each epoch's data order depends only on
seed + epoch, so a killed-and-resumed run ends where an uninterrupted one does.

Crash safety: a checkpoint counts only once the `checkpoints/checkpoint` state file names it
(TF replaces that file atomically after the data and index files are complete); history.json is
written before that commit and cut back to the committed epoch on resume; best/ and model.keras
are written beside their final names and renamed into place; a resume that finds the newest
checkpoint unreadable falls back to the one before. NaN/inf weights are never written.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from seq2exp.checkpointing import (CheckpointWriteError, checkpoint_epoch, recover_swap, remove,  # noqa: F401
                                   remove_uncommitted, restore_newest_intact, save_keras, swap_in, write_failed,
                                   write_history, write_text)
from seq2exp.data import numeric_fields, padded_batches
from seq2exp.losses import get_loss
from seq2exp.metrics import PredictionCollector
from seq2exp.optim import apply_if_finite, build_optimizer, current_lr, inner_optimizer, use_reduced_gradients
from seq2exp.registry import ModelSpec
from seq2exp.settings import NonFiniteLossError, TrainSettings  # noqa: F401  (public here too)
from seq2exp.strategy import (Watchdog, WorkerLostError, barrier, describe, is_chief,  # noqa: F401
                              lost_worker_error, peer_failure_reason, set_precision)

log = logging.getLogger(__name__)
_METRICS = ("pearson", "spearman", "r2", "mse", "mae")
_SUM = tf.distribute.ReduceOp.SUM


class Trainer:
    def __init__(self, spec: ModelSpec, model_config: dict | str | None, run_dir: str,
                 strategy: tf.distribute.Strategy | None = None, precision: str = "float32",
                 optimizer_cfg: dict | None = None, schedule_cfg: dict | None = None,
                 settings: TrainSettings | None = None, *, train_examples: int | None = None):
        self.spec, self.run_dir = spec, run_dir
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
        self.precision = precision
        self.loss_fn = get_loss(spec.loss)
        if isinstance(model_config, str):
            model_config = spec.presets[model_config]()
        self.model_config = dict(model_config or {})
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.best_prefix = os.path.join(run_dir, "best", "weights")
        # Non-chief workers take part in every save (TF's multi-worker recipe) into folders they delete again.
        own = "" if self.chief else f"/.worker{self.info['worker_index']}_tmp"
        self._write_ckpt_dir = self.ckpt_dir + own
        self._write_best = os.path.join(run_dir + own, "best", "weights") if own else self.best_prefix
        tf.io.gfile.makedirs(run_dir)
        if self.chief:
            recover_swap(os.path.dirname(self.best_prefix))

        keras.utils.set_random_seed(s.seed)  # same initial weights on every worker and every rerun
        previous = keras.config.dtype_policy()
        set_precision(precision)
        try:
            with self.strategy.scope():
                self.model = spec.build(self.model_config)
                self._set_sync_bn(s.sync_batch_norm)
                self.optimizer = build_optimizer(optimizer_cfg or spec.optimizer, schedule_cfg or spec.schedule,
                                                 self.steps_per_epoch, s.epochs, self.replicas, precision)
                self.optimizer.build(self.model.trainable_variables)  # eagerly: needed under multi-worker
                use_reduced_gradients(self.optimizer)  # _replica_step all-reduces them itself
                self._epoch, self._best_epoch, self._bad_epochs = (
                    tf.Variable(0, dtype=tf.int64, trainable=False, name=n) for n in ("epoch", "best_epoch", "bad"))
                self._best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_score")
        finally:
            keras.config.set_dtype_policy(previous)
        # The explicit map also covers state Keras does not track (dropout RNG seeds); keyed by position, not by
        # auto-generated names, which depend on what else the process built first.
        every = {str(i): v for i, v in enumerate(self.model.variables)}
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, variables=every, epoch=self._epoch,
            best_score=self._best_score, best_epoch=self._best_epoch, bad_epochs=self._bad_epochs)
        # tagged with its epoch, so a resume can tell whether best/ is in step with the checkpoint
        self._best_ckpt = tf.train.Checkpoint(model=self.model, variables=every, epoch=self._best_epoch)
        self._beat: Callable[[str], None] = lambda doing: None
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._write_ckpt_dir, max_to_keep=s.keep_checkpoints)
        self._train_step = self._make_train_function()
        self._eval_step = self._make_eval_function()
        self.history: list[dict] = []

    def _set_sync_bn(self, on: bool) -> None:
        for layer in self.model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = on

    def _grads(self, batch):
        with tf.GradientTape() as tape:
            inputs = self.spec.inputs(batch, True)
            out = self.model(inputs, training=True)
            if self.spec.compute_loss is not None:  # needs the (e.g. masked) inputs or the model's label stats
                per_example = tf.cast(self.spec.compute_loss(self.model, batch, inputs, out), tf.float32)
            else:
                per_example = tf.cast(self.loss_fn(self.spec.targets(batch), out), tf.float32)
            loss = tf.reduce_sum(per_example) / self.global_batch
            if self.model.losses:
                loss += tf.cast(tf.add_n(self.model.losses), tf.float32) / self.replicas
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "inner_optimizer") else loss
        return loss, tape.gradient(scaled, self.model.trainable_variables)

    def _replica_step(self, batch):
        before = [tf.identity(v) for v in self._forward_state]
        loss, grads = self._grad_fn(batch)
        keep = [i for i, g in enumerate(grads) if g is not None]
        reduced = tf.distribute.get_replica_context().all_reduce(_SUM, [loss] + [grads[i] for i in keep])
        loss, grads = reduced[0], list(grads)
        for k, i in enumerate(keep):
            grads[i] = reduced[k + 1]
        finite = tf.math.is_finite(loss)
        if not hasattr(self.optimizer, "inner_optimizer"):  # loss scaling skips overflowing grads itself
            finite = tf.logical_and(finite, tf.math.is_finite(tf.add_n([tf.reduce_sum(g) for g in reduced[1:]])))
        apply_if_finite(self.optimizer, grads, self.model.trainable_variables, finite)
        for v, old in zip(self._forward_state, before):  # a dropped step also drops its batch-norm statistics
            v.assign(tf.where(finite, v, old))
        return loss, finite

    def _make_train_function(self):
        self._grad_fn = tf.function(self._grads, jit_compile=True) if self.settings.jit else self._grads
        stop = self.settings.nan_policy == "stop"
        strategy = self.strategy
        # what a forward pass updates besides gradients (moving statistics): restored when "skip" drops a step
        self._forward_state = [] if stop else [v for v in self.model.non_trainable_variables
                                               if "float" in str(v.dtype)]

        def run_steps(iterator, n):
            total, bad, done = tf.constant(0.0), tf.constant(0), tf.constant(0)
            for _ in tf.range(n):
                if stop and bad > 0:
                    break
                loss, finite = strategy.run(self._replica_step, args=(next(iterator),))
                loss, finite = (strategy.experimental_local_results(x)[0] for x in (loss, finite))  # all-reduced
                total += tf.where(finite, loss, 0.0)
                bad += tf.cast(tf.logical_not(finite), tf.int32)
                done += 1
            return total, bad, done

        return tf.function(run_steps)

    def _make_eval_function(self):
        def replica(batch, mask):
            pred = tf.reshape(tf.cast(self.spec.predict(self.model, batch, self.spec.inputs), tf.float32), [-1])
            label = tf.reshape(tf.cast(batch["label"], tf.float32), [-1])
            return tf.stack([label, pred, tf.cast(mask, tf.float32)], axis=1)

        @tf.function
        def step(iterator):
            batch, mask = next(iterator)
            return self.strategy.gather(self.strategy.run(replica, args=(batch, mask)), axis=0)

        return step

    def _train_pipeline(self, train_fn, ctx, seed):
        ds = train_fn(ctx, seed)
        first = next(iter(ds.element_spec.values())) if isinstance(ds.element_spec, dict) else None
        b = ctx.get_per_replica_batch_size(self.global_batch)
        if first is None or first.shape[0] != b:
            raise ValueError(f"the training dataset must yield dict batches of exactly {b} examples per replica "
                             f"with a static batch dimension (drop_remainder=True); got {ds.element_spec}")
        if any(v.dtype == tf.string for v in ds.element_spec.values()):
            ds = ds.map(numeric_fields)
        return ds.repeat()  # repeat: uneven worker shards never run dry mid-epoch

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
                self._beat = watchdog.beat
                return self._fit(train_fn, val_fn, resume, init_from, on_epoch_end)
        except tf.errors.OpError as err:
            lost = self.multiworker and lost_worker_error(err, self.info, int(self._epoch.numpy()) + 1,
                                                          tf.train.latest_checkpoint(self.ckpt_dir))
            if not lost:
                raise
            raise lost from err
        finally:
            self._beat = lambda doing: None

    def _fit(self, train_fn, val_fn, resume, init_from, on_epoch_end) -> dict:
        s = self.settings
        if resume:
            self._resume()
        elif init_from:
            self.load_weights(init_from)
        start = int(self._epoch.numpy())
        self._say(f"training {self.spec.name}: {self.info['name']} x{self.replicas} replicas, batch "
                  f"{s.batch_size}/replica = {self.global_batch} global, {self.steps_per_epoch} steps/epoch, "
                  f"epochs {start + 1}..{s.epochs}, precision {self.precision}")
        writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard")) if self.chief else None
        self._t_log = time.time()
        for epoch in range(start, s.epochs):
            if self._stop_early():
                break
            row = self._train_epoch(train_fn, epoch)
            val = self.evaluate(val_fn) if val_fn is not None else {}
            row.update({f"val_{k}": val.get(k, float("nan")) for k in _METRICS + ("n",)})
            self._end_epoch(row, has_val=val_fn is not None)
            self._log_epoch(row, writer)
            if on_epoch_end is not None:
                on_epoch_end(row)
        return self._finish(has_val=val_fn is not None)

    def _train_epoch(self, train_fn: Callable, epoch: int) -> dict:
        s, total_steps = self.settings, self.steps_per_epoch
        dist = self.strategy.distribute_datasets_from_function(
            lambda ctx: self._train_pipeline(train_fn, ctx, s.seed + epoch))  # same order after a resume
        iterator, step, loss_sum, skipped, t0 = iter(dist), 0, 0.0, 0, time.time()
        while step < total_steps:
            total, bad, done = self._train_step(iterator, tf.constant(min(s.steps_per_execution, total_steps - step)))
            step, loss_sum, skipped = step + int(done), loss_sum + float(total), skipped + int(bad)
            self._beat(f"training epoch {epoch + 1} step {step}")
            if bad and s.nan_policy == "stop":
                raise NonFiniteLossError(
                    f"non-finite training loss at epoch {epoch + 1}, step {step}/{total_steps} (lr "
                    f"{current_lr(self.optimizer):.3g}); stopped without applying it. Checkpoints in {self.ckpt_dir} "
                    "hold only finite weights. Lower the learning rate or use nan_policy='skip'.")
            if self.chief and time.time() - self._t_log >= s.log_every_seconds:
                self._t_log, elapsed = time.time(), time.time() - t0
                left = (total_steps - step + (s.epochs - epoch - 1) * total_steps) * elapsed / max(step, 1)
                print(f"epoch {epoch + 1}/{s.epochs} step {step}/{total_steps} loss "
                      f"{loss_sum / max(step - skipped, 1):.4f} {step * self.global_batch / max(elapsed, 1e-9):,.0f} "
                      f"seq/s ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}",
                      file=sys.stderr, flush=True)
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
        return bool(p) and int(self._bad_epochs.numpy()) >= p

    def _end_epoch(self, row: dict, has_val: bool) -> None:
        """History first, then the checkpoint (the commit point), then best/: a kill between any two
        leaves files that `_resume` reconciles with the committed epoch."""
        score, improved = row["val_r2"], not has_val
        if has_val and math.isfinite(score) and score > float(self._best_score.numpy()):
            self._best_score.assign(score)
            self._bad_epochs.assign(0)
            improved = True
        elif has_val:
            self._bad_epochs.assign_add(1)
        if improved:
            self._best_epoch.assign(row["epoch"])
        self._epoch.assign(row["epoch"])
        self.history.append(row)
        if self.chief:
            write_history(self.run_dir, self.history)
        self._save_checkpoint(row["epoch"])
        if improved and has_val:
            self._save_best()

    def _check_finite(self, target: str) -> None:
        bad = [v.path for v in list(self.model.variables) + list(self.optimizer.variables)
               if "float" in str(v.dtype) and not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if bad:
            raise NonFiniteLossError(f"{len(bad)} weight/optimizer variable(s) are not finite (e.g. {bad[0]}); "
                                     f"refusing to write them to {target}. The checkpoints on disk are all finite.")

    def _save_checkpoint(self, epoch: int) -> None:
        prefix = os.path.join(self._write_ckpt_dir, f"ckpt-{epoch}")
        self._check_finite(prefix)
        last_good = tf.train.latest_checkpoint(self.ckpt_dir)
        try:
            self.manager.save(checkpoint_number=epoch)  # files, then the state file: a kill leaves no commit
        except (OSError, tf.errors.OpError) as err:
            if peer_failure_reason(err):
                raise
            raise write_failed(f"checkpoint {prefix}", err, tf.io.gfile.glob(prefix + ".*") + [prefix + "_temp"],
                                last_good) from err
        self._done_saving(self._write_ckpt_dir)

    def _save_best(self) -> None:
        folder = os.path.dirname(self.best_prefix)
        local = self.chief and "://" not in folder  # object stores cannot rename folders: written in place
        target = os.path.join(folder + ".partial", "weights") if local else self._write_best
        self._check_finite(target)
        try:
            if local:
                remove(os.path.dirname(target))
            self._best_ckpt.write(target)
            if local:
                swap_in(os.path.dirname(target), folder)
        except (OSError, tf.errors.OpError) as err:
            if peer_failure_reason(err):
                raise
            raise write_failed(f"best weights {self.best_prefix}", err,
                                [folder + ".partial"] if local else [], tf.train.latest_checkpoint(self.ckpt_dir)) \
                from err
        self._done_saving(self.run_dir + f"/.worker{self.info['worker_index']}_tmp")

    def _done_saving(self, own_folder: str) -> None:
        if not self.chief:  # every worker must take part in saving; only the chief's copy is kept
            remove(own_folder)
        self._beat("saving")
        self._barrier()

    def _barrier(self) -> None:
        if self.multiworker:  # no worker may read files the chief is still writing
            barrier(self.strategy)

    def _log_epoch(self, row: dict, writer) -> None:
        if not self.chief:
            return
        self._say("epoch {epoch}: loss {loss:.4f} val r2 {val_r2:.4f} pearson {val_pearson:.4f} "
                  "lr {lr:.3g} {seconds:.1f}s {seq_per_s:,.0f} seq/s".format(**row))
        with writer.as_default():
            for key, value in row.items():
                if key not in ("epoch",) and math.isfinite(value):
                    tf.summary.scalar(key, value, step=row["epoch"])
        writer.flush()

    def _say(self, text: str) -> None:
        if self.chief:
            print(text, file=sys.stderr, flush=True)

    def _resume(self) -> None:
        self._barrier()  # the chief has run `recover_swap` on best/ before anyone reads it
        latest = restore_newest_intact(self.checkpoint, self.ckpt_dir, self._say)  # the chief's: run_dir is shared
        if latest is None:
            log.warning("resume: no checkpoint in %s; starting from scratch", self.ckpt_dir)
            return
        done = int(self._epoch.numpy())
        if self.chief:
            remove_uncommitted(self.ckpt_dir, done)
        path = os.path.join(self.run_dir, "history.json")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as fh:
                self.history = [r for r in json.load(fh) if r["epoch"] <= done]
        self._sync_best(done)
        self._say(f"resumed from {latest}: {done} epoch(s) done, step {int(self._iterations())}")

    def _sync_best(self, done: int) -> None:
        """best/ must hold the best epoch's weights; a kill after the commit can leave it one save behind."""
        best, tag = int(self._best_epoch.numpy()), checkpoint_epoch(self.best_prefix)
        self._barrier()  # every worker has read best/ before the chief may replace it
        if not best or tag == best or float(self._best_score.numpy()) == -np.inf:
            return
        if best == done:  # the weights just restored are the best ones
            self._say(f"resume: best/ holds epoch {tag}, not the best epoch {best}; rewriting it")
            self._save_best()
        else:
            log.warning("resume: best/ holds epoch %s, the best epoch %d is lost; restore_best will keep the "
                        "final weights", tag, best)
            if self.chief:
                remove(os.path.dirname(self.best_prefix))

    def load_weights(self, source: str) -> None:
        """Weights only (fine-tuning): a `.keras` file, a checkpoint prefix, a checkpoint dir or a run dir."""
        if source.endswith(".keras"):
            try:  # safe_mode: a .keras file may carry Python code (Lambda layers); it is never run
                weights = keras.saving.load_model(source, safe_mode=True, compile=False).get_weights()
                self.model.set_weights(weights)
            except ValueError as err:
                raise ValueError(f"{source}: cannot initialise {self.spec.name} from it: {err}") from err
            return
        prefix = source
        if tf.io.gfile.isdir(source):
            best = os.path.join(source, "best", "weights")
            prefix = (tf.train.latest_checkpoint(source) or tf.train.latest_checkpoint(
                os.path.join(source, "checkpoints")) or (best if tf.io.gfile.exists(best + ".index") else None))
            if prefix is None:
                raise FileNotFoundError(f"no checkpoint found in {source}")
        tf.train.Checkpoint(model=self.model).read(prefix).assert_existing_objects_matched().expect_partial()

    def _finish(self, has_val: bool) -> dict:
        s = self.settings
        best = int(self._best_epoch.numpy())
        if s.restore_best and has_val and best and tf.io.gfile.exists(self.best_prefix + ".index"):
            self._best_ckpt.read(self.best_prefix).assert_existing_objects_matched()
        row = next((r for r in self.history if r["epoch"] == best), self.history[-1] if self.history else {})
        summary = {"model": self.spec.name, "best_epoch": best, "epochs_run": int(self._epoch.numpy()),
                   "stopped_early": self._stop_early(),
                   "val": {k: row.get(f"val_{k}") for k in _METRICS + ("n",)},
                   "train_seconds": sum(r["seconds"] for r in self.history), "replicas": self.replicas,
                   "global_batch_size": self.global_batch, "per_replica_batch_size": s.batch_size,
                   "steps_per_epoch": self.steps_per_epoch, "precision": self.precision, "strategy": self.info,
                   "settings": asdict(s), "model_config": self.model_config}
        if self.chief:
            write_text(os.path.join(self.run_dir, "metrics.json"), json.dumps(summary, indent=1, default=str))
            self._set_sync_bn(False)  # the saved model should not need a replica context
            save_keras(self.model, os.path.join(self.run_dir, "model.keras"))
            self._set_sync_bn(s.sync_batch_norm)
        self._barrier()
        return summary

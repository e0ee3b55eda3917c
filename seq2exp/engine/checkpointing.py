"""TensorFlow checkpoints of a run (tf.train.Checkpoint), and choosing the one a resume starts from.

TF checkpoints are committed by the `checkpoint` state file, which TF replaces atomically after the
data and index files are complete; files without a commit are never read. The run-folder logic
around them (best/, history, resume) is `seq2exp.engine.checkpoint_base`, shared with the JAX
engine's format; the crash-safe file helpers are `seq2exp.engine.files` (re-exported here).
"""
from __future__ import annotations

import os
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from seq2exp.engine.checkpoint_base import RunCheckpointsBase, remove_uncommitted, restore_first_intact  # noqa: F401
from seq2exp.engine.files import (  # noqa: F401
    CheckpointWriteError,
    recover_swap,
    remove,
    save_keras,
    swap_in,
    write_failed,
    write_history,
    write_text,
)
from seq2exp.engine.strategy import barrier, peer_failure_reason


def restore_newest_intact(checkpoint: tf.train.Checkpoint, ckpt_dir: str, say: Callable[[str], None]) -> str | None:
    """Restore the newest committed checkpoint that reads back whole (TF checks every tensor's CRC32C).

    None when nothing was ever committed; an error when checkpoints exist but none is readable.
    """
    state = tf.train.get_checkpoint_state(ckpt_dir)
    committed = list(dict.fromkeys([state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)])) \
        if state else []
    return restore_first_intact(committed, lambda prefix: checkpoint.restore(prefix).assert_existing_objects_matched(),
                                ckpt_dir, say)


def checkpoint_epoch(prefix: str) -> int | None:
    """The `epoch` a weights checkpoint was tagged with; None if absent or unreadable."""
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, KeyError):
        return None


class RunCheckpoints(RunCheckpointsBase):
    """`RunCheckpointsBase` in TensorFlow's format, under any `tf.distribute` strategy.

    Non-chief workers take part in every save (TF's multi-worker recipe) into folders they delete
    again; only the chief's copy is kept. Construct inside `strategy.scope()`.
    """

    def __init__(self, model: keras.Model, optimizer, run_dir: str, strategy, info: dict, keep: int = 3,
                 say: Callable[[str], None] = print):
        super().__init__(model, optimizer, run_dir, info, say)
        self.strategy = strategy
        own = "" if self.chief else f"/.worker{info['worker_index']}_tmp"
        self._write_ckpt_dir = self.ckpt_dir + own
        self._write_best = os.path.join(run_dir + own, "best", "weights") if own else self.best_prefix
        self.epoch, self.best_epoch, self.bad_epochs = (
            tf.Variable(0, dtype=tf.int64, trainable=False, name=n) for n in ("epoch", "best_epoch", "bad"))
        self.best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_score")
        # The explicit map also covers state Keras does not track (dropout RNG seeds); keyed by position, not by
        # auto-generated names, which depend on what else the process built first.
        every = {str(i): v for i, v in enumerate(model.variables)}
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, variables=every, epoch=self.epoch,
            best_score=self.best_score, best_epoch=self.best_epoch, bad_epochs=self.bad_epochs)
        # tagged with its epoch, so a resume can tell whether best/ is in step with the checkpoint
        self.best_ckpt = tf.train.Checkpoint(model=model, variables=every, epoch=self.best_epoch)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._write_ckpt_dir, max_to_keep=keep)

    def barrier(self) -> None:
        if self.multiworker:  # no worker may read files the chief is still writing
            barrier(self.strategy)

    def _peer_failure(self, err: Exception) -> bool:
        return peer_failure_reason(err) is not None

    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.ckpt_dir)

    def _target(self, epoch: int) -> str:
        return os.path.join(self._write_ckpt_dir, f"ckpt-{epoch}")

    def _write_checkpoint(self, epoch: int) -> None:
        self.manager.save(checkpoint_number=epoch)  # files, then the state file that commits them

    def _partial_files(self, epoch: int) -> list[str]:
        prefix = self._target(epoch)
        return tf.io.gfile.glob(prefix + ".*") + [prefix + "_temp"]

    def _write_best_files(self, prefix: str) -> None:
        self.best_ckpt.write(prefix)

    def _done_saving(self) -> None:
        if not self.chief:  # every worker must take part in saving; only the chief's copy is kept
            remove(self._write_ckpt_dir)
            remove(self.run_dir + f"/.worker{self.info['worker_index']}_tmp")
        super()._done_saving()

    def _restore_newest_intact(self) -> str | None:
        return restore_newest_intact(self.checkpoint, self.ckpt_dir, self.say)

    def _remove_uncommitted(self, done: int) -> None:
        remove_uncommitted(self.ckpt_dir, done)

    def _best_tag(self) -> int | None:
        return checkpoint_epoch(self.best_prefix)

    def _best_exists(self) -> bool:
        return tf.io.gfile.exists(self.best_prefix + ".index")

    def _read_best(self) -> None:
        self.best_ckpt.read(self.best_prefix).assert_existing_objects_matched()

    def _read_weights(self, source: str) -> None:
        prefix = source
        if tf.io.gfile.isdir(source):
            best = os.path.join(source, "best", "weights")
            prefix = (tf.train.latest_checkpoint(source) or tf.train.latest_checkpoint(
                os.path.join(source, "checkpoints")) or (best if tf.io.gfile.exists(best + ".index") else None))
            if prefix is None:
                raise FileNotFoundError(f"no checkpoint found in {source}")
        tf.train.Checkpoint(model=self.model).read(prefix).assert_existing_objects_matched().expect_partial()

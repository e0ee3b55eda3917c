"""Crash-safe files in a run folder, and choosing the checkpoint a resume starts from.

A training process can die at any instruction (kill -9, preemption, a full disk). Every file a
later run reads is therefore written beside its final name and renamed into place, and a
failed write removes what it left. TF checkpoints are committed by the `checkpoint` state file,
which TF replaces atomically after the data and index files are complete; files without a
commit are never read. All paths go through tf.io.gfile, so run folders may be gs:// (where
folder renames are not atomic; see the README).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import re
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from seq2exp.engine.settings import NonFiniteLossError
from seq2exp.engine.strategy import barrier, peer_failure_reason

log = logging.getLogger(__name__)


class CheckpointWriteError(OSError):
    """A checkpoint/export could not be written (disk full, read-only); nothing partial is kept."""


def remove(path: str) -> None:
    """Best-effort removal of a file or folder (cleaning up after a failed or abandoned write)."""
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except (OSError, tf.errors.OpError):
        pass


def write_failed(what: str, err: Exception, partial: list[str], last_good: str = "") -> CheckpointWriteError:
    """Remove the partial files of a failed write; the error says why and what is still intact."""
    for path in partial:
        remove(path)
    full = getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)
    detail = re.sub(r"\{\{[^}]*\}\}\s*", "", (str(err).strip().splitlines() or [type(err).__name__])[-1])
    detail = detail if len(detail) <= 200 else "..." + detail[-200:]  # the end says why (e.g. ENOSPC)
    kept = f"; the last complete checkpoint is {last_good}" if last_good else ""
    return CheckpointWriteError(errno.ENOSPC if full else getattr(err, "errno", None) or errno.EIO,
                                f"could not write {what}: {'the disk is full' if full else 'the write failed'} "
                                f"({detail}). Nothing partial was kept{kept}. Free space or make the folder "
                                "writable, then rerun with --resume.")


def write_text(path: str, text: str | bytes) -> None:
    """`text` (or bytes) into `path`, whole or not at all."""
    try:
        with tf.io.gfile.GFile(path + ".tmp", "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    except (OSError, tf.errors.OpError) as err:
        raise write_failed(path, err, [path + ".tmp"]) from err


def write_history(run_dir: str, rows: list[dict]) -> None:
    write_text(os.path.join(run_dir, "history.json"), json.dumps(rows, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # old rows may lack keys
    writer.writeheader()
    writer.writerows(rows)
    write_text(os.path.join(run_dir, "history.csv"), buf.getvalue())


def save_keras(model: keras.Model, path: str) -> None:
    """model.keras appears whole or not at all (Keras writes its zip in place: a full disk leaves half)."""
    tmp = path[: -len(".keras")] + ".partial.keras"
    try:
        model.save(tmp)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except (OSError, tf.errors.OpError) as err:
        raise write_failed(path, err, [tmp]) from err


def swap_in(tmp: str, final: str) -> None:
    """Replace folder `final` with the complete folder `tmp`; `recover_swap` finishes it after a kill."""
    old = final + ".old"
    remove(old)
    if tf.io.gfile.exists(final):
        tf.io.gfile.rename(final, old)
    tf.io.gfile.rename(tmp, final)
    remove(old)


def recover_swap(final: str) -> None:
    """Finish or undo a `swap_in` that a kill interrupted; drop an unfinished `final.partial`."""
    tmp, old = final + ".partial", final + ".old"
    if not tf.io.gfile.exists(final) and tf.io.gfile.exists(old):
        # killed between the two renames: tmp is complete, because renaming starts only after the write
        tf.io.gfile.rename(tmp if tf.io.gfile.exists(tmp) else old, final)
    remove(tmp)
    remove(old)


def restore_newest_intact(checkpoint: tf.train.Checkpoint, ckpt_dir: str, say: Callable[[str], None]) -> str | None:
    """Restore the newest committed checkpoint that reads back whole (TF checks every tensor's CRC32C).

    None when nothing was ever committed; an error when checkpoints exist but none is readable.
    """
    state = tf.train.get_checkpoint_state(ckpt_dir)
    committed = list(dict.fromkeys([state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)])) \
        if state else []
    for prefix in committed:
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
            return prefix
        except (ValueError, AssertionError) as err:  # readable, but holds another model: no fallback helps
            raise ValueError(f"{prefix}: does not fit this model ({str(err).strip().splitlines()[0][:300]}); "
                             "--resume needs the model config the run was started with") from err
        except Exception as err:  # noqa: BLE001 - DataLossError (CRC), IndexError (short file), other OpErrors
            why = re.sub(r"\{\{[^}]*\}\}\s*", "", str(err)).strip().splitlines() or [""]
            say(f"resume: {prefix} is unreadable ({type(err).__name__}: {why[0][:200]}); "
                "trying the checkpoint before it")
    if committed:
        raise RuntimeError(f"resume: no checkpoint in {ckpt_dir} reads back intact ({committed}); start a new run "
                           "(without --resume) or restore the folder from a backup")
    return None


def remove_uncommitted(ckpt_dir: str, done: int) -> None:
    """Delete ckpt-N files (and N_temp folders) newer than the restored epoch: a kill left them uncommitted."""
    for path in tf.io.gfile.glob(os.path.join(ckpt_dir, "ckpt-*")):
        number = os.path.basename(path)[5:].split(".")[0].split("_")[0]
        if number.isdigit() and int(number) > done:
            remove(path)


def checkpoint_epoch(prefix: str) -> int | None:
    """The `epoch` a weights checkpoint was tagged with; None if absent or unreadable."""
    try:
        return int(tf.train.load_checkpoint(prefix).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, KeyError):
        return None


class RunCheckpoints:
    """Save and resume of one training run: per-epoch checkpoints, best/ weights, the early-stopping state.

    Checkpoints hold everything a resumed run needs (weights, optimizer slots and step, dropout RNG state,
    early-stopping state). Non-chief workers take part in every save (TF's multi-worker recipe) into
    folders they delete again; only the chief's copy is kept. Construct inside `strategy.scope()`.
    """

    def __init__(self, model: keras.Model, optimizer, run_dir: str, strategy, info: dict, keep: int = 3,
                 say: Callable[[str], None] = print):
        self.model, self.optimizer, self.run_dir, self.strategy, self.say = model, optimizer, run_dir, strategy, say
        self.chief, self.info, self.multiworker = info["chief"], info, info["workers"] > 1
        self.beat: Callable[[str], None] = lambda doing: None
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.best_prefix = os.path.join(run_dir, "best", "weights")
        own = "" if self.chief else f"/.worker{info['worker_index']}_tmp"
        self._write_ckpt_dir = self.ckpt_dir + own
        self._write_best = os.path.join(run_dir + own, "best", "weights") if own else self.best_prefix
        tf.io.gfile.makedirs(run_dir)
        if self.chief:
            recover_swap(os.path.dirname(self.best_prefix))
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

    def check_finite(self, target: str) -> None:
        bad = [v.path for v in list(self.model.variables) + list(self.optimizer.variables)
               if "float" in str(v.dtype) and not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
        if bad:
            raise NonFiniteLossError(f"{len(bad)} weight/optimizer variable(s) are not finite (e.g. {bad[0]}); "
                                     f"refusing to write them to {target}. The checkpoints on disk are all finite.")

    def save(self, epoch: int) -> None:
        """The per-epoch checkpoint: files, then the state file, so a kill leaves no commit."""
        prefix = os.path.join(self._write_ckpt_dir, f"ckpt-{epoch}")
        self.check_finite(prefix)
        last_good = tf.train.latest_checkpoint(self.ckpt_dir)
        try:
            self.manager.save(checkpoint_number=epoch)
        except (OSError, tf.errors.OpError) as err:
            if peer_failure_reason(err):
                raise
            raise write_failed(f"checkpoint {prefix}", err, tf.io.gfile.glob(prefix + ".*") + [prefix + "_temp"],
                               last_good) from err
        self._done_saving(self._write_ckpt_dir)

    def save_best(self) -> None:
        """best/ written beside its final name and swapped in (object stores: written in place)."""
        folder = os.path.dirname(self.best_prefix)
        local = self.chief and "://" not in folder
        target = os.path.join(folder + ".partial", "weights") if local else self._write_best
        self.check_finite(target)
        try:
            if local:
                remove(os.path.dirname(target))
            self.best_ckpt.write(target)
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
        self.beat("saving")
        self.barrier()

    def resume(self) -> list[dict] | None:
        """Restore the newest intact checkpoint; the history rows of its committed epochs (None: nothing saved)."""
        self.barrier()  # the chief has run `recover_swap` on best/ before anyone reads it
        latest = restore_newest_intact(self.checkpoint, self.ckpt_dir, self.say)  # the chief's: run_dir is shared
        if latest is None:
            return None
        done = int(self.epoch.numpy())
        if self.chief:
            remove_uncommitted(self.ckpt_dir, done)
        history = []
        path = os.path.join(self.run_dir, "history.json")
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as fh:
                history = [r for r in json.load(fh) if r["epoch"] <= done]
        self._sync_best(done)
        self.say(f"resumed from {latest}: {done} epoch(s) done, step "
                 f"{int(getattr(self.optimizer, 'inner_optimizer', self.optimizer).iterations.numpy())}")
        return history

    def _sync_best(self, done: int) -> None:
        """best/ must hold the best epoch's weights; a kill after the commit can leave it one save behind."""
        best, tag = int(self.best_epoch.numpy()), checkpoint_epoch(self.best_prefix)
        self.barrier()  # every worker has read best/ before the chief may replace it
        if not best or tag == best or float(self.best_score.numpy()) == -np.inf:
            return
        if best == done:  # the weights just restored are the best ones
            self.say(f"resume: best/ holds epoch {tag}, not the best epoch {best}; rewriting it")
            self.save_best()
        else:
            log.warning("resume: best/ holds epoch %s, the best epoch %d is lost; restore_best will keep the "
                        "final weights", tag, best)
            if self.chief:
                remove(os.path.dirname(self.best_prefix))

    def restore_best(self) -> bool:
        """Load best/ into the model when it exists for the best epoch."""
        if int(self.best_epoch.numpy()) and tf.io.gfile.exists(self.best_prefix + ".index"):
            self.best_ckpt.read(self.best_prefix).assert_existing_objects_matched()
            return True
        return False

    def load_weights(self, source: str, model_name: str) -> None:
        """Weights only (fine-tuning): a `.keras` file, a checkpoint prefix, a checkpoint dir or a run dir."""
        if source.endswith(".keras"):
            try:  # safe_mode: a .keras file may carry Python code (Lambda layers); it is never run
                weights = keras.saving.load_model(source, safe_mode=True, compile=False).get_weights()
                self.model.set_weights(weights)
            except ValueError as err:
                raise ValueError(f"{source}: cannot initialise {model_name} from it: {err}") from err
            return
        prefix = source
        if tf.io.gfile.isdir(source):
            best = os.path.join(source, "best", "weights")
            prefix = (tf.train.latest_checkpoint(source) or tf.train.latest_checkpoint(
                os.path.join(source, "checkpoints")) or (best if tf.io.gfile.exists(best + ".index") else None))
            if prefix is None:
                raise FileNotFoundError(f"no checkpoint found in {source}")
        tf.train.Checkpoint(model=self.model).read(prefix).assert_existing_objects_matched().expect_partial()

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
import os
import re
from typing import Callable

import keras
import tensorflow as tf


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


def write_text(path: str, text: str) -> None:
    try:
        with tf.io.gfile.GFile(path + ".tmp", "w") as fh:
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

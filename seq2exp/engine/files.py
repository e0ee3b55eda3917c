"""Crash-safe files in a run folder, for both engine backends (no TensorFlow import of its own).

A training process can die at any instruction (kill -9, preemption, a full disk). Every file a
later run reads is therefore written beside its final name and renamed into place, and a failed
write removes what it left. Under the TensorFlow backend all paths go through `tf.io.gfile`, so run
folders may be gs:// (where folder renames are not atomic; see the README); under any other backend
through `os` (local or mounted folders), so the JAX engine runs where TensorFlow is not installed.
"""
from __future__ import annotations

import csv
import errno
import glob as _glob
import io
import json
import os
import re
import shutil
from types import SimpleNamespace

import keras

from data_prep.errors import Seq2ExpError


def _local_rename(src: str, dst: str, overwrite: bool = False) -> None:
    if not overwrite and os.path.exists(dst):
        raise FileExistsError(errno.EEXIST, f"{dst} exists", dst)
    os.replace(src, dst)


#: `tf.io.gfile`'s calls this module uses, for local paths
_LOCAL = SimpleNamespace(exists=os.path.exists, isdir=os.path.isdir, rmtree=shutil.rmtree, remove=os.remove,
                         makedirs=lambda p: os.makedirs(p, exist_ok=True), glob=_glob.glob, rename=_local_rename,
                         GFile=open)


def gfile():
    """`tf.io.gfile` under the TensorFlow backend (gs:// and other file systems), else local `os` calls."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.io.gfile
    return _LOCAL


def io_errors() -> tuple:
    """What a failed file call raises: OSError, plus TensorFlow's OpError under the TensorFlow backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return (OSError, tf.errors.OpError)
    return (OSError,)


class CheckpointWriteError(Seq2ExpError, OSError):
    """A checkpoint/export could not be written (disk full, read-only); nothing partial is kept."""


def remove(path: str) -> None:
    """Best-effort removal of a file or folder (cleaning up after a failed or abandoned write)."""
    fs = gfile()
    try:
        if fs.isdir(path):
            fs.rmtree(path)
        elif fs.exists(path):
            fs.remove(path)
    except io_errors():
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
    """`text` (or bytes) into `path`, whole or not at all (written beside it, then renamed over it)."""
    fs = gfile()
    try:
        with fs.GFile(path + ".tmp", "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
        fs.rename(path + ".tmp", path, overwrite=True)
    except io_errors() as err:
        raise write_failed(path, err, [path + ".tmp"]) from err


def read_bytes(path: str) -> bytes:
    with gfile().GFile(path, "rb") as fh:
        return fh.read()


def write_history(run_dir: str, rows: list[dict]) -> None:
    write_text(os.path.join(run_dir, "history.json"), json.dumps(rows, indent=1))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # old rows may lack keys
    writer.writeheader()
    writer.writerows(rows)
    write_text(os.path.join(run_dir, "history.csv"), buf.getvalue())


def read_history(run_dir: str, done: int) -> list[dict]:
    """history.json's rows of the committed epochs 1..done (a kill may have left later ones)."""
    path = os.path.join(run_dir, "history.json")
    if not gfile().exists(path):
        return []
    with gfile().GFile(path) as fh:
        return [r for r in json.load(fh) if r["epoch"] <= done]


def save_keras(model: keras.Model, path: str) -> None:
    """model.keras appears whole or not at all (Keras writes its zip in place: a full disk leaves half)."""
    tmp = path[: -len(".keras")] + ".partial.keras"
    try:
        model.save(tmp)
        gfile().rename(tmp, path, overwrite=True)
    except io_errors() as err:
        raise write_failed(path, err, [tmp]) from err


def swap_in(tmp: str, final: str) -> None:
    """Replace folder `final` with the complete folder `tmp`; `recover_swap` finishes it after a kill."""
    fs, old = gfile(), final + ".old"
    remove(old)
    if fs.exists(final):
        fs.rename(final, old)
    fs.rename(tmp, final)
    remove(old)


def recover_swap(final: str) -> None:
    """Finish or undo a `swap_in` that a kill interrupted; drop an unfinished `final.partial`."""
    fs, tmp, old = gfile(), final + ".partial", final + ".old"
    if not fs.exists(final) and fs.exists(old):
        # killed between the two renames: tmp is complete, because renaming starts only after the write
        fs.rename(tmp if fs.exists(tmp) else old, final)
    remove(tmp)
    remove(old)

"""Checkpoints of a run as numpy archives: the JAX engine's format (no TensorFlow; any backend can read it).

`checkpoints/ckpt-N.npz` holds every model variable (weights, BatchNorm statistics, dropout seed states)
and every optimizer variable (step, slots, loss scale) by position (`model/i`, `optimizer/i`; their Keras
paths in `paths/model`, `paths/optimizer`), and the loop state (`loop/epoch`, best
epoch, epochs without improvement, best score). It is written beside its name and renamed into
place, then committed by `checkpoints/checkpoint.json`, which is replaced atomically and lists the
kept checkpoints with the SHA-256 of their bytes: a kill before the commit leaves a file that no
resume reads (and the resume deletes), and a damaged file fails its hash, so the one before it is
used. best/weights.npz holds the model variables and the epoch they are from. Only the chief process
writes; every process reads (the run folder is shared, as with TensorFlow's multi-worker runs).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable

import keras
import numpy as np

from seq2exp.engine.checkpoint_base import RunCheckpointsBase, Scalar, remove_uncommitted, restore_first_intact
from seq2exp.engine.files import gfile, read_bytes, remove, write_text

STATE_FILE = "checkpoint.json"
_LOOP = ("epoch", "best_epoch", "bad_epochs", "best_score")


def _numpy(variables) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def _archive(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _assign(variables, arrays: dict, prefix: str, what: str) -> None:
    """Assign `prefix/i` arrays to `variables` by position; ValueError when they belong to another model."""
    keys = [k for k in arrays if k.startswith(prefix + "/")]
    if len(keys) != len(variables):
        raise ValueError(f"{what}: {len(keys)} {prefix} variables stored, this model has {len(variables)}")
    values = [arrays[f"{prefix}/{i}"] for i in range(len(variables))]
    for v, value in zip(variables, values):
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"{what}: {v.path} has shape {tuple(v.shape)}, stored {tuple(value.shape)}")
    for v, value in zip(variables, values):
        v.assign(value.astype(str(v.dtype), copy=False))


def read_archive(path: str, sha256: str | None = None) -> dict[str, np.ndarray]:
    """Every array of an .npz file, checked against its recorded SHA-256 when given."""
    raw = read_bytes(path)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise OSError(f"content does not match the SHA-256 recorded in {STATE_FILE} (damaged or cut short)")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def committed(ckpt_dir: str) -> list[dict]:
    """checkpoint.json's entries {epoch, file, sha256}, oldest first ([] when nothing was committed)."""
    path = os.path.join(ckpt_dir, STATE_FILE)
    if not gfile().exists(path):
        return []
    return json.loads(read_bytes(path))["checkpoints"]


class NpzRunCheckpoints(RunCheckpointsBase):
    """`RunCheckpointsBase` in the numpy-archive format (see module docstring)."""

    def __init__(self, model: keras.Model, optimizer, run_dir: str, info: dict, keep: int = 3,
                 say: Callable[[str], None] = print, barrier: Callable[[], None] | None = None):
        if "://" in run_dir:
            raise ValueError(f"{run_dir}: run folders on object stores are written through TensorFlow's file "
                             "system (KERAS_BACKEND=tensorflow); under JAX use a local or mounted folder")
        super().__init__(model, optimizer, run_dir, info, say)
        self.keep, self._barrier = keep, barrier
        self.epoch, self.best_epoch, self.bad_epochs = Scalar(0), Scalar(0), Scalar(0)
        self.best_score = Scalar(-np.inf)

    def barrier(self) -> None:
        if self.multiworker and self._barrier is not None:
            self._barrier()

    # ------------------------------------------------------------------ the commit file
    def _committed(self, folder: str | None = None) -> list[dict]:
        return committed(folder or self.ckpt_dir)

    def latest(self) -> str | None:
        entries = self._committed()
        return os.path.join(self.ckpt_dir, entries[-1]["file"]) if entries else None

    # ------------------------------------------------------------------ writing
    def _arrays(self, optimizer: bool) -> dict[str, np.ndarray]:
        # by position; the variable paths ride along for people and tools (auto-generated, not matched on restore)
        out = {f"model/{i}": a for i, a in enumerate(_numpy(self.model.variables))}
        out["paths/model"] = np.asarray([v.path for v in self.model.variables])
        if optimizer:
            out.update({f"optimizer/{i}": a for i, a in enumerate(_numpy(self.optimizer.variables))})
            out["paths/optimizer"] = np.asarray([v.path for v in self.optimizer.variables])
            out.update({f"loop/{k}": np.asarray(getattr(self, k).numpy()) for k in _LOOP})
        return out

    def _write_checkpoint(self, epoch: int) -> None:
        if not self.chief:
            return
        data = _archive(self._arrays(optimizer=True))
        name = f"ckpt-{epoch}.npz"
        gfile().makedirs(self.ckpt_dir)
        write_text(os.path.join(self.ckpt_dir, name), data)
        entries = [e for e in self._committed() if e["epoch"] < epoch]
        entries.append({"epoch": epoch, "file": name, "sha256": hashlib.sha256(data).hexdigest()})
        kept, dropped = entries[-self.keep:], entries[:-self.keep]
        write_text(os.path.join(self.ckpt_dir, STATE_FILE), json.dumps({"checkpoints": kept}, indent=1))  # commit
        for e in dropped:
            remove(os.path.join(self.ckpt_dir, e["file"]))

    def _partial_files(self, epoch: int) -> list[str]:
        path = os.path.join(self.ckpt_dir, f"ckpt-{epoch}.npz")
        return [path + ".tmp"] if any(e["epoch"] == epoch for e in self._committed()) else [path, path + ".tmp"]

    def _write_best_files(self, prefix: str) -> None:
        gfile().makedirs(os.path.dirname(prefix))
        write_text(prefix + ".npz", _archive({**self._arrays(optimizer=False),
                                               "loop/epoch": np.asarray(self.best_epoch.numpy())}))

    # ------------------------------------------------------------------ reading
    def _restore(self, path: str, sha256: str) -> None:
        arrays = read_archive(path, sha256)
        _assign(self.model.variables, arrays, "model", path)
        _assign(self.optimizer.variables, arrays, "optimizer", path)
        for key in _LOOP:
            getattr(self, key).assign(arrays[f"loop/{key}"].item())

    def _restore_newest_intact(self) -> str | None:
        entries = self._committed()
        if not entries and gfile().exists(os.path.join(self.ckpt_dir, "checkpoint")):
            raise ValueError(f"{self.ckpt_dir}: holds TensorFlow checkpoints; resume this run under "
                             "KERAS_BACKEND=tensorflow (its model.keras loads under any backend)")
        sums = {os.path.join(self.ckpt_dir, e["file"]): e["sha256"] for e in entries}
        return restore_first_intact(list(reversed(list(sums))), lambda path: self._restore(path, sums[path]),
                                    self.ckpt_dir, self.say)

    def _remove_uncommitted(self, done: int) -> None:
        remove_uncommitted(self.ckpt_dir, done)

    def _best_tag(self) -> int | None:
        try:
            return int(read_archive(self.best_prefix + ".npz")["loop/epoch"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def _best_exists(self) -> bool:
        return gfile().exists(self.best_prefix + ".npz")

    def _read_best(self) -> None:
        _assign(self.model.variables, read_archive(self.best_prefix + ".npz"), "model", self.best_prefix + ".npz")

    def _read_weights(self, source: str) -> None:
        path = source
        if gfile().isdir(source):
            path = None
            for folder in (source, os.path.join(source, "checkpoints")):
                entries = self._committed(folder)
                if entries:
                    path = os.path.join(folder, entries[-1]["file"])
                    break
            best = os.path.join(source, "best", "weights.npz")
            path = path or (best if gfile().exists(best) else None)
            if path is None:
                tf_made = any(gfile().exists(os.path.join(f, "checkpoint"))
                              for f in (source, os.path.join(source, "checkpoints")))
                hint = ("; it holds TensorFlow checkpoints: initialise from its model.keras instead" if tf_made
                        else "")
                raise FileNotFoundError(f"no checkpoint found in {source}{hint}")
        try:
            arrays = read_archive(path)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not a readable .npz checkpoint ({err})") from err
        _assign(self.model.variables, arrays, "model", path)

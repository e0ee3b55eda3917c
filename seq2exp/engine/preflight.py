"""Checks that run before the first training step, so a bad input fails in seconds, naming the file.

A 24-hour run should not die at hour 3 because a shard was truncated, the disk fills at the first
checkpoint, or the model expects 150 nt while the data has 112. Each check here turns such a
problem into a `PreflightError` that says which file or folder is wrong and what to do:

- the output folder exists and takes a real write (fsync'ed probe file), and its free space
  covers the checkpoints the run will keep (an estimate from the model's variable sizes);
- every dataset has the model's layout, one schema, and shards of the manifest's size and (by
  default) SHA-256 -- hashing costs about 1 s per GB here, a few % of one epoch's reading;
- the model takes the records as they are (length, channels, fields): its input shapes are
  compared with what the model's input transform makes of a record, then one 2-example forward
  pass catches anything else.
"""
from __future__ import annotations

import os
import shutil
import socket
import time

import numpy as np

from data_prep.errors import Seq2ExpError
from data_prep.manifest import Manifest, ManifestError
from seq2exp.engine.settings import VERIFY_MODES


class PreflightError(Seq2ExpError, ValueError):
    """Training cannot start: names the file or folder and the fix."""


def _local(path: str) -> bool:
    return "://" not in path


def _gfile_errors() -> tuple:
    """The errors a write probe can raise: OSError, plus TensorFlow's file errors for remote folders."""
    try:
        import tensorflow as tf
    except ImportError:
        return (OSError,)
    return (OSError, tf.errors.OpError)


def check_output_dir(run_dir: str) -> None:
    """Create `run_dir` and prove a file can be written, flushed to disk and removed there.

    Local folders need no TensorFlow; remote ones (gs://...) are written through tf.io.gfile.
    """
    probe = os.path.join(run_dir, f".write-probe-{socket.gethostname()}-{os.getpid()}")
    errors = (OSError,) if _local(run_dir) else _gfile_errors()
    try:
        if _local(run_dir):
            os.makedirs(run_dir, exist_ok=True)
            with open(probe, "wb") as fh:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
            os.remove(probe)
        else:
            import tensorflow as tf  # an ImportError here says what is missing

            tf.io.gfile.makedirs(run_dir)
            with tf.io.gfile.GFile(probe, "wb") as fh:
                fh.write(b"\0" * 4096)
            tf.io.gfile.remove(probe)
    except errors as err:
        reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[-1]
        raise PreflightError(f"{run_dir}: the output folder is not writable ({reason}); choose another "
                             "--run-dir or fix its permissions / free space") from err


def checkpoint_bytes(trainer) -> dict:
    """Expected sizes (bytes) of one checkpoint, the best weights and model.keras for this model."""
    def size(variables):
        return sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in variables)

    weights = size(trainer.model.variables)
    ckpt = weights + size(trainer.optimizer.variables)
    return {"checkpoint": ckpt, "weights": weights,
            # kept checkpoints + the one being written, best/ twice during its swap, model.keras + its temp copy
            "run": int(1.1 * (ckpt * (trainer.settings.keep_checkpoints + 1) + 4 * weights)) + (1 << 20)}


def check_free_space(run_dir: str, need: int, detail: str = "") -> None:
    """Fail when the folder's file system has less free space than `need` bytes (local folders only)."""
    if not _local(run_dir):
        return
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise PreflightError(f"{run_dir}: {free / 1e6:,.1f} MB free, but this run writes about {need / 1e6:,.1f} MB "
                             f"{detail}; free space or choose another --run-dir")


def check_data(manifests: list[Manifest], layout: str, splits: list[str] | None = None,
               verify: str = "sha256") -> dict:
    """Layout, one schema for all, and every shard's size (+ SHA-256 when verify="sha256").

    `splits=None` checks every split of each manifest. Returns {"bytes": ..., "seconds": ...}.
    """
    if verify not in VERIFY_MODES:
        raise PreflightError(f"verify_data must be one of {VERIFY_MODES}, got {verify!r}")
    t0, total = time.perf_counter(), 0
    for m in manifests:
        if m.layout != layout:
            raise PreflightError(f"{m.path}: dataset has layout {m.layout!r} but the model needs {layout!r}; "
                                 f"rebuild it with `python -m data_prep.build --layout {layout}`")
        if m.schema != manifests[0].schema:
            raise PreflightError(f"{m.path}: record schema {m.schema} differs from {manifests[0].path} "
                                 f"({manifests[0].schema}); these datasets cannot be trained on together")
        names = [s for s in (splits or m.splits) if s in m.splits]
        try:
            total += m.verify(names, checksums=verify == "sha256")
        except ManifestError as err:
            raise PreflightError(f"{err}; rebuild the dataset (python -m data_prep.build) or restore the file") \
                from err
    return {"bytes": total, "seconds": time.perf_counter() - t0}


def _dummy_batch(m: Manifest, n: int = 2) -> dict:
    """What the reader yields for `n` records of this manifest (all-A sequences), as numpy (any backend)."""
    schema = m.schema
    batch = {"seq": np.zeros((n, schema.length), np.uint8), "fold": np.zeros((n,), np.uint8)}
    if schema.labeled:
        batch["label"] = np.full((n,), 5.0, np.float32)
        if schema.singleton:
            batch["is_singleton"] = np.zeros((n,), np.uint8)
    return batch


def _on_tpu(trainer) -> bool:
    """A TF TPUStrategy (its variables take no eager host-side call); recognised without importing TF."""
    strategy = getattr(trainer, "strategy", None)
    return any(c.__name__.startswith("TPUStrategy") for c in type(strategy).__mro__)


def check_model_data(model, spec, m: Manifest, config: dict | None = None, forward: bool = True) -> None:
    """The model takes this dataset's records: input shapes first (a precise message), then one forward pass."""
    batch = _dummy_batch(m)
    where = f"{m.path}: records are {m.length} nt ({', '.join(sorted(batch))})"
    try:
        made = spec.inputs(batch, False)
    except KeyError as err:
        raise PreflightError(f"{where}, but model {spec.name!r} needs the field {err}; rebuild the data with "
                             f"--layout {spec.layout}") from err
    flat = [x for x in (made.values() if isinstance(made, dict) else made if isinstance(made, (list, tuple))
                        else [made])]
    expected = [tuple(t.shape[1:]) for t in model.inputs]
    got = [tuple(int(d) for d in x.shape[1:]) for x in flat]
    if len(got) == len(expected) and sorted(map(str, got)) != sorted(map(str, expected)):
        keys = ", ".join(f"{k}={v}" for k, v in sorted((config or {}).items())
                         if k in ("seq_len", "in_channels", "length"))
        raise PreflightError(f"{where}, which the {spec.name!r} input transform makes into inputs of shape "
                             f"{got} (length, channels), but the model expects {expected}"
                             f"{' (' + keys + ')' if keys else ''}; fix model_config or use data built for it")
    if not forward:
        return
    try:
        out = np.asarray(spec.predict(model, batch, spec.inputs))
    except Exception as err:  # noqa: BLE001 - anything the model raises on these records is the answer
        raise PreflightError(f"{where}; model {spec.name!r} cannot read them: {err}") from err
    if out.reshape(-1).shape[0] != 2:
        raise PreflightError(f"{where}; model {spec.name!r} gave {out.shape} predictions for 2 records")


def check_before_training(trainer, spec, manifests: list[Manifest], splits: list[str], verify: str = "sha256",
                          say=print) -> dict:
    """Everything above for one training stage, after its Trainer (and so its model) exists."""
    check_output_dir(trainer.run_dir)
    sizes = checkpoint_bytes(trainer)
    check_free_space(trainer.run_dir, sizes["run"],
                     f"({trainer.settings.keep_checkpoints} checkpoints of {sizes['checkpoint'] / 1e6:,.1f} MB, "
                     "best weights and model.keras)")
    data = check_data(manifests, spec.layout, splits, verify)
    on_tpu = _on_tpu(trainer)
    for m in manifests:
        check_model_data(trainer.model, spec, m, trainer.model_config, forward=not on_tpu)
    say(f"preflight: {trainer.run_dir} writable with room for ~{sizes['run'] / 1e6:,.1f} MB; "
        f"{len(manifests)} dataset(s), {data['bytes'] / 1e6:,.1f} MB of shards verified ({verify}) in "
        f"{data['seconds']:.2f} s; model accepts their records")
    return {**sizes, **data}

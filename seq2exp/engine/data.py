"""Glue between run configs and data_prep: raw files become datasets, datasets become batches.

A training command accepts either dataset folders (`data_prep.build` output) or raw TSV/CSV/FASTA
files; raw files are built into the run folder with the model's layout, so a run is reproducible
from its folder alone. A built dataset is keyed by the CONTENT of its raw files (SHA-256), not their
names: `repA/test.tsv` and `repB/test.tsv` are two datasets, and an edited file is built again.

Backend-neutral and TensorFlow-free at import: `input_batches` gives tf.data under the TensorFlow
backend and the numpy reader (`data_prep.numpy_reader`, same batches for the same seed) under any
other, so the JAX engine runs where TensorFlow is not installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from data_prep.build import BuildError, build
from data_prep.build import parser as build_parser
from data_prep.input_plan import rejected_lines, summary_lines
from data_prep.manifest import MANIFEST, Manifest, load_manifest, sha256_file


def is_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST))


def _name(paths: list[str]) -> str:
    stem = "+".join(re.sub(r"(\.gz)?$", "", os.path.basename(p)).rsplit(".", 1)[0] for p in paths)
    return stem[:80] or "data"


def content_key(files: list[str], layout: str, split: str, extra: list[str] | None) -> str:
    """12 hex digits of SHA-256 over the files' contents and the build options: the built folder's key."""
    h = hashlib.sha256()
    for path in files:
        h.update(sha256_file(path).encode())
    h.update(json.dumps([layout, split, list(extra or [])]).encode())
    return h.hexdigest()[:12]


def build_target(files: list[str], layout: str, work: str, split: str = "hash", extra: list[str] | None = None) -> str:
    """The folder under `work` that `prepare` builds these raw files into (known before building: a resume
    compares it with the run's pinned data first)."""
    return os.path.join(work, f"{_name(files)}-{content_key(files, layout, split, extra)}.{layout}")


_BUILT = re.compile(r"^(?P<stem>.+)-[0-9a-f]{12}\.(?P<layout>[A-Za-z0-9_]+)$")


def dataset_source(m: Manifest) -> str:
    """What the user gave for a dataset: the raw file(s) a folder was built from here, else the folder."""
    if _BUILT.match(os.path.basename(os.path.normpath(m.folder))):
        return ", ".join(i.get("path", "?") for i in m.data.get("inputs", [])) or m.folder
    return m.folder


def dataset_labels(manifests: list[Manifest]) -> list[str]:
    """Short names for reports: `test.crmnet` for a file built here (the folder name without its content key),
    the folder name for a dataset folder; names that would repeat get their input's parent folder in front."""
    bases, parents = [], []
    for m in manifests:
        folder = os.path.basename(os.path.normpath(m.folder))
        hit = _BUILT.match(folder)
        bases.append(f"{hit['stem']}.{hit['layout']}" if hit else folder)
        inputs = [i.get("path", "") for i in m.data.get("inputs", [])]
        source = inputs[0] if hit and inputs else os.path.normpath(m.folder)
        parents.append(os.path.basename(os.path.dirname(source)))
    repeated = {b for b in bases if bases.count(b) > 1}
    return [f"{p}/{b}" if b in repeated and p else b for b, p in zip(bases, parents)]


def prepare(items: list[str], layout: str, work: str, split: str = "hash", group: bool = True,
            extra: list[str] | None = None, keep_rejected: bool = True) -> list[Manifest]:
    """Dataset folders as they are (layout checked); raw files built under `work` (`keep_rejected` False: a
    temporary folder, so the rejected records are printed, not pointed to).

    group=True builds all raw files into ONE dataset (e.g. two libraries that together form the
    training set); group=False builds each file into its own (e.g. separate test sets).
    """
    folders = [p for p in items if os.path.isdir(p)]
    raw = [p for p in items if not os.path.isdir(p)]
    out = [load_manifest(f, layout=layout) for f in folders]
    batches = [raw] if group and raw else [[p] for p in raw]
    for files in batches:
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise BuildError(f"{missing[0]}: not found (neither a file nor a dataset folder)")
        target = build_target(files, layout, work, split, extra)
        if not is_dataset(target):
            args = build_parser().parse_args([*files, "--out", target, "--layout", layout, "--split", split,
                                              "--quiet", *(extra or [])])
            m = build(args.inputs, args.out, args)
            c = m["counts"]
            where = f", see {os.path.join(target, 'rejected.tsv')}" if keep_rejected and c["rejected"] else ""
            print(f"built {target}{'' if keep_rejected else ' (temporary)'}: {c['written']:,} records "
                  f"({c['rejected']:,} rejected{where})")
            print("\n".join(summary_lines(m) + ([] if keep_rejected else rejected_lines(target, m))))
        out.append(load_manifest(target, layout=layout))
    return out


def eval_split(m: Manifest) -> str:
    """The split a test set is scored on: 'all' (built with --split none) or 'test'."""
    for name in ("all", "test"):
        if name in m.splits:
            return name
    raise ValueError(f"{m.path}: no 'all' or 'test' split to evaluate (splits: {m.splits})")


def read_arrays(m: Manifest, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """A split as numpy arrays (for baselines and small evaluations), on any backend."""
    from data_prep.numpy_reader import make_numpy_reader

    parts: dict[str, list] = {}
    n = 0
    for batch in make_numpy_reader(m, split, 4096, training=False):
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
        n += len(batch["seq"])
        if limit and n >= limit:
            break
    return {k: np.concatenate(v)[:limit] for k, v in parts.items()}


# ----------------------------------------------------------------------------- training / evaluation input

def uses_tf_data() -> bool:
    """tf.data feeds the TensorFlow backend; every other backend reads with numpy (no TensorFlow needed)."""
    import keras

    return keras.backend.backend() == "tensorflow"


@dataclass(frozen=True)
class ProcessInput:
    """This process's share of the input, with `tf.distribute.InputContext`'s members.

    Under JAX one input pipeline runs per process and yields the PROCESS's batch (global batch /
    processes); keras.distribution splits it over the local devices. An input function
    `fn(ctx, seed)` therefore serves both engines.
    """

    num_input_pipelines: int = 1
    input_pipeline_id: int = 0

    @property
    def num_replicas_in_sync(self) -> int:
        return self.num_input_pipelines

    def get_per_replica_batch_size(self, global_batch_size: int) -> int:
        if global_batch_size % self.num_input_pipelines:
            raise ValueError(f"global batch {global_batch_size} is not divisible by the "
                             f"{self.num_input_pipelines} input processes")
        return global_batch_size // self.num_input_pipelines


def process_input() -> ProcessInput:
    """This JAX process's `ProcessInput` (jax.process_index() of jax.process_count())."""
    import jax

    return ProcessInput(jax.process_count(), jax.process_index())


def input_batches(manifests: Manifest | str | Sequence, split: str, global_batch: int, ctx=None, *,
                  training: bool, seed: int | None = None, drop_remainder: bool = False, repeat: bool | None = None,
                  shuffle_buffer: int = 100_000, weights: Sequence[float] | None = None):
    """One input pipeline's batches: a tf.data.Dataset (TensorFlow backend) or a numpy reader (otherwise).

    Both yield the same batches in the same order for the same arguments (data_prep.order); `ctx`
    (a tf InputContext or a `ProcessInput`) picks the pipeline and its batch, as in `make_dataset`.
    """
    kwargs = {"training": training, "seed": seed, "drop_remainder": drop_remainder, "repeat": repeat,
              "shuffle_buffer": shuffle_buffer, "weights": weights}
    if uses_tf_data():
        from data_prep.dataset import make_dataset

        return make_dataset(manifests, split, global_batch, ctx, **kwargs)
    from data_prep.numpy_reader import make_numpy_reader

    batch = ctx.get_per_replica_batch_size(global_batch) if ctx is not None else global_batch
    index, count = (ctx.input_pipeline_id, ctx.num_input_pipelines) if ctx is not None else (0, 1)
    return make_numpy_reader(manifests, split, batch, process_index=index, process_count=count, **kwargs)


# ----------------------------------------------------------------------------- evaluation input

def _is_text(dtype) -> bool:
    return getattr(dtype, "kind", None) in ("O", "S", "U") or getattr(dtype, "name", None) == "string"


def numeric_fields(batch: dict) -> dict:
    # Strings (record ids) cannot cross into XLA or all-gathers and no model reads them.
    return {k: v for k, v in batch.items() if not _is_text(v.dtype)}


def padded_batches(ds, b: int):
    """Batches of exactly b rows + a row mask, then endless all-masked ones: static shapes, every row once.

    `ds` is a tf.data.Dataset (returns one) or an iterable of numpy batch dicts (returns a generator
    of (batch, mask) pairs that never ends: stop when every process sees an all-False mask).
    """
    if hasattr(ds, "element_spec"):  # tf.data
        return _padded_tf(ds, b)
    return _padded_numpy(ds, b)


def _schema_fields(schema) -> dict:
    """field -> (shape of one row, dtype) of the numeric fields a reader of `schema` yields."""
    out = {"seq": ((schema.length,), np.dtype(np.uint8)), "fold": ((), np.dtype(np.uint8))}
    if schema.labeled:
        out["label"] = ((), np.dtype(np.float32))
        if schema.singleton:
            out["is_singleton"] = ((), np.dtype(np.uint8))
    return out


def _padded_numpy(batches: Iterable[dict], b: int) -> Iterator[tuple[dict, np.ndarray]]:
    pending: list[dict] = []
    have = 0
    # a process whose share is empty still needs the filler's shapes (it joins every collective)
    template = _schema_fields(batches.schema) if hasattr(batches, "schema") else None
    for batch in batches:
        batch = {k: np.asarray(v) for k, v in numeric_fields(batch).items()}
        template = template or {k: (v.shape[1:], v.dtype) for k, v in batch.items()}
        pending.append(batch)
        have += len(batch["seq"])
        while have >= b:
            whole = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            yield {k: v[:b] for k, v in whole.items()}, np.ones(b, bool)
            pending, have = [{k: v[b:] for k, v in whole.items()}], have - b
    if template is None:
        raise ValueError("evaluation input is empty and names no record schema: no field shapes to pad with")
    if have:
        rest = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        yield ({k: np.concatenate([v, np.zeros((b - have, *v.shape[1:]), v.dtype)]) for k, v in rest.items()},
               np.arange(b) < have)
    filler = {k: np.zeros((b, *shape), dtype) for k, (shape, dtype) in template.items()}
    while True:
        yield filler, np.zeros(b, bool)


def _padded_tf(ds, b: int):
    import tensorflow as tf

    ds = ds.map(numeric_fields).unbatch().batch(b)
    shapes = {k: tf.TensorShape([b]).concatenate(v.shape[1:]) for k, v in ds.element_spec.items()}

    def pad(batch):
        n = tf.shape(batch["label"])[0]
        return ({k: tf.ensure_shape(tf.concat([v, tf.zeros(tf.concat([[b - n], tf.shape(v)[1:]], 0), v.dtype)], 0),
                                    shapes[k]) for k, v in batch.items()}, tf.range(b) < n)

    filler = ({k: tf.zeros(shapes[k], v.dtype) for k, v in ds.element_spec.items()}, tf.zeros([b], tf.bool))
    return ds.map(pad).concatenate(tf.data.Dataset.from_tensors(filler).repeat())

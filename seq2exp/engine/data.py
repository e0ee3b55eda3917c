"""Glue between run configs and data_prep: raw files become datasets, datasets become arrays.

A training command accepts either dataset folders (`data_prep.build` output) or raw TSV/CSV/FASTA
files; raw files are built into the run folder with the model's layout, so a run is reproducible
from its folder alone. A built dataset is keyed by the CONTENT of its raw files (SHA-256), not their
names: `repA/test.tsv` and `repB/test.tsv` are two datasets, and an edited file is built again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
import tensorflow as tf

from data_prep.build import BuildError, build
from data_prep.build import parser as build_parser
from data_prep.input_plan import summary_lines
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
            extra: list[str] | None = None) -> list[Manifest]:
    """Dataset folders as they are (layout checked); raw files built under `work`.

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
        target = os.path.join(work, f"{_name(files)}-{content_key(files, layout, split, extra)}.{layout}")
        if not is_dataset(target):
            args = build_parser().parse_args([*files, "--out", target, "--layout", layout, "--split", split,
                                              "--quiet", *(extra or [])])
            m = build(args.inputs, args.out, args)
            c = m["counts"]
            print(f"built {target}: {c['written']:,} records ({c['rejected']:,} rejected, see rejected.tsv)")
            print("\n".join(summary_lines(m)))
        out.append(load_manifest(target, layout=layout))
    return out


def eval_split(m: Manifest) -> str:
    """The split a test set is scored on: 'all' (built with --split none) or 'test'."""
    for name in ("all", "test"):
        if name in m.splits:
            return name
    raise ValueError(f"{m.path}: no 'all' or 'test' split to evaluate (splits: {m.splits})")


def read_arrays(m: Manifest, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """A split as numpy arrays (for baselines and small evaluations)."""
    from data_prep.dataset import make_dataset

    parts: dict[str, list] = {}
    n = 0
    for batch in make_dataset(m, split, 4096, training=False):
        for k, v in batch.items():
            parts.setdefault(k, []).append(v.numpy())
        n += len(batch["seq"])
        if limit and n >= limit:
            break
    return {k: np.concatenate(v)[:limit] for k, v in parts.items()}


# ----------------------------------------------------------------------------- evaluation input

def numeric_fields(batch: dict) -> dict:
    # Strings (record ids) cannot cross into XLA or all-gathers and no model reads them.
    return {k: v for k, v in batch.items() if v.dtype != tf.string}


def padded_batches(ds: tf.data.Dataset, b: int) -> tf.data.Dataset:
    """Batches of exactly b rows + a row mask, then endless all-masked ones: static shapes, every row once."""
    ds = ds.map(numeric_fields).unbatch().batch(b)
    shapes = {k: tf.TensorShape([b]).concatenate(v.shape[1:]) for k, v in ds.element_spec.items()}

    def pad(batch):
        n = tf.shape(batch["label"])[0]
        return ({k: tf.ensure_shape(tf.concat([v, tf.zeros(tf.concat([[b - n], tf.shape(v)[1:]], 0), v.dtype)], 0),
                                    shapes[k]) for k, v in batch.items()}, tf.range(b) < n)

    filler = ({k: tf.zeros(shapes[k], v.dtype) for k, v in ds.element_spec.items()}, tf.zeros([b], tf.bool))
    return ds.map(pad).concatenate(tf.data.Dataset.from_tensors(filler).repeat())

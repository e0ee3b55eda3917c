"""Glue between run configs and data_prep: raw files become datasets, datasets become arrays.

A training command accepts either dataset folders (`data_prep.build` output) or raw TSV/CSV/FASTA
files; raw files are built into the run folder with the model's layout, so a run is reproducible
from its folder alone.
"""
from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

from data_prep.build import build
from data_prep.build import parser as build_parser
from data_prep.manifest import MANIFEST, Manifest, load_manifest


def is_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST))


def _name(paths: list[str]) -> str:
    stem = "+".join(re.sub(r"(\.gz)?$", "", os.path.basename(p)).rsplit(".", 1)[0] for p in paths)
    return stem[:80] or "data"


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
        target = os.path.join(work, f"{_name(files)}.{layout}")
        if not is_dataset(target):
            args = build_parser().parse_args([*files, "--out", target, "--layout", layout, "--split", split,
                                              "--quiet", *(extra or [])])
            m = build(args.inputs, args.out, args)
            c = m["counts"]
            print(f"built {target}: {c['written']:,} records ({c['rejected']:,} rejected, see rejected.tsv)")
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

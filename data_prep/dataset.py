"""The one `tf.data` reader for training, evaluation and benchmarks.

Yields dicts of uint8 base codes (batch, length), float32 labels and small-int flags; never
float one-hot (that is made on the accelerator). Files are sharded per input pipeline
(`tf.distribute.InputContext`), records are shuffled as serialized strings, and the whole batch
is parsed in one `parse_example` call, which is what makes the reader fast on few cores.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import tensorflow as tf

from data_prep.manifest import Manifest, ManifestError, load_manifest

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


def _as_manifest(m: Manifest | str) -> Manifest:
    return m if isinstance(m, Manifest) else load_manifest(m)


def _records(m: Manifest, split: str, ctx: tf.distribute.InputContext | None, training: bool,
             seed: int | None, parallel_reads: int) -> tf.data.Dataset:
    """Serialized records of one split, this input pipeline's share only."""
    files = m.shard_paths(split)
    if not files:
        raise ManifestError(f"{m.path}: split {split!r} has no shards")
    pipelines = ctx.num_input_pipelines if ctx else 1
    file_level = pipelines > 1 and len(files) >= pipelines
    ds = tf.data.Dataset.from_tensor_slices(files)
    if file_level:
        ds = ds.shard(pipelines, ctx.input_pipeline_id)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    cycle = max(1, min(parallel_reads, len(files) if not file_level else -(-len(files) // pipelines)))
    read = lambda f: tf.data.TFRecordDataset(f, compression_type="ZLIB", buffer_size=1 << 20)  # noqa: E731
    if cycle > 1 and training:  # evaluation reads files in order, so outputs line up with inputs
        ds = ds.interleave(read, cycle_length=cycle, num_parallel_calls=AUTOTUNE, deterministic=not training)
    else:
        ds = ds.flat_map(read)
    if pipelines > 1 and not file_level:
        log.warning("%s: split %r has %d shard(s) for %d input pipelines; sharding by record instead "
                    "(every worker reads all files). Rebuild with a smaller --records-per-shard for large data.",
                    m.path, split, len(files), pipelines)
        ds = ds.shard(pipelines, ctx.input_pipeline_id)
    return ds


def make_dataset(manifests: Manifest | str | Sequence[Manifest | str], split: str, global_batch_size: int,
                 input_context: tf.distribute.InputContext | None = None, *, training: bool = True,
                 repeat: bool | None = None, shuffle_buffer: int = 100_000, seed: int | None = None,
                 drop_remainder: bool = False, weights: Sequence[float] | None = None,
                 parallel_reads: int = 4) -> tf.data.Dataset:
    """Batches for one input pipeline: {"seq": uint8 (b, L), "label": float32 (b,), "fold": uint8 (b,), ...}.

    `global_batch_size` is split across replicas through `input_context` (b = per-replica size).
    Several manifests (e.g. two growth media) are sampled with `weights` (default: evenly) and
    repeat forever, so the caller sets steps per epoch. `drop_remainder=True` gives the static
    batch shape TPUs need.
    """
    ms = [_as_manifest(manifests)] if isinstance(manifests, (Manifest, str, os.PathLike)) else [_as_manifest(m) for m in manifests]
    schema = ms[0].schema
    for m in ms[1:]:
        if m.schema != schema or m.layout != ms[0].layout:
            raise ManifestError(f"{m.path}: layout/schema differs from {ms[0].path}; cannot mix them")
    batch = input_context.get_per_replica_batch_size(global_batch_size) if input_context else global_batch_size
    streams = [_records(m, split, input_context, training, seed, parallel_reads) for m in ms]
    if len(streams) > 1:
        ds = tf.data.Dataset.sample_from_datasets([s.repeat() for s in streams], weights=weights, seed=seed)
        repeat = False
    else:
        ds = streams[0]
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat if repeat is not None else False:
        ds = ds.repeat()
    spec = schema.tf_features()
    length = schema.length

    def parse(serialized):
        ex = tf.io.parse_example(serialized, spec)
        out = {"seq": tf.reshape(tf.io.decode_raw(ex["seq"], tf.uint8), [batch if drop_remainder else -1, length]),
               "fold": tf.cast(ex["fold"], tf.uint8)}
        if "label" in ex:
            out["label"] = ex["label"]
        if "is_singleton" in ex:
            out["is_singleton"] = tf.cast(ex["is_singleton"], tf.uint8)
        if "id" in ex:
            out["id"] = ex["id"]
        return out

    ds = ds.batch(batch, drop_remainder=drop_remainder)
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=not training)
    options = tf.data.Options()
    options.experimental_deterministic = not training
    return ds.with_options(options).prefetch(AUTOTUNE)

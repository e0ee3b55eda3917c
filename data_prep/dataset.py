"""The one `tf.data` reader for training, evaluation and benchmarks.

Yields dicts of uint8 base codes (batch, length), float32 labels and small-int flags; never
float one-hot (that is made on the accelerator).

Fast path (every layout but FASTA-with-ids): records have a fixed byte layout (see
`RecordSchema.framed_layout`), so a whole shard is inflated in one op and its fields are sliced
out as columns -- no per-record protobuf parsing and no per-record tf.data element. A training
epoch permutes every shard completely (better than a shuffle buffer), reads shards in a
random order, interleaves blocks of `block` records from several shards, shuffles those blocks
and re-batches them to the per-replica batch. Files are sharded per input pipeline
(`tf.distribute.InputContext`). Records with ids fall back to TFRecordDataset + parse_example.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from data_prep.manifest import Manifest, ManifestError, load_manifest
from data_prep.schema import RecordSchema
from data_prep.tfrecord import frame_fixed

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


def _as_manifest(m) -> Manifest:
    return m if isinstance(m, Manifest) else load_manifest(m)


def _files(m: Manifest, split: str, ctx, training: bool, seed):
    """This input pipeline's shard files, and whether it must also take every n-th record."""
    files = m.shard_paths(split)
    if not files:
        raise ManifestError(f"{m.path}: split {split!r} has no shards")
    n = ctx.num_input_pipelines if ctx else 1
    by_file = n > 1 and len(files) >= n
    if n > 1 and not by_file:
        log.warning("%s: split %r has %d shard(s) for %d input pipelines; sharding by record instead "
                    "(every worker reads all files). Rebuild with a smaller --records-per-shard for large data.",
                    m.path, split, len(files), n)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if by_file:
        ds = ds.shard(n, ctx.input_pipeline_id)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds, (n if n > 1 and not by_file else 1), (ctx.input_pipeline_id if ctx else 0)


def _blocks(m: Manifest, split: str, ctx, training: bool, seed, block: int) -> tf.data.Dataset:
    """Raw framed records, shard by shard, as (rows, record_bytes) uint8 tensors.

    Training: blocks of exactly `block` rows from a fresh permutation of each shard; a shard whose
    size is not a multiple of `block` tops its last block up with rows drawn from the same
    permutation, so every record is used at least once per epoch and shapes stay static.
    Evaluation: batches of exactly `block` rows in file order, the last of each shard shorter.
    """
    size, _ = m.schema.framed_layout()
    files, every, pid = _files(m, split, ctx, training, seed)
    folder = m.folder
    header = tf.constant(list(frame_fixed(np.zeros((1, size - 16), np.uint8))[0, :12]), tf.uint8)

    def rows_of(path):
        raw = tf.io.decode_raw(tf.io.decode_compressed(tf.io.read_file(path), compression_type="ZLIB"), tf.uint8)
        tf.debugging.assert_equal(tf.size(raw) % size, 0, message=f"a shard in {folder} is not a whole number of "
                                  f"{size}-byte records (corrupted, or written with another schema)")
        rows = tf.reshape(raw, [-1, size])
        tf.debugging.assert_equal(rows[:, :12], tf.broadcast_to(header, tf.shape(rows[:, :12])),
                                  message=f"a shard in {folder} has records of another length than its manifest")
        return rows[pid::every] if every > 1 else rows

    def train_blocks(path):
        rows = rows_of(path)
        n = tf.shape(rows)[0]
        order = tf.random.shuffle(tf.range(n), seed=seed)
        pad = (block - n % block) % block
        order = tf.concat([order, tf.gather(order, tf.range(pad) % tf.maximum(n, 1))], 0)
        rows = tf.gather(rows, order)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(rows, [-1, block, size]))

    def eval_batches(path):
        rows = rows_of(path)
        k = tf.shape(rows)[0] // block
        full = tf.data.Dataset.from_tensor_slices(tf.reshape(rows[: k * block], [k, block, size]))
        return full.concatenate(tf.data.Dataset.from_tensors(rows[k * block:])).filter(lambda r: tf.shape(r)[0] > 0)

    if not training:  # evaluation reads shards in order, so outputs line up with inputs
        return files.flat_map(eval_batches)
    # a seeded pipeline is reproducible (exact resume); an unseeded one may take whichever shard is ready
    return files.interleave(train_blocks, cycle_length=2, block_length=1, num_parallel_calls=AUTOTUNE,
                            deterministic=seed is not None)


def _records(m: Manifest, split: str, ctx, training: bool, seed) -> tf.data.Dataset:
    files, every, pid = _files(m, split, ctx, training, seed)
    ds = files.flat_map(lambda f: tf.data.TFRecordDataset(f, compression_type="ZLIB", buffer_size=1 << 20))
    return ds.shard(every, pid) if every > 1 else ds


def _field_parser(schema: RecordSchema, batch_shape: int):
    """Vectorised slicing of fields out of (b, record_bytes) framed records."""
    _, off = schema.framed_layout()
    L = schema.length

    def parse(rows):
        out = {"seq": tf.ensure_shape(rows[:, off["seq"]:off["seq"] + L], [batch_shape, L]),
               "fold": rows[:, off["fold"]]}
        if schema.labeled:
            out["label"] = tf.bitcast(rows[:, off["label"]:off["label"] + 4], tf.float32)
            if schema.singleton:
                out["is_singleton"] = rows[:, off["is_singleton"]]
        return out

    return parse


def _proto_parser(schema: RecordSchema, batch_shape: int):
    spec, L = schema.tf_features(), schema.length

    def parse(serialized):
        ex = tf.io.parse_example(serialized, spec)
        out = {"seq": tf.reshape(tf.io.decode_raw(ex["seq"], tf.uint8), [batch_shape or -1, L]),
               "fold": tf.cast(ex["fold"], tf.uint8)}
        for k in ("label", "id"):
            if k in ex:
                out[k] = ex[k]
        if "is_singleton" in ex:
            out["is_singleton"] = tf.cast(ex["is_singleton"], tf.uint8)
        return out

    return parse


def make_dataset(manifests: Manifest | str | os.PathLike | Sequence, split: str, global_batch_size: int,
                 input_context: tf.distribute.InputContext | None = None, *, training: bool = True,
                 repeat: bool | None = None, shuffle_buffer: int = 100_000, seed: int | None = None,
                 drop_remainder: bool = False, weights: Sequence[float] | None = None,
                 block: int = 64) -> tf.data.Dataset:
    """Batches for one input pipeline: {"seq": uint8 (b, L), "label": float32 (b,), "fold": uint8 (b,), ...}.

    `global_batch_size` is split across replicas through `input_context` (b = per-replica size).
    For training, several manifests (e.g. two growth media) are sampled with `weights` (default:
    evenly) and repeat forever, so the caller sets steps per epoch; for evaluation they are read
    one after the other. `drop_remainder=True` gives the static
    batch shape TPUs need (for evaluation it drops each shard's short last batch: evaluate with
    drop_remainder=False). `shuffle_buffer` counts records (held as blocks of up to `block`).
    """
    single = isinstance(manifests, (Manifest, str, os.PathLike))
    ms = [_as_manifest(manifests)] if single else [_as_manifest(m) for m in manifests]
    schema = ms[0].schema
    for m in ms[1:]:
        if m.schema != schema or m.layout != ms[0].layout:
            raise ManifestError(f"{m.path}: layout/schema differs from {ms[0].path}; cannot mix them")
    batch = input_context.get_per_replica_batch_size(global_batch_size) if input_context else global_batch_size
    fast = schema.fixed_size
    if fast:
        # training blocks divide the batch, so batches are whole blocks (no re-batching copies);
        # evaluation reads whole batches straight from each shard
        block = max(d for d in range(1, block + 1) if batch % d == 0) if training else batch
        streams = [_blocks(m, split, input_context, training, seed, block) for m in ms]
    else:
        streams = [_records(m, split, input_context, training, seed) for m in ms]
    ds = streams[0]
    if len(streams) > 1 and training:
        ds = tf.data.Dataset.sample_from_datasets([s.repeat() for s in streams], weights=weights, seed=seed)
        repeat = False
    for s in streams[1:] if not training else ():  # evaluation: every record of every set, once
        ds = ds.concatenate(s)
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(max(shuffle_buffer // (block if fast else 1), 2), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    static = batch if drop_remainder else None
    if fast:
        if training:
            ds = ds.batch(batch // block, drop_remainder=drop_remainder).map(lambda b: tf.reshape(b, [-1, b.shape[-1]]))
        elif drop_remainder:
            ds = ds.filter(lambda b: tf.shape(b)[0] == batch)
        ds = ds.map(_field_parser(schema, static), num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.batch(batch, drop_remainder=drop_remainder).map(_proto_parser(schema, static),
                                                                num_parallel_calls=AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = not training or seed is not None
    return ds.with_options(options).prefetch(AUTOTUNE)

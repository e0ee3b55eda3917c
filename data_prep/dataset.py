"""The tf.data reader for training, evaluation and benchmarks (TensorFlow's twin of `data_prep.numpy_reader`).

Yields dicts of uint8 base codes (batch, length), float32 labels and small-int flags; never
float one-hot (that is made on the accelerator).

Fast path (every layout but FASTA-with-ids): records have a fixed byte layout (see
`RecordSchema.framed_layout`), so a whole shard is inflated in one op and its fields are sliced
out as columns -- no per-record protobuf parsing and no per-record tf.data element. Training
reads groups of shards, each permuted whole, in the seeded order of `data_prep.order` (computed in
numpy), so it yields the same batches as the numpy reader for the same seed; the data path itself
is TensorFlow ops. Files are sharded per input pipeline (`tf.distribute.InputContext`). Records with
ids (FASTA, unlabeled: evaluation only) go through TFRecordDataset + parse_example.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from data_prep.manifest import Manifest, ManifestError
from data_prep.numpy_reader import as_manifests, split_shards
from data_prep.order import MIX_DRAWS, ProcessShards, TrainOrder, block_size, mix_choices, resolve_seed
from data_prep.schema import RecordSchema
from data_prep.tfrecord import frame_fixed

AUTOTUNE = tf.data.AUTOTUNE


def _rows_of(m: Manifest, sh: ProcessShards):
    """path, records -> the shard's (rows, record_bytes) uint8 rows this pipeline reads, checked."""
    size, _ = m.schema.framed_layout()
    header = tf.constant(list(frame_fixed(np.zeros((1, size - 16), np.uint8))[0, :12]), tf.uint8)
    folder, compression = m.folder, m.compression

    def rows_of(path, records):
        raw = tf.io.decode_raw(tf.io.decode_compressed(tf.io.read_file(path), compression_type=compression), tf.uint8)
        tf.debugging.assert_equal(tf.size(raw, out_type=tf.int64), records * size, message=(
            f"a shard in {folder} does not hold its manifest's records (corrupted, or written with another schema)"))
        rows = tf.reshape(raw, [-1, size])
        tf.debugging.assert_equal(rows[:, :12], tf.broadcast_to(header, tf.shape(rows[:, :12])),
                                  message=f"a shard in {folder} has records of another length than its manifest")
        return rows[sh.offset::sh.stride] if sh.stride > 1 else rows

    return rows_of, size


def _train_blocks(m: Manifest, order: TrainOrder) -> tf.data.Dataset:
    """Blocks of `order.block` framed rows, group by group, in `order`'s sequence."""
    rows_of, size = _rows_of(m, order.shards)
    block = order.block

    def groups():
        for g in order.groups():
            yield g.paths, g.records, g.order

    def load(paths, records, perm):
        parts = tf.TensorArray(tf.uint8, size=tf.size(paths), infer_shape=False, element_shape=[None, size])
        for i in tf.range(tf.size(paths)):
            parts = parts.write(i, rows_of(paths[i], records[i]))
        return tf.reshape(tf.gather(parts.concat(), perm), [-1, block, size])

    spec = (tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64))
    ds = tf.data.Dataset.from_generator(groups, output_signature=spec)
    # one group loads while the previous one is consumed
    return ds.map(load, num_parallel_calls=2, deterministic=True).flat_map(tf.data.Dataset.from_tensor_slices)


def _eval_batches(m: Manifest, sh: ProcessShards, batch: int) -> tf.data.Dataset:
    """Each shard in manifest order, as batches of `batch` rows (the last of each shard shorter)."""
    rows_of, size = _rows_of(m, sh)

    def batches(path, records):
        rows = rows_of(path, records)
        k = tf.shape(rows)[0] // batch
        full = tf.data.Dataset.from_tensor_slices(tf.reshape(rows[: k * batch], [k, batch, size]))
        return full.concatenate(tf.data.Dataset.from_tensors(rows[k * batch:])).filter(lambda r: tf.shape(r)[0] > 0)

    files = tf.data.Dataset.from_tensor_slices((list(sh.paths), tf.constant(sh.records, tf.int64)))
    return files.flat_map(batches)


def _records(m: Manifest, sh: ProcessShards) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(list(sh.paths)).flat_map(
        lambda f: tf.data.TFRecordDataset(f, compression_type=m.compression, buffer_size=1 << 20))
    return ds.shard(sh.stride, sh.offset) if sh.stride > 1 else ds


def _field_parser(schema: RecordSchema, batch_shape: int | None):
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


def _proto_parser(schema: RecordSchema, batch_shape: int | None):
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

    `global_batch_size` is split across replicas through `input_context` (b = per-replica size); the
    pipeline is process `input_pipeline_id` of `num_input_pipelines` for `data_prep.order`. Training
    permutes groups of shards holding at least `shuffle_buffer` records (and 2 shards) whole, a new
    order on each iteration of the dataset (or pass, with `repeat`); several manifests (e.g. two
    growth media) are sampled block by block with `weights` (default: evenly) and repeat forever, so
    the caller sets steps per epoch. Evaluation reads every record once, in order, manifest after
    manifest (endlessly with `repeat`). `drop_remainder=True` gives the static batch shape TPUs need
    (for evaluation it drops each shard's short last batch: evaluate with drop_remainder=False). The
    numpy reader (`data_prep.numpy_reader.make_numpy_reader`) yields the same batches for the same
    arguments.
    """
    ms = as_manifests(manifests)
    schema = ms[0].schema
    batch = input_context.get_per_replica_batch_size(global_batch_size) if input_context else global_batch_size
    pid, count = (input_context.input_pipeline_id, input_context.num_input_pipelines) if input_context else (0, 1)
    shards = [split_shards(m, split, pid, count) for m in ms]
    static = batch if drop_remainder else None
    if not schema.fixed_size:  # FASTA ids: unlabeled, read for prediction
        if training:
            raise ManifestError(f"{ms[0].path}: records with ids (FASTA input) are unlabeled; read them with "
                                "training=False")
        ds = _records(ms[0], shards[0])
        for m, sh in zip(ms[1:], shards[1:]):
            ds = ds.concatenate(_records(m, sh))
        ds = ds.batch(batch, drop_remainder=drop_remainder).map(_proto_parser(schema, static),
                                                                num_parallel_calls=AUTOTUNE)
    elif training:
        seed = resolve_seed(seed)
        block = block_size(batch, block)
        mixed = len(ms) > 1
        streams = [_train_blocks(m, TrainOrder(sh, block, shuffle_buffer, seed, k, repeat=bool(repeat) or mixed))
                   for k, (m, sh) in enumerate(zip(ms, shards))]
        ds = streams[0]
        if mixed:
            next(mix_choices(seed, weights, len(ms)))  # validates the weights now
            choice = tf.data.Dataset.from_generator(lambda: mix_choices(seed, weights, len(ms)),
                                                    output_signature=tf.TensorSpec([MIX_DRAWS], tf.int64))
            ds = tf.data.Dataset.choose_from_datasets(streams, choice.unbatch())
        ds = ds.batch(batch // block, drop_remainder=drop_remainder).map(lambda b: tf.reshape(b, [-1, b.shape[-1]]))
        ds = ds.map(_field_parser(schema, static), num_parallel_calls=AUTOTUNE)
    else:
        ds = _eval_batches(ms[0], shards[0], batch)
        for m, sh in zip(ms[1:], shards[1:]):
            ds = ds.concatenate(_eval_batches(m, sh, batch))
        if drop_remainder:
            ds = ds.filter(lambda b: tf.shape(b)[0] == batch)
        ds = ds.map(_field_parser(schema, static), num_parallel_calls=AUTOTUNE)
    if repeat and not training:
        ds = ds.repeat()
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(AUTOTUNE)

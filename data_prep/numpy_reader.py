"""The TensorFlow-free reader: the same batches as the tf.data reader, as dicts of numpy arrays.

For JAX (or any numpy consumer) on machines without TensorFlow. Public API:

    from data_prep.numpy_reader import make_numpy_reader
    reader = make_numpy_reader(["data/native", "data/drift"], "train", batch_size=1024, seed=7,
                               process_index=jax.process_index(), process_count=jax.process_count())
    for batch in reader:          # one pass per `for` (a new pass order each time), or endless with repeat
        batch["seq"]              # uint8 (b, L) base codes A0 C1 G2 T3 N4 (one-hot is made on the device)
        batch["label"]            # float32 (b,)            (labeled data)
        batch["fold"]             # uint8 (b,) hash fold
        batch["is_singleton"]     # uint8 (b,)              (legnet layout, labeled)
        batch["id"]               # object (b,) bytes       (FASTA input; evaluation only)

`batch_size` is this process's batch. Training (`training=True`): every pass permutes groups of
shards whole and reads them in a seeded order (`data_prep.order`), so `make_numpy_reader(...)` and
`data_prep.dataset.make_dataset(...)` with the same seed, batch and process index/count yield the
same batches in the same order; several dataset folders are mixed block by block with `weights`
and then repeat forever; `drop_remainder=True` keeps every batch at exactly `batch_size` rows
(static shapes for XLA). Evaluation (`training=False`): every record once, in manifest order,
shard by shard (a shard's last batch may be shorter unless `drop_remainder`, which drops it), over
and over with `repeat`.

Fast path (fixed-size records, every layout but FASTA ids): a shard is inflated whole and its
fields are sliced out as columns; no per-record parsing.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence

import numpy as np

from data_prep.manifest import Manifest, ManifestError, load_manifest
from data_prep.order import TrainOrder, block_size, mix_choices, process_shards, resolve_seed
from data_prep.schema import RecordSchema, decode_example
from data_prep.tfrecord import frame_fixed, read_shard, record_ends


def as_manifests(manifests) -> list[Manifest]:
    """One or several dataset folders / manifests, checked to share one layout and schema."""
    single = isinstance(manifests, (Manifest, str, os.PathLike))
    ms = [manifests] if single else list(manifests)
    ms = [m if isinstance(m, Manifest) else load_manifest(m) for m in ms]
    if not ms:
        raise ManifestError("no dataset given")
    for m in ms[1:]:
        if m.schema != ms[0].schema or m.layout != ms[0].layout:
            raise ManifestError(f"{m.path}: layout/schema differs from {ms[0].path}; cannot mix them")
    return ms


def split_shards(m: Manifest, split: str, index: int, count: int):
    shards = m.split(split)["shards"]
    if not shards:
        raise ManifestError(f"{m.path}: split {split!r} has no shards")
    return process_shards([os.path.join(m.folder, s["file"]) for s in shards], [int(s["records"]) for s in shards],
                          index, count, f"{m.path} split {split!r}")


def shard_rows(path: str, m: Manifest, records: int, stride: int = 1, offset: int = 0) -> np.ndarray:
    """A shard's framed fixed-size records as an (n, record_bytes) uint8 array, checked against the manifest."""
    schema = m.schema
    size, _ = schema.framed_layout()
    raw = np.frombuffer(read_shard(path, m.compression), dtype=np.uint8)
    if raw.size != records * size:
        raise ManifestError(f"{path}: holds {raw.size} bytes, not the {records} records x {size} bytes of "
                            f"{m.path} (corrupted, or written with another schema)")
    rows = raw.reshape(records, size)
    header = frame_fixed(np.zeros((1, size - 16), np.uint8))[0, :12]
    if records and not (rows[:, :12] == header).all():
        raise ManifestError(f"{path}: has records of another length than {m.path} says")
    return rows[offset::stride] if stride > 1 else rows


def fields(rows: np.ndarray, schema: RecordSchema) -> dict[str, np.ndarray]:
    """Columns of (n, record_bytes) framed records: the batch dict's arrays (contiguous copies)."""
    _, off = schema.framed_layout()
    out = {"seq": np.ascontiguousarray(rows[:, off["seq"]:off["seq"] + schema.length]),
           "fold": np.ascontiguousarray(rows[:, off["fold"]])}
    if schema.labeled:
        out["label"] = np.ascontiguousarray(rows[:, off["label"]:off["label"] + 4]).view("<f4").reshape(-1)
        if schema.singleton:
            out["is_singleton"] = np.ascontiguousarray(rows[:, off["is_singleton"]])
    return out


def _examples(path: str, m: Manifest, stride: int, offset: int) -> dict[str, np.ndarray]:
    """Records of varying size (FASTA ids), decoded one by one (prediction sets only)."""
    raw = read_shard(path, m.compression)
    ends = record_ends(raw)
    starts = np.concatenate([[0], ends[:-1]])
    rows = [decode_example(raw[s + 12:e - 4]) for s, e in zip(starts[offset::stride].tolist(),
                                                               ends[offset::stride].tolist())]
    L = m.schema.length
    out = {"seq": np.frombuffer(b"".join(r["seq"] for r in rows), np.uint8).reshape(len(rows), L),
           "fold": np.array([r["fold"] for r in rows], np.uint8)}
    if m.schema.has_ids:
        out["id"] = np.array([r["id"] for r in rows] + [None], dtype=object)[:-1]
    for k in ("label", "is_singleton"):
        if rows and k in rows[0]:
            out[k] = np.array([r[k] for r in rows], np.float32 if k == "label" else np.uint8)
    return out


def _cat(parts: list[dict]) -> dict[str, np.ndarray]:
    return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Stream:
    """One dataset's training blocks as field arrays, group after group."""

    def __init__(self, m: Manifest, order: TrainOrder):
        self.m, self.order, self.schema = m, order, m.schema
        self._groups: Iterator | None = None
        self._cols: dict | None = None
        self._pos = 0

    def start(self) -> None:
        self._groups, self._cols, self._pos = self.order.groups(), None, 0

    def _load(self) -> bool:
        g = next(self._groups, None)
        if g is None:
            return False
        sh = self.order.shards
        rows = [shard_rows(p, self.m, n, sh.stride, sh.offset) for p, n in zip(g.paths, g.records)]
        rows = np.concatenate(rows) if len(rows) > 1 else rows[0]
        self._cols = fields(np.take(rows, g.order, axis=0), self.schema)  # take: ~1.6x faster than rows[order]
        self._pos = 0
        return True

    def take(self, n: int) -> list[dict]:
        """Up to n rows (fewer only at the end of a non-repeating pass), as pieces."""
        parts = []
        while n:
            if self._cols is None or self._pos == len(self._cols["seq"]):
                if not self._load():
                    break
            k = min(n, len(self._cols["seq"]) - self._pos)
            parts.append({key: v[self._pos:self._pos + k] for key, v in self._cols.items()})
            self._pos += k
            n -= k
        return parts


class NumpyReader:
    """Iterable of batches (see the module docstring); build it with `make_numpy_reader`."""

    def __init__(self, manifests, split: str, batch_size: int, *, process_index: int = 0, process_count: int = 1,
                 training: bool = True, repeat: bool | None = None, seed: int | None = None,
                 drop_remainder: bool = False, weights: Sequence[float] | None = None,
                 shuffle_buffer: int = 100_000, block: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.manifests = as_manifests(manifests)
        self.schema = self.manifests[0].schema
        self.split, self.batch_size, self.training = split, batch_size, training
        self.drop_remainder, self.repeat = drop_remainder, bool(repeat)
        self.shards = [split_shards(m, split, process_index, process_count) for m in self.manifests]
        if not training:
            return
        if not self.schema.fixed_size:
            raise ManifestError(f"{self.manifests[0].path}: records with ids (FASTA input) are unlabeled; read "
                                "them with training=False")
        mixed = len(self.manifests) > 1
        self.seed = resolve_seed(seed)
        self.block = block_size(batch_size, block)
        again = bool(repeat) or mixed
        self.streams = [_Stream(m, TrainOrder(sh, self.block, shuffle_buffer, self.seed, k, repeat=again))
                        for k, (m, sh) in enumerate(zip(self.manifests, self.shards))]
        self.weights = weights
        if mixed:
            next(mix_choices(self.seed, weights, len(self.streams)))  # validates the weights now

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self.training:
            return self._train()
        return itertools.chain.from_iterable(iter(self._evaluate, None)) if self.repeat else self._evaluate()

    def _train(self):
        for s in self.streams:
            s.start()
        b = self.batch_size
        if len(self.streams) == 1:
            while True:
                parts = self.streams[0].take(b)
                n = sum(len(p["seq"]) for p in parts)
                if n == b or (n and not self.drop_remainder):
                    yield _cat(parts)
                if n < b:
                    return
        per = b // self.block
        draws = itertools.chain.from_iterable(d.tolist() for d in mix_choices(self.seed, self.weights,
                                                                                  len(self.streams)))
        while True:
            yield _cat([p for k in itertools.islice(draws, per) for p in self.streams[k].take(self.block)])

    def _evaluate(self):
        b, fixed = self.batch_size, self.schema.fixed_size
        pending: list[dict] = []
        for m, sh in zip(self.manifests, self.shards):
            for path, records in zip(sh.paths, sh.records):
                cols = (fields(shard_rows(path, m, records, sh.stride, sh.offset), self.schema) if fixed
                        else _examples(path, m, sh.stride, sh.offset))
                n = len(cols["seq"])
                if fixed:  # batches within each shard, like the tf.data reader
                    stop = n - n % b if self.drop_remainder else n
                    yield from ({k: v[i:i + b] for k, v in cols.items()} for i in range(0, stop, b))
                    continue
                pending.append(cols)  # records with ids: batches run across shards
                while sum(len(p["seq"]) for p in pending) >= b:
                    whole = _cat(pending)
                    yield {k: v[:b] for k, v in whole.items()}
                    pending = [{k: v[b:] for k, v in whole.items()}]
        rest = _cat(pending) if pending else None
        if rest is not None and len(rest["seq"]) and not self.drop_remainder:
            yield rest


def make_numpy_reader(manifests: Manifest | str | os.PathLike | Sequence, split: str, batch_size: int,
                      **kwargs) -> NumpyReader:
    """Batches of this process: see the module docstring and `NumpyReader` for the keyword arguments."""
    return NumpyReader(manifests, split, batch_size, **kwargs)

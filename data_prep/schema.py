"""The record schema: ONE definition used by the writer (build) and the reader (dataset).

Each record is a `tf.train.Example` with
    seq           bytes, exactly `length` uint8 base codes (A0 C1 G2 T3 N4)
    fold          int64, hash fold 0..n_folds-1
    label         float32 measured expression            (labeled data only)
    is_singleton  int64 0/1, expression is an integer     (legnet layout, labeled only)
    id            bytes, the FASTA record name            (FASTA input only)
With fixed length and small ints every Example has the same byte layout, so the writer fills a
template with numpy instead of calling protobuf per record.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    return _varint((tag << 3) | 2) + _varint(len(payload)) + payload


def _feature(kind: str, payload: bytes) -> bytes:
    """Feature{bytes_list=1 | float_list=2 | int64_list=3} holding one value."""
    if kind == "bytes":
        return _len_field(1, _len_field(1, payload))
    if kind == "float":
        return _len_field(2, _len_field(1, payload))  # packed float
    return _len_field(3, _len_field(1, payload))  # packed varint


def encode_example(features: dict[str, tuple[str, bytes]]) -> bytes:
    """Serialize {name: (kind, payload bytes)} as a tf.train.Example (keys sorted, like protobuf)."""
    entries = b"".join(
        _len_field(1, _len_field(1, name.encode()) + _len_field(2, _feature(kind, payload)))
        for name, (kind, payload) in sorted(features.items()))
    return _len_field(1, entries)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _fields(data: bytes):
    """(field number, wire type, value) of a protobuf message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + n], pos + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, pos = data[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, wire, value


def decode_example(data: bytes) -> dict:
    """A serialized tf.train.Example with one value per feature -> {name: bytes | float | int}, without
    protobuf or TensorFlow (the numpy reader's path for records of varying size)."""
    out = {}
    for _, _, features in _fields(data):
        for _, _, entry in _fields(features):
            parts = {num: value for num, _, value in _fields(entry)}
            name = parts[1].decode()
            for kind, _wire, lst in _fields(parts.get(2, b"")):
                values = list(_fields(lst))
                if not values:
                    continue
                _, vwire, v = values[0]
                if kind == 1:
                    out[name] = v
                elif kind == 2:
                    out[name] = struct.unpack_from("<f", v)[0]
                else:
                    out[name] = _read_varint(v, 0)[0] if vwire == 2 else v
    return out


@dataclass(frozen=True)
class RecordSchema:
    length: int
    labeled: bool = True
    singleton: bool = False
    has_ids: bool = False

    @property
    def fixed_features(self) -> dict[str, tuple[str, int]]:
        """name -> (kind, payload size) for the fixed-size part of every record."""
        f = {"seq": ("bytes", self.length), "fold": ("int", 1)}
        if self.labeled:
            f["label"] = ("float", 4)
            if self.singleton:
                f["is_singleton"] = ("int", 1)
        return f

    def _template(self) -> tuple[np.ndarray, dict[str, int]]:
        """The zero-payload record and each payload's byte offset (found by flipping one payload)."""
        base, offsets = _cached_template(self)
        return base.copy(), dict(offsets)

    @property
    def fixed_size(self) -> bool:
        """Whether every record has the same bytes layout (all but FASTA ids)."""
        return not self.has_ids

    def framed_layout(self) -> tuple[int, dict[str, int]]:
        """(bytes per framed TFRecord record, payload offset of each field within it).

        Fixed-size records let the reader slice fields straight out of a decompressed shard
        instead of parsing protobufs one by one; 12 = the TFRecord length + length-CRC header.
        """
        size, off = _framed_layout(self)
        return size, dict(off)

    def serialize_fixed(self, seq: np.ndarray, fold: np.ndarray, label: np.ndarray | None = None,
                        is_singleton: np.ndarray | None = None) -> np.ndarray:
        """Serialize n records at once into an (n, record_size) uint8 array."""
        if self.has_ids:
            raise ValueError("records with ids have variable size; use serialize_one")
        template, off = self._template()
        n = seq.shape[0]
        out = np.broadcast_to(template, (n, template.size)).copy()
        out[:, off["seq"]:off["seq"] + self.length] = seq
        out[:, off["fold"]] = _small_int(fold, "fold")
        if self.labeled:
            lab = np.ascontiguousarray(label, dtype="<f4").view(np.uint8).reshape(n, 4)
            out[:, off["label"]:off["label"] + 4] = lab
            if self.singleton:
                out[:, off["is_singleton"]] = _small_int(is_singleton, "is_singleton")
        return out

    def serialize_one(self, seq: np.ndarray, fold: int, label: float | None = None,
                      is_singleton: int | None = None, id: str | None = None) -> bytes:
        feats = {"seq": ("bytes", np.asarray(seq, dtype=np.uint8).tobytes()), "fold": ("int", _varint(int(fold)))}
        if self.labeled:
            feats["label"] = ("float", struct.pack("<f", label))
            if self.singleton:
                feats["is_singleton"] = ("int", _varint(int(is_singleton)))
        if self.has_ids:
            feats["id"] = ("bytes", (id or "").encode())
        return encode_example(feats)

    def tf_features(self) -> dict:
        """The `tf.io.parse_example` spec for this schema."""
        import tensorflow as tf

        spec = {"seq": tf.io.FixedLenFeature([], tf.string), "fold": tf.io.FixedLenFeature([], tf.int64)}
        if self.labeled:
            spec["label"] = tf.io.FixedLenFeature([], tf.float32)
            if self.singleton:
                spec["is_singleton"] = tf.io.FixedLenFeature([], tf.int64)
        if self.has_ids:
            spec["id"] = tf.io.FixedLenFeature([], tf.string)
        return spec

    def to_dict(self) -> dict:
        return {"version": SCHEMA_VERSION, "length": self.length, "labeled": self.labeled,
                "singleton": self.singleton, "has_ids": self.has_ids,
                "features": sorted(self.fixed_features) + (["id"] if self.has_ids else [])}

    @classmethod
    def from_dict(cls, d: dict) -> RecordSchema:
        if d.get("version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported record schema version {d.get('version')!r} (expected {SCHEMA_VERSION})")
        return cls(int(d["length"]), bool(d["labeled"]), bool(d["singleton"]), bool(d["has_ids"]))


@functools.lru_cache(maxsize=16)
def _cached_template(schema: RecordSchema) -> tuple[np.ndarray, dict[str, int]]:
    kinds = schema.fixed_features

    def build(flip: str | None) -> np.ndarray:
        payloads = {n: (k, (b"\xff" if n == flip else b"\x00") * size) for n, (k, size) in kinds.items()}
        return np.frombuffer(encode_example(payloads), dtype=np.uint8)

    base = build(None)
    return base, {n: int(np.flatnonzero(build(n) != base)[0]) for n in kinds}


@functools.lru_cache(maxsize=16)
def _framed_layout(schema: RecordSchema) -> tuple[int, dict[str, int]]:
    base, off = _cached_template(schema)
    return base.size + 16, {k: v + 12 for k, v in off.items()}


def _small_int(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > 127):
        raise ValueError(f"{name} must be in 0..127 for the fixed record layout")
    return values.astype(np.uint8)

"""TFRecord framing, CRC32C and ZLIB shard assembly, vectorised so Python never loops per record.

A ZLIB TFRecord file is ONE zlib stream over framed records
(`uint64 length | masked crc32c(length) | data | masked crc32c(data)`). Workers compress their
chunk independently into a byte-aligned raw-deflate segment (sync flush, no final block); the
writer concatenates segments, which is still one valid deflate stream because no segment refers
back past its own start, then closes with an empty final block and the combined Adler-32. That
lets every core compress in parallel while shards stay byte-identical for any worker count.
"""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_ADLER_MOD = 65521


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


CRC_TABLE = _crc_table()


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of every row of an (n, m) uint8 array, one numpy op per column."""
    rows = np.asarray(rows, dtype=np.uint8)
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = CRC_TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


def crc32c(data: bytes) -> int:
    return int(crc32c_rows(np.frombuffer(data, dtype=np.uint8)[None, :])[0])


def masked_crc(crc: np.ndarray) -> np.ndarray:
    crc = np.asarray(crc, dtype=np.uint64)
    return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


def frame_fixed(records: np.ndarray) -> np.ndarray:
    """Frame n equal-length serialized records: (n, m) uint8 -> (n, m + 16) uint8."""
    n, m = records.shape
    length = struct.pack("<Q", m)
    head = length + struct.pack("<I", int(masked_crc(crc32c(length))))
    out = np.empty((n, m + 16), dtype=np.uint8)
    out[:, :12] = np.frombuffer(head, dtype=np.uint8)
    out[:, 12:12 + m] = records
    out[:, 12 + m:] = masked_crc(crc32c_rows(records)).astype("<u4").view(np.uint8).reshape(n, 4)
    return out


def frame_many(records: list[bytes]) -> bytes:
    """Frame records of any lengths (grouped by length so the CRC stays vectorised)."""
    framed: list[bytes | None] = [None] * len(records)
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_len.setdefault(len(r), []).append(i)
    for length, idx in by_len.items():
        rows = np.frombuffer(b"".join(records[i] for i in idx), dtype=np.uint8).reshape(len(idx), length)
        out = frame_fixed(rows)
        for k, i in enumerate(idx):
            framed[i] = out[k].tobytes()
    return b"".join(framed)  # type: ignore[arg-type]


@dataclass
class Segment:
    """A byte-aligned raw-deflate piece of a shard, with what the writer needs to splice it."""

    data: bytes
    adler: int
    length: int
    records: int


def deflate_segment(raw: bytes, records: int, level: int = 6) -> Segment:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    data = comp.compress(raw) + comp.flush(zlib.Z_SYNC_FLUSH)
    return Segment(data, zlib.adler32(raw), len(raw), records)


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of X+Y from adler(X), adler(Y) and len(Y): A = A1 + A2 - 1, B = B1 + B2 + len2 (A1 - 1)."""
    a1, b1 = adler1 & 0xFFFF, adler1 >> 16
    a2, b2 = adler2 & 0xFFFF, adler2 >> 16
    a = (a1 + a2 - 1) % _ADLER_MOD
    b = (b1 + b2 + len2 * (a1 - 1)) % _ADLER_MOD
    return (b << 16) | a


_ZLIB_HEADER = b"\x78\x9c"
_FINAL_EMPTY_BLOCK = b"\x03\x00"


class ShardWriter:
    """Appends deflate segments to one ZLIB TFRecord file; written under a temporary name."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = f"{path}.partial"
        self._fh = open(self._tmp, "wb")
        self._sha = hashlib.sha256()
        self._adler = 1
        self.records = 0
        self.bytes = 0
        self._write(_ZLIB_HEADER)

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._sha.update(data)
        self.bytes += len(data)

    def append(self, seg: Segment) -> None:
        self._write(seg.data)
        self._adler = adler32_combine(self._adler, seg.adler, seg.length)
        self.records += seg.records

    def close(self) -> dict:
        self._write(_FINAL_EMPTY_BLOCK + struct.pack(">I", self._adler))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        return {"file": os.path.basename(self.path), "records": self.records,
                "bytes": self.bytes, "sha256": self._sha.hexdigest()}

    def abort(self) -> None:
        self._fh.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)


def iter_records(path: str):
    """Decode a ZLIB TFRecord file without TensorFlow, checking every CRC (for tests and tools)."""
    with open(path, "rb") as fh:
        raw = zlib.decompress(fh.read())
    pos = 0
    while pos < len(raw):
        (length,) = struct.unpack_from("<Q", raw, pos)
        (lcrc,) = struct.unpack_from("<I", raw, pos + 8)
        if lcrc != int(masked_crc(crc32c(raw[pos:pos + 8]))):
            raise ValueError(f"{path}: corrupt record length at byte {pos}")
        data = raw[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack_from("<I", raw, pos + 12 + length)
        if dcrc != int(masked_crc(crc32c(data))):
            raise ValueError(f"{path}: corrupt record data at byte {pos}")
        yield data
        pos += 16 + length

"""TFRecord framing and GZIP shard files, without TensorFlow.

A record is framed as `uint64 length | masked crc32c(length) | data | masked crc32c(data)` (CRC-32C from
`google-crc32c`). A GZIP TFRecord file is those framed records compressed with gzip, and a gzip file may
be several members back to back (RFC 1952): TensorFlow (`TFRecordDataset(..., "GZIP")`,
`tf.io.decode_compressed`), the `tfrecord` package, `gzip` and `isal` all read such a file as one
stream. So a worker compresses its share of a chunk into complete members on its own, the writer only
appends members, and a shard is byte-identical for any worker count. Members hold at most
`MEMBER_RECORDS` records, so that a shard can end at an exact record count: the writer re-compresses
only the one member that straddles the boundary.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass

import google_crc32c
import numpy as np

try:  # ISA-L: 6x faster than zlib -1 and smaller (README "1. Data": why isal level 1)
    import isal
    from isal import igzip as _gunzip_impl
    from isal import isal_zlib as _gzip_impl

    COMPRESSOR = f"isal {isal.__version__} level 1"
    _ERRORS: tuple = (OSError, EOFError, zlib.error, _gzip_impl.error)
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps a bare install working
    _gzip_impl, _gunzip_impl = zlib, gzip
    COMPRESSOR = f"zlib {zlib.ZLIB_VERSION} level 1"
    _ERRORS = (OSError, EOFError, zlib.error)

_MASK_DELTA = 0xA282EAD8
#: records per gzip member: ~18 bytes of member header and trailer per 4096 records (0.005 B/record)
MEMBER_RECORDS = 4096
#: the compressions readers accept: GZIP (this version) and ZLIB (folders built before it)
COMPRESSIONS = ("GZIP", "ZLIB")


def crc32c(data: bytes) -> int:
    return google_crc32c.value(bytes(data))


def masked_crc(crc) -> np.ndarray:
    crc = np.asarray(crc, dtype=np.uint64)
    return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


def frame_fixed(records: np.ndarray) -> np.ndarray:
    """Frame n equal-length serialized records: (n, m) uint8 -> (n, m + 16) uint8."""
    n, m = records.shape
    length = struct.pack("<Q", m)
    data = np.ascontiguousarray(records, dtype=np.uint8).tobytes()
    crcs = np.fromiter((google_crc32c.value(data[i:i + m]) for i in range(0, n * m, m)), np.uint32, n)
    out = np.empty((n, m + 16), dtype=np.uint8)
    out[:, :8] = np.frombuffer(length, dtype=np.uint8)
    out[:, 8:12] = np.frombuffer(struct.pack("<I", int(masked_crc(crc32c(length)))), dtype=np.uint8)
    out[:, 12:12 + m] = records
    out[:, 12 + m:] = masked_crc(crcs).astype("<u4").view(np.uint8).reshape(n, 4)
    return out


def frame_one(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", int(masked_crc(crc32c(length)))), data,
                     struct.pack("<I", int(masked_crc(crc32c(data))))))


def record_ends(raw: bytes) -> np.ndarray:
    """End offset of every framed record in `raw` (for records of varying length)."""
    ends, pos = [], 0
    while pos < len(raw):
        if pos + 12 > len(raw):
            raise ValueError(f"truncated record header at byte {pos}")
        (length,) = struct.unpack_from("<Q", raw, pos)
        pos += 16 + length
        ends.append(pos)
    if pos != len(raw):
        raise ValueError("truncated record data at the end")
    return np.array(ends, dtype=np.int64)


def gzip_member(raw: bytes) -> bytes:
    """One complete gzip member (mtime 0, so equal input gives equal bytes)."""
    return _gzip_impl.compress(raw, 1, wbits=31)


@dataclass
class Segment:
    """Framed records of one split of one chunk, as gzip members of at most MEMBER_RECORDS records each."""

    members: list[bytes]
    counts: list[int]
    #: bytes per framed record, or None when lengths vary (records with ids)
    record_size: int | None

    @property
    def records(self) -> int:
        return sum(self.counts)

    def split(self, r: int) -> tuple[Segment, Segment]:
        """The first r records and the rest; only a member that straddles record r is re-compressed."""
        k, done = 0, 0
        while done + self.counts[k] <= r:
            done += self.counts[k]
            k += 1
            if done == r:
                return (Segment(self.members[:k], self.counts[:k], self.record_size),
                        Segment(self.members[k:], self.counts[k:], self.record_size))
        raw = inflate(self.members[k], "GZIP")
        cut = r - done
        at = cut * self.record_size if self.record_size else int(record_ends(raw)[cut - 1])
        head = Segment(self.members[:k] + [gzip_member(raw[:at])], self.counts[:k] + [cut], self.record_size)
        tail = Segment([gzip_member(raw[at:])] + self.members[k + 1:], [self.counts[k] - cut] + self.counts[k + 1:],
                       self.record_size)
        return head, tail


def compress_fixed(framed: np.ndarray) -> Segment:
    """(n, record_size) framed records -> a Segment."""
    n, size = framed.shape
    members = [gzip_member(framed[i:i + MEMBER_RECORDS].tobytes()) for i in range(0, n, MEMBER_RECORDS)]
    return Segment(members, [min(MEMBER_RECORDS, n - i) for i in range(0, n, MEMBER_RECORDS)], size)


def compress_many(records: list[bytes]) -> Segment:
    """Serialized records of any lengths -> a Segment."""
    members, counts = [], []
    for i in range(0, len(records), MEMBER_RECORDS):
        part = records[i:i + MEMBER_RECORDS]
        members.append(gzip_member(b"".join(frame_one(r) for r in part)))
        counts.append(len(part))
    return Segment(members, counts, None)


class ShardWriter:
    """Appends segments to one GZIP TFRecord file; written under a temporary name."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = f"{path}.partial"
        self._fh = open(self._tmp, "wb")
        self._sha = hashlib.sha256()
        self.records = 0
        self.bytes = 0

    def append(self, seg: Segment) -> None:
        for data in seg.members:
            self._fh.write(data)
            self._sha.update(data)
            self.bytes += len(data)
        self.records += seg.records

    def close(self) -> dict:
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


def inflate(data: bytes, compression: str) -> bytes:
    """Decompress a whole shard: GZIP (every member) or ZLIB (folders built before GZIP shards)."""
    if compression == "GZIP":
        return _gunzip_impl.decompress(data)
    if compression == "ZLIB":
        return zlib.decompress(data)
    raise ValueError(f"unknown shard compression {compression!r}; expected one of {COMPRESSIONS}")


def read_shard(path: str, compression: str = "GZIP") -> bytes:
    """A shard's framed records, decompressed whole; errors name the file."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return inflate(data, compression)
    except _ERRORS as err:
        raise ValueError(f"{path}: not a readable {compression} shard ({err}); rebuild the dataset with "
                         "`python -m data_prep.build`") from None


def iter_records(path: str, compression: str = "GZIP"):
    """Decode a TFRecord file without TensorFlow, checking every CRC (for tests and tools)."""
    raw = read_shard(path, compression)
    pos = 0
    for end in record_ends(raw).tolist():
        (lcrc,) = struct.unpack_from("<I", raw, pos + 8)
        if lcrc != int(masked_crc(crc32c(raw[pos:pos + 8]))):
            raise ValueError(f"{path}: corrupt record length at byte {pos}")
        data = raw[pos + 12:end - 4]
        (dcrc,) = struct.unpack_from("<I", raw, end - 4)
        if dcrc != int(masked_crc(crc32c(data))):
            raise ValueError(f"{path}: corrupt record data at byte {pos}")
        yield data
        pos = end

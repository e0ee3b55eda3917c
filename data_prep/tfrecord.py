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


# CRC-32C of many equal-length rows. The CRC is affine over GF(2): crc(x) = crc(0^m) ^ L(x), and L(x)
# is the XOR of one contribution per byte that depends only on the byte's value v and on its
# distance d from the end of the row: _zero_tables(d)[d, v], the raw CRC register after feeding v and
# then d zero bytes. Records of one chunk share most of their bytes, so with `low` masking the bits
# that vary anywhere in the array, crc(row) = crc(row & ~low) ^ L(row & low): one constant for all
# rows plus a function of the varying bits only. Those are gathered a few bytes at a time into one
# small table index (an unaligned little-endian uint32 read of the row, masked, multiplied by a
# carry-free "bit gather" constant and shifted), so each row costs one look-up per group of varying
# bytes instead of a CRC step per byte.

_CRC_LIST = [int(v) for v in CRC_TABLE]
_ZERO_TABLES = CRC_TABLE[None, :].copy()
_LOW_MASK = np.array([(1 << v.bit_length()) - 1 for v in range(256)], dtype=np.uint8)
_WIDE_BITS = 7           # bytes with this many varying bits get a 256-entry table of their own
_GROUP_BITS = 12          # at most 2**12 table entries per group of bytes
_BLOCK_ROWS = 2048        # rows per pass, so temporaries stay in cache
_PLANS: dict = {}
_GATHER_CONSTANTS: dict = {}


def _zero_tables(dmax: int) -> np.ndarray:
    """(>= dmax + 1, 256) uint32: row d = raw CRC register after byte v followed by d zero bytes."""
    global _ZERO_TABLES
    have = _ZERO_TABLES.shape[0]
    if have <= dmax:
        t = np.empty((max(dmax + 1, 2 * have), 256), dtype=np.uint32)
        t[:have] = _ZERO_TABLES
        for d in range(have, t.shape[0]):
            prev = t[d - 1]
            t[d] = CRC_TABLE[prev & 0xFF] ^ (prev >> 8)
        _ZERO_TABLES = t
    return _ZERO_TABLES


def _crc32c_py(data: bytes) -> int:
    tab, c = _CRC_LIST, 0xFFFFFFFF
    for b in data:
        c = tab[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _gather_constant(widths: tuple[int, ...]) -> tuple[int, int] | None:
    """Multiplier M and shift K such that, for a uint32 x whose byte i holds a value below
    2**widths[i] (bytes with width 0 are zero), ((x * M) mod 2**32) >> K packs those values
    side by side, byte 0 lowest; None when some cross term would overlap or carry into the result."""
    if widths not in _GATHER_CONSTANTS:
        _GATHER_CONSTANTS[widths] = _find_gather_constant(widths)
    return _GATHER_CONSTANTS[widths]


def _find_gather_constant(widths: tuple[int, ...]) -> tuple[int, int] | None:
    total = sum(widths)
    K = 32 - total
    terms, t = [], 0
    for i, w in enumerate(widths):
        if w:
            terms.append((i, w, K + t - 8 * i))  # byte i lands at bit K + t; exponent is >= 0
            t += w
    low = 0
    for i, wi, _ in terms:
        for j, _, ej in terms:
            p = 8 * i + ej
            if i == j or p >= 32:
                continue
            if p + wi > K:
                return None
            low += ((1 << wi) - 1) << p
    if low >> K:
        return None
    return sum(1 << e for _, _, e in terms), K


def _crc_plan(m: int, low: np.ndarray):
    """How to read the varying bits `low` (per column) of rows of length m >= 4.

    A byte with at least _WIDE_BITS varying bits is looked up on its own (a "byte group"). The
    other varying bytes are covered by 4-byte windows, each read as one little-endian uint32, and
    a window's bytes are split into groups of at most _GROUP_BITS bits that one multiply and shift
    pack into a table index. Returns (windows, nwin, bytecols, masks, mults, shifts, toffs, table):
    window groups come first, then byte groups; `windows` lists (first group, count, offset) for runs
    of windows 4 bytes apart that feed one group each, or for one window feeding one group (a
    window shared by several groups appears once per group); `bytecols` lists (first group, count,
    column) for runs of adjacent byte groups; `masks` keeps a window group's own bits of its window;
    `table` holds every group's contributions, group g's from toffs[g]."""
    key = (m, low.tobytes())
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    width = [int(v).bit_length() for v in low]
    z = _zero_tables(m)
    windows, masks, mults, shifts, toffs, tables = [], [], [], [], [], []
    size = 0

    def add_table(tab):
        nonlocal size
        toffs.append(size)
        tables.append(tab)
        size += tab.size

    var = [j for j in range(m) if 0 < width[j] < _WIDE_BITS]
    k = 0
    while k < len(var):
        o = min(var[k], m - 4)
        groups = []
        while k < len(var) and var[k] < o + 4:  # split this window's varying bytes into groups
            widths, gather = [0, 0, 0, 0], None
            while k < len(var) and var[k] < o + 4:
                trial = list(widths)
                trial[var[k] - o] = width[var[k]]
                g = _gather_constant(tuple(trial)) if sum(trial) <= _GROUP_BITS else None
                if g is None:
                    break
                widths, gather, k = trial, g, k + 1
            groups.append((widths, gather))
        shared = len(groups) > 1
        for widths, (mult, shift) in groups:
            idx = np.arange(1 << sum(widths), dtype=np.uint32)
            tab = np.zeros(idx.size, dtype=np.uint32)
            t = 0
            for i, w in enumerate(widths):
                if w:
                    tab ^= z[m - 1 - (o + i)][(idx >> t) & ((1 << w) - 1)]
                    t += w
            g = len(masks)
            if (not shared and windows and windows[-1][3] and windows[-1][0] + windows[-1][1] == g
                    and windows[-1][2] + 4 * windows[-1][1] == o):
                windows[-1][1] += 1
            else:
                windows.append([g, 1, o, not shared])  # a shared window never starts a run
            masks.append(sum(((1 << w) - 1) << (8 * i) for i, w in enumerate(widths)))
            mults.append(mult)
            shifts.append(shift)
            add_table(tab)
    nwin = len(masks)
    bytecols = []
    for j in range(m):
        if width[j] >= _WIDE_BITS:
            if bytecols and bytecols[-1][2] + bytecols[-1][1] == j:
                bytecols[-1][1] += 1
            else:
                bytecols.append([len(toffs), 1, j])
            add_table(z[m - 1 - j][np.arange(256) & int(low[j])])
    col = lambda v: np.array(v, dtype=np.uint32)[:, None]  # noqa: E731
    plan = ([tuple(w[:3]) for w in windows], nwin, [tuple(b) for b in bytecols], col(masks), col(mults),
            col(shifts), col(toffs), np.concatenate(tables) if tables else np.zeros(0, np.uint32))
    if len(_PLANS) >= 32:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _column_or_and(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bitwise OR and AND of every column of a C-contiguous (n, m) uint8 array, read 8 bytes at a time."""
    n, m = rows.shape
    group = 8 // np.gcd(m, 8)  # rows per 8-byte-aligned stretch
    ng = n // group
    head = rows[:ng * group].reshape(ng, group * m // 8, 8).view(np.uint64)[..., 0] if ng else None
    parts_or, parts_and = [rows[ng * group:]], [rows[ng * group:]]
    if ng:
        parts_or.append(np.bitwise_or.reduce(head, axis=0).view(np.uint8).reshape(group, m))
        parts_and.append(np.bitwise_and.reduce(head, axis=0).view(np.uint8).reshape(group, m))
    return (np.bitwise_or.reduce(np.concatenate(parts_or), axis=0),
            np.bitwise_and.reduce(np.concatenate(parts_and), axis=0))


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of every row of an (n, m) uint8 array."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    n, m = rows.shape
    if n * m <= 2048 or n < 16:
        data = rows.tobytes()
        return np.array([_crc32c_py(data[i * m:(i + 1) * m]) for i in range(n)], dtype=np.uint32)
    if m < 4:
        crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
        for j in range(m):
            crc = CRC_TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
        return crc ^ np.uint32(0xFFFFFFFF)
    col_or, col_and = _column_or_and(rows)
    low = _LOW_MASK[col_or & ~col_and]
    const = np.uint32(_crc32c_py((rows[0] & ~low).tobytes()))
    windows, nwin, bytecols, masks, mults, shifts, toffs, table = _crc_plan(m, low)
    out = np.full(n, const, dtype=np.uint32)
    if table.size == 0:
        return out
    # a window needs masking only where it holds set bits outside its group's own bits
    need = [bool((col_or[o:o + 4 * c].copy().view("<u4") & ~masks[g:g + c, 0]).any()) for g, c, o in windows]
    words = np.ndarray((n, m - 3), dtype="<u4", buffer=rows, strides=(m, 1))  # words[r, j]: bytes j..j+3
    x = np.empty((toffs.shape[0], _BLOCK_ROWS), dtype=np.uint32)  # one row per group
    acc = np.empty(_BLOCK_ROWS, dtype=np.uint32)
    for r in range(0, n, _BLOCK_ROWS):
        xb = x[:, :min(_BLOCK_ROWS, n - r)]
        blk = words[r:r + _BLOCK_ROWS]
        for (g, c, o), masked in zip(windows, need):
            xg = xb[g:g + c]
            np.copyto(xg, blk[:, o:o + 4 * c:4].T)  # plain copy first: the source is unaligned
            if masked:
                xg &= masks[g:g + c]
            xg *= mults[g:g + c]
        if nwin:
            xb[:nwin] >>= shifts
            xb[:nwin] += toffs[:nwin]
        blk = rows[r:r + _BLOCK_ROWS]
        for g, c, j in bytecols:
            np.add(blk[:, j:j + c].T, toffs[g:g + c], out=xb[g:g + c])
        b = xb.shape[1]
        np.bitwise_xor.reduce(table.take(xb), axis=0, out=acc[:b])
        out[r:r + b] ^= acc[:b]
    return out


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

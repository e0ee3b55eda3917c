import mmh3
import numpy as np
import pytest

import data_prep.hashing as hashing
from data_prep.hashing import murmur3_32_rows, murmur3_32_spans
from data_prep.tfrecord import crc32c, crc32c_rows

SEEDS = [0, 1, 2**31 + 5, 2**32 - 1]
LENGTHS = list(range(0, 41)) + [110, 150]


def _mmh3(data: bytes, seed: int) -> int:
    return mmh3.hash(data, seed, signed=False)


# ---- MurmurHash3_x86_32 -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_murmur3_rows_matches_mmh3(seed):
    rng = np.random.default_rng(seed % 1000)
    for length in LENGTHS:
        rows = rng.integers(0, 256, (37, length), dtype=np.uint8)
        got = murmur3_32_rows(rows, seed)
        assert got.dtype == np.uint32 and got.shape == (37,)
        assert got.tolist() == [_mmh3(r.tobytes(), seed) for r in rows], length


def test_murmur3_rows_known_values_and_layouts():
    assert murmur3_32_rows(np.zeros((1, 0), np.uint8), 0).tolist() == [0]
    assert murmur3_32_rows(np.zeros((1, 0), np.uint8), 1).tolist() == [0x514E28B7]
    assert murmur3_32_rows(np.frombuffer(b"hello", np.uint8)[None], 0).tolist() == [_mmh3(b"hello", 0)]
    assert murmur3_32_rows(np.zeros((0, 7), np.uint8), 5).shape == (0,)
    rng = np.random.default_rng(7)
    big = rng.integers(0, 256, (50, 300), dtype=np.uint8)
    for rows in (big[:, 3:113], big[::2, 10:160:1], np.asfortranarray(big[:, :41]), big[:, 100:4:-1]):
        assert murmur3_32_rows(rows, 9).tolist() == [_mmh3(r.tobytes(), 9) for r in rows]


def test_murmur3_bad_seed():
    with pytest.raises(ValueError):
        murmur3_32_rows(np.zeros((1, 4), np.uint8), 2**32)
    with pytest.raises(ValueError):
        murmur3_32_spans(b"abcd", [0], [4], -1)


@pytest.mark.parametrize("small_group", [0, 48, 10**9])  # all vectorised / default / all via mmh3
@pytest.mark.parametrize("seed", SEEDS)
def test_murmur3_spans_mixed_lengths(monkeypatch, small_group, seed):
    monkeypatch.setattr(hashing, "_SMALL_GROUP", small_group)
    rng = np.random.default_rng(3)
    buf = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    lengths = np.array(LENGTHS)[rng.integers(0, len(LENGTHS), 900)]
    lengths[:400] = 110  # one dominant length, as in real data
    rng.shuffle(lengths)
    starts = rng.integers(0, len(buf) - lengths + 1)
    starts[:3] = 0  # spans at both ends of the buffer
    starts[3:6] = len(buf) - lengths[3:6]
    ends = starts + lengths
    got = murmur3_32_spans(buf, starts, ends, seed)
    assert got.dtype == np.uint32
    assert got.tolist() == [_mmh3(buf[s:e], seed) for s, e in zip(starts.tolist(), ends.tolist())]


@pytest.mark.parametrize("small_group", [0, 48])
def test_murmur3_spans_of_one_length_and_edge_cases(monkeypatch, small_group):
    monkeypatch.setattr(hashing, "_SMALL_GROUP", small_group)
    rng = np.random.default_rng(11)
    buf = rng.integers(0, 256, 5003, dtype=np.uint8).tobytes()
    for length in (0, 1, 3, 4, 110, 150):
        starts = np.arange(0, len(buf) - length + 1, 7)
        got = murmur3_32_spans(buf, starts, starts + length, 42)
        assert got.tolist() == [_mmh3(buf[s:s + length], 42) for s in starts.tolist()]
    # the whole buffer as one span; bytearray / numpy buffers; no spans
    assert murmur3_32_spans(buf, [0], [len(buf)], 5).tolist() == [_mmh3(buf, 5)]
    arr = np.frombuffer(buf, np.uint8)
    starts = np.arange(0, 4000, 3)
    exp = [_mmh3(buf[s:s + 33], 5) for s in starts.tolist()]
    assert murmur3_32_spans(bytearray(buf), starts, starts + 33, 5).tolist() == exp
    assert murmur3_32_spans(arr, starts, starts + 33, 5).tolist() == exp
    assert murmur3_32_spans(buf, [], [], 5).shape == (0,)
    with pytest.raises(ValueError):
        murmur3_32_spans(buf, [10], [len(buf) + 1], 0)


# ---- CRC-32C ------------------------------------------------------------------------------------

def _crc32c_scalar(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _check_crc(rows: np.ndarray) -> None:
    got = crc32c_rows(rows)
    assert got.dtype == np.uint32 and got.shape == (rows.shape[0],)
    assert got.tolist() == [_crc32c_scalar(r.tobytes()) for r in rows]


def test_crc32c_reference_check_value():
    assert _crc32c_scalar(b"123456789") == 0xE3069283
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c_rows(np.frombuffer(b"123456789" * 40, np.uint8).reshape(40, 9)).tolist() == [0xE3069283] * 40


@pytest.mark.parametrize("n,m", [(1, 0), (1, 1), (1, 200), (5, 0), (300, 0), (300, 1), (300, 2), (300, 3), (300, 4),
                                 (300, 5), (40, 7), (700, 37), (1000, 162), (257, 230)])
def test_crc32c_rows_all_columns_varying(n, m):
    _check_crc(np.random.default_rng(n * 1000 + m).integers(0, 256, (n, m), dtype=np.uint8))


@pytest.mark.parametrize("m", [4, 5, 9, 31, 162, 230])
def test_crc32c_rows_with_constant_columns(m):
    rng = np.random.default_rng(m)
    n = 600
    base = rng.integers(0, 256, m, dtype=np.uint8)
    rows = np.repeat(base[None], n, axis=0)
    _check_crc(rows)  # nothing varies
    kinds = rng.integers(0, 6, m)
    rand = rng.integers(0, 256, (n, m), dtype=np.uint8)
    rows[:, kinds == 1] = rand[:, kinds == 1] & 3                           # 2-bit codes
    rows[:, kinds == 2] = (rand[:, kinds == 2] & 0x0C) | 0x30               # varying middle bits
    rows[:, kinds == 3] = rand[:, kinds == 3]                               # full bytes
    rows[:, kinds == 4] = base[kinds == 4] ^ (rand[:, kinds == 4] & 0x80)   # only the top bit
    _check_crc(rows)
    _check_crc(rows[:, ::-1])        # non-contiguous input
    _check_crc(rows[:1])             # n = 1
    _check_crc(rows[:, -4:])         # varying bytes near the row end


def test_crc32c_rows_layout_like_records():
    # mostly constant header, a few wide bytes, then a long run of 2-bit codes (like serialized records)
    rng = np.random.default_rng(5)
    n, m = 3000, 162
    rows = np.repeat(rng.integers(0, 256, m, dtype=np.uint8)[None], n, axis=0)
    rows[:, 17] = rng.integers(0, 9, n)
    rows[:, 33:36] = rng.integers(0, 256, (n, 3))
    rows[:, 36] = rng.integers(0, 5, n)
    rows[:, 67:147] = rng.integers(0, 4, (n, 80))
    _check_crc(rows)
    again = rows.copy()  # a second array of the same shape with the same varying columns (cached plan)
    again[:, 67:147] = rng.integers(0, 4, (n, 80))
    _check_crc(again)
    again[:, 100] = 0x55  # and one where a column stopped varying
    _check_crc(again)


def test_crc_gather_constants_pack_exactly():
    import itertools

    from data_prep.tfrecord import _gather_constant

    checked = 0
    for widths in itertools.product(range(9), repeat=4):
        if not 0 < sum(widths) <= 12:
            continue
        found = _gather_constant(widths)
        if found is None:
            continue
        mult, shift = found
        idx = np.arange(1 << sum(widths), dtype=np.uint64)
        x, t = np.zeros(idx.size, np.uint64), 0
        for i, w in enumerate(widths):
            if w:
                x |= ((idx >> np.uint64(t)) & np.uint64((1 << w) - 1)) << np.uint64(8 * i)
                t += w
        assert (((x * np.uint64(mult)) & np.uint64(0xFFFFFFFF)) >> np.uint64(shift) == idx).all(), widths
        checked += 1
    assert checked > 100
    assert _gather_constant((2, 2, 2, 2)) is not None and _gather_constant((8, 0, 0, 0)) is not None

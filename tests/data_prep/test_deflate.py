import zlib

import numpy as np
import pytest

from data_prep import deflate
from data_prep.deflate import (EMPTY_SEGMENT, canonical_codes, deflate_fixed_records, huffman_lengths,
                               pack_bits)
from data_prep.layouts import get_layout
from data_prep.parse import TableSpec, parse_table_chunk
from data_prep.schema import RecordSchema
from data_prep.simulate import simulate
from data_prep.tfrecord import Segment, ShardWriter, frame_fixed, iter_records

FINAL_EMPTY = b"\x03\x00"  # a final, empty fixed-Huffman block


def inflate(seg: bytes) -> bytes:
    """Inflate one segment, checking that it is non-final and that a final block may follow it."""
    d = zlib.decompressobj(-15)
    out = d.decompress(seg)
    assert not d.eof and not d.unconsumed_tail
    out += d.decompress(FINAL_EMPTY)
    assert d.eof and not d.unused_data
    return out


def roundtrip(records: np.ndarray) -> bytes:
    seg = deflate_fixed_records(records)
    assert inflate(seg) == np.ascontiguousarray(records).tobytes()
    return seg


def realistic(n: int, layout: str = "crmnet", seed: int = 0, noise: str = "") -> np.ndarray:
    """Framed records as the build writes them, from simulated GPRA sequences, optionally noisy:
    "lengths" (10% of sequences lose or gain 1-3 nt), "errors" (1% substitutions everywhere, adapters
    included) or "sorted" (by expression)."""
    sim = simulate(n, seed=seed)
    rng, seqs, values = np.random.default_rng(seed), list(sim.sequences), sim.expression
    for i in range(n):
        s = seqs[i]
        if noise == "lengths" and rng.random() < 0.1:
            k, at = int(rng.integers(1, 4)), int(rng.integers(20, 90))
            s = s[:at] + s[at + k:] if rng.random() < 0.5 else s[:at] + "A" * k + s[at:]
        if noise == "errors":
            s = "".join(rng.choice(list("ACGT")) if rng.random() < 0.01 else c for c in s)
        seqs[i] = s
    if noise == "sorted":
        order = np.argsort(values, kind="stable")
        seqs, values = [seqs[i] for i in order], values[order]
    text = "".join(f"{s}\t{v!r}\n" for s, v in zip(seqs, values.tolist())).encode()
    lay = get_layout(layout)
    p = parse_table_chunk(text, 1, TableSpec(), lay, 0)
    label = p.label.astype(np.float32)
    single = (label == np.floor(label)).astype(np.uint8) if lay.singleton else None
    schema = RecordSchema(lay.length, True, lay.singleton)
    return frame_fixed(schema.serialize_fixed(p.codes, p.hash % 10, label, single))


def zlib_size(records: np.ndarray, level: int) -> int:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    return len(comp.compress(records.tobytes()) + comp.flush(zlib.Z_SYNC_FLUSH))


@pytest.mark.parametrize("noise", ["", "lengths", "errors", "sorted"])
@pytest.mark.parametrize("layout,width", [("crmnet", 178), ("legnet", 243)])
def test_realistic_records_roundtrip_smaller_than_zlib6(layout, width, noise):
    rec = realistic(4000, layout, noise=noise)
    assert rec.shape == (4000, width)
    assert len(roundtrip(rec)) < zlib_size(rec, 6)


def test_synthetic_schema_records():
    """Random DNA (N in 0.1% of bases, adapters included), folds and labels through the schemas."""
    rng = np.random.default_rng(0)
    for length, singleton in ((112, False), (150, True)):
        codes = rng.integers(0, 4, (3000, length), dtype=np.uint8)
        codes[:, :17], codes[:, 97:] = codes[0, :17], codes[0, 97:]
        codes[rng.random(codes.shape) < 0.001] = 4
        label = np.where(rng.random(3000) < 0.5, rng.integers(0, 18, 3000), rng.uniform(0, 17, 3000))
        label = label.astype(np.float32)
        single = (label == np.floor(label)).astype(np.uint8) if singleton else None
        rec = frame_fixed(RecordSchema(length, True, singleton).serialize_fixed(codes, rng.integers(0, 10, 3000),
                                                                              label, single))
        assert len(roundtrip(rec)) < zlib_size(rec, 6)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
def test_tiny_chunks(n):
    rec = realistic(max(n, 1))[:n]
    seg = roundtrip(rec)
    if n == 0:
        assert seg == EMPTY_SEGMENT == b"\x00\x00\x00\xff\xff"


def test_empty_records_and_bad_shape():
    assert deflate_fixed_records(np.zeros((10, 0), np.uint8)) == EMPTY_SEGMENT
    with pytest.raises(ValueError):
        deflate_fixed_records(np.zeros(10, np.uint8))


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5, 100, 258, 259, 300, 600, 1000])
def test_identical_records(R):
    rec = np.tile(np.random.default_rng(R).integers(0, 256, R, dtype=np.uint8), (500, 1))
    seg = roundtrip(rec)
    if R >= 3:
        assert len(seg) < rec.size // 10


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (3000, 1), (3000, 2), (500, 37), (40, 4000)])
def test_random_bytes(shape):
    rec = np.random.default_rng(shape[1]).integers(0, 256, shape, dtype=np.uint8)
    assert len(roundtrip(rec)) < rec.size * 1.01 + 300


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5, 8, 9, 16, 17, 64, 65, 128, 129, 192, 193, 256, 257, 4096, 4097,
                               8192, 8193, 16384, 16385, 24576, 24577, 32768, 32769])
def test_distances_at_code_boundaries(R):
    """Every record copies from the one above or from k records back: distances k*R of every size."""
    rng = np.random.default_rng(R)
    n = max(2, min(300, 400_000 // R))
    rec = np.tile(rng.integers(0, 256, R, dtype=np.uint8), (n, 1))
    if R >= 9:
        rec[:, R // 3] = rng.integers(0, 3, n)  # a small gap bridged from the nearest equal record
    rec[rng.random(n) < 0.3, -1] ^= 1
    roundtrip(rec)


def test_run_lengths_at_code_boundaries():
    """Constant runs of every length-code boundary (and > 258) between varying columns."""
    lengths = [3, 4, 10, 11, 12, 13, 18, 19, 22, 23, 34, 35, 42, 43, 66, 67, 130, 131, 226, 227, 257, 258, 259,
               260, 261, 262, 515, 516, 517, 518, 774, 775]
    rng = np.random.default_rng(1)
    cols, var = [], []
    for i, L in enumerate(lengths):
        cols.append(np.full(L, i, np.uint8))
        var.append(sum(map(len, cols)))
        cols.append(np.zeros(1 + 9 * (i % 2), np.uint8))  # gaps of 1 (bridged) or 10 columns
    rec = np.tile(np.concatenate(cols), (200, 1))
    gap = np.concatenate([np.arange(v, v + len(c)) for v, c in zip(var, cols[1::2])])
    rec[:, gap] = rng.integers(0, 4, (200, gap.size))
    roundtrip(rec)


def test_wide_gaps_use_hashed_keys():
    """Chains whose bridged gaps are wider than a 64-bit key take the hashed, verified path."""
    rng = np.random.default_rng(2)
    rec = np.tile(rng.integers(0, 256, 60, dtype=np.uint8), (3000, 1))
    for a in (5, 20, 35):
        rec[:, a:a + 8] = rng.integers(0, 2, (3000, 8))
    roundtrip(rec)


def test_many_blocks_and_odd_strides():
    rng = np.random.default_rng(3)
    rec = np.tile(rng.integers(0, 256, 21, dtype=np.uint8), (3 * deflate.BLOCK + 5, 1))
    rec[:, [0, 7, 8, 9, 20]] = rng.integers(0, 5, (rec.shape[0], 5))
    roundtrip(rec)
    roundtrip(realistic(2000)[::3, 1:])  # a strided view, odd columns


def test_sparse_varying_columns():
    rng = np.random.default_rng(4)
    rec = np.tile(rng.integers(0, 256, 700, dtype=np.uint8), (300, 1))
    rec[:, [5, 300, 301, 302, 650]] = rng.integers(0, 256, (300, 5))
    rec[rng.random(300) < 0.5, 400] = 7  # a column that mostly repeats
    roundtrip(rec)


@pytest.mark.parametrize("layout", ["crmnet", "legnet"])
def test_segments_concatenate_into_a_shard(tmp_path, layout):
    rec = realistic(1500, layout, seed=5, noise="lengths")
    path = str(tmp_path / "s.tfrecord")
    w = ShardWriter(path)
    for a, b in ((0, 700), (700, 700), (700, 701), (701, 1500)):
        raw = rec[a:b].tobytes()
        w.append(Segment(deflate_fixed_records(rec[a:b]), zlib.adler32(raw), len(raw), b - a))
    assert w.close()["records"] == 1500
    got = list(iter_records(path))  # checks every CRC
    width = rec.shape[1] - 16
    assert got == [r[12:12 + width].tobytes() for r in rec]
    zlib.decompress(open(path, "rb").read())  # checks the combined Adler-32


def kraft(lengths) -> float:
    return sum(2.0 ** -int(x) for x in lengths if x)


def fibonacci(n: int) -> list[int]:
    """Fibonacci-like counts (a maximally deep Huffman tree), within int64, padded with ones."""
    f = [1, 1]
    while len(f) < min(n, 80):
        f.append(f[-1] + f[-2])
    return (f + [1] * n)[:n]


@pytest.mark.parametrize("n,limit", [(286, 15), (30, 15), (19, 7), (40, 15), (2, 7)])
def test_huffman_lengths_limited_and_complete(n, limit):
    for freq in (fibonacci(n), [1] * n, [2 ** min(i, 60) for i in range(n)], fibonacci(n)[::-1],
                 np.random.default_rng(n).permutation(fibonacci(n)).tolist()):
        lengths = huffman_lengths(freq, limit)
        assert lengths.max() <= limit and (lengths > 0).all()
        assert kraft(lengths) == 1.0
        assert all(lengths[i] <= lengths[j] for i in range(n) for j in range(n) if freq[i] > freq[j])


def test_huffman_lengths_optimal_when_unconstrained():
    freq = np.random.default_rng(0).integers(0, 1000, 286)
    lengths = huffman_lengths(freq, 15)
    assert (lengths[freq == 0] == 0).all() and kraft(lengths) == 1.0
    # Huffman cost = sum of the merged weights
    w = sorted(int(x) for x in freq if x)
    cost = 0
    while len(w) > 1:
        a, b = w.pop(0), w.pop(0)
        cost += a + b
        w = sorted(w + [a + b])
    assert int((freq * lengths).sum()) == cost
    assert list(huffman_lengths([0, 5, 0], 15)) == [0, 1, 0]


def test_canonical_codes_rfc_example():
    # RFC 1951 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) give F=00, A..E=010..110, G=1110, H=1111
    codes = canonical_codes([3, 3, 3, 3, 3, 2, 4, 4])
    expect = ["010", "011", "100", "101", "110", "00", "1110", "1111"]
    assert [int(c) for c in codes] == [int(e[::-1], 2) for e in expect]


def test_pack_bits_matches_reference():
    rng = np.random.default_rng(6)
    nbits = rng.integers(0, 65, 5000).astype(np.uint8)
    vals = np.array([int(rng.integers(0, 2 ** 63)) * 2 % (1 << int(b)) if b else 0 for b in nbits], np.uint64)
    ref = "".join(format(int(v), f"0{b}b")[::-1] if b else "" for v, b in zip(vals, nbits))
    words, total = pack_bits(vals.copy(), nbits)
    assert total == len(ref)
    got = "".join(format(int(x), "064b")[::-1] for x in words)
    assert got[:total] == ref and "1" not in got[total:]


@pytest.mark.parametrize("R,rate", [(11, 0.01), (40, 0.05), (300, 0.002)])
def test_noisy_constant_columns(R, rate):
    """Mostly constant columns with scattered changes: copies around them, patched-up runs."""
    rng = np.random.default_rng(R)
    rec = np.tile(rng.integers(0, 256, R, dtype=np.uint8), (3000, 1))
    noise = rng.random(rec.shape) < rate
    rec[noise] = rng.integers(0, 256, noise.sum())
    assert len(roundtrip(rec)) < min(rec.size // 4, 5 * zlib_size(rec, 6))
    rec.sort(axis=0)  # columns that change rarely and never come back
    assert len(roundtrip(rec)) < min(rec.size // 4, 5 * zlib_size(rec, 6))


@pytest.mark.parametrize("m", [1, 3, 6, 12])
def test_nearest_equal_matches_brute_force(m):
    rng = np.random.default_rng(m)
    rec = rng.integers(0, 2, (1500, 20), dtype=np.uint8)
    cols = list(range(4, 4 + m))
    k = deflate._nearest_equal(rec, cols, 40)
    for i in range(len(rec)):
        same = [d for d in range(1, min(i, 40) + 1) if (rec[i - d, cols] == rec[i, cols]).all()]
        assert k[i] == (same[0] if same else 0)

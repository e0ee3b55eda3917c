import mmh3
import numpy as np
import pytest

from data_prep.hashing import murmur3_32_spans


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_spans_hash_like_mmh3_unsigned(seed):
    rng = np.random.default_rng(3)
    buf = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    lengths = rng.integers(0, 160, 400)
    starts = rng.integers(0, len(buf) - lengths + 1)
    got = murmur3_32_spans(buf, starts, starts + lengths, seed)
    assert got.dtype == np.uint32
    assert got.tolist() == [mmh3.hash(buf[s:s + n], seed, signed=False) for s, n in zip(starts, lengths)]
    assert murmur3_32_spans(bytearray(buf), [0], [len(buf)], seed).tolist() == [mmh3.hash(buf, seed, signed=False)]
    assert murmur3_32_spans(buf, [], [], seed).shape == (0,)


def test_bad_spans_and_seeds():
    with pytest.raises(ValueError):
        murmur3_32_spans(b"abcd", [0], [5], 0)
    with pytest.raises(ValueError):
        murmur3_32_spans(b"abcd", [0], [4], -1)
    with pytest.raises(ValueError):
        murmur3_32_spans(b"abcd", [0], [4], 2**32)

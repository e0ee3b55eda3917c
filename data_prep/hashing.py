"""MurmurHash3_x86_32 over many byte strings at once, with numpy uint32 arithmetic.

Bit-exact with `mmh3.hash(key, seed, signed=False)`, written from the algorithm's definition: the
key is read as little-endian 32-bit blocks; each block is scrambled (k *= c1, k = rotl(k, 15),
k *= c2) and folded into the state (h ^= k, h = rotl(h, 13), h = 5 h + 0xe6546b64); the 1-3 tail
bytes form one more scrambled block that is only XORed in; then h ^= length and fmix32. The loop
runs over the blocks, each step one numpy operation over all keys of one length, so Python does
O(length / 4) work per group of keys instead of O(1) per key. `murmur3_32_spans` hashes spans of
one buffer, grouped by length (real data: nearly all one length).
"""
from __future__ import annotations

import operator

import mmh3
import numpy as np

_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)
_N = np.uint32(0xE6546B64)
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)
_U4 = np.dtype("<u4")
#: groups of fewer than _SMALL_GROUP * (length // 4 + 3) keys go to mmh3 one key at a time, which is
#: cheaper there than the fixed cost of ~11 numpy calls per 4-byte block
_SMALL_GROUP = 48
_TRANSPOSE_ROWS = 256


def _seed(seed: int) -> np.uint32:
    seed = operator.index(seed)
    if not 0 <= seed <= 0xFFFFFFFF:
        raise ValueError("seed is out of range")
    return np.uint32(seed)


def _rotl(x: np.ndarray, r: int, tmp: np.ndarray) -> None:
    """x = rotl32(x, r) in place; tmp has x's shape."""
    np.left_shift(x, np.uint32(r), out=tmp)
    np.right_shift(x, np.uint32(32 - r), out=x)
    x |= tmp


def _hash_words(words: np.ndarray, length: int, seed: np.uint32) -> np.ndarray:
    """Hash n keys of `length` bytes given as words: (n, ceil(length / 4)) uint32, each key's bytes
    read as little-endian blocks; in a last, partial block only the low length % 4 bytes count."""
    n, nw = words.shape
    nb, t = divmod(length, 4)
    h = np.full(n, seed, dtype=np.uint32)
    tmp = np.empty(n, dtype=np.uint32)
    if nw:
        # block-major copy, so that every step below reads contiguous memory; transposed a few
        # hundred keys at a time, which keeps both sides of the copy in cache
        blocks = np.empty((nw, n), dtype=np.uint32)
        for r in range(0, n, _TRANSPOSE_ROWS):
            np.copyto(blocks[:, r:r + _TRANSPOSE_ROWS], words[r:r + _TRANSPOSE_ROWS].T)
    for i in range(nb):
        k = blocks[i]
        k *= _C1
        _rotl(k, 15, tmp)
        k *= _C2
        h ^= k
        _rotl(h, 13, tmp)
        h *= np.uint32(5)
        h += _N
    if t:
        k = blocks[nb]
        k &= np.uint32((1 << (8 * t)) - 1)
        k *= _C1
        _rotl(k, 15, tmp)
        k *= _C2
        h ^= k
    h ^= np.uint32(length & 0xFFFFFFFF)
    np.right_shift(h, np.uint32(16), out=tmp)  # fmix32
    h ^= tmp
    h *= _F1
    np.right_shift(h, np.uint32(13), out=tmp)
    h ^= tmp
    h *= _F2
    np.right_shift(h, np.uint32(16), out=tmp)
    h ^= tmp
    return h


def murmur3_32_rows(codes: np.ndarray, seed: int) -> np.ndarray:
    """Unsigned MurmurHash3_x86_32 of every row of an (n, L) uint8 array (each row's L bytes)."""
    seed = _seed(seed)
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError("codes must be a 2-D (n, L) array of bytes")
    codes = codes.astype(np.uint8, copy=False)
    n, length = codes.shape
    if length % 4:
        body = np.zeros((n, length + (-length) % 4), dtype=np.uint8)
        body[:, :length] = codes
    else:
        body = np.ascontiguousarray(codes)
    return _hash_words(body.view(_U4).reshape(n, body.shape[1] // 4), length, seed)


def murmur3_32_spans(buf, starts, ends, seed: int) -> np.ndarray:
    """Unsigned MurmurHash3_x86_32 of buf[starts[i]:ends[i]] for every i (buf: bytes-like)."""
    seed = _seed(seed)
    arr = np.frombuffer(buf, dtype=np.uint8)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1)
    if starts.shape != ends.shape:
        raise ValueError("starts and ends differ in length")
    out = np.empty(starts.size, dtype=np.uint32)
    if starts.size == 0:
        return out
    lens = ends - starts
    if lens.min() < 0 or starts.min() < 0 or ends.max() > arr.size:
        raise ValueError("span out of range")
    if lens.min() == lens.max():
        groups = [(int(lens[0]), None)]
    else:
        order = np.argsort(lens, kind="stable")
        cuts = np.flatnonzero(np.diff(lens[order])) + 1
        groups = [(int(lens[g[0]]), g) for g in np.split(order, cuts)]
    raw = buf if isinstance(buf, bytes) else None
    for length, idx in groups:
        s = starts if idx is None else starts[idx]
        if s.size < _SMALL_GROUP * (length // 4 + 3):
            if raw is None:
                raw = arr.tobytes()
            h = np.fromiter((mmh3.hash(raw[p:p + length], int(seed), signed=False) for p in s.tolist()),
                            dtype=np.uint32, count=s.size)
        else:
            h = _hash_spans_of_length(arr, s, length, seed)
        if idx is None:
            out[:] = h
        else:
            out[idx] = h
    return out


def _hash_spans_of_length(arr: np.ndarray, s: np.ndarray, length: int, seed: np.uint32) -> np.ndarray:
    nw = -(-length // 4)
    if nw == 0:
        return _hash_words(np.zeros((s.size, 0), dtype=np.uint32), 0, seed)
    fits = s <= arr.size - 4 * nw  # the last block may read up to 3 bytes past the span
    if not fits.all():
        out = np.empty(s.size, dtype=np.uint32)
        out[fits] = _hash_spans_of_length(arr, s[fits], length, seed)
        rest = s[~fits]
        out[~fits] = murmur3_32_rows(arr[rest[:, None] + np.arange(length)], int(seed))
        return out
    # (positions, 4 nw) view whose row p is arr[p:p + 4 nw]; gathering rows copies each key's blocks
    win = np.ndarray((arr.size - 4 * nw + 1, 4 * nw), dtype=np.uint8, buffer=arr, strides=(1, 1))
    return _hash_words(win[s].view(_U4), length, seed)

"""Raw-deflate segments for chunks of equal-length records, in pure numpy (RFC 1951).

Why: zlib level 6 was the build's bottleneck (~70k records/s per core) and level 1 costs ~20% more
space. Framed TFRecord chunks are rigid (every record has the same length R, and most columns repeat
the record above), so instead of searching for matches we *plan* them. Runs of columns that (nearly)
never change are copied from an earlier record (distance k*R); the few varying bytes between nearby
runs (fold, label, flags) are bridged by copying from the nearest earlier record that agrees on them,
chosen per record by a vectorised shortest path over the run edges; a record that no earlier one
matches patches the run up from the record above; the rest (DNA, CRCs) are literals. One
dynamic-Huffman block is built from the token counts and bit-packed with cumulative sums. The
segment ends byte-aligned with an empty stored block (like Z_SYNC_FLUSH), is never final and never
refers before its own start, so segments concatenate (see `tfrecord.ShardWriter`).
"""
from __future__ import annotations

import bisect
import heapq

import numpy as np

EMPTY_SEGMENT = b"\x00\x00\x00\xff\xff"  # an empty non-final stored block: all that a sync flush adds
WINDOW, MAX_MATCH = 32768, 258
MAX_GAP, MAX_RUNS = 8, 4  # a chain: up to MAX_RUNS runs split by gaps of <= MAX_GAP varying columns
BLOCK, SAMPLE = 8192, 4096  # records encoded at a time; records sampled for column and byte statistics
_INF, _PATCH = 1 << 28, 1 << 20  # costs: an impossible copy; a patched-up run (only if no copy fits)
_LBASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
          163, 195, 227, 258)
_DBASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
          3073, 4097, 6145, 8193, 12289, 16385, 24577)
_CL_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)


def _code_table(bases, n_values, extra_of):
    """value -> (symbol, extra-bit count, extra-bit value) for match lengths or distances."""
    v = np.arange(n_values)
    sym = np.maximum(np.searchsorted(np.asarray(bases), v, side="right") - 1, 0)
    nx = np.array([extra_of(s) for s in range(len(bases))])[sym]
    return sym, nx, np.maximum(v - np.asarray(bases)[sym], 0).astype(np.uint64)


_LSYM, _LNX, _LXV = _code_table(_LBASE, MAX_MATCH + 1, lambda s: 0 if s < 8 or s == 28 else (s - 4) // 4)
_DSYM, _DNX, _DXV = _code_table(_DBASE, WINDOW + 1, lambda s: 0 if s < 4 else (s - 2) // 2)
_LSYM = _LSYM + 257


def huffman_lengths(freq, limit: int) -> np.ndarray:
    """Huffman code lengths for `freq` (0 for unused symbols), at most `limit` bits: too-deep leaves
    move up in pairs, each pair hanging under a shallower leaf instead, so the code stays complete."""
    freq = np.asarray(freq, dtype=np.int64)
    lengths = np.zeros(freq.size, dtype=np.int64)
    used = np.flatnonzero(freq)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    heap = [(int(freq[s]), i) for i, s in enumerate(used)]
    heapq.heapify(heap)
    parent, node = [0] * (2 * used.size - 1), used.size
    while len(heap) > 1:
        (wa, a), (wb, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (wa + wb, node))
        node += 1
    depth = [0] * node
    for i in range(node - 2, -1, -1):  # a parent is always created after its children
        depth[i] = depth[parent[i]] + 1
    bits = np.bincount(depth[:used.size], minlength=max(limit, max(depth)) + 1)
    for i in range(bits.size - 1, limit, -1):
        while bits[i]:
            j = np.flatnonzero(bits[:i - 1])[-1]  # the deepest leaf that can take a pair under it
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j] -= 1
            bits[j + 1] += 2
    order = used[np.argsort(-freq[used], kind="stable")]  # the most frequent get the shortest codes
    lengths[order] = np.repeat(np.arange(limit + 1), bits[:limit + 1])
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """RFC 1951 canonical codes, bit-reversed so that they can be packed LSB-first."""
    lengths = [int(x) for x in lengths]
    count = np.bincount(lengths, minlength=16).tolist()
    nxt = [0] * 17
    for b in range(2, 17):
        nxt[b] = (nxt[b - 1] + count[b - 1]) << 1
    out = np.zeros(len(lengths), dtype=np.uint64)
    for s, x in enumerate(lengths):
        if x:
            out[s] = int(format(nxt[x], f"0{x}b")[::-1], 2)
            nxt[x] += 1
    return out


def pack_bits(vals: np.ndarray, nbits: np.ndarray, inner=()) -> tuple[np.ndarray, int]:
    """LSB-first concatenation of bit fields -> (uint64 words, total bits). `vals` are uint64 with
    nothing above their lengths `nbits`, and are overwritten. A field longer than 64 bits must be 0:
    `inner` holds (field indices, (m, L) values, (m, L) lengths) of the fields that fill such ones.
    Fields never overlap, so a word's sum (the difference of a wrapping cumsum at its last field)
    equals its OR; the parts spilling into the next words are summed the same way."""
    nbits = np.asarray(nbits, np.uint16)
    off = np.cumsum(nbits, dtype=np.uint64)
    total = int(off[-1])
    out = np.zeros(total // 64 + 2, dtype="<u8")
    off -= nbits
    groups = [(codes.ravel(), (off[idx][:, None] + np.cumsum(lens, 1, dtype=np.uint64) - lens).ravel())
              for idx, codes, lens in inner]
    for vals, off in [(vals, off)] + groups:
        word = off >> np.uint64(6)
        off &= np.uint64(63)
        last = np.append(np.flatnonzero(word[1:] != word[:-1]), word.size - 1)
        w = word[last].astype(np.intp)
        lo = vals << off
        np.subtract(np.uint64(63), off, out=off)
        vals >>= np.uint64(1)
        vals >>= off  # two shifts: never shift by 64
        for part, dw in ((lo, 0), (vals, 1)):
            cs = np.cumsum(part, out=part)[last]
            cs[1:] -= cs[:-1].copy()
            out[w + dw] += cs
    return out, total


def _header(ll: np.ndarray, dl: np.ndarray) -> tuple[list[int], list[int]]:
    """Bit fields of a non-final dynamic-Huffman block header (RFC 1951 3.2.7): the code lengths,
    run-length coded with 16 (repeat the last 3-6 times), 17 (3-10 zeros) and 18 (11-138 zeros)."""
    hlit, hdist = max(257, int(np.flatnonzero(ll)[-1]) + 1), int(np.flatnonzero(dl)[-1]) + 1
    seq, rle, i = ll[:hlit].tolist() + dl[:hdist].tolist(), [], 0
    while i < len(seq):
        v, run = seq[i], 1
        while i + run < len(seq) and seq[i + run] == v:
            run += 1
        i += run
        if v:
            rle.append((v, 0, 0))
            run -= 1
        for sym, lo, hi, nx in ((16, 3, 6, 2),) if v else ((18, 11, 138, 7), (17, 3, 10, 3)):
            while run >= lo:
                rle.append((sym, min(run, hi) - lo, nx))
                run -= min(run, hi)
        rle += [(v, 0, 0)] * run
    freq = np.bincount([s for s, _, _ in rle], minlength=19)
    if np.count_nonzero(freq) < 2:  # a one-symbol code-length code is incomplete: add an unused one
        freq[int(freq[0] > 0)] = 1
    cl = huffman_lengths(freq, 7)
    cc = canonical_codes(cl)
    hclen = max(4, max(i for i, s in enumerate(_CL_ORDER) if cl[s]) + 1)
    vals = [2 << 1, hlit - 257, hdist - 1, hclen - 4] + [int(cl[s]) for s in _CL_ORDER[:hclen]]
    nbits = [3, 5, 5, 4] + [3] * hclen
    for s, xv, xn in rle:
        vals += [int(cc[s]), xv]
        nbits += [int(cl[s]), xn]
    return vals, nbits


def _nearest_equal(rec: np.ndarray, cols: list[int], limit: int) -> np.ndarray:
    """For each record, the distance (<= limit records) to the nearest earlier one that agrees on
    `cols`, 0 if none: one sort of (key << b | row). Keys over 64 - b bits hash the column range
    cols[0]..cols[-1] instead, and candidates are then compared byte for byte."""
    n = rec.shape[0]
    b = max(1, (n - 1).bit_length())
    exact = 8 * len(cols) + b <= 64
    buf = np.zeros((n, 8 if exact else -(-(cols[-1] + 1 - cols[0]) // 8) * 8), np.uint8)
    if exact:
        buf[:, :len(cols)] = rec[:, cols]
        key = buf.view("<u8").ravel()
    else:
        buf[:, :cols[-1] + 1 - cols[0]] = rec[:, cols[0]:cols[-1] + 1]
        key = np.zeros(n, np.uint64)
        for w in buf.view("<u8").T:
            key ^= w
            key *= np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
        key >>= np.uint64(b)
    key <<= np.uint64(b)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    row = (key & np.uint64((1 << b) - 1)).astype(np.intp)
    key >>= np.uint64(b)
    same = np.flatnonzero(key[1:] == key[:-1])
    k = np.zeros(n, np.int64)
    k[row[same + 1]] = row[same + 1] - row[same]
    k[k > limit] = 0
    if not exact:
        prev, bad = np.arange(n) - k, np.zeros(n, bool)
        for w in buf.view("<u8").T:
            bad |= w != w[prev]
        k[bad] = 0
    return k


def _stretches(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the stretches of True in a 1-d mask."""
    edge = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)


def _patch(X: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Tokens for the (M, L) bytes X of records that no earlier record matches on a run: per byte,
    the length of a copy from the record above starting there (stretches of >= 3 equal bytes),
    -1 for a literal, 0 inside a copy."""
    M, L = X.shape
    eq = np.concatenate([X == above, np.zeros((M, 1), bool)], 1).ravel()
    start, end = _stretches(eq)
    keep = end - start >= 3
    cover = np.zeros(eq.size + 1, np.int32)
    cover[start[keep]], cover[end[keep]] = 1, -1
    tok = np.where(np.cumsum(cover)[:-1] > 0, 0, -1).astype(np.int16)
    tok[start[keep]] = (end - start)[keep]
    return tok.reshape(M, L + 1)[:, :L]


def _plan(rec: np.ndarray, K: int):
    """-> (items in column order: ("lit", a, b) literal columns or ("runs", [(a, b), ..]) chains of
    runs, soft mask). Runs are >= 3 columns, constant or "soft" (usually equal to the record above)
    where a stretch holds more than MAX_GAP soft columns; fewer soft columns are gap columns."""
    n, R = rec.shape
    chains: list[list[tuple[int, int]]] = []
    soft = np.zeros(R, bool)
    if n > 1 and K > 0:
        const = rec.min(0) == rec.max(0)
        i = np.arange(1, n, max(1, n // SAMPLE))
        soft = ~const & ((rec[i] == rec[i - 1]).mean(0) >= 0.5)
        for a, b in zip(*_stretches(const | soft)):
            soft[a:b] &= soft[a:b].sum() > MAX_GAP
        for a, b in zip(*map(np.ndarray.tolist, _stretches(const | soft))):
            if b - a >= 3 and chains and a - chains[-1][-1][1] <= MAX_GAP and len(chains[-1]) < MAX_RUNS:
                chains[-1].append((a, b))
            elif b - a >= 3:
                chains.append([(a, b)])
    items, pos = [], 0
    for ch in chains:
        items += [("lit", pos, ch[0][0])] if ch[0][0] > pos else []
        items.append(("runs", ch))
        pos = ch[-1][1]
    return items + ([("lit", pos, R)] if pos < R else []), soft


class _Chain:
    """Runs coded per record as a shortest path over positions P (run edges, gap columns, splits of
    runs longer than MAX_MATCH). Edges (u, t, key): key -1, a literal (gap column); key >= 0, a copy
    from a run into a later run or the end, from the nearest earlier record that agrees on the
    varying columns covered (self.keys[key]: k per record, 0 if none), or from inside a gap to a run
    end, from the record above where it agrees; key -2, a piece of a run with soft columns, patched
    up from the record above (`_patch`) where no copy fits."""

    def __init__(self, rec: np.ndarray, runs, K: int, soft: np.ndarray):
        self.var = var = [c for (_, b), (a, _) in zip(runs, runs[1:]) for c in range(b, a)]
        varying = sorted(var + [c for a, b in runs for c in range(a, b) if soft[c]])
        ends, pieces = {b for _, b in runs}, [(a, b, -(-(b - a) // MAX_MATCH)) for a, b in runs]
        self.P = np.array(sorted(ends | set(var) | {a + (b - a) * j // p for a, b, p in pieces for j in range(p)}))
        self.keys, self.edges = [np.ones(rec.shape[0] - 1, np.int64)], []
        varset, cache, P, eq = set(var), {(): 0}, self.P.tolist(), {}

        def same(c: int) -> np.ndarray:  # column c equals the record above
            if c not in eq:
                eq[c] = rec[1:, c] == rec[:-1, c]
            return eq[c]
        for t in range(1, len(P)):
            for u in range(bisect.bisect_left(P, P[t] - MAX_MATCH), t):
                a, b = P[u], P[t]
                inside = tuple(varying[bisect.bisect_left(varying, a):bisect.bisect_left(varying, b)])
                if a in varset and b == a + 1:
                    self.edges.append((u, t, -1))
                    continue
                if t == u + 1 and inside:
                    self.edges.append((u, t, -2))
                if b - a >= 3 and not (b - 1 in varset and b in varset) and not (a in varset and b not in ends):
                    key = (a in varset,) + inside if inside else ()
                    if key not in cache:
                        cache[key] = len(self.keys)
                        self.keys.append(np.logical_and.reduce([same(c) for c in inside]).astype(np.int64)
                                         if a in varset else _nearest_equal(rec, list(inside), K)[1:])
                    self.edges.append((u, t, cache[key]))

    def path(self, rec1: np.ndarray, lit_cost, len_cost, dist_cost) -> list:
        """Cheapest tokens for every record: per edge, the mask of records taking it."""
        N, S, P = rec1.shape[0], len(self.P) - 1, self.P
        dcost = [np.take(dist_cost, k) for k in self.keys]
        f, choice = [np.zeros(N, np.int32)] + [None] * S, [None] * (S + 1)
        for e, (u, t, key) in enumerate(self.edges):  # sorted by t, so f[u] is final when used
            if key == -1:
                c = f[u] + np.take(lit_cost, rec1[:, P[u]])
            elif key == -2:
                c = f[u] + _PATCH
            else:
                c = f[u] + dcost[key]
                c += len_cost[P[t] - P[u]]
            if f[t] is None:
                f[t], choice[t] = c, np.full(N, e, np.int16)
            else:
                better = c < f[t]
                np.copyto(f[t], c, where=better)
                np.copyto(choice[t], np.int16(e), where=better)
        on, used = [None] * S + [np.ones(N, bool)], [None] * len(self.edges)
        for e in range(len(self.edges) - 1, -1, -1):  # walk back from the end
            u, t, _ = self.edges[e]
            if on[t] is not None:
                used[e] = m = on[t] & (choice[t] == e)
                on[u] = m if on[u] is None else on[u] | m
        return used


class _Fields:
    """Per-record bit fields in stream order, as columns (uint64 values, bit counts); each is OR-ed
    into the previous field while every record's total still fits in 64 bits. A patched-up run is
    a field of its own, 0 for the records concerned: their tokens are placed when packing."""

    def __init__(self):
        self.cols, self.v, self.n, self.inner = [], None, None, []

    def add(self, v: np.ndarray, n: np.ndarray, inner=None) -> None:  # takes ownership of v
        if self.v is not None:
            s = self.n + n
            if inner is None and int(s.max()) <= 64:
                v <<= self.n
                self.v |= v
                self.n = s
                return
            self.cols.append((self.v, self.n))
        self.v, self.n = v, n
        if inner is not None:  # (rows, token values, token lengths)
            self.inner.append((len(self.cols),) + inner)
            self.cols.append((v, n))
            self.v = None

    def packed(self) -> tuple[np.ndarray, int]:
        cols = self.cols + ([(self.v, self.n)] if self.v is not None else [])
        B, F = cols[0][0].size, len(cols)
        vals, nbits = np.empty((B, F), np.uint64), np.empty((B, F), np.uint16)
        for j, (v, n) in enumerate(cols):
            vals[:, j], nbits[:, j] = v, n
        return pack_bits(vals.ravel(), nbits.ravel(), [(r * F + j, c, n) for j, r, c, n in self.inner])


def deflate_fixed_records(records: np.ndarray) -> bytes:
    """Raw-deflate segment (non-final, byte-aligned) of the (n, R) uint8 records flattened row-major."""
    rec = np.ascontiguousarray(records, dtype=np.uint8)
    if rec.ndim != 2:
        raise ValueError("records must be a 2-d (n, R) uint8 array")
    n, R = rec.shape
    if n == 0 or R == 0:
        return EMPTY_SEGMENT
    K = min(WINDOW // R, n - 1)
    items, soft = _plan(rec, K)
    rec1, N, step = rec[1:], n - 1, max(1, (n - 1) // SAMPLE)
    chains = {i: _Chain(rec, it[1], K, soft) for i, it in enumerate(items) if it[0] == "runs"}
    lit_freq, dist_freq = np.zeros(286, np.int64), np.zeros(30, np.int64)
    lit_freq[256] = 1
    for it in items:  # literal columns: byte counts from a sample; then every byte needs a code
        if it[0] == "lit":
            lit_freq[:256] += step * np.bincount(rec1[::step, it[1]:it[2]].ravel(), minlength=256)
    lit_freq[:256] += step > 1
    # cost guesses: literals from byte counts (gap columns too), distance R 2 bits, others 6
    guess = lit_freq[:256] + sum(step * np.bincount(rec1[::step, ch.var].ravel(), minlength=256)
                                 for ch in chains.values())
    ll = huffman_lengths(guess, 15)
    d = np.arange(K + 1) * R
    costs = (np.where(ll > 0, ll, 15).astype(np.int32), (6 + _LNX).astype(np.int32),
             np.where(d > 0, np.where(d == R, 2, 6) + _DNX[d], _INF).astype(np.int32))
    lit_freq += np.bincount(rec[0], minlength=286)
    paths = {i: ch.path(rec1, *costs) for i, ch in chains.items()}
    patches = {}  # (chain, edge) -> (rows, bytes, tokens) of the records patching a run up
    for i, ch in chains.items():
        for e, ((u, t, key), m) in enumerate(zip(ch.edges, paths[i])):
            a, b = ch.P[u], ch.P[t]
            if key == -1:
                lit_freq[:256] += np.bincount(rec1[m, a], minlength=256)
            elif key == -2 and m.any():
                rows = np.flatnonzero(m)
                X = rec1[rows, a:b]
                patches[i, e] = rows, X, _patch(X, rec[rows, a:b])
                lit_freq[:256] += np.bincount(X[patches[i, e][2] < 0], minlength=256)
                runs = patches[i, e][2][patches[i, e][2] > 0]
                lit_freq += np.bincount(_LSYM[runs], minlength=286)
                dist_freq[_DSYM[R]] += runs.size
            elif key >= 0:
                k = ch.keys[key][m]
                if not k.all():
                    raise AssertionError("a record copies from nowhere")  # cannot happen: never cheaper
                lit_freq[_LSYM[b - a]] += k.size
                dist_freq += np.bincount(_DSYM[k * R], minlength=30)
    while np.count_nonzero(dist_freq) < 2:  # two distance codes at least, as zlib does
        dist_freq[np.flatnonzero(dist_freq == 0)[0]] = 1
    ll, dl = huffman_lengths(lit_freq, 15), huffman_lengths(dist_freq, 15)
    lc, dc, ll8 = canonical_codes(ll), canonical_codes(dl), ll.astype(np.uint8)
    # token bits per match length, per k (distance k*R) and per byte pair: code | extra << code length
    LV, LN = lc[_LSYM] | (_LXV << ll[_LSYM].astype(np.uint64)), (ll[_LSYM] + _LNX).astype(np.uint8)
    d = np.arange(K + 1) * R
    DV, DN = dc[_DSYM[d]] | (_DXV[d] << dl[_DSYM[d]].astype(np.uint64)), (dl[_DSYM[d]] + _DNX[d]).astype(np.uint16)
    lo, hi = np.arange(65536) & 255, np.arange(65536) >> 8
    PV, PN = lc[lo] | (lc[hi] << ll[lo].astype(np.uint64)), ll8[lo] + ll8[hi]
    kbits = {i: [(np.take(DV, k), np.take(DN, k)) for k in ch.keys] for i, ch in chains.items()}
    for ie, (rows, X, tok) in patches.items():  # literal, copy from the record above, or nothing
        lit, copy, run = tok < 0, tok > 0, tok[tok > 0]
        codes, lens = np.zeros(X.shape, np.uint64), np.zeros(X.shape, np.uint64)
        codes[lit], lens[lit] = np.take(lc, X[lit]), np.take(ll, X[lit])
        codes[copy], lens[copy] = LV[run] | (DV[1] << LN[run].astype(np.uint64)), LN[run] + DN[1]
        patches[ie] = rows, codes, lens

    def block(r0: int, r1: int) -> tuple[np.ndarray, int]:
        fields, B = _Fields(), r1 - r0
        for i, it in enumerate(items):
            if it[0] == "lit":
                a, b = it[1], it[2]
                if b - a >= 2:  # byte pairs as uint16, one contiguous row per pair of columns
                    pairs = np.ndarray(((b - a) // 2, B), "<u2", rec, (r0 + 1) * R + a, (2, R))
                    for p in np.ascontiguousarray(pairs):
                        fields.add(np.take(PV, p), np.take(PN, p))
                if (b - a) % 2:
                    fields.add(np.take(lc, rec1[r0:r1, b - 1]), np.take(ll8, rec1[r0:r1, b - 1]))
                continue
            ch, P = chains[i], chains[i].P
            for u in range(len(P) - 1):  # one field per position: the token starting there, if any
                v, nb, inner = np.zeros(B, np.uint64), np.zeros(B, np.uint16), None
                for e, ((eu, t, key), m) in enumerate(zip(ch.edges, paths[i])):
                    m = m[r0:r1]
                    if eu != u or not m.any():
                        continue
                    if key == -1:
                        tv, tn = np.take(lc, rec1[r0:r1, P[u]]), np.take(ll8, rec1[r0:r1, P[u]])
                    elif key == -2:  # a zero-valued field as long as its tokens, placed when packing
                        rows, codes, lens = patches[i, e]
                        sel = slice(*np.searchsorted(rows, [r0, r1]))
                        inner = (rows[sel] - r0, codes[sel], lens[sel])
                        tv, tn = np.uint64(0), np.zeros(B, np.uint16)
                        tn[inner[0]] = inner[2].sum(1)
                    else:
                        L = P[t] - P[u]
                        tv, tn = kbits[i][key][0][r0:r1] << np.uint64(LN[L]), kbits[i][key][1][r0:r1] + LN[L]
                        tv |= LV[L]
                    np.copyto(v, tv, where=m)
                    np.copyto(nb, tn, where=m)
                if nb.any():
                    fields.add(v, nb, inner)
        return fields.packed()

    hv, hn = _header(ll, dl)
    parts = [pack_bits(np.array(hv + lc[rec[0]].tolist(), np.uint64), np.array(hn + ll[rec[0]].tolist()))]
    parts += [block(r0, min(N, r0 + BLOCK)) for r0 in range(0, N, BLOCK)]
    # end of block, then an empty stored block: 3 zero bits (non-final, stored), pad, LEN 0, NLEN ~0
    parts.append(pack_bits(lc[256:257].copy(), ll[256:257] + 3))
    nbytes = (sum(bits for _, bits in parts) + 7) // 8
    out, pos = np.zeros(nbytes // 8 + 2, "<u8"), 0
    for words, bits in parts:  # splice the parts together at their bit offsets
        w, s, words = pos >> 6, np.uint64(pos & 63), words[:(bits + 63) // 64]
        out[w:w + words.size] |= words << s
        if s:
            out[w + 1:w + 1 + words.size] |= words >> (np.uint64(64) - s)
        pos += bits
    return out.view(np.uint8)[:nbytes].tobytes() + b"\x00\x00\xff\xff"

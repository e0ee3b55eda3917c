"""Raw-deflate segments for chunks of equal-length records, in pure numpy (RFC 1951).

Why: zlib level 6 was the build's bottleneck (~70k records/s per core) and level 1 costs ~20% more
space. Framed TFRecord chunks are rigid (every record has the same length R, and most columns repeat
the record above), so instead of searching for matches we *plan* them. Columns that never change in
the chunk form runs copied from the record above (distance R); the few varying bytes between nearby
runs (fold, label, flags) are bridged by copying from the nearest earlier record that agrees on them
(distance k*R), chosen per record by a small vectorised shortest-path over the run boundaries; the rest
(DNA, CRCs) are literals. One dynamic-Huffman block is built from the actual token counts and packed
with cumulative sums. The segment ends byte-aligned with an empty stored block (like Z_SYNC_FLUSH),
is never final and never refers before its own start, so segments concatenate (`tfrecord.ShardWriter`).
"""
from __future__ import annotations

import heapq

import numpy as np

EMPTY_SEGMENT = b"\x00\x00\x00\xff\xff"  # an empty non-final stored block: what a sync flush adds
WINDOW, MAX_MATCH, MAX_GAP = 32768, 258, 8
_LBASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
          163, 195, 227, 258)
_DBASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
          3073, 4097, 6145, 8193, 12289, 16385, 24577)
_CL_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)
_INF = 1 << 20


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
    """Optimal prefix-code lengths for `freq`, limited to `limit` bits (JPEG Annex K.3 style repair)."""
    freq = np.asarray(freq, dtype=np.int64)
    lengths = np.zeros(freq.size, dtype=np.int64)
    used = np.flatnonzero(freq)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    heap = [(int(freq[s]), i) for i, s in enumerate(used)]
    heapq.heapify(heap)
    parent = [0] * (2 * used.size - 1)
    nxt = used.size
    while len(heap) > 1:
        (wa, a), (wb, b) = heapq.heappop(heap), heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (wa + wb, nxt))
        nxt += 1
    depth = [0] * nxt
    for node in range(nxt - 2, -1, -1):  # parents always come after their children
        depth[node] = depth[parent[node]] + 1
    depth = np.array(depth[:used.size])
    bits = np.bincount(depth, minlength=max(limit, int(depth.max())) + 1)
    for i in range(bits.size - 1, limit, -1):  # move pairs of too-deep leaves up, keeping Kraft = 1
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    order = used[np.argsort(-freq[used], kind="stable")]  # most frequent get the shortest codes
    lengths[order] = np.repeat(np.arange(limit + 1), bits[:limit + 1])
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """RFC 1951 canonical codes, bit-reversed so they can be packed LSB-first."""
    lengths = [int(x) for x in lengths]
    count = [0] * 17
    for x in lengths:
        count[x] += 1
    count[0] = 0
    code, nxt = 0, [0] * 17
    for b in range(1, 17):
        code = (code + count[b - 1]) << 1
        nxt[b] = code
    out = np.zeros(len(lengths), dtype=np.uint64)
    for s, x in enumerate(lengths):
        if x:
            out[s] = int(format(nxt[x], f"0{x}b")[::-1], 2)
            nxt[x] += 1
    return out


def pack_bits(vals: np.ndarray, nbits: np.ndarray) -> tuple[bytes, int]:
    """Concatenate LSB-first bit fields (each <= 64 bits; unused high bits zero) -> (bytes, total bits).
    Fields never overlap, so per-word sums (differences of a wrapping cumsum) equal per-word ORs."""
    nb = np.asarray(nbits, dtype=np.uint64)
    end = np.cumsum(nb)
    total = int(end[-1]) if end.size else 0
    if total == 0:
        return b"", 0
    off = end - nb
    word = off >> np.uint64(6)
    sh = off & np.uint64(63)
    vals = np.asarray(vals, dtype=np.uint64)
    last = np.append(np.flatnonzero(word[1:] != word[:-1]), word.size - 1)  # last field in each word
    out = np.zeros(int(word[-1]) + 2, dtype=np.uint64)
    w = word[last].astype(np.intp)
    one = np.uint64(1)
    for part, dw in ((vals << sh, 0), ((vals >> one) >> (np.uint64(63) - sh), 1)):  # (no shifts by 64)
        cs = np.cumsum(part)[last]
        cs[1:] -= cs[:-1].copy()
        out[w + dw] += cs
    return out.astype("<u8", copy=False).tobytes()[:(total + 7) // 8], total


def _rle_lengths(seq: list[int]) -> list[tuple[int, int, int]]:
    """Code lengths -> (symbol, extra value, extra bits) with the repeat symbols 16/17/18."""
    out, i = [], 0
    while i < len(seq):
        v, run = seq[i], 1
        while i + run < len(seq) and seq[i + run] == v:
            run += 1
        i += run
        if v == 0:
            while run >= 11:
                r = min(run, 138)
                out.append((18, r - 11, 7))
                run -= r
            if run >= 3:
                out.append((17, run - 3, 3))
                run = 0
        else:
            out.append((v, 0, 0))
            run -= 1
            while run >= 3:
                r = min(run, 6)
                out.append((16, r - 3, 2))
                run -= r
        out.extend((v, 0, 0) for _ in range(run))
    return out


def _header(ll: np.ndarray, dl: np.ndarray) -> tuple[list[int], list[int]]:
    """Bit fields of a non-final dynamic-Huffman block header (RFC 1951 3.2.7)."""
    hlit = max(257, int(np.flatnonzero(ll)[-1]) + 1)
    hdist = max(1, int(np.flatnonzero(dl)[-1]) + 1)
    rle = _rle_lengths([int(x) for x in ll[:hlit]] + [int(x) for x in dl[:hdist]])
    freq = np.bincount([s for s, _, _ in rle], minlength=19)
    if np.count_nonzero(freq) < 2:
        freq[0 if freq[0] == 0 else 1] = 1
    cl = huffman_lengths(freq, 7)
    cc = canonical_codes(cl)
    hclen = max(4, max(i for i, s in enumerate(_CL_ORDER) if cl[s]) + 1)
    vals = [4, hlit - 257, hdist - 1, hclen - 4] + [int(cl[s]) for s in _CL_ORDER[:hclen]]
    nbits = [3, 5, 5, 4] + [3] * hclen
    for s, xv, xn in rle:
        vals += [int(cc[s]), xv]
        nbits += [int(cl[s]), xn]
    return vals, nbits


def _nearest_equal(cols: np.ndarray, limit: int) -> np.ndarray:
    """For each row of the (n, m) uint8 array, the distance to the nearest earlier equal row (0: none
    within `limit`). One sort of (key, row) pairs; hashed keys are verified."""
    n, m = cols.shape
    ib = max(1, (n - 1).bit_length())
    key = np.zeros(n, dtype=np.uint64)
    exact = 8 * m + ib <= 64
    for j in range(m):
        if exact:
            key |= cols[:, j].astype(np.uint64) << np.uint64(8 * j)
        else:
            key = key * np.uint64(0x9E3779B97F4A7C15) + cols[:, j]
    if not exact:
        key >>= np.uint64(ib)
    s = np.sort((key << np.uint64(ib)) | np.arange(n, dtype=np.uint64))
    same = np.flatnonzero((s[1:] >> np.uint64(ib)) == (s[:-1] >> np.uint64(ib)))
    mask = np.uint64((1 << ib) - 1)
    cur = (s[1:][same] & mask).astype(np.int64)
    k = np.zeros(n, dtype=np.int64)
    k[cur] = cur - (s[:-1][same] & mask).astype(np.int64)
    k[k > limit] = 0
    if not exact:
        bad = (k > 0) & np.any(cols != cols[np.arange(n) - k], axis=1)
        k[bad] = 0
    return k


def _plan(rec: np.ndarray, K: int) -> list:
    """Record layout as items in column order: ("lit", a, b) literal columns, ("runs", [(a, b), ...])
    runs of constant columns, separated by gaps of at most MAX_GAP varying columns."""
    n, R = rec.shape
    chains: list[list[tuple[int, int]]] = []
    if n > 1 and K > 0:
        const = np.concatenate(([0], (rec.min(0) == rec.max(0)).astype(np.int8), [0]))
        edge = np.diff(const)
        for a, b in zip(np.flatnonzero(edge == 1).tolist(), np.flatnonzero(edge == -1).tolist()):
            if b - a >= 3:
                if chains and a - chains[-1][-1][1] <= MAX_GAP:
                    chains[-1].append((a, b))
                else:
                    chains.append([(a, b)])
    items, pos = [], 0
    for ch in chains:
        if ch[0][0] > pos:
            items.append(("lit", pos, ch[0][0]))
        items.append(("runs", ch))
        pos = ch[-1][1]
    if pos < R:
        items.append(("lit", pos, R))
    return items


class _Chain:
    """Runs bridged per record: a shortest path over positions P (run edges, gap columns, split points
    of runs longer than MAX_MATCH). Edges: a literal over one gap column; a match from a run to a run
    start or the chain end, copying from the nearest earlier record that agrees on the gap columns in
    between; or a match from inside a gap, copying from the record above where it agrees."""

    PARTIAL = False

    def __init__(self, rec: np.ndarray, runs, K: int):
        self.var = var = [c for (_, b), (a, _) in zip(runs, runs[1:]) for c in range(b, a)]
        pos = {runs[0][0], runs[-1][1], *var, *(v + 1 for v in var)}
        for a, b in runs:
            pieces = -(-(b - a) // MAX_MATCH)
            pos.update(a + (b - a) * j // pieces for j in range(pieces))
        self.P = np.array(sorted(pos))
        self.fixed = not var  # no gap: the same tokens (copies from the record above) every record
        self.edges = []  # (u, t, key): key -1 = literal, else index into self.keys (k per record)
        self.keys = [np.ones(rec.shape[0] - 1, np.int64)]
        if self.fixed:
            return
        varset, vi = set(var), {c: i for i, c in enumerate(var)}
        diff = np.concatenate([np.zeros((rec.shape[0] - 1, 1), np.int32),
                               np.cumsum(rec[1:, var] != rec[:-1, var], axis=1, dtype=np.int32)], axis=1)
        cache: dict = {(): 0}
        P = self.P.tolist()
        for t in range(1, len(P)):
            for u in range(t):
                a, b = P[u], P[t]
                if a in varset and b == a + 1:
                    self.edges.append((u, t, -1))
                    continue
                if not 3 <= b - a <= MAX_MATCH or (not self.PARTIAL and b - 1 in varset and b in varset and a not in varset):
                    continue
                inside = tuple(c for c in var if a <= c < b)
                key = (a in varset and bool(inside),) + inside
                if inside and key not in cache:
                    if key[0]:  # starts inside a gap: only the record above, where it agrees
                        i, j = vi[inside[0]], vi[inside[-1]] + 1
                        k = (diff[:, j] == diff[:, i]).astype(np.int64)
                    else:
                        k = _nearest_equal(rec[:, list(inside)], K)[1:]
                    cache[key] = len(self.keys)
                    self.keys.append(k)
                self.edges.append((u, t, cache[key if inside else ()]))

    def path(self, rec1: np.ndarray, lit_cost, len_cost, dist_cost):
        """Cheapest tokens per record -> (N, S) arrays: end index in P (0: no token starts here), k."""
        N, S = rec1.shape[0], len(self.P) - 1
        P = self.P
        if self.fixed:
            return np.broadcast_to(np.arange(1, S + 1, dtype=np.int16), (N, S)), np.ones((N, S), np.int64)
        dcost = [np.take(dist_cost, k) for k in self.keys]
        f = [np.zeros(N, np.int32)] + [None] * S
        choice = [None] * (S + 1)
        for e, (u, t, key) in enumerate(self.edges):
            if key < 0:
                c = f[u] + np.take(lit_cost, rec1[:, P[u]])
            else:
                c = f[u] + dcost[key] + len_cost[P[t] - P[u]]
            if f[t] is None:
                f[t], choice[t] = c, np.full(N, e, np.int16)
            else:
                better = c < f[t]
                np.copyto(f[t], c, where=better)
                np.copyto(choice[t], np.int16(e), where=better)
        eu = np.array([u for u, _, _ in self.edges] + [0], np.int16)
        ek = np.array([key for _, _, key in self.edges] + [0])
        kmat = np.vstack(self.keys + [np.zeros(N, np.int64)])
        ek[ek < 0] = len(self.keys)
        end = np.zeros((N, S), np.int16)
        kk = np.zeros((N, S), np.int64)
        rows, cur = np.arange(N), np.full(N, S, np.int16)
        chosen = np.vstack([np.zeros(N, np.int16)] + choice[1:])
        while rows.size:
            t = cur[rows]
            e = chosen[t, rows]
            u = eu[e]
            end[rows, u] = t
            kk[rows, u] = kmat[ek[e], rows]
            cur[rows] = u
            rows = rows[u > 0]
        return end, kk


def _costs(lit_freq, dist_freq, R: int, K: int, unseen: int):
    """Bit costs (literal byte, match length incl. extra bits, distance k*R incl. extra bits)."""
    ll = huffman_lengths(lit_freq, 15)
    dl = huffman_lengths(dist_freq, 15)
    ll[ll == 0] = unseen
    dl[dl == 0] = unseen
    len_cost = (ll[_LSYM] + _LNX).astype(np.int32)
    len_cost[:3] = _INF
    d = np.arange(K + 1) * R
    dist_cost = (dl[_DSYM[d]] + _DNX[d]).astype(np.int32)
    dist_cost[0] = _INF
    return ll[:256].astype(np.int32), len_cost, dist_cost


def deflate_fixed_records(records: np.ndarray) -> bytes:
    """Raw-deflate segment (non-final, byte-aligned) of the (n, R) uint8 records flattened row-major."""
    rec = np.ascontiguousarray(records, dtype=np.uint8)
    if rec.ndim != 2:
        raise ValueError("records must be a 2-d (n, R) uint8 array")
    n, R = rec.shape
    if n == 0 or R == 0:
        return EMPTY_SEGMENT
    K = min(WINDOW // R, n - 1)
    items = _plan(rec, K)
    rec1, N = rec[1:], n - 1
    lit_freq = np.bincount(rec[0], minlength=286).astype(np.int64)
    lit_freq[256] = 1
    dist_freq = np.zeros(30, np.int64)
    pairs, chains = {}, {}
    for i, it in enumerate(items):
        if it[0] == "lit":
            X = rec1[:, it[1]:it[2]]
            w2 = X.shape[1] // 2 * 2
            pairs[i] = np.ascontiguousarray(X[:, :w2]).view("<u2")
            cnt = np.bincount(pairs[i].ravel(), minlength=65536).reshape(256, 256)
            lit_freq[:256] += cnt.sum(0) + cnt.sum(1)
            if w2 < X.shape[1]:
                lit_freq[:256] += np.bincount(X[:, -1], minlength=256)
        else:
            chains[i] = _Chain(rec, it[1], K)
    # first guess: every gap column a literal, every run a copy from the record above
    guess_lit, guess_dist = lit_freq.copy(), dist_freq.copy()
    for ch in chains.values():
        if ch.var:
            guess_lit[:256] += np.bincount(rec1[:, ch.var].ravel(), minlength=256)
        lens = np.diff(ch.P)
        lens = lens[lens >= 3]
        guess_lit += N * np.bincount(_LSYM[lens], minlength=286)
        guess_dist[_DSYM[R]] += N * lens.size
    costs = _costs(guess_lit, guess_dist, R, K, 6)
    paths = {}
    for i, ch in chains.items():
        end, kk = paths[i] = ch.path(rec1, *costs)
        L = np.maximum(ch.P[end] - ch.P[:-1], 0)
        m = (end > 0) & (kk > 0)
        lit_freq += np.bincount(_LSYM[L[m]], minlength=286)
        dist_freq += np.bincount(_DSYM[kk[m] * R], minlength=30)
        lit_freq[:256] += np.bincount(rec1[:, ch.P[:-1]][(end > 0) & (kk == 0)], minlength=256)
    while np.count_nonzero(dist_freq) < 2:  # at least two distance codes, as zlib does
        dist_freq[np.flatnonzero(dist_freq == 0)[0]] = 1
    ll, dl = huffman_lengths(lit_freq, 15), huffman_lengths(dist_freq, 15)
    lc, dc = canonical_codes(ll), canonical_codes(dl)
    # per-length and per-k token bits: code | extra << code length
    LV = lc[_LSYM] | (_LXV << ll[_LSYM].astype(np.uint64))
    LN = ll[_LSYM] + _LNX
    d = np.arange(K + 1) * R
    DV = dc[_DSYM[d]] | (_DXV[d] << dl[_DSYM[d]].astype(np.uint64))
    DN = dl[_DSYM[d]] + _DNX[d]
    llu = ll.astype(np.uint64)
    lo, hi = np.arange(65536) & 255, np.arange(65536) >> 8
    PV, PN = lc[lo] | (lc[hi] << llu[lo]), llu[lo] + llu[hi]
    cols = []  # (vals, nbits) per field, each (N,), in record order
    for i, it in enumerate(items):
        if it[0] == "lit":
            q = pairs[i][:, :pairs[i].shape[1] // 2 * 2].view("<u4")  # 4 literals -> one field (<= 60 bits)
            p0, p1 = q & np.uint32(0xFFFF), q >> np.uint32(16)
            n0 = np.take(PN, p0)
            cols += [(v[:, j], nb[:, j]) for v, nb in [(np.take(PV, p0) | (np.take(PV, p1) << n0),
                                                         n0 + np.take(PN, p1))] for j in range(q.shape[1])]
            w = it[2] - it[1]
            if w % 4 >= 2:
                b = pairs[i][:, -1]
                cols.append((np.take(PV, b), np.take(PN, b)))
            if w % 2:
                b = rec1[:, it[2] - 1]
                cols.append((np.take(lc, b), np.take(llu, b)))
        else:
            ch = chains[i]
            end, kk = paths[i]
            L = np.maximum(ch.P[end] - ch.P[:-1], 0)
            b = rec1[:, ch.P[:-1]]
            match = kk > 0
            LNL = np.take(LN, L).astype(np.uint64)
            v = np.where(match, np.take(LV, L) | (np.take(DV, kk) << LNL), np.take(lc, b))
            nb = np.where(end > 0, np.where(match, LNL + np.take(DN, kk).astype(np.uint64), np.take(llu, b)),
                          np.uint64(0))
            v[end == 0] = 0
            cols += [(v[:, j], nb[:, j]) for j in range(v.shape[1])]
    merged = []  # greedy: OR each field into the previous one while every record's sum fits 64 bits
    for v, nb in cols:
        if merged:
            pv, pn = merged[-1]
            s = pn + nb
            if int(s.max()) <= 64:
                merged[-1] = (pv | (v << pn), s)
                continue
        merged.append((v, nb))
    hv, hn = _header(ll, dl)
    H, F = len(hv) + R, len(merged)
    vals = np.empty(H + N * F + 1, np.uint64)
    nbits = np.empty(H + N * F + 1, np.uint64)
    vals[:len(hv)], nbits[:len(hv)] = hv, hn
    vals[len(hv):H], nbits[len(hv):H] = lc[rec[0]], llu[rec[0]]
    vals[-1], nbits[-1] = lc[256], llu[256]
    V, B = vals[H:-1].reshape(N, F), nbits[H:-1].reshape(N, F)
    for j, (v, nb) in enumerate(merged):
        V[:, j] = v
        B[:, j] = nb
    data, total = pack_bits(vals, nbits)
    return data + bytes((total + 3 + 7) // 8 - len(data)) + b"\x00\x00\xff\xff"

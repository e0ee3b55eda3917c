"""Variant effects: measured vs predicted expression changes of sequence pairs, and saturation mutagenesis.

What the Vaishnav et al. test files hold (worked out from the data, see tests/analysis/test_variants.py):

* ``Drift_delta_complex.csv`` has the same sequences as ``Drift_complex.csv``. The sequences form 999
  families (985 of 3, 14 of 2) of sequences within Hamming distance 6 of each other; the parent itself
  is in none of the files. Within a family ``Measured Expression (Drift) + Measured Expression
  (Drift_delta)`` is the same number (to 1e-13), and likewise for the predicted columns: the delta
  column is ``parent - variant`` and that constant is the parent's expression. The parent sequence is
  rebuilt as the sequence at Hamming distance exactly 1, 2 and 3 from the three variants (the
  "1-3 random mutations" design; the majority consensus already gives (1, 2, 3) for 905 families).
  Families where several parents fit (overlapping mutations) or with 2 members are left out and
  counted, never guessed.
* ``SSWM_delta_complex.csv`` has no sequences: its rows are trajectories (a row with both deltas 0
  starts one) of cumulative changes ``step - start``. ``SSWM_complex.csv`` is sorted by sequence, so a
  trajectory's sequences are found by value: the start row s is the row for which every step's
  (measured, predicted) = s's + the step's deltas exists in the file; ambiguous matches are left out.

This module reports every delta as ``variant - parent`` (the drift file's sign is flipped), so a
positive delta means the mutations raised expression.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from data_prep import alphabet
from seq2exp.analysis.evaluation import encode_sequences, predict_codes, predict_sequences

__all__ = ["codes_of", "families", "reconstruct_parent", "drift_pairs", "sswm_pairs", "subs_group",
           "predict_pair_deltas", "saturation_mutagenesis", "ism_matrix"]


def codes_of(seqs) -> np.ndarray:
    """Equal-length sequences -> (n, L) uint8 codes."""
    seqs = list(seqs)
    lengths = {len(s) for s in seqs}
    if len(lengths) > 1:
        raise ValueError(f"sequences differ in length ({sorted(lengths)[:5]}...); pad or split them first")
    return alphabet.encode("".join(seqs)).reshape(len(seqs), -1)


def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def families(seqs, max_distance: int = 6) -> np.ndarray:
    """Single-linkage families of equal-length sequences within `max_distance` substitutions.

    Pigeonhole: two sequences with <= D mismatches agree exactly on at least one of D + 1 blocks of the
    columns that vary, so only sequences sharing a block are compared. Returns (n,) family labels 0..k-1
    in order of first appearance.
    """
    x = codes_of(seqs)
    n = len(x)
    parent = list(range(n))
    varying = np.flatnonzero((x != x[:1]).any(0)) if n else np.zeros(0, int)
    for block in np.array_split(varying, max_distance + 1):
        if block.size == 0:
            continue
        keys = x[:, block]
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        bounds = np.flatnonzero(np.diff(inverse.reshape(-1)[order])) + 1
        for members in np.split(order, bounds):
            if members.size < 2:
                continue
            for lo in range(0, members.size, 512):  # big buckets (e.g. poly-A) in slices
                rows = members[lo:lo + 512]
                d = (x[rows][:, None, :] != x[members][None, :, :]).sum(-1)
                for a, b in zip(*np.nonzero(d <= max_distance)):
                    ra, rb = _find(parent, int(rows[a])), _find(parent, int(members[b]))
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([_find(parent, i) for i in range(n)])
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[labels]


def reconstruct_parent(members: np.ndarray, design=(1, 2, 3), max_candidates: int = 1 << 14):
    """The parent of (k, L) variant codes, each at a different distance from `design` from it.

    Candidates take, at each position where members disagree, one of the bases seen there (a parent
    base no member kept cannot be recovered, and a mutation all members share is invisible).
    Returns (parent codes or None, status): "ok" (exactly one parent fits), "ambiguous", "no_fit",
    "too_many" (more than `max_candidates` combinations) or "singleton".
    """
    k = len(members)
    if k < 2:
        return None, "singleton"
    var = np.flatnonzero((members != members[:1]).any(0))
    options = [np.unique(members[:, j]) for j in var]
    if np.prod([len(o) for o in options], dtype=float) > max_candidates:
        return None, "too_many"
    want_k = sorted(design)
    fits = []
    for combo in itertools.product(*options):
        cand = members[0].copy()
        cand[var] = combo
        dist = sorted((members != cand).sum(1).tolist())
        ok = dist == want_k if k == len(design) else (
            len(set(dist)) == k and all(d in design for d in dist))
        if ok:
            fits.append(cand)
            if len(fits) > 1:
                return None, "ambiguous"
    return (fits[0], "ok") if fits else (None, "no_fit")


def _family_sign(labels, expr, delta) -> tuple[float, float]:
    """Which of expr + delta (file delta = parent - variant) or expr - delta is constant per family."""
    df = pd.DataFrame({"f": labels, "plus": expr + delta, "minus": expr - delta})
    sizes = df.groupby("f")["f"].transform("size")
    multi = df[sizes > 1]
    spread = multi.groupby("f")[["plus", "minus"]].std().mean()
    return float(spread["plus"]), float(spread["minus"])


def drift_pairs(delta: pd.DataFrame, expr: pd.DataFrame | None = None, design=(1, 2, 3),
                seq_col: str = "sequence", y_col: str = "Measured Expression",
                other_col: str | None = "Predicted Expression") -> tuple[pd.DataFrame, dict]:
    """(variant, parent, n_subs, measured_delta[, other_delta]) rows from a drift delta table.

    `expr` (the matching absolute-expression table, same rows) lets the delta sign be checked from
    the data; without it the sign found in the Vaishnav files (file delta = parent - variant) is used.
    Returns (pairs with a `status` column, notes dict with counts and the sign evidence).
    """
    seqs = delta[seq_col].astype(str).tolist()
    labels = families(seqs, max_distance=2 * max(design))
    file_sign, notes = -1.0, {"rows": len(seqs), "families": int(labels.max() + 1) if len(seqs) else 0}
    if expr is not None:
        if len(expr) != len(delta) or (expr[seq_col].astype(str).values != np.asarray(seqs)).any():
            raise ValueError("the expression table's sequences differ from the delta table's (rows must match)")
        plus, minus = _family_sign(labels, expr[y_col].to_numpy(float), delta[y_col].to_numpy(float))
        notes["within_family_sd_expr_plus_delta"] = plus
        notes["within_family_sd_expr_minus_delta"] = minus
        file_sign = -1.0 if plus <= minus else 1.0
        notes["parent_expression_source"] = "expr + delta" if file_sign < 0 else "expr - delta"
    notes["file_delta_is"] = "parent - variant" if file_sign < 0 else "variant - parent"
    codes = codes_of(seqs)
    rows, status_count = [], {}
    for fam in range(notes["families"]):
        idx = np.flatnonzero(labels == fam)
        par, status = reconstruct_parent(codes[idx], design)
        status_count[status] = status_count.get(status, 0) + len(idx)
        for i in idx:
            row = {"family": fam, "variant": seqs[i], "status": status,
                   "parent": alphabet.decode(par) if par is not None else "",
                   "n_subs": int((codes[i] != par).sum()) if par is not None else -1,
                   "measured_delta": file_sign * float(delta[y_col].iloc[i])}
            if other_col and other_col in delta.columns:
                row["other_delta"] = file_sign * float(delta[other_col].iloc[i])
            rows.append(row)
    notes["variants_by_status"] = status_count
    pairs = pd.DataFrame(rows)
    notes["usable_pairs"] = int((pairs["status"] == "ok").sum()) if len(pairs) else 0
    return pairs, notes


def _quantise(x, scale=1e5):
    return np.round(np.asarray(x, dtype=np.float64) * scale).astype(np.int64)


def _pack(qa, qb):
    """Two quantised values (|b| < 2**30 grid steps) as one exact int64 key."""
    return (np.asarray(qa, dtype=np.int64) << 31) + (np.asarray(qb, dtype=np.int64) + (1 << 30))


def sswm_pairs(sswm: pd.DataFrame, delta: pd.DataFrame, y_col: str = "Measured Expression",
               key_col: str = "Predicted Expression", seq_col: str = "sequence", tol: float = 1e-5
               ) -> tuple[pd.DataFrame, dict]:
    """(start, variant, n_subs, measured_delta, other_delta) for every resolved SSWM trajectory step.

    Sequences are recovered by value (see the module docstring): both the measured and the `key_col`
    values must match to `tol`, so the other predictor's column is used as a key, never scored here.
    """
    m, p = sswm[y_col].to_numpy(float), sswm[key_col].to_numpy(float)
    dm, dp = delta[y_col].to_numpy(float), delta[key_col].to_numpy(float)
    scale = 1.0 / tol
    qm, qp = _quantise(m, scale), _quantise(p, scale)
    keys = np.sort(_pack(qm, qp))
    table: dict[tuple, list] = {}
    for i, key in enumerate(zip(qm.tolist(), qp.tolist())):
        table.setdefault(key, []).append(i)
    offsets = list(itertools.product((-1, 0, 1), repeat=2))
    seqs = sswm[seq_col].astype(str).to_numpy()

    def exists(tm, tp):  # vectorised: is there a row within one grid step of each (tm, tp)?
        qa, qb = _quantise(tm, scale), _quantise(tp, scale)
        ok = np.zeros(qa.size, dtype=bool)
        for a, b in offsets:
            want = _pack(qa + a, qb + b)
            at = np.minimum(np.searchsorted(keys, want), keys.size - 1)
            ok |= keys[at] == want
        return ok

    def rows_at(tm, tp):
        hit = []
        for a, b in offsets:
            for r in table.get((int(_quantise(tm, scale)) + a, int(_quantise(tp, scale)) + b), ()):
                if abs(m[r] - tm) <= tol and abs(p[r] - tp) <= tol:
                    hit.append(r)
        return hit

    starts = np.flatnonzero((dm == 0) & (dp == 0))
    bounds = np.append(starts, len(delta))
    rows, counts = [], {"trajectories": len(starts), "resolved": 0, "ambiguous_start": 0, "no_start": 0,
                        "no_steps": 0, "ambiguous_steps": 0}
    for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        steps = [k for k in range(a, b) if not (dm[k] == 0 and dp[k] == 0)]
        if not steps:
            counts["no_steps"] += 1
            continue
        cand = np.arange(len(m))
        for k in steps:
            if cand.size == 0:
                break
            ok = exists(m[cand] + dm[k], p[cand] + dp[k])
            cand = cand[ok]
        start_seqs = set(seqs[cand].tolist())
        if len(start_seqs) != 1:
            counts["no_start" if not start_seqs else "ambiguous_start"] += 1
            continue
        counts["resolved"] += 1
        s0 = cand[0]
        for k in steps:
            hit = {seqs[r] for r in rows_at(m[s0] + dm[k], p[s0] + dp[k])}
            if len(hit) != 1:
                counts["ambiguous_steps"] += 1
                continue
            var = hit.pop()
            n_subs = sum(x != y for x, y in zip(var, seqs[s0])) if len(var) == len(seqs[s0]) else -1
            rows.append({"trajectory": t, "step": k - a, "parent": seqs[s0], "variant": var, "n_subs": n_subs,
                         "measured_delta": dm[k], "other_delta": dp[k], "status": "ok"})
    pairs = pd.DataFrame(rows, columns=["trajectory", "step", "parent", "variant", "n_subs", "measured_delta",
                                        "other_delta", "status"])
    counts["usable_pairs"] = len(pairs)
    return pairs, counts


def subs_group(n_subs, top: int = 3) -> np.ndarray:
    """'1', '2', '3' and '4+' (top=3) labels for substitution counts."""
    n = np.asarray(n_subs)
    return np.where(n > top, f"{top + 1}+", n.astype(str))


def predict_pair_deltas(model, spec, pairs: pd.DataFrame, batch_size: int = 1024) -> np.ndarray:
    """model(variant) - model(parent) for each pair (each distinct sequence predicted once)."""
    uniq = pd.unique(pd.concat([pairs["parent"], pairs["variant"]], ignore_index=True))
    pred = dict(zip(uniq, predict_sequences(model, spec, uniq, batch_size)))
    return np.array([pred[v] - pred[q] for v, q in zip(pairs["variant"], pairs["parent"])], dtype=np.float64)


def saturation_mutagenesis(model, spec, seq: str, start: int = 0, end: int | None = None,
                           batch_size: int = 1024) -> tuple[pd.DataFrame, float]:
    """Every single-nucleotide variant of positions [start, end) of `seq`, predicted in batches.

    Returns (table position/ref/alt/prediction/effect, reference prediction); effect = variant - ref.
    Positions index the raw sequence (0-based); a position the model's layout does not see (e.g. the
    5' adapter LegNet drops) gets effect 0.
    """
    seq = seq.strip().upper()
    end = len(seq) if end is None else end
    if not 0 <= start < end <= len(seq):
        raise ValueError(f"ISM range [{start}, {end}) is outside the {len(seq)} nt sequence")
    variants, meta = [seq], []
    for pos in range(start, end):
        for base in "ACGT":
            if base != seq[pos]:
                variants.append(seq[:pos] + base + seq[pos + 1:])
                meta.append((pos, seq[pos], base))
    codes, valid = encode_sequences(variants, spec.layout)
    if not valid.all():
        raise ValueError(f"sequence {seq[:30]}... is not valid for the {spec.layout} layout")
    preds = predict_codes(model, spec, codes, batch_size).astype(np.float64)
    # a change the layout does not show the model (e.g. LegNet's dropped adapter) has exactly no effect,
    # not the last-bit difference between two rows of a batch
    preds[(codes == codes[0]).all(1)] = preds[0]
    table = pd.DataFrame(meta, columns=["position", "ref", "alt"])
    table["prediction"] = preds[1:]
    table["effect"] = preds[1:] - preds[0]
    return table, float(preds[0])


def ism_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """ISM table -> (positions x A/C/G/T) effects, 0 at the reference base."""
    mat = table.pivot(index="position", columns="alt", values="effect").reindex(columns=list("ACGT"))
    return mat.fillna(0.0)

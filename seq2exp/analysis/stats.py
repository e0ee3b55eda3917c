"""Uncertainty and significance for test-set metrics: bootstrap CIs, dependent-correlation tests, DREAM score.

Bootstrap: a resample of n rows is a vector of multinomial counts, so every metric of a resample is a
*weighted* metric of the original rows with integer weights. That lets 10,000 resamples (LegNet's
figures) run as a few matrix products per block of resamples instead of 10,000 Python calls, and
Spearman on a resample is exact (ties, including the ones resampling itself creates, get average ranks,
as scipy would give on the resampled arrays).

Dependent overlapping correlations (two predictors scored against the same measurements): Williams'
t (Steiger 1980, eq. 7) and the Hittner-May-Silver z (Hittner, May & Silver 2003: the Dunn-Clark z with
the back-transformed mean Fisher z as the pooled r), the test the LegNet paper cites.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from data_prep.command_line import Parser
from data_prep.outputs import OutputError, OutputRule
from seq2exp.engine import metrics as _m

METRICS = ("pearson", "spearman", "r2", "mse", "mae")
POINT = {"pearson": _m.pearson, "spearman": _m.spearman, "r2": _m.r2, "mse": _m.mse, "mae": _m.mae}

__all__ = ["METRICS", "point_metrics", "bootstrap_metrics", "bootstrap_compare", "williams_test", "hittner_test",
           "compare_correlations", "DREAM_WEIGHTS", "DREAM_PAIR_SUBSETS", "dream_score"]


def point_metrics(y, p, names=METRICS) -> dict:
    return {k: POINT[k](y, p) for k in names}


def _resample_counts(rng, n: int, rows: int) -> np.ndarray:
    """(rows, n) float64 multinomial counts: how often each original row is drawn in each resample."""
    idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


class _Ranker:
    """Average ranks of a fixed vector under row weights (the ranks of each resampled copy)."""

    def __init__(self, x: np.ndarray):
        self.order = np.argsort(x, kind="mergesort")
        xs = x[self.order]
        new = np.ones(x.size, dtype=bool)
        new[1:] = xs[1:] != xs[:-1]
        self.starts = np.flatnonzero(new)
        group_sorted = np.cumsum(new) - 1
        self.group = np.empty(x.size, dtype=np.int64)
        self.group[self.order] = group_sorted

    def ranks(self, w: np.ndarray) -> np.ndarray:
        g = np.add.reduceat(w[:, self.order], self.starts, axis=1)  # weight per tie group
        avg = np.cumsum(g, axis=1) - g + (g + 1.0) / 2.0  # 1-based mean rank of the group's copies
        return avg[:, self.group]


def _wcorr(w, a, b, n):
    """Row-wise weighted Pearson; a, b are (n,) or (rows, n)."""
    ma = (w * a).sum(1) / n if a.ndim == 2 else w @ a / n
    mb = (w * b).sum(1) / n if b.ndim == 2 else w @ b / n
    da = a - ma[:, None] if a.ndim == 2 else a[None, :] - ma[:, None]
    db = b - mb[:, None] if b.ndim == 2 else b[None, :] - mb[:, None]
    cov = (w * da * db).sum(1)
    den = np.sqrt((w * da * da).sum(1) * (w * db * db).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, cov / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _weighted_metrics(w: np.ndarray, y: np.ndarray, p: np.ndarray, names, rank_y=None, rank_p=None) -> dict:
    """Metrics of each resample (row of integer weights w) without materialising the resample."""
    n = w[0].sum()
    out = {}
    if "pearson" in names:
        out["pearson"] = _wcorr(w, y, p, n)
    if "spearman" in names:
        out["spearman"] = _wcorr(w, (rank_y or _Ranker(y)).ranks(w), (rank_p or _Ranker(p)).ranks(w), n)
    err = y - p
    if "r2" in names:
        my = w @ y / n
        ss_tot = w @ (y * y) - n * my * my
        with np.errstate(invalid="ignore", divide="ignore"):
            out["r2"] = np.where(ss_tot > 0, 1.0 - (w @ (err * err)) / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    if "mse" in names:
        out["mse"] = w @ (err * err) / n
    if "mae" in names:
        out["mae"] = w @ np.abs(err) / n
    return out


def _clean(y, p, *more):
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (y, p, *more)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"arrays differ in length: {[a.size for a in arrays]}")
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    if keep.sum() < 4:
        raise ValueError(f"need at least 4 finite (measured, predicted) pairs, got {int(keep.sum())}")
    # centring by the full-sample mean keeps the weighted sums of squares well conditioned
    shift = arrays[0][keep].mean()
    return [a[keep] - shift for a in arrays], int(keep.sum())


def _blocks(n_boot: int, n: int, budget: int = 4_000_000):
    rows = max(1, min(n_boot, budget // max(n, 1)))
    for start in range(0, n_boot, rows):
        yield min(rows, n_boot - start)


def _interval(values: np.ndarray, point: float, ci: float) -> dict:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"value": point, "lo": float("nan"), "hi": float("nan"), "se": float("nan")}
    lo, hi = np.percentile(finite, [50 * (1 - ci), 50 * (1 + ci)])
    return {"value": point, "lo": float(lo), "hi": float(hi), "se": float(finite.std(ddof=1))}


def bootstrap_metrics(y, p, n_boot: int = 10000, ci: float = 0.95, seed: int = 0, names=METRICS) -> dict:
    """Point value and percentile bootstrap CI of each metric: {name: {value, lo, hi, se}, "n": n}.

    Rows where either value is non-finite are dropped first (and counted out of "n").
    ``n_boot=0`` gives point values with nan bounds.
    """
    (y, p), n = _clean(y, p)
    out = {k: POINT[k](y, p) for k in names}
    if n_boot <= 0:
        res = {k: {"value": v, "lo": float("nan"), "hi": float("nan"), "se": float("nan")} for k, v in out.items()}
        return {**res, "n": n, "n_boot": 0, "ci": ci}
    rng = np.random.default_rng(seed)
    ry, rp = (_Ranker(y), _Ranker(p)) if "spearman" in names else (None, None)
    parts = {k: [] for k in names}
    for rows in _blocks(n_boot, n):
        w = _resample_counts(rng, n, rows)
        for k, v in _weighted_metrics(w, y, p, names, ry, rp).items():
            parts[k].append(v)
    res = {k: _interval(np.concatenate(parts[k]), out[k], ci) for k in names}
    return {**res, "n": n, "n_boot": int(n_boot), "ci": ci}


def bootstrap_compare(y, p1, p2, n_boot: int = 10000, ci: float = 0.95, seed: int = 0,
                      names=("pearson", "spearman")) -> dict:
    """Paired bootstrap of metric(p1) - metric(p2) on the same resamples of the same rows.

    Returns {name: {value, lo, hi, se, p_boot}} where p_boot is the two-sided bootstrap p-value
    (twice the smaller tail share of differences on either side of 0, at most 1).
    """
    (y, p1, p2), n = _clean(y, p1, p2)
    point = {k: POINT[k](y, p1) - POINT[k](y, p2) for k in names}
    rng = np.random.default_rng(seed)
    ry = _Ranker(y) if "spearman" in names else None
    r1 = _Ranker(p1) if "spearman" in names else None
    r2_ = _Ranker(p2) if "spearman" in names else None
    parts = {k: [] for k in names}
    for rows in _blocks(n_boot, n, budget=2_000_000):
        w = _resample_counts(rng, n, rows)
        a = _weighted_metrics(w, y, p1, names, ry, r1)
        b = _weighted_metrics(w, y, p2, names, ry, r2_)
        for k in names:
            parts[k].append(a[k] - b[k])
    out = {}
    for k in names:
        d = np.concatenate(parts[k])
        d = d[np.isfinite(d)]
        entry = _interval(d, point[k], ci)
        entry["p_boot"] = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if d.size else float("nan")
        out[k] = entry
    return {**out, "n": n, "n_boot": int(n_boot), "ci": ci}


# ---- dependent overlapping correlations -------------------------------------------------------------

def _check_r(**rs):
    for name, r in rs.items():
        if not (-1.0 < r < 1.0):
            raise ValueError(f"{name}={r} must lie strictly between -1 and 1")


def williams_test(r_jk: float, r_jh: float, r_kh: float, n: int) -> dict:
    """Williams' t for H0: rho_jk = rho_jh (j shared, e.g. measured; k, h two predictors).

    t = (r_jk - r_jh) sqrt((n-1)(1+r_kh) / (2 (n-1)/(n-3) |R| + rbar^2 (1-r_kh)^3)),
    |R| = 1 - r_jk^2 - r_jh^2 - r_kh^2 + 2 r_jk r_jh r_kh, rbar = (r_jk + r_jh)/2, df = n - 3.
    """
    _check_r(r_jk=r_jk, r_jh=r_jh, r_kh=r_kh)
    if n <= 3:
        raise ValueError(f"Williams' test needs n > 3, got {n}")
    det = 1 - r_jk ** 2 - r_jh ** 2 - r_kh ** 2 + 2 * r_jk * r_jh * r_kh
    rbar = (r_jk + r_jh) / 2
    if det <= 0:
        raise ValueError(f"r_jk={r_jk}, r_jh={r_jh}, r_kh={r_kh} are not a valid correlation matrix (|R| <= 0)")
    t = (r_jk - r_jh) * math.sqrt((n - 1) * (1 + r_kh) / (2 * (n - 1) / (n - 3) * det + rbar ** 2 * (1 - r_kh) ** 3))
    return {"t": t, "df": n - 3, "p": float(2 * sps.t.sf(abs(t), n - 3))}


def hittner_test(r_jk: float, r_jh: float, r_kh: float, n: int) -> dict:
    """Hittner-May-Silver z for H0: rho_jk = rho_jh (j shared).

    z = (atanh r_jk - atanh r_jh) sqrt(n-3) / sqrt(2 - 2c), with rbar = tanh(mean of the two Fisher z),
    psi = r_kh (1 - 2 rbar^2) - rbar^2 (1 - 2 rbar^2 - r_kh^2) / 2 and c = psi / (1 - rbar^2)^2.
    """
    _check_r(r_jk=r_jk, r_jh=r_jh, r_kh=r_kh)
    if n <= 3:
        raise ValueError(f"Hittner's test needs n > 3, got {n}")
    z1, z2 = math.atanh(r_jk), math.atanh(r_jh)
    rbar = math.tanh((z1 + z2) / 2)
    psi = r_kh * (1 - 2 * rbar ** 2) - 0.5 * rbar ** 2 * (1 - 2 * rbar ** 2 - r_kh ** 2)
    c = psi / (1 - rbar ** 2) ** 2
    if c >= 1:  # far from H0 the pooled-r variance estimate is not positive (use the bootstrap instead)
        raise ValueError(f"variance estimate 2 - 2c = {2 - 2 * c:.3g} is not positive (r_jk={r_jk:.3f}, "
                         f"r_jh={r_jh:.3f}, r_kh={r_kh:.3f})")
    z = (z1 - z2) * math.sqrt(n - 3) / math.sqrt(2 - 2 * c)
    return {"z": z, "p": float(2 * sps.norm.sf(abs(z)))}


def compare_correlations(y, p1, p2, method: str = "pearson") -> dict:
    """Is predictor 1 more correlated with y than predictor 2 (same rows)? Both tests, two-sided.

    For Spearman the tests run on ranks (the usual large-sample approximation).
    """
    (y, p1, p2), n = _clean(y, p1, p2)
    fn = {"pearson": _m.pearson, "spearman": _m.spearman}[method]
    r1, r2, r12 = fn(y, p1), fn(y, p2), fn(p1, p2)
    out = {"method": method, "n": n, "r_1": r1, "r_2": r2, "r_12": r12}
    notes = []
    for name, test, stat in (("hittner", hittner_test, "z"), ("williams", williams_test, "t")):
        try:
            res = test(r1, r2, r12, n)
            out.update({f"{name}_{stat}": res[stat], f"{name}_p": res["p"]})
        except ValueError as e:  # |r| = 1, or a non-positive variance estimate: undefined here
            out.update({f"{name}_{stat}": float("nan"), f"{name}_p": float("nan")})
            notes.append(f"{name}: {e}")
    if notes:
        out["note"] = "; ".join(notes)
    return out


# ---- DREAM 2022 ------------------------------------------------------------------------------------

#: weights of the DREAM 2022 Pearson (on r^2) and Spearman (on rho) scores; sum 4.65
DREAM_WEIGHTS = {"all": 1.0, "high": 0.3, "low": 0.3, "native": 0.3, "random": 0.3, "challenging": 0.5,
                 "SNV": 1.25, "motif_perturbation": 0.3, "motif_tiling": 0.4}
#: subsets scored on differences alt - ref of (ref, alt) row pairs
DREAM_PAIR_SUBSETS = ("SNV", "motif_perturbation", "motif_tiling")


def dream_score(y, p, subsets: dict) -> dict:
    """DREAM 2022 weighted scores from measured y, predictions p and subset membership.

    ``subsets`` maps a subset name to row indices (or a boolean mask); the pair subsets
    (SNV, motif_perturbation, motif_tiling) map to an (m, 2) array of (ref, alt) rows and are scored on
    alt - ref differences. "all" defaults to every row. Pearson score = sum w r^2 / sum w, Spearman
    score = sum w rho / sum w; with every subset present sum w = 4.65 (the organisers' score). Missing
    subsets are listed and the score is then renormalised over those present ("complete": False).
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.size != p.size:
        raise ValueError(f"measured and predicted differ in length: {y.size} vs {p.size}")
    unknown = set(subsets) - set(DREAM_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown DREAM subsets {sorted(unknown)}; known: {list(DREAM_WEIGHTS)}")
    subsets = {"all": np.arange(y.size), **subsets}
    per, num_p, num_s, den = {}, 0.0, 0.0, 0.0
    for name, w in DREAM_WEIGHTS.items():
        if name not in subsets:
            continue
        sel = np.asarray(subsets[name])
        if name in DREAM_PAIR_SUBSETS:
            sel = sel.reshape(-1, 2).astype(np.int64)
            a, b = y[sel[:, 1]] - y[sel[:, 0]], p[sel[:, 1]] - p[sel[:, 0]]
        else:
            sel = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
            a, b = y[sel], p[sel]
        r, rho = _m.pearson(a, b), _m.spearman(a, b)
        per[name] = {"n": int(a.size), "weight": w, "pearson": r, "r2": r * r, "spearman": rho}
        num_p += w * r * r
        num_s += w * rho
        den += w
    missing = [k for k in DREAM_WEIGHTS if k not in per]
    return {"pearson_score": num_p / den, "spearman_score": num_s / den, "weight_total": den,
            "complete": not missing, "missing": missing, "subsets": per}


def dream_main(argv: list[str] | None = None, prog: str = "seq2exp-report dream") -> int:
    """`seq2exp-report dream PRED --subsets JSON`: the DREAM score of a predictions table."""
    p = Parser(prog=prog, description="DREAM 2022 weighted Pearson/Spearman score of a predictions table.")
    p.add_argument("predictions", help="CSV/TSV with a measured and a predicted column (rows = subset indices)")
    p.add_argument("--subsets", required=True, metavar="FILE",
                   help="JSON {subset: [row, ...] or [[ref_row, alt_row], ...]}")
    p.add_argument("--y-col", default="measured", metavar="COLUMN", help="measured column (default: measured)")
    p.add_argument("--p-col", default="prediction", metavar="COLUMN", help="predicted column (default: prediction)")
    p.add_argument("--score-json", metavar="FILE", help="write the score as JSON to this file (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --score-json file (never an input)")
    args = p.parse_args(argv)
    rule = OutputRule([args.predictions, args.subsets], overwrite=args.overwrite)
    try:
        rule.check_file(args.score_json, "--score-json")
    except OutputError as err:
        p.error(str(err))
    table = pd.read_csv(args.predictions, sep=None, engine="python")
    for col in (args.y_col, args.p_col):
        if col not in table.columns:
            raise SystemExit(f"{args.predictions}: column {col!r} not found; columns are {list(table.columns)}")
    with open(args.subsets) as fh:
        subsets = json.load(fh)
    res = dream_score(table[args.y_col].to_numpy(float), table[args.p_col].to_numpy(float), subsets)
    print(f"Pearson score {res['pearson_score']:.4f}  Spearman score {res['spearman_score']:.4f}"
          + ("" if res["complete"] else f"  (partial: missing {res['missing']})"))
    if args.score_json:
        with rule.open(args.score_json, flag="--score-json") as fh:
            json.dump(res, fh, indent=2)
    return 0

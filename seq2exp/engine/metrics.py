"""Exact dataset-level regression metrics.

Papers report Pearson/Spearman/R^2 over the whole test set; averaging per-batch
correlations (or using ``keras.metrics.PearsonCorrelation``, which is per-sample) gives
different numbers. Everything here is plain float64 numpy on the full set of
predictions, which the training loop gathers with :class:`PredictionCollector`.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "pearson",
    "spearman",
    "r2",
    "mse",
    "mae",
    "regression_metrics",
    "rank_average",
    "PredictionCollector",
]


def _pair(y, p):
    """Flatten to matching float64 vectors; (n,) and (n, 1) are accepted interchangeably."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.size != p.size:
        raise ValueError(f"y and p differ in size: {y.size} vs {p.size}")
    if y.size == 0:
        raise ValueError("cannot compute regression metrics on empty arrays (no examples)")
    return y, p


def _corr(a, b):
    # Centred cross-product; zero variance in either gives nan rather than a 0/0 warning.
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if not np.isfinite(denom) or denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))


def pearson(y, p) -> float:
    """Pearson r; nan when either input is constant or non-finite."""
    y, p = _pair(y, p)
    return _corr(y, p)


def rank_average(x) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``rankdata`` 'average')."""
    x = np.asarray(x).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.empty(x.size, dtype=bool)
    new_group[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=new_group[1:])
    group = np.cumsum(new_group) - 1
    bounds = np.flatnonzero(np.append(new_group, True))  # start of each group, then n
    avg = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of 1-based ranks start+1..end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def spearman(y, p) -> float:
    """Spearman rho = Pearson on average ranks; nan on constant or non-finite input."""
    y, p = _pair(y, p)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        return float("nan")  # ranks of nan/inf would give a plausible-looking but bogus value
    return _corr(rank_average(y), rank_average(p))


def r2(y, p) -> float:
    """Coefficient of determination 1 - SSres/SStot; nan when y is constant."""
    y, p = _pair(y, p)
    ss_tot = np.sum((y - y.mean()) ** 2)
    if ss_tot == 0.0:
        return float("nan")
    return float(1.0 - np.sum((y - p) ** 2) / ss_tot)


def mse(y, p) -> float:
    y, p = _pair(y, p)
    return float(np.mean((y - p) ** 2))


def mae(y, p) -> float:
    y, p = _pair(y, p)
    return float(np.mean(np.abs(y - p)))


def regression_metrics(y, p) -> dict:
    """All metrics at once: keys pearson, spearman, r2, mse, mae, n."""
    y, p = _pair(y, p)
    return {
        "pearson": pearson(y, p),
        "spearman": spearman(y, p),
        "r2": r2(y, p),
        "mse": mse(y, p),
        "mae": mae(y, p),
        "n": int(y.size),
    }


def _to_numpy(x):
    # Accepts numpy arrays, eager tensors and anything with .numpy() (e.g. gathered results).
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x)


class PredictionCollector:
    """Gathers batches of (y_true, y_pred) so metrics are computed once over the full set.

    Batches are stored as float32 (half the memory of float64; a few million rows is a
    few tens of MB) and concatenated only at :meth:`result`. A ``mask`` drops padded rows,
    so a padded or repeated final batch is counted exactly once.
    """

    def __init__(self):
        self._y = []
        self._p = []
        self._n = 0

    def reset(self):
        self._y.clear()
        self._p.clear()
        self._n = 0

    @property
    def n(self) -> int:
        """Number of (unmasked) examples gathered so far."""
        return self._n

    def update(self, y_true, y_pred, mask=None):
        """Add one batch; ``mask`` (bool or 0/1 weights, shape (b,) or (b, 1)) keeps rows.

        Non-binary weights are rejected: these metrics are unweighted, and silently
        treating a weight of 0.3 as "keep" would hide a bug in the caller.
        """
        y = _to_numpy(y_true).astype(np.float32, copy=False).reshape(-1)
        p = _to_numpy(y_pred).astype(np.float32, copy=False).reshape(-1)
        if y.size != p.size:
            raise ValueError(f"y_true and y_pred differ in size: {y.size} vs {p.size}")
        if mask is not None:
            m = _to_numpy(mask).reshape(-1)
            if m.size != y.size:
                raise ValueError(f"mask has {m.size} entries for a batch of {y.size}")
            if m.dtype != np.bool_:
                if not np.all((m == 0) | (m == 1)):
                    raise ValueError("mask must be boolean or 0/1 weights")
                m = m.astype(bool)
            y, p = y[m], p[m]
        if y.size:
            self._y.append(np.array(y, dtype=np.float32, copy=True))
            self._p.append(np.array(p, dtype=np.float32, copy=True))
            self._n += int(y.size)

    def arrays(self):
        """The gathered (y_true, y_pred) as two float32 vectors, e.g. to save predictions."""
        if not self._y:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(self._y), np.concatenate(self._p)

    def result(self) -> dict:
        """:func:`regression_metrics` over everything gathered since the last reset."""
        if self._n == 0:
            raise ValueError("PredictionCollector is empty: no (unmasked) examples were added")
        y, p = self.arrays()
        return regression_metrics(y, p)

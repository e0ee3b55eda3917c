"""The published claim "95% percentile bootstrap intervals", pinned against `scipy.stats.bootstrap`.

Our bootstrap draws its own resamples, so the two intervals differ by Monte-Carlo error only. With
20,000 resamples each side that error is about 0.03 bootstrap standard errors per endpoint, while a 90%
interval's endpoints sit (1.960 - 1.645) = 0.315 standard errors inside the 95% ones and its width is
0.84 of theirs: the tolerances below (0.1 se per endpoint, 4% of the width) separate the two levels
with a wide margin on both sides.
"""
import numpy as np
import pytest
from scipy import stats as sps

from seq2exp.analysis import stats

N_BOOT = 20_000
ENDPOINT_TOL_SE = 0.1  # |ours - scipy| per endpoint, in bootstrap standard errors (90% vs 95%: 0.315)
WIDTH_TOL = 0.04  # relative width difference (90% vs 95%: 0.16)


def _pearson(a, b, axis=-1):
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


def _mae(a, b, axis=-1):
    return np.abs(a - b).mean(axis)


def _data(n=400, seed=11):
    rng = np.random.default_rng(seed)
    y = rng.normal(8, 3, n)
    return y, y + rng.gamma(2.0, 1.5, n) - 3.0  # skewed errors: an asymmetric interval


def _scipy_interval(fn, *data, level):
    res = sps.bootstrap(data, fn, paired=True, vectorized=True, n_resamples=N_BOOT, method="percentile",
                        confidence_level=level, random_state=np.random.default_rng(123))
    return res.confidence_interval.low, res.confidence_interval.high, res.standard_error


def _assert_same_interval(entry, ref, what):
    lo, hi, se = ref
    assert abs(entry["lo"] - lo) < ENDPOINT_TOL_SE * se, (what, "lo", entry["lo"], lo, se)
    assert abs(entry["hi"] - hi) < ENDPOINT_TOL_SE * se, (what, "hi", entry["hi"], hi, se)
    assert abs((entry["hi"] - entry["lo"]) / (hi - lo) - 1) < WIDTH_TOL, (what, "width", entry, ref)


@pytest.mark.parametrize("metric,fn", [("pearson", _pearson), ("mae", _mae)])
def test_default_interval_is_95_percent_like_scipy(metric, fn):
    y, p = _data()
    ours = stats.bootstrap_metrics(y, p, n_boot=N_BOOT, seed=0)  # the default level, as reports use it
    assert ours["ci"] == 0.95
    _assert_same_interval(ours[metric], _scipy_interval(fn, y, p, level=0.95), metric)


def test_the_tolerance_separates_90_from_95_percent():
    """The same comparison must FAIL for a 90% interval, or it could not tell the levels apart."""
    y, p = _data()
    ours90 = stats.bootstrap_metrics(y, p, n_boot=N_BOOT, seed=0, ci=0.90)
    ref95 = _scipy_interval(_pearson, y, p, level=0.95)
    with pytest.raises(AssertionError):
        _assert_same_interval(ours90["pearson"], ref95, "pearson at 90%")
    _assert_same_interval(ours90["pearson"], _scipy_interval(_pearson, y, p, level=0.90), "pearson at 90%")


def test_paired_difference_default_interval_is_95_percent_like_scipy():
    y, p1 = _data(seed=3)
    p2 = y + np.random.default_rng(4).normal(0, 4, y.size)
    ours = stats.bootstrap_compare(y, p1, p2, n_boot=N_BOOT, seed=0, names=("pearson",))
    assert ours["ci"] == 0.95

    def diff(a, b, c, axis=-1):
        return _pearson(a, b, axis) - _pearson(a, c, axis)

    _assert_same_interval(ours["pearson"], _scipy_interval(diff, y, p1, p2, level=0.95), "pearson difference")

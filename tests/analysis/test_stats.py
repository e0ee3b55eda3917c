"""Metrics, bootstrap intervals, dependent-correlation tests and the DREAM score."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from seq2exp.analysis import stats
from seq2exp.analysis.report import load_table


def _data(n=400, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 12, n).astype(float) if ties else rng.normal(8, 3, n)
    p = np.round(y + rng.normal(0, 2.5, n)) if ties else y + rng.normal(0, 2.5, n)  # rounding -> ties in p too
    return y, p


@pytest.mark.parametrize("ties", [True, False])
def test_point_metrics_match_scipy(ties):
    y, p = _data(ties=ties)
    m = stats.point_metrics(y, p)
    assert m["pearson"] == pytest.approx(sps.pearsonr(y, p)[0], abs=1e-12)
    assert m["spearman"] == pytest.approx(sps.spearmanr(y, p)[0], abs=1e-12)
    assert m["r2"] == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2), abs=1e-12)
    assert m["mse"] == pytest.approx(np.mean((y - p) ** 2), abs=1e-12)
    assert m["mae"] == pytest.approx(np.mean(np.abs(y - p)), abs=1e-12)


def test_resample_metrics_equal_scipy_on_the_materialised_resample():
    """The weighted (multinomial-count) formulation must equal scipy on the resampled arrays,
    including the average ranks of the ties that resampling creates."""
    y, p = _data(n=150, seed=3)
    w = stats._resample_counts(np.random.default_rng(1), y.size, 5)
    got = stats._weighted_metrics(w, y, p, stats.METRICS)
    for row in range(5):
        idx = np.repeat(np.arange(y.size), w[row].astype(int))
        ys, ps = y[idx], p[idx]
        assert got["pearson"][row] == pytest.approx(sps.pearsonr(ys, ps)[0], abs=1e-10)
        assert got["spearman"][row] == pytest.approx(sps.spearmanr(ys, ps)[0], abs=1e-10)
        assert got["r2"][row] == pytest.approx(1 - np.sum((ys - ps) ** 2) / np.sum((ys - ys.mean()) ** 2), abs=1e-10)
        assert got["mse"][row] == pytest.approx(np.mean((ys - ps) ** 2), abs=1e-10)
        assert got["mae"][row] == pytest.approx(np.mean(np.abs(ys - ps)), abs=1e-10)


def test_bootstrap_interval_agrees_with_scipy_bootstrap():
    y, p = _data(n=300, seed=5, ties=False)
    ours = stats.bootstrap_metrics(y, p, n_boot=4000, seed=2)
    def r(a, b, axis=-1):  # vectorised Pearson over resamples
        a = a - a.mean(axis, keepdims=True)
        b = b - b.mean(axis, keepdims=True)
        return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))

    assert r(y, p) == pytest.approx(sps.pearsonr(y, p)[0])
    ref = sps.bootstrap((y, p), r, paired=True, vectorized=True, n_resamples=4000, method="percentile",
                        random_state=7).confidence_interval
    assert ours["pearson"]["lo"] == pytest.approx(ref.low, abs=0.01)
    assert ours["pearson"]["hi"] == pytest.approx(ref.high, abs=0.01)
    for k in stats.METRICS:
        assert ours[k]["lo"] <= ours[k]["value"] <= ours[k]["hi"]
    again = stats.bootstrap_metrics(y, p, n_boot=4000, seed=2)
    assert again["spearman"] == ours["spearman"]  # seeded: reproducible


def test_bootstrap_drops_non_finite_rows_and_zero_resamples():
    y, p = _data(n=50)
    p[3] = np.nan
    res = stats.bootstrap_metrics(y, p, n_boot=0)
    assert res["n"] == 49 and math.isnan(res["pearson"]["lo"])
    keep = np.isfinite(p)
    assert res["pearson"]["value"] == pytest.approx(sps.pearsonr(y[keep], p[keep])[0])


def test_dependent_correlation_tests_hand_worked_example():
    """r_jk = 0.6 (model vs measured), r_jh = 0.4 (other vs measured), r_kh = 0.5, n = 103.

    Williams (Steiger 1980, eq. 7):
      |R| = 1 - .36 - .16 - .25 + 2(.6)(.4)(.5) = 0.47;  rbar = (0.6 + 0.4)/2 = 0.5
      (n-1)(1 + r_kh) = 102 * 1.5 = 153
      denominator = 2 (102/100) 0.47 + 0.5^2 (1 - 0.5)^3 = 0.9588 + 0.03125 = 0.99005
      t = 0.2 sqrt(153 / 0.99005) = 0.2 sqrt(154.5376) = 0.2 * 12.43132 = 2.48626, df = 100
    Hittner-May-Silver (2003):
      z1 = atanh .6 = ln(4)/2 = 0.693147;  z2 = atanh .4 = ln(7/3)/2 = 0.423649
      rbar = tanh((z1 + z2)/2) = (sqrt(28/3) - 1)/(sqrt(28/3) + 1) = 2.055050/4.055050 = 0.506788
      rbar^2 = 0.256834
      psi = .5 (1 - 2(.256834)) - .5 (.256834)(1 - 2(.256834) - .25) = 0.243166 - 0.030349 = 0.212817
      c = psi / (1 - rbar^2)^2 = 0.212817 / 0.743166^2 = 0.212817 / 0.552296 = 0.385332
      z = (0.693147 - 0.423649) sqrt(100) / sqrt(2 - 2(0.385332)) = 2.69498 / 1.108755 = 2.43064
    Two-sided p: t table (df 100) -> 0.01457; normal table -> 0.01507.
    """
    w = stats.williams_test(0.6, 0.4, 0.5, 103)
    h = stats.hittner_test(0.6, 0.4, 0.5, 103)
    assert w["t"] == pytest.approx(2.48626, abs=2e-5) and w["df"] == 100
    assert w["p"] == pytest.approx(0.01457, abs=2e-5)
    assert h["z"] == pytest.approx(2.43064, abs=2e-5)
    assert h["p"] == pytest.approx(0.01507, abs=2e-5)
    # swapping the predictors flips the sign, not the p-value
    assert stats.hittner_test(0.4, 0.6, 0.5, 103)["z"] == pytest.approx(-h["z"])
    assert stats.williams_test(0.4, 0.6, 0.5, 103)["p"] == pytest.approx(w["p"])
    with pytest.raises(ValueError, match="strictly between"):
        stats.hittner_test(1.0, 0.4, 0.5, 103)
    with pytest.raises(ValueError, match="not positive"):  # far from H0: 2 - 2c < 0
        stats.hittner_test(0.199, 0.9905, 0.169, 30)
    res = stats.compare_correlations(*_data(n=30, seed=1), _data(n=30, seed=1)[0])  # p2 = y: r_2 = 1
    assert np.isnan(res["hittner_p"]) and np.isnan(res["williams_p"]) and "strictly" in res["note"]


def test_dependent_correlation_tests_hold_their_size_under_the_null():
    """Two predictors equally correlated with y: about 5% of p-values fall below 0.05."""
    rng = np.random.default_rng(0)
    rejected = {"hittner_p": 0, "williams_p": 0}
    sims = 600
    for _ in range(sims):
        y = rng.normal(size=60)
        common = rng.normal(size=60)
        p1 = y + common + rng.normal(size=60)
        p2 = y + common + rng.normal(size=60)
        res = stats.compare_correlations(y, p1, p2)
        for k in rejected:
            rejected[k] += res[k] < 0.05
    for k, v in rejected.items():
        assert 0.02 < v / sims < 0.09, (k, v / sims)


def test_bootstrap_compare_detects_a_better_predictor():
    rng = np.random.default_rng(4)
    y = rng.normal(size=500)
    good, bad = y + rng.normal(0, 0.5, 500), y + rng.normal(0, 1.5, 500)
    res = stats.bootstrap_compare(y, good, bad, n_boot=1000)
    assert res["pearson"]["lo"] > 0 and res["pearson"]["p_boot"] < 0.01
    assert stats.compare_correlations(y, good, bad)["hittner_p"] < 1e-6


def test_dream_score_weights_and_pair_subsets():
    rng = np.random.default_rng(2)
    y = rng.normal(8, 3, 200)
    p = y + rng.normal(0, 1, 200)
    assert sum(stats.DREAM_WEIGHTS.values()) == pytest.approx(4.65)
    pairs = np.stack([np.arange(0, 40), np.arange(40, 80)], 1)
    subsets = {"high": np.flatnonzero(y > 9), "low": np.flatnonzero(y < 7), "SNV": pairs}
    res = stats.dream_score(y, p, subsets)
    r = {k: sps.pearsonr(y[i], p[i])[0] for k, i in (("all", np.arange(200)), ("high", subsets["high"]),
                                                      ("low", subsets["low"]))}
    r["SNV"] = sps.pearsonr(y[40:80] - y[:40], p[40:80] - p[:40])[0]
    w = stats.DREAM_WEIGHTS
    expected = sum(w[k] * r[k] ** 2 for k in r) / sum(w[k] for k in r)
    assert res["pearson_score"] == pytest.approx(expected)
    assert not res["complete"] and "native" in res["missing"]
    # exact differences but a per-pair offset in absolute values: SNV is scored on differences only
    q = y.copy()
    q[:40] += 5.0
    q[40:80] += 5.0
    assert stats.dream_score(y, q, {"SNV": pairs})["subsets"]["SNV"]["pearson"] == pytest.approx(1.0)
    full = {k: (pairs if k in stats.DREAM_PAIR_SUBSETS else np.arange(100)) for k in stats.DREAM_WEIGHTS}
    perfect = stats.dream_score(y, y, full)
    assert perfect["complete"] and perfect["weight_total"] == pytest.approx(4.65)
    assert perfect["pearson_score"] == pytest.approx(1) and perfect["spearman_score"] == pytest.approx(1)
    with pytest.raises(ValueError, match="unknown DREAM subsets"):
        stats.dream_score(y, p, {"snv": pairs})


@pytest.mark.parametrize("name, pearson, spearman", [
    ("Native_complex", 0.961, 0.968), ("Random_complex", 0.978, 0.976),
    ("Drift_complex", 0.974, 0.981), ("Drift_delta_complex", 0.877, 0.820)])
def test_transformer_column_reproduces_published_numbers(shared_data, name, pearson, spearman):
    t = load_table(str(shared_data / "gpra" / f"{name}.csv"), "Predicted Expression")
    res = stats.bootstrap_metrics(t["measured"], t["other"], n_boot=200, names=("pearson", "spearman"))
    assert round(res["pearson"]["value"], 3) == pearson
    assert round(res["spearman"]["value"], 3) == spearman
    assert res["pearson"]["lo"] < pearson < res["pearson"]["hi"]

"""Exact metrics vs scipy, and the collector vs one-shot computation."""
import numpy as np
import pytest
from scipy import stats

from seq2exp.engine.metrics import (
    PredictionCollector,
    mae,
    mse,
    pearson,
    r2,
    rank_average,
    regression_metrics,
    spearman,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.normal(size=5000)
    p = 0.7 * y + rng.normal(scale=0.5, size=y.size)
    return y, p


def test_against_scipy_and_formulas(data):
    y, p = data
    assert pearson(y, p) == pytest.approx(stats.pearsonr(y, p)[0], abs=1e-12)
    assert spearman(y, p) == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-12)
    assert r2(y, p) == pytest.approx(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2))
    assert mse(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert mae(y, p) == pytest.approx(np.mean(np.abs(y - p)))


def test_spearman_with_many_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 18, size=3000).astype(float)  # MPRA bins: heavy ties
    p = np.round(y + rng.normal(scale=3, size=y.size))
    assert spearman(y, p) == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-12)
    np.testing.assert_allclose(rank_average(y), stats.rankdata(y))
    np.testing.assert_allclose(rank_average([3, 1, 3, 3, 2]), [4, 1, 4, 4, 2])


def test_column_vectors_accepted(data):
    y, p = data
    assert pearson(y[:, None], p) == pytest.approx(pearson(y, p))


def test_regression_metrics_dict(data):
    y, p = data
    m = regression_metrics(y, p)
    assert set(m) == {"pearson", "spearman", "r2", "mse", "mae", "n"}
    assert m["n"] == y.size and isinstance(m["n"], int)
    assert m["pearson"] == pytest.approx(pearson(y, p))


def test_degenerate_inputs():
    y = np.arange(5.0)
    const = np.ones(5)
    assert np.isnan(pearson(y, const)) and np.isnan(spearman(const, y))
    assert np.isnan(r2(const, y))
    assert mse(const, const) == 0.0
    m = regression_metrics(const, const)
    assert np.isnan(m["pearson"]) and m["mse"] == 0.0
    with_nan = y.copy()
    with_nan[2] = np.nan
    assert np.isnan(pearson(y, with_nan)) and np.isnan(spearman(y, with_nan))
    with pytest.raises(ValueError, match="empty"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match="size"):
        pearson([1.0, 2.0], [1.0])


def test_perfect_prediction():
    y = np.linspace(-2, 3, 50)
    m = regression_metrics(y, y)
    assert m["pearson"] == pytest.approx(1.0) and m["spearman"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1.0) and m["mae"] == 0.0


def test_collector_uneven_batches_equal_one_shot(data):
    y, p = data
    c = PredictionCollector()
    edges = [0, 1, 128, 700, 2048, 4999, 5000]
    for a, b in zip(edges[:-1], edges[1:]):
        c.update(y[a:b, None], p[a:b])  # (b, 1) targets like a Keras dataset
    got = c.result()
    want = regression_metrics(y.astype(np.float32), p.astype(np.float32))
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    assert c.n == y.size


def test_collector_mask_excludes_padding(data):
    y, p = data
    c = PredictionCollector()
    bs = 512
    for a in range(0, y.size, bs):
        yb, pb = y[a:a + bs], p[a:a + bs]
        n = yb.size
        pad = bs - n
        # Pad the last batch with garbage, and flag it out by a 0/1 weight vector.
        yb = np.concatenate([yb, np.full(pad, 1e6)])
        pb = np.concatenate([pb, np.full(pad, -1e6)])
        w = np.concatenate([np.ones(n), np.zeros(pad)]).astype(np.float32)
        c.update(yb, pb, mask=w)
    assert c.n == y.size
    ys, ps = c.arrays()
    np.testing.assert_array_equal(ys, y.astype(np.float32))
    assert c.result()["pearson"] == pytest.approx(
        pearson(y.astype(np.float32), p.astype(np.float32)), rel=1e-12
    )


def test_collector_bool_mask_reset_and_errors():
    c = PredictionCollector()
    c.update(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 9.0]), mask=np.array([True, True, False]))
    assert c.n == 2
    assert c.result()["mse"] == pytest.approx(0.125)
    c.reset()
    assert c.n == 0
    with pytest.raises(ValueError, match="empty"):
        c.result()
    with pytest.raises(ValueError, match="0/1"):
        c.update(np.ones(2), np.ones(2), mask=np.array([0.5, 1.0]))
    with pytest.raises(ValueError):
        c.update(np.ones(3), np.ones(2))
    c.update(np.ones(2), np.ones(2), mask=np.zeros(2))  # fully padded batch adds nothing
    assert c.n == 0


def test_collector_accepts_tensors_and_copies_input():
    import tensorflow as tf

    c = PredictionCollector()
    buf = np.array([1.0, 2.0, 3.0], np.float32)
    c.update(tf.constant(buf), buf)
    buf[:] = 0.0  # a reused input buffer must not change what was gathered
    y, p = c.arrays()
    np.testing.assert_array_equal(p, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0])

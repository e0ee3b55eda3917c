import numpy as np
import pytest

from seq2exp.analysis.baseline import KmerRidge, kmer_counts
from seq2exp.cli import config as run_config


def test_kmer_counts_by_hand():
    codes = np.array([[0, 1, 2, 3, 4, 0, 1]], dtype=np.uint8)  # ACGTNAC
    c = kmer_counts(codes, k=2)
    expected = np.zeros(16)
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 1)]:  # AC CG GT AC; windows touching N skipped
        expected[a * 4 + b] += 1
    assert np.array_equal(c[0], expected)
    assert kmer_counts(np.zeros((3, 10), np.uint8), 6).sum(axis=1).tolist() == [5, 5, 5]


def test_ridge_recovers_a_kmer_effect():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (3000, 40)).astype(np.uint8)
    x = kmer_counts(codes, 3)
    w = rng.normal(size=64)
    y = x @ w + rng.normal(scale=0.1, size=3000)
    model = KmerRidge(k=3).fit(codes[:2500], y[:2500])
    r = np.corrcoef(model.predict(codes[2500:]), y[2500:])[0, 1]
    assert r > 0.99


def test_config_precedence_file_then_flags(tmp_path):
    import argparse

    f = tmp_path / "run.yaml"
    f.write_text("batch_size: 64\nepochs: 3\nmodel_config: {num_heads: 2}\ndata: [a.tsv]\n")
    p = argparse.ArgumentParser()
    run_config.add_arguments(p, "crmnet")
    cfg = run_config.resolve(p.parse_args(["--config", str(f), "--epochs", "5", "--jit"]), "crmnet")
    assert (cfg.batch_size, cfg.epochs, cfg.jit, cfg.model_config, cfg.data) == \
        (64, 5, True, {"num_heads": 2}, ["a.tsv"])
    cfg.save(tmp_path / "saved.yaml")
    assert run_config.load_file(str(tmp_path / "saved.yaml"))["epochs"] == 5


def test_config_file_is_data_not_code(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueError, match="not valid plain-data YAML"):
        run_config.load_file(str(f))
    g = tmp_path / "typo.yaml"
    g.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="unknown config field"):
        run_config.load_file(str(g))


@pytest.mark.parametrize("n", [200, 1500])  # fewer sequences than the 256 3-mer features (dual form), and more
def test_ridge_equals_the_textbook_solution_per_penalty(n):
    """One Gram matrix for every penalty: the chosen penalty and the predictions are those of solving
    (X'X + aI) w = X'(y - mean) afresh for each penalty."""
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 5, (n, 30)).astype(np.uint8)  # N included
    y = (codes[:, :5] == 2).sum(1) + rng.normal(size=n)
    model = KmerRidge(k=4).fit(codes, y)

    x = kmer_counts(codes, 4)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x = ((x - mean) / scale).astype(np.float64)
    held = np.random.default_rng(0).random(n) < 0.1

    def textbook(rows, alpha):
        xs, ys = x[rows], y[rows]
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ (ys - ys.mean()))
        return lambda z: z @ w + ys.mean()

    r2 = [1 - np.sum((y[held] - textbook(~held, a)(x[held])) ** 2) / np.sum((y[held] - y[held].mean()) ** 2)
          for a in model.alphas]
    assert model.alpha == model.alphas[int(np.argmax(r2))]
    expected = textbook(np.ones(n, bool), model.alpha)(x[:50])
    np.testing.assert_allclose(model.predict(codes[:50]), expected, rtol=1e-7, atol=1e-7)

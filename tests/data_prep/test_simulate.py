"""The synthetic GPRA generator: real-data format, measurement model, and a ground truth that scores any
sequence the way it was planted."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from data_prep.simulate import (
    ADAPTER_3,
    ADAPTER_5,
    MAX_BIN,
    GroundTruth,
    SimulatedData,
    _revcomp,
    main,
    simulate,
    write_tsv,
)


@pytest.fixture(scope="module")
def data() -> SimulatedData:
    return simulate(6000, seed=11)


@pytest.fixture(scope="module")
def truth() -> GroundTruth:
    return GroundTruth.from_seed(0)


def _logit(expr):
    p = np.asarray(expr) / MAX_BIN
    return np.log(p / (1 - p))


def _neutral(truth, seed=5):
    """A random 80-mer carrying no motif on either strand."""
    rng = np.random.default_rng(seed)
    while True:
        var = "".join(rng.choice(list("ACGT"), 80))
        if truth.motif_counts([ADAPTER_5 + var + ADAPTER_3]).sum() == 0:
            return var


def _gc(var):
    return sum(ch in "GC" for ch in var) / len(var)


def _plant(var, site, start):
    return ADAPTER_5 + var[:start] + site + var[start + len(site):] + ADAPTER_3


def test_deterministic_by_seed():
    a, b = simulate(400, seed=3), simulate(400, seed=3)
    assert a.sequences == b.sequences
    np.testing.assert_array_equal(a.expression, b.expression)
    np.testing.assert_array_equal(a.n_cells, b.n_cells)
    np.testing.assert_array_equal(a.true_expression, b.true_expression)
    c = simulate(400, seed=4)
    assert c.sequences != a.sequences
    assert not np.array_equal(c.expression, a.expression)
    assert a.truth == c.truth  # the truth follows truth_seed, not the data seed
    assert simulate(50, seed=3, truth_seed=1).truth != a.truth


def test_sequences_look_like_gpra(data):
    assert len(data) == 6000
    for s in data.sequences:
        assert len(s) == 110 and s.startswith(ADAPTER_5) and s.endswith(ADAPTER_3)
    assert set("".join(data.sequences)) == set("ACGT")
    assert len(set(data.sequences)) == len(data)


def test_singletons_are_integers_and_others_mostly_not(data):
    single = data.n_cells == 1
    assert abs(single.mean() - 0.58) < 0.03
    assert data.n_cells.min() >= 1 and data.n_cells.dtype.kind == "i"
    assert np.all(data.expression[single] == np.round(data.expression[single]))
    multi = data.expression[~single]
    assert np.mean(multi != np.round(multi)) > 0.8
    other = simulate(3000, seed=2, singleton_fraction=0.3)
    assert abs(np.mean(other.n_cells == 1) - 0.3) < 0.04


def test_expression_range_spread_and_noise(data):
    assert data.expression.dtype == np.float64 and data.true_expression.dtype == np.float64
    assert data.expression.min() >= 0 and data.expression.max() <= MAX_BIN
    assert np.all((data.true_expression > 0) & (data.true_expression < MAX_BIN))
    assert 9.5 < data.true_expression.mean() < 12.5
    assert 2.0 < data.true_expression.std() < 3.5
    assert np.ptp(data.true_expression) > 10
    r = np.corrcoef(data.expression, data.true_expression)[0, 1]
    assert 0.75 < r < 0.98
    # Averaging more cells reduces the noise.
    single = data.n_cells == 1
    err = np.abs(data.expression - data.true_expression)
    assert err[data.n_cells >= 4].mean() < err[single].mean()


def test_true_expression_matches_rescoring(data):
    np.testing.assert_allclose(data.truth.expression(data.sequences[:500]), data.true_expression[:500],
                               rtol=0, atol=1e-12)
    counts = data.truth.motif_counts(data.sequences)
    assert counts.shape == (len(data), len(data.truth.motifs))
    per_seq = counts.sum(1)
    assert 0.2 < np.mean(per_seq == 0) < 0.45 and np.mean(per_seq <= 3) > 0.95


def test_motif_scan_matches_brute_force(data):
    seqs = data.sequences[:400] + ["TTTTTTTTTTTTT" + "A" * 20, "N".join(m.site for m in data.truth.motifs)]
    expected = np.zeros((len(seqs), len(data.truth.motifs)), dtype=int)
    for i, s in enumerate(seqs):
        for j, m in enumerate(data.truth.motifs):
            sites = {m.site, _revcomp(m.site)}
            expected[i, j] = sum(s.startswith(site, p) for site in sites for p in range(len(s)))
    np.testing.assert_array_equal(data.truth.motif_counts(seqs), expected)
    assert expected[-2].sum() == 4 + 11  # overlapping poly-dT and poly-dA windows all count


def test_planted_motifs_move_expression_by_their_effect(truth):
    var = _neutral(truth)
    base = truth.expression([ADAPTER_5 + var + ADAPTER_3])[0]
    checked = []
    for j, m in enumerate(truth.motifs):
        start = int(round(m.pos_center * 80 - len(m.site) / 2))
        start = min(max(start, 0), 80 - len(m.site))
        seq = _plant(var, m.site, start)
        counts = truth.motif_counts([seq])[0]
        if counts[j] != 1 or counts.sum() != 1:
            continue  # the insertion happened to create a second site; the others still check
        delta = _logit(truth.expression([seq])[0]) - _logit(base)
        delta -= truth.gc_coef * (_gc(seq[17:-13]) - _gc(var))  # the mild GC term moves too
        x = (start + len(m.site) / 2) / 80
        assert delta == pytest.approx(m.effect * float(m.profile(np.array(x))), rel=1e-9)
        assert np.sign(truth.expression([seq])[0] - base) == np.sign(m.effect)
        checked.append(m.name)
    assert len(checked) >= 7 and {"Rap1", "Ume6"} <= set(checked)
    effects = {m.name: m.effect for m in truth.motifs}
    assert effects["Rap1"] > 0 and effects["TATA"] > 0 and effects["Ume6"] < 0 and effects["Mig1"] < 0


def test_orientation_and_position_matter(truth):
    var = _neutral(truth)
    rap1 = next(m for m in truth.motifs if m.name == "Rap1")
    base = _logit(truth.expression([ADAPTER_5 + var + ADAPTER_3])[0])
    fwd, rev, far = (_logit(truth.expression([s])[0]) - base for s in (
        _plant(var, rap1.site, 10), _plant(var, _revcomp(rap1.site), 10), _plant(var, rap1.site, 65)))
    assert rev == pytest.approx(fwd * rap1.reverse_factor, rel=1e-9)
    assert rev != pytest.approx(fwd)
    assert far != pytest.approx(fwd)
    # Position effect follows the motif's profile: closer to the peak means a larger effect.
    closer = abs(10 + 6 - rap1.pos_center * 80) < abs(65 + 6 - rap1.pos_center * 80)
    assert (abs(fwd) > abs(far)) == closer


def test_interaction_adds_synergy(truth):
    var = _neutral(truth, seed=9)
    it = truth.interactions[0]
    a = next(m for m in truth.motifs if m.name == it.a)
    b = next(m for m in truth.motifs if m.name == it.b)
    base = _logit(truth.expression([ADAPTER_5 + var + ADAPTER_3])[0])
    only_a = _plant(var, a.site, 5)
    only_b = _plant(var, b.site, 60)
    both = _plant(only_a[17:-13], b.site, 60)
    la, lb, lab = (_logit(truth.expression([s])[0]) - base for s in (only_a, only_b, both))
    assert lab == pytest.approx(la + lb + it.effect, rel=1e-9)


def test_json_round_trip(truth, tmp_path):
    again = GroundTruth.from_json(truth.to_json())
    assert again == truth
    path = tmp_path / "truth.json"
    truth.to_json(path)
    from_file = GroundTruth.from_json(path)
    assert GroundTruth.from_dict(json.loads(path.read_text())) == truth
    seqs = simulate(200, seed=1, truth=truth).sequences
    np.testing.assert_array_equal(from_file.expression(seqs), truth.expression(seqs))


def test_any_sequence_can_be_scored(truth):
    seqs = ["", "ACGT", "TTACCCGG", "N" * 40, ADAPTER_5 + "ACGT" * 20 + ADAPTER_3,
            ADAPTER_5 + "TTACCNGG" + "A" * 72 + ADAPTER_3, "ttacccgg" + "C" * 100]
    expr = truth.expression(seqs)
    assert expr.shape == (len(seqs),) and np.all(np.isfinite(expr)) and np.all((expr > 0) & (expr < 17))
    counts = truth.motif_counts(seqs)
    reb1 = [m.name for m in truth.motifs].index("Reb1")
    assert counts[2, reb1] == 1 and counts[5, reb1] == 0 and counts[6, reb1] == 1
    assert truth.expression("ACGT").shape == (1,)


def test_write_tsv_formats_and_round_trips(tmp_path):
    d = simulate(300, seed=8)
    for name in ("a.tsv", "a.tsv.gz"):
        path = tmp_path / name
        write_tsv(d, path, chunk=70)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            rows = [line.rstrip("\n").split("\t") for line in fh]
        assert [r[0] for r in rows] == d.sequences
        np.testing.assert_array_equal([float(r[1]) for r in rows], d.expression)
        for (_, text), v, cells in zip(rows, d.expression, d.n_cells):
            assert ("." not in text) == (v == int(v))
            if cells == 1:
                assert text.isdigit()


def test_cli_writes_data_truth_and_true_values(tmp_path, capsys):
    out = tmp_path / "sim.tsv.gz"
    true_out = tmp_path / "true.tsv"
    main(["--n", "250", "--seed", "2", "--out", str(out), "--true-out", str(true_out)])
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "n=250" in summary[0] and "singletons=" in summary[0]
    with gzip.open(out, "rt") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 250 and all(len(line.split("\t")) == 2 for line in lines)
    truth = GroundTruth.from_json(tmp_path / "sim.truth.json")
    seqs = [line.split("\t")[0] for line in lines]
    true_vals = [float(line.split("\t")[1]) for line in true_out.read_text().splitlines()]
    np.testing.assert_allclose(truth.expression(seqs), true_vals, rtol=0, atol=1e-12)
    explicit = tmp_path / "t.json"
    main(["--n", "20", "--out", str(tmp_path / "b.tsv"), "--truth", str(explicit)])
    assert GroundTruth.from_json(explicit) == truth


def test_cli_help_runs_as_module():
    res = subprocess.run([sys.executable, "-m", "data_prep.simulate", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--out" in res.stdout and "--true-out" in res.stdout

"""Variant pairs (drift families, SSWM trajectories) and saturation mutagenesis."""
import numpy as np
import pandas as pd
import pytest

from data_prep.layouts import get_layout
from seq2exp.analysis import variants
from seq2exp.analysis.evaluation import predict_sequences
from seq2exp.engine.registry import get_model_spec
from tests.analysis import drift_family, random_seqs, write_synthetic_gpra


def test_families_and_parent_reconstruction_on_synthetic_families():
    rng = np.random.default_rng(0)
    parents = random_seqs(rng, 40)
    seqs, truth = [], []
    for i, parent in enumerate(parents):
        seqs += drift_family(rng, parent)
        truth += [i] * 3
    order = rng.permutation(len(seqs))
    seqs = [seqs[i] for i in order]
    truth = np.array(truth)[order]
    labels = variants.families(seqs, max_distance=6)
    # same partition as the truth (labels may be renumbered)
    assert len(set(zip(labels.tolist(), truth.tolist()))) == 40 == len(set(labels.tolist()))
    codes = variants.codes_of(seqs)
    for fam in range(3):
        idx = np.flatnonzero(labels == fam)
        parent, status = variants.reconstruct_parent(codes[idx])
        assert status == "ok"
        assert "".join("ACGT"[c] for c in parent) == parents[truth[idx[0]]]


def test_parent_reconstruction_refuses_to_guess():
    rng = np.random.default_rng(1)
    parent = random_seqs(rng, 1)[0]
    # the 1- and 2-substitution variants share a mutation: two parents fit
    one = parent[:30] + ("A" if parent[30] != "A" else "C") + parent[31:]
    two = one[:50] + ("G" if one[50] != "G" else "T") + one[51:]
    three = parent[:60] + ("G" if parent[60] != "G" else "T") + parent[61:70] + (
        "G" if parent[70] != "G" else "T") + parent[71:80] + ("G" if parent[80] != "G" else "T") + parent[81:]
    _, status = variants.reconstruct_parent(variants.codes_of([one, two, three]))
    assert status == "ambiguous"
    assert variants.reconstruct_parent(variants.codes_of([one]))[1] == "singleton"


def test_drift_pairs_on_synthetic_files(tmp_path):
    truth = write_synthetic_gpra(tmp_path, n_families=20)
    delta = pd.read_csv(tmp_path / "Drift_delta_complex.csv", index_col=0)
    expr = pd.read_csv(tmp_path / "Drift_complex.csv", index_col=0)
    pairs, notes = variants.drift_pairs(delta, expr)
    assert notes["families"] == 20 and notes["file_delta_is"] == "parent - variant"
    assert (pairs["status"] == "ok").all()
    assert pairs["parent"].tolist() == truth["parents"] and pairs["n_subs"].tolist() == truth["n_subs"]
    np.testing.assert_allclose(pairs["measured_delta"], truth["delta"], atol=1e-9)
    # a file storing variant - parent is recognised from the data, not assumed
    flipped = delta.copy()
    flipped[["Measured Expression", "Predicted Expression"]] *= -1
    p2, n2 = variants.drift_pairs(flipped, expr)
    assert n2["file_delta_is"] == "variant - parent"
    np.testing.assert_allclose(p2["measured_delta"], truth["delta"], atol=1e-9)


def test_drift_files_hold_families_with_one_parent_each(shared_data):
    """The finding the drift analysis rests on (see seq2exp.analysis.variants): 999 families, measured + delta
    constant per family, parents rebuilt at distance exactly 1/2/3 for 875 families."""
    g = shared_data / "gpra"
    expr = pd.read_csv(g / "Drift_complex.csv", index_col=0)
    delta = pd.read_csv(g / "Drift_delta_complex.csv", index_col=0)
    pairs, notes = variants.drift_pairs(delta, expr)
    assert notes["families"] == 999
    assert notes["within_family_sd_expr_plus_delta"] < 1e-9 < 1.0 < notes["within_family_sd_expr_minus_delta"]
    ok = pairs[pairs["status"] == "ok"]
    assert ok["n_subs"].value_counts().to_dict() == {1: 875, 2: 875, 3: 875}
    assert notes["variants_by_status"] == {"ok": 2625, "ambiguous": 358}
    # the transformer's deltas on the resolved pairs keep their published overall accuracy
    r = np.corrcoef(ok["measured_delta"], ok["other_delta"])[0, 1]
    assert 0.86 < r < 0.90


def test_sswm_trajectories_are_recovered_by_value(shared_data):
    g = shared_data / "gpra"
    sswm = pd.read_csv(g / "SSWM_complex.csv", index_col=0)
    delta = pd.read_csv(g / "SSWM_delta_complex.csv", index_col=0)
    starts = np.flatnonzero((delta["Measured Expression"] == 0) & (delta["Predicted Expression"] == 0))
    head = delta.iloc[:starts[25]]  # the first 25 trajectories keep the test fast
    pairs, counts = variants.sswm_pairs(sswm, head)
    assert counts["trajectories"] == 25 and counts["resolved"] + counts["no_steps"] == 25
    by_seq = dict(zip(sswm["sequence"], sswm["Measured Expression"]))
    np.testing.assert_allclose([by_seq[v] - by_seq[p] for v, p in zip(pairs["variant"], pairs["parent"])],
                               pairs["measured_delta"], atol=1e-6)
    first = pairs[pairs["step"] == 1]
    assert (first["n_subs"] == 1).mean() > 0.9  # one SSWM step = one substitution


def test_sswm_pairs_on_a_shuffled_synthetic_table():
    rng = np.random.default_rng(3)
    # simple explicit trajectories: each step changes one new position
    rows, deltas = [], []
    for _ in range(6):
        start = random_seqs(rng, 1)[0]
        m0, p0 = rng.uniform(3, 10), rng.uniform(3, 10)
        rows.append((start, m0, p0))
        deltas.append((0.0, 0.0))
        seq = start
        for pos in rng.choice(np.arange(20, 90), 4, replace=False):
            seq = seq[:pos] + ("A" if seq[pos] != "A" else "C") + seq[pos + 1:]
            dm, dp = rng.normal(0, 2), rng.normal(0, 2)
            rows.append((seq, m0 + dm, p0 + dp))
            deltas.append((dm, dp))
    table = pd.DataFrame(rows, columns=["sequence", "Measured Expression", "Predicted Expression"])
    table = table.sort_values("sequence").reset_index(drop=True)
    delta = pd.DataFrame(deltas, columns=["Measured Expression", "Predicted Expression"])
    pairs, counts = variants.sswm_pairs(table, delta)
    assert counts["resolved"] == 6 and len(pairs) == 24
    assert pairs.groupby("trajectory")["n_subs"].apply(list).tolist() == [[1, 2, 3, 4]] * 6


@pytest.fixture(scope="module")
def tiny_crmnet():
    spec = get_model_spec("crmnet")
    return spec.build(spec.presets["tiny"]()), spec


def test_ism_matches_brute_force(tiny_crmnet):
    model, spec = tiny_crmnet
    seq = random_seqs(np.random.default_rng(5), 1)[0]
    table, ref = variants.saturation_mutagenesis(model, spec, seq, start=17, end=30, batch_size=16)
    assert len(table) == 13 * 3
    assert ref == pytest.approx(float(predict_sequences(model, spec, [seq])[0]), abs=1e-6)
    # brute force: every mutant written out by hand, laid out one by one, through the compiled predictor
    layout = get_layout(spec.layout)
    mutants, expected_rows = [], []
    for pos in range(17, 30):
        for base in "ACGT":
            if base != seq[pos]:
                mutants.append(layout.apply_one(seq[:pos] + base + seq[pos + 1:]))
                expected_rows.append((pos, seq[pos], base))
    brute = np.ravel(model.predict_on_batch(np.stack(mutants)))
    assert list(table[["position", "ref", "alt"]].itertuples(index=False, name=None)) == expected_rows
    np.testing.assert_allclose(table["prediction"], brute, atol=1e-5)
    np.testing.assert_allclose(table["effect"], brute - ref, atol=1e-5)
    mat = variants.ism_matrix(table)
    assert mat.shape == (13, 4) and (mat.to_numpy() != 0).sum() == 39
    with pytest.raises(ValueError, match="outside"):
        variants.saturation_mutagenesis(model, spec, seq, start=100, end=200)


def test_ism_sees_only_what_the_layout_keeps():
    """LegNet drops the 5' adapter (replaced by plasmid), so mutating it changes nothing."""
    import keras

    keras.utils.set_random_seed(0)
    spec = get_model_spec("legnet")
    model = spec.build(spec.presets["tiny"]())
    seq = random_seqs(np.random.default_rng(6), 1)[0]
    table, ref = variants.saturation_mutagenesis(model, spec, seq, start=12, end=20)
    inside = table["position"] < 17
    assert (table.loc[inside, "effect"] == 0).all()
    assert (table.loc[~inside, "effect"] != 0).any()
    mutants = [seq[:r.position] + r.alt + seq[r.position + 1:] for r in table.itertuples()]
    np.testing.assert_allclose(table["effect"], predict_sequences(model, spec, mutants) - ref, atol=1e-5)

"""Input x gradient saliency, motif matching and motif-vs-background summaries."""
import keras
import numpy as np
import pytest

from data_prep.layouts import get_layout
from seq2exp.analysis import interpret
from seq2exp.analysis.evaluation import predict_sequences
from seq2exp.engine.registry import ModelSpec, get_model_spec
from seq2exp.layers import OneHotIndex
from tests.analysis import random_seqs

MOTIF = "TTACCCGG"


def planted_motif_model(seq_len=112):
    """Output = max over positions of an exact MOTIF detector (relu(matches - (w - 1))), plus a small
    dense read-out of every base so the background has non-zero gradients too."""
    codes = keras.Input((seq_len,), dtype="uint8", name="seq")
    x = OneHotIndex(order="ACGT", name="one_hot")(codes)
    conv = keras.layers.Conv1D(1, len(MOTIF), activation="relu", name="detector")
    hit = keras.layers.GlobalMaxPooling1D()(conv(x))
    dense = keras.layers.Dense(1, name="background")
    out = keras.layers.Add(name="expression")([hit, dense(keras.layers.Flatten()(x))])
    model = keras.Model(codes, out)
    kernel = np.zeros((len(MOTIF), 4, 1), np.float32)
    kernel[np.arange(len(MOTIF)), ["ACGT".index(b) for b in MOTIF], 0] = 1.0
    conv.set_weights([kernel, np.array([-(len(MOTIF) - 1)], np.float32)])
    w = np.random.default_rng(0).normal(0, 0.01, (seq_len * 4, 1)).astype(np.float32)
    dense.set_weights([w, np.zeros(1, np.float32)])
    return model


def test_saliency_of_a_planted_motif_detector_peaks_on_the_motif():
    rng = np.random.default_rng(1)
    seqs, where = [], []
    for s in random_seqs(rng, 12):
        pos = int(rng.integers(17, 97 - len(MOTIF)))
        seqs.append(s[:pos] + MOTIF + s[pos + len(MOTIF):])
        where.append(pos)
    spec = ModelSpec(name="planted", layout="crmnet", build=lambda c: None, default_config=dict)
    model = planted_motif_model()
    sal = interpret.input_x_gradient(model, spec, seqs, batch_size=5)
    np.testing.assert_allclose(sal.predictions, predict_sequences(model, spec, seqs), atol=1e-5)
    for s, pos in zip(sal.score, where):
        assert pos <= int(np.nanargmax(s)) < pos + len(MOTIF)
        assert np.nanmin(s[pos:pos + len(MOTIF)]) > 10 * np.nanmax(np.abs(np.delete(s, range(pos, pos + 8))))
    table = interpret.motif_saliency(sal, [interpret.consensus_motif(MOTIF, "Reb1"),
                                           interpret.consensus_motif("GCGATCGC", "absent")])
    reb1 = table.set_index("motif").loc["Reb1"]
    assert reb1["sequences_with_match"] == 12 and reb1["positions"] >= 12 * len(MOTIF)
    assert reb1["ratio_abs"] > 10 and reb1["sequences_motif_higher"] == 1.0
    assert reb1["p_wilcoxon_per_sequence"] == pytest.approx(2 / 2 ** 12)  # exact: all 12 sequences agree
    assert reb1["mean_motif"] > 0.5 > abs(reb1["mean_background"])


def test_motif_statistics_count_sequences_not_positions():
    """One sequence with a strong motif signal and 19 with none: positions are not independent draws, so the
    evidence is one sequence's worth, not a p-value from hundreds of positions."""
    rng = np.random.default_rng(3)
    seqs = [s[:40] + MOTIF + s[48:] for s in random_seqs(rng, 20)]
    score = rng.normal(0, 1, (20, len(seqs[0])))
    score[0, 40:48] += 50.0
    sal = interpret.Saliency(seqs=seqs, contrib=None, score=score, predictions=np.zeros(20))
    row = interpret.motif_saliency(sal, [interpret.consensus_motif(MOTIF, "m")]).iloc[0]
    assert row["sequences_with_match"] == 20 and row["ratio_abs"] > 1.5
    assert row["p_wilcoxon_per_sequence"] > 0.05


@pytest.mark.parametrize("name", ["crmnet", "legnet"])
def test_adapters_reproduce_spec_predict(name):
    """Saliency differentiates the same function spec.predict computes (LegNet: both strands)."""
    spec = get_model_spec(name)
    model = spec.build(spec.presets["tiny"]())
    seqs = random_seqs(np.random.default_rng(2), 6)
    sal = interpret.input_x_gradient(model, spec, seqs, batch_size=4)
    np.testing.assert_allclose(sal.predictions, predict_sequences(model, spec, seqs), rtol=1e-5, atol=1e-6)
    for seq, c, s in zip(seqs, sal.contrib, sal.score):
        assert np.isnan(s[:17]).all() and np.isnan(s[-13:]).all()  # constant adapters masked
        assert np.isfinite(s[17:97]).all() and np.abs(s[17:97]).sum() > 0
        # only the base present carries a contribution
        present = np.array(["ACGT".index(b) for b in seq])
        other = np.ones_like(c, dtype=bool)
        other[np.arange(len(seq)), present] = False
        assert (c[other] == 0).all()
        np.testing.assert_allclose(c[17:97].sum(1), s[17:97], rtol=1e-5, atol=1e-9)


def test_raw_positions_follow_the_layouts():
    seq = random_seqs(np.random.default_rng(3), 1)[0]
    for name in ("crmnet", "legnet"):
        layout = get_layout(name)
        laid = layout.apply_one(seq)
        raw = interpret.raw_positions(layout, len(seq))
        shown = raw >= 0
        assert (laid[shown] == np.array(["ACGT".index(seq[i]) for i in raw[shown]])).all()
    assert interpret.raw_positions("legnet", 110)[-1] == 109 and interpret.raw_positions("legnet", 110)[57] == 17
    assert (interpret.raw_positions("crmnet", 110)[110:] == -1).all()


def test_motif_matching_consensus_pwm_and_files(tmp_path):
    seq = "AAAATTACCCGGAAAA" + "CCGGGTAA" + "AAAA"
    m = interpret.consensus_motif("TTACCCGG")
    mask = interpret.motif_mask(seq, m)
    assert mask[4:12].all() and mask[16:24].all() and mask.sum() == 16  # both strands
    assert interpret.motif_mask(seq, m, both_strands=False).sum() == 8
    assert interpret.motif_mask("ATATAAAAG", interpret.consensus_motif("TATAWAWR")).sum() == 8
    jaspar = tmp_path / "reb1.jaspar"
    jaspar.write_text(">MA0363 REB1\nA [0 0 9 0 0 0 0 0]\nC [0 0 0 9 9 9 0 0]\nG [0 0 0 0 0 0 9 9]\n"
                      "T [9 9 0 0 0 0 0 0]\n")
    rows = tmp_path / "two.txt"
    rows.write_text(">tata\n0 0 0 1\n1 0 0 0\n0 0 0 1\n1 0 0 0\n>bad\n1 2 3\n")
    (pwm,) = interpret.read_pwm(str(jaspar))
    assert pwm.name == "MA0363" and pwm.matrix.shape == (8, 4)
    assert (interpret.motif_mask(seq, pwm) == mask).all()
    with pytest.raises(ValueError, match="not a w x 4 matrix"):
        interpret.read_pwm(str(rows))
    parsed = interpret.parse_motifs([str(jaspar), "Rap1=ACACCCATACAT", "tataa"])
    assert [p.name for p in parsed] == ["MA0363", "Rap1", "TATAA"]
    with pytest.raises(ValueError, match="IUPAC"):
        interpret.consensus_motif("TTXA")

"""The report folder end to end through `python -m crmnet.evaluate` / `legnet_tf.evaluate`, and DREAM scoring."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from seq2exp.analysis import report
from seq2exp.cli.commands import evaluate_main
from seq2exp.engine.registry import get_model_spec
from tests.analysis import write_synthetic_gpra

PNG = b"\x89PNG\r\n\x1a\n"


def _saved_model(tmp_path, name):
    import keras

    keras.utils.set_random_seed(0)
    spec = get_model_spec(name)
    model = spec.build(spec.presets["tiny"]())
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


def _check_figures(out, names):
    for name in names:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000, name
        assert b"<svg" in svg.read_bytes()[:1000] and svg.stat().st_size > 5000, name


def test_crmnet_report_folder(tmp_path, capsys):
    truth = write_synthetic_gpra(tmp_path)
    out = tmp_path / "report"
    files = [str(tmp_path / f) for f in ("Native_complex.csv", "Drift_delta_complex.csv")]
    seq = truth["native"][0]
    assert evaluate_main([str(_saved_model(tmp_path, "crmnet")), *files, "--report", str(out), "--bootstrap", "200",
                          "--ism", seq, "--saliency", "--saliency-n", "20", "--motif", "Reb1=TTACCCGG", "ACGT",
                          "--metrics-json", str(tmp_path / "m.json")], model="crmnet") == 0
    printed = capsys.readouterr().out
    assert "Native_complex" in printed and "report written" in printed

    rep = json.loads((out / "metrics.json").read_text())
    native = rep["subsets"]["Native_complex"]
    assert native["n"] == 120 and set(native) >= {"model", "other", "comparison", "figures"}
    for m in ("pearson", "spearman", "r2", "mse", "mae"):
        e = native["model"][m]
        assert e["lo"] <= e["value"] <= e["hi"]
    t = pd.read_csv(tmp_path / "Native_complex.csv")
    assert native["other"]["pearson"]["value"] == pytest.approx(np.corrcoef(t.iloc[:, 2], t.iloc[:, 3])[0, 1])
    drift = rep["variants"]["Drift_delta_complex"]
    assert drift["kind"] == "drift" and set(drift["groups"]) == {"1", "2", "3", "all"}
    assert drift["groups"]["all"]["n"] == 90 and drift["notes"]["file_delta_is"] == "parent - variant"
    pairs = pd.read_csv(out / "variants" / "Drift_delta_complex_pairs.tsv", sep="\t")
    np.testing.assert_allclose(pairs["measured_delta"], truth["delta"], atol=1e-6)
    assert pairs["parent"].tolist() == truth["parents"]

    comp = pd.read_csv(out / "comparison.csv")
    assert set(comp["subset"]) == {"Native_complex", "Drift_delta_complex"}
    assert comp["p_bootstrap"].between(0, 1).all() and comp["williams_p"].between(0, 1).all()
    # Hittner's z is undefined (nan) only where its variance estimate is not positive, far from H0
    assert comp["hittner_p"].dropna().between(0, 1).all() and comp["hittner_p"].notna().any()
    long = pd.read_csv(out / "metrics.csv")
    assert {"section", "subset", "group", "predictor", "metric", "value", "ci_lo", "ci_hi", "n"} <= set(long.columns)
    ism = pd.read_csv(out / "ism" / "ism_1.tsv", sep="\t")
    assert len(ism) == 3 * len(seq)
    motifs = pd.read_csv(out / "saliency" / "motifs.tsv", sep="\t")
    assert motifs["motif"].tolist() == ["Reb1", "ACGT"]
    assert json.loads((tmp_path / "m.json").read_text())["Native_complex"]["n"] == 120

    _check_figures(out, ["hexbin_Native_complex", "deltas_Drift_delta_complex", "pearson_by_subset", "ism_1",
                         "logo_1", "motif_saliency"])
    summary = (out / "summary.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", summary)
    assert len(links) >= 6 and all((out / link).exists() for link in links)
    assert "Hittner" in summary and "Drift_delta_complex" in summary


def test_legnet_report_uses_its_own_prediction(tmp_path):
    """Any registered model: LegNet's report predictions are its spec.predict (both strands)."""
    write_synthetic_gpra(tmp_path, n_native=40, n_families=6)
    out = tmp_path / "report"
    assert evaluate_main([str(_saved_model(tmp_path, "legnet")), str(tmp_path / "Native_complex.csv"),
                          str(tmp_path / "Drift_delta_complex.csv"), "--report", str(out), "--bootstrap", "50",
                          "--compare-col", "none"], model="legnet") == 0
    rep = json.loads((out / "metrics.json").read_text())
    assert "other" not in rep["subsets"]["Native_complex"] and rep["subsets"]["Native_complex"]["n"] == 40
    preds = pd.read_csv(out / "predictions" / "Native_complex.tsv", sep="\t")
    spec = get_model_spec("legnet")
    import keras

    from seq2exp.analysis.evaluation import encode_sequences

    model = keras.saving.load_model(tmp_path / "legnet.keras")
    codes, _ = encode_sequences(preds["sequence"][:4], "legnet")
    expected = keras.ops.convert_to_numpy(spec.predict(model, {"seq": codes}, spec.inputs))
    np.testing.assert_allclose(preds["predicted"][:4], expected, rtol=1e-5)
    assert not (out / "comparison.csv").read_text().strip() or pd.read_csv(out / "comparison.csv").empty
    _check_figures(out, ["hexbin_Native_complex", "deltas_Drift_delta_complex"])


def test_dream_score_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.normal(8, 2, 60)
    pd.DataFrame({"measured": y, "prediction": y + rng.normal(0, 1, 60)}).to_csv(tmp_path / "p.tsv", sep="\t",
                                                                                index=False)
    (tmp_path / "s.json").write_text(json.dumps({"high": list(range(30)), "SNV": [[0, 1], [2, 3], [4, 5], [6, 7]]}))
    assert report.main(["dream", str(tmp_path / "p.tsv"), "--subsets", str(tmp_path / "s.json"),
                        "--score-json", str(tmp_path / "d.json")]) == 0
    res = json.loads((tmp_path / "d.json").read_text())
    assert set(res["subsets"]) == {"all", "high", "SNV"} and not res["complete"]
    assert "Pearson score" in capsys.readouterr().out

"""End to end through the command lines: raw files in, run folder, evaluate and predict out."""
import json

import numpy as np

from data_prep.simulate import simulate, write_tsv
from seq2exp.cli.commands import evaluate_main, predict_main, train_main


def test_train_evaluate_predict_from_raw_files(tmp_path, capsys):
    write_tsv(simulate(900, seed=1), tmp_path / "train.tsv")
    test = simulate(200, seed=2)
    write_tsv(test, tmp_path / "test.tsv")
    run = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data: [{tmp_path / 'train.tsv'}]\ntest: [{tmp_path / 'test.tsv'}]\npreset: tiny\n"
                   "epochs: 2\nbatch_size: 32\nstrategy: default\n")
    assert train_main(["--config", str(cfg), "--run-dir", str(run), "--seed", "3"], model="crmnet") == 0
    out = capsys.readouterr().out
    assert "test.crmnet" in out and "ridge" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["test.crmnet"]["model"]["n"] == 200
    assert "seed: 3" in (run / "config.yaml").read_text()  # the effective config is saved with the run
    for name in ("model.keras", "history.csv"):
        assert (run / name).exists(), name
    # raw files are built into the run, each under its name and a key of its content (issue 17)
    built = {p.name.split("-")[0]: p for p in (run / "data").glob("*.crmnet")}
    assert set(built) == {"train", "test"} and (built["train"] / "manifest.json").exists()

    assert evaluate_main([str(run), str(built["test"]), "--out", str(tmp_path / "m.json")],
                         model="crmnet") == 0
    ev = json.loads((tmp_path / "m.json").read_text())["test.crmnet"]
    assert abs(ev["pearson"] - metrics["test"]["test.crmnet"]["model"]["pearson"]) < 1e-4

    fa = tmp_path / "x.fa"
    fa.write_text(f">a\n{test.sequences[0]}\n>b\nNNNN\n>c\nAC-GT\n")
    assert predict_main([str(run), str(fa), "--out", str(tmp_path / "p.tsv")], model="crmnet") == 0
    rows = [r.split("\t") for r in (tmp_path / "p.tsv").read_text().splitlines()]
    assert rows[0] == ["file", "line", "id", "prediction", "note"]
    assert [r[2] for r in rows[1:]] == ["a", "b", "AC-GT"]
    assert np.isfinite(float(rows[1][3])) and rows[3][3] == "" and "invalid_character" in rows[3][4]


def test_pretrain_on_two_media_then_finetune_in_one_command(tmp_path, capsys):
    for name, seed in (("ypd", 11), ("sd", 12), ("target", 13)):
        write_tsv(simulate(400, seed=seed), tmp_path / f"{name}.tsv")
    run = tmp_path / "run"
    args = ["--pretrain-data", f"{tmp_path / 'ypd.tsv'},{tmp_path / 'sd.tsv'}", "--pretrain-epochs", "1",
            "--data", str(tmp_path / "target.tsv"), "--preset", "tiny", "--epochs", "1", "--batch-size", "32",
            "--run-dir", str(run), "--strategy", "default"]
    assert train_main(args, model="crmnet") == 0
    pre = json.loads((run / "pretrain" / "metrics.json").read_text())
    fine = json.loads((run / "finetune" / "metrics.json").read_text())
    assert pre["val"]["n"] > 0 and fine["val"]["n"] > 0
    # both media were used and each was validated on its own held-out fold
    assert {p.name.split("-")[0] for p in (run / "data").iterdir()} >= {"ypd", "sd", "target"}
    assert "fine-tuning all weights from" in capsys.readouterr().out

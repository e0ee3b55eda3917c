"""End to end through the command lines: raw files in, run folder, evaluate and predict out."""
import json
import os

import numpy as np
import pytest

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
    built = _built(run)  # raw files are built into the run under their name and a key of their content (issue 17)
    assert set(built) == {"train", "test"} and (built["train"] / "manifest.json").exists()

    assert evaluate_main([str(run), str(built["test"]), "--metrics-json", str(tmp_path / "m.json")],
                         model="crmnet") == 0
    ev = json.loads((tmp_path / "m.json").read_text())["test.crmnet"]
    assert abs(ev["pearson"] - metrics["test"]["test.crmnet"]["model"]["pearson"]) < 1e-4

    fa = tmp_path / "x.fa"
    fa.write_text(f">a\n{test.sequences[0]}\n>b\nNNNN\n>c\nAC-GT\n")
    assert predict_main([str(run), str(fa), "--predictions", str(tmp_path / "p.tsv")], model="crmnet") == 0
    rows = [r.split("\t") for r in (tmp_path / "p.tsv").read_text().splitlines()]
    assert rows[0] == ["file", "line", "id", "prediction", "note"]
    assert [r[2] for r in rows[1:]] == ["a", "b", "c"]  # an invalid record keeps its header name (issue 23)
    assert np.isfinite(float(rows[1][3])) and rows[3][3] == "" and "invalid_character" in rows[3][4]


def _built(run) -> dict:
    """name -> the dataset folder a raw file NAME.tsv was built into (RUN/data/NAME-CONTENTKEY.crmnet)."""
    return {p.name.rsplit("-", 1)[0]: p for p in (run / "data").glob("*-*.crmnet")}


PRETRAIN_SIZES = {"ypd": 300, "sd": 1500}  # unequal on purpose: even sampling (1/2) != proportional (1/6)
EVEN_TOLERANCE = 0.12  # |share of ypd - 1/2|; ~200 independent draws of a 8-record block: sd 0.035 (3.4 sd)


def _spy_training_batches(monkeypatch):
    """Record the sequences of every training batch the reader yields, keyed by the media it mixes."""
    import tensorflow as tf

    from data_prep import dataset

    real, seen = dataset.make_dataset, {}

    def spying(manifests, split, *args, training=True, **kwargs):
        ds = real(manifests, split, *args, training=training, **kwargs)
        if not training:
            return ds
        key = tuple(sorted(os.path.basename(m.folder).rsplit("-", 1)[0] + ".crmnet" for m in manifests))
        store = seen.setdefault(key, [])

        def record(seq):
            store.append(seq.numpy().copy())
            return np.int32(0)

        def tap(batch):
            done = tf.py_function(record, [batch["seq"]], tf.int32)
            with tf.control_dependencies([done]):
                return {k: tf.identity(v) for k, v in batch.items()}

        return ds.map(tap)

    monkeypatch.setattr(dataset, "make_dataset", spying)
    return seen


def _spy_first_training_weights(monkeypatch):
    """The model weights of each stage when its training input is first requested (after any init_from)."""
    from seq2exp.engine.trainer import Trainer

    real_fit, starts = Trainer.fit, {}

    def fit(self, train_fn, *args, **kwargs):
        def first_call_snapshot(ctx, seed):
            starts.setdefault(self.run_dir, [w.copy() for w in self.model.get_weights()])
            return train_fn(ctx, seed)

        return real_fit(self, first_call_snapshot, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit)
    return starts


def test_pretrain_on_two_media_then_finetune_in_one_command(tmp_path, monkeypatch):
    """Pre-training samples the two media evenly (not by size); fine-tuning starts from the pre-trained
    weights (not a fresh init) and then trains on the target data only."""
    import keras

    from data_prep.manifest import load_manifest
    from seq2exp.engine.data import read_arrays

    for name, seed in (("ypd", 11), ("sd", 12), ("target", 13)):
        write_tsv(simulate(PRETRAIN_SIZES.get(name, 400), seed=seed), tmp_path / f"{name}.tsv")
    seen = _spy_training_batches(monkeypatch)
    starts = _spy_first_training_weights(monkeypatch)
    run = tmp_path / "run"
    args = ["--pretrain-data", f"{tmp_path / 'ypd.tsv'},{tmp_path / 'sd.tsv'}", "--pretrain-epochs", "1",
            "--data", str(tmp_path / "target.tsv"), "--preset", "tiny", "--epochs", "1", "--batch-size", "8",
            "--run-dir", str(run), "--strategy", "default", "--seed", "5"]
    assert train_main(args, model="crmnet") == 0
    pre = json.loads((run / "pretrain" / "metrics.json").read_text())
    fine = json.loads((run / "finetune" / "metrics.json").read_text())
    assert pre["val"]["n"] > 0 and fine["val"]["n"] > 0

    # which medium each record came from: its sequence (the simulated sets share none)
    medium = {}
    for name in ("ypd", "sd", "target"):
        for row in read_arrays(load_manifest(_built(run)[name]), "train")["seq"]:
            medium[row.tobytes()] = name
    counts = {}
    for key, batches in seen.items():
        rows = np.concatenate(batches)
        counts[key] = {name: sum(medium.get(r.tobytes()) == name for r in rows) for name in ("ypd", "sd", "target")}
        assert sum(counts[key].values()) == len(rows), f"records from no known training set: {key}"
    pre_counts, fine_counts = counts[("sd.crmnet", "ypd.crmnet")], counts[("target.crmnet",)]
    share = pre_counts["ypd"] / (pre_counts["ypd"] + pre_counts["sd"])
    assert abs(share - 0.5) < EVEN_TOLERANCE, f"pre-training drew {pre_counts}: not both media evenly"
    assert pre_counts["target"] == 0 and fine_counts["ypd"] == fine_counts["sd"] == 0 and fine_counts["target"] > 0

    # fine-tuning's first step sees exactly the pre-trained weights ...
    pretrained = keras.saving.load_model(run / "pretrain" / "model.keras", safe_mode=True).get_weights()
    fine_start = starts[str(run / "finetune")]
    assert len(fine_start) == len(pretrained)
    for got, want in zip(fine_start, pretrained):
        np.testing.assert_array_equal(got, want)
    # ... which pre-training moved away from its own start, and fine-tuning moves on from
    moved = [not np.array_equal(a, b) for a, b in zip(starts[str(run / "pretrain")], pretrained)]
    assert sum(moved) > len(pretrained) // 2
    finetuned = keras.saving.load_model(run / "finetune" / "model.keras", safe_mode=True).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(finetuned, pretrained))


def _run(*args, **kw):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def test_help_lists_every_closed_set_and_names_the_command():
    for module in ("seq2exp.train", "legnet_tf.train", "crmnet.evaluate", "seq2exp.predict"):
        prog = f"python -m {module}"
        res = _run("-m", module, "--help")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"usage: {prog} "), res.stdout[:200]
        assert "I0000" not in res.stderr and "absl::InitializeLog" not in res.stderr  # TF's C++ start-up lines
    text = " ".join(_run("-m", "seq2exp.train", "--help").stdout.split())
    for choices in ("float32, mixed_float16, mixed_bfloat16", "auto, default, mirrored, multiworker, tpu",
                    "one of cnn_bilstm, crmnet, legnet, macaron", "one of small, tiny", "one of stop, skip",
                    "one of sha256, size"):
        assert choices in text, choices
    from seq2exp.cli import config as run_config
    from seq2exp.cli.parsing import CommandParser

    parser = CommandParser(prog="x")
    run_config.add_arguments(parser, None)
    actions = [a for a in parser._actions if a.option_strings]
    assert len(actions) > 30
    assert not [a.option_strings for a in actions if not (a.help or "").strip()]  # every flag has help text


def test_wrong_value_fails_in_one_line_before_tensorflow_or_data(tmp_path):
    probe = ("import sys; from seq2exp.cli.commands import train_main; rc = train_main(sys.argv[1:]); "
             "print('tensorflow' in sys.modules); sys.exit(rc)")
    res = _run("-c", probe, "--precision", "fp16", "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "--precision: invalid choice: 'fp16'" in res.stderr and "mixed_bfloat16" in res.stderr
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("nan_policy: ignore\n")  # a wrong value in a config file: the same one-line error
    res = _run("-c", probe, "--config", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "nan_policy must be one of stop, skip; got 'ignore'" in res.stderr
    assert res.stdout.strip() == "False"  # decided before TensorFlow was imported
    res = _run("-m", "crmnet.train", "--preset", "huge", "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 2 and "preset must be one of small, tiny for model crmnet; got 'huge'" in res.stderr
    assert not (tmp_path / "run").exists()  # nothing built


def test_saved_config_is_complete_and_reproduces_the_run(tmp_path):
    import yaml

    from seq2exp.engine.optim import effective_optimizer, effective_schedule
    from seq2exp.engine.registry import get_model_spec

    write_tsv(simulate(600, seed=5), tmp_path / "train.tsv")
    first, second = tmp_path / "first", tmp_path / "second"
    assert train_main(["--data", str(tmp_path / "train.tsv"), "--preset", "tiny", "--epochs", "2", "--batch-size",
                       "32", "--strategy", "default", "--run-dir", str(first)], model="crmnet") == 0
    saved = yaml.safe_load((first / "config.yaml").read_text())
    spec = get_model_spec("crmnet")
    # the registry's values, with every default the run used written out (not {}, not {name: adam})
    assert saved["optimizer"] == effective_optimizer(spec.optimizer) and {"beta_1", "epsilon"} <= set(
        saved["optimizer"])
    assert saved["schedule"] == effective_schedule(spec.schedule) and spec.schedule.items() <= saved["schedule"].items()
    assert train_main(["--config", str(first / "config.yaml"), "--run-dir", str(second)]) == 0
    again = yaml.safe_load((second / "config.yaml").read_text())
    assert {**again, "run_dir": None} == {**saved, "run_dir": None}
    h1, h2 = (json.loads((d / "history.json").read_text()) for d in (first, second))
    for a, b in zip(h1, h2, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["val_r2"] == pytest.approx(b["val_r2"], rel=1e-4)

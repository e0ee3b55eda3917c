"""Issue 22 item 1, the training half of the Python API: `seq2exp.api.training.train` is the train command's own code
path (one tiny configuration trained both ways with one seed gives identical weights and the same config.yaml), a
DataFrame trains as the file it came from, refusals are one-line `Seq2ExpError`s that leave nothing behind, and the
data-aware initialisation runs for every fresh training, a hand-driven `Trainer` included."""
import dataclasses
import json
import pathlib

import numpy as np
import pytest
import yaml

from data_prep.errors import Seq2ExpError
from data_prep.simulate import simulate, write_tsv
from seq2exp.api.training import Run, train
from seq2exp.cli.commands import train_main

SETTINGS = {"preset": "tiny", "epochs": 2, "batch_size": 32, "strategy": "default", "seed": 3}
FLAGS = ["--preset", "tiny", "--epochs", "2", "--batch-size", "32", "--strategy", "default", "--seed", "3"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_data")
    write_tsv(simulate(300, seed=4), d / "train.tsv")
    return d / "train.tsv"


@pytest.fixture(scope="module")
def runs(table, tmp_path_factory):
    """The same training through the command and through seq2exp.train (a path, then a DataFrame)."""
    import pandas as pd

    d = tmp_path_factory.mktemp("api_runs")
    assert train_main(["--data", str(table), "--run-dir", str(d / "command"), *FLAGS], model="crmnet") == 0
    by_path = train(str(table), model="crmnet", run_dir=d / "api", **SETTINGS)
    frame = pd.read_csv(table, sep="\t", header=None, names=["oligo", "y"])
    by_frame = train(frame, model="crmnet", run_dir=d / "frame", seq_col="oligo", expr_col="y", **SETTINGS)
    return {"command": d / "command", "api": by_path, "frame": by_frame}


def _weights(path) -> list[np.ndarray]:
    import keras

    from seq2exp.engine.registry import load_all_models

    load_all_models()
    return keras.saving.load_model(str(path), safe_mode=True, compile=False).get_weights()


def test_train_is_the_command_s_code_path(runs):
    command, api = runs["command"], runs["api"]
    assert isinstance(api, Run) and api.run_dir == str(runs["command"].parent / "api")
    a, b = _weights(command / "model.keras"), _weights(f"{api.run_dir}/model.keras")
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))  # identical, not close
    saved = yaml.safe_load((command / "config.yaml").read_text())
    assert {**api.config, "run_dir": None} == {**saved, "run_dir": None}
    assert [r["loss"] for r in json.loads((command / "history.json").read_text())] == list(api.history["loss"])


def test_the_run_folder_says_what_made_it(runs):
    """config.yaml holds every optimizer and schedule value the run used; provenance.json the code, versions,
    command line and the hashes of the data it trained on."""
    from seq2exp import __version__
    from seq2exp.engine.provenance import file_sha256

    command = runs["command"]
    saved = yaml.safe_load((command / "config.yaml").read_text())
    assert saved["optimizer"] == {"name": "adam", "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
                                  "clipnorm": None, "clipvalue": None, "global_clipnorm": None}
    assert {"base_lr", "peak_lr", "final_lr", "warmup_epochs", "scale_with_replicas"} <= set(saved["schedule"])
    record = json.loads((command / "provenance.json").read_text())
    assert record["seq2exp"] == __version__ and record["keras_backend"] == "tensorflow" and record["tensorflow"]
    assert record["git"] is None or len(record["git"]["commit"]) == 40
    [dataset] = record["datasets"]
    assert dataset["manifest_sha256"] == file_sha256(str(pathlib.Path(dataset["path"]) / "manifest.json"))
    assert pathlib.Path(dataset["path"]).parent == command / "data"


def test_a_dataframe_trains_as_the_file_it_came_from(runs):
    frame = runs["frame"]
    assert frame.config["data"] == [f"{frame.run_dir}/inputs/train.tsv"]  # a file the run owns, named in config
    header = open(f"{frame.run_dir}/inputs/train.tsv").readline().split()
    assert header == ["sequence", "expression"]
    a, b = _weights(runs["command"] / "model.keras"), _weights(f"{frame.run_dir}/model.keras")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_run_fields(runs):
    import pandas as pd

    run = runs["api"]
    assert run.config["model"] == "crmnet" and run.config["preset"] == "tiny" and run.config["epochs"] == 2
    assert run.config["optimizer"] and run.config["schedule"]  # filled from the model's registry entry
    assert isinstance(run.history, pd.DataFrame) and list(run.history["epoch"]) == [1, 2]
    assert {"val_r2", "loss", "lr"} <= set(run.history.columns)
    assert run.metrics["model"] == "crmnet" and run.metrics["epochs_run"] == 2 and run.metrics["validation"] is True
    assert "Run(" in repr(run)


def test_run_predictor(runs, table):
    pytest.importorskip("seq2exp.api.predictor", reason="the predictor half of the API (another branch)")
    seqs = [line.split("\t")[0] for line in table.read_text().splitlines()[:3]]
    assert np.asarray(runs["api"].predictor.predict(seqs)).shape[0] == 3


@pytest.mark.parametrize("kwargs,needle", [
    ({"batchsize": 32}, "unknown setting 'batchsize' (did you mean 'batch_size'?)"),
    ({"batch_size": 0}, "seq2exp.train: batch_size 0: must be at least 1"),
    ({"precision": "fp16"}, "precision must be one of float32, mixed_float16, mixed_bfloat16; got 'fp16'"),
    ({"preset": "huge"}, "preset must be one of small, tiny for model crmnet; got 'huge'"),
    ({"model": "crmnt"}, "unknown model 'crmnt'"),
    ({"model_config": {"seq_lenn": 112}}, "unknown key 'seq_lenn' for crmnet (did you mean 'seq_len'?)"),
    ({"seq_col": "oligo"}, "name both seq_col= and expr_col="),
    ({"seq_col": "x", "expr_col": "y"}, "name DataFrame columns"),
])
def test_refusals_are_one_line_seq2exp_errors_before_anything_is_written(table, tmp_path, kwargs, needle):
    kwargs = {"model": "crmnet", "preset": "tiny", **kwargs}
    with pytest.raises(Seq2ExpError) as caught:
        train(str(table), run_dir=tmp_path / "run", **kwargs)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_dataframe_refusals(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"seq": ["ACGT" * 28] * 40, "y": np.arange(40.0)})
    with pytest.raises(Seq2ExpError, match=r"no column 'seqs' in the DataFrame \(did you mean 'seq'\?\); its columns"):
        train(frame, model="crmnet", run_dir=tmp_path / "run", seq_col="seqs", expr_col="y")
    numbers = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0)})  # no column holds DNA: the build refuses
    with pytest.raises(Seq2ExpError) as caught:
        train(numbers, model="crmnet", run_dir=tmp_path / "run", preset="tiny", strategy="default")
    assert "\n" not in str(caught.value) and "inputs/train.tsv" in str(caught.value)
    assert not (tmp_path / "run").exists()  # the table written for the build went with the refused run folder


def test_a_hand_driven_trainer_gets_the_data_aware_init(table, tmp_path):
    """Trainer.fit runs the model's init on a fresh start (labels estimated from the batches when not given),
    never on a resume or over --init-from weights."""
    from seq2exp.engine.data import input_batches, prepare
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.settings import TrainSettings
    from seq2exp.engine.trainer import Trainer

    crmnet = get_model_spec("crmnet")
    seen = []
    spec = dataclasses.replace(crmnet, initialize=lambda model, stats: (seen.append(stats),
                                                                         crmnet.initialize(model, stats)))
    (ds,) = prepare([str(table)], "crmnet", str(tmp_path / "data"))
    settings = TrainSettings(epochs=1, batch_size=32, steps_per_execution=4)

    def train_fn(ctx, seed):
        return input_batches(ds, "train", 32, ctx, training=True, seed=seed, drop_remainder=True)

    trainer = Trainer(spec, "tiny", str(tmp_path / "run"), None, settings, train_examples=ds.records("train"))
    trainer.fit(train_fn)
    assert len(seen) == 1
    truth = ds.label_stats("train")
    assert seen[0]["mean"] == pytest.approx(truth["mean"], abs=0.05 * truth["std"])
    assert seen[0]["count"] == trainer.steps_per_epoch * 32
    resumed = Trainer(spec, "tiny", str(tmp_path / "run"), None, TrainSettings(epochs=2, batch_size=32),
                      train_examples=ds.records("train"))
    resumed.fit(train_fn, resume=True)
    assert len(seen) == 1  # a resumed run keeps its trained weights


def test_sequences_shorter_than_the_training_data_are_reported(runs, table, tmp_path, capsys):
    """A 40 nt sequence is padded to the layout and predicted, but never silently: the list API refuses it, a
    frame or file row says so in its note, and the predict command counts it."""
    import pandas as pd

    from seq2exp.cli.commands import predict_main

    trained = pathlib.Path(table).read_text().splitlines()[0].split("\t")[0]
    predictor = runs["api"].predictor
    assert predictor.shortest == len(trained)
    short = trained[:40]
    with pytest.raises(Seq2ExpError, match=r"sequence 1 .*short: 40 nt, shorter than the shortest training sequence"):
        predictor.predict([trained, short])
    frame = predictor.predict(pd.DataFrame({"seq": [trained, short]}))
    assert frame["note"].tolist()[0] == "" and frame["note"].tolist()[1].startswith("short: 40 nt")
    assert np.isfinite(frame["prediction"]).all()
    tsv = tmp_path / "in.tsv"
    tsv.write_text(f"{trained}\n{short}\n")
    out = tmp_path / "out.tsv"
    assert predict_main([str(runs["command"]), str(tsv), "--predictions", str(out)]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert rows[0][4] == "" and rows[1][4].startswith("short: 40 nt") and rows[1][3] != ""
    assert "1 shorter than the shortest training sequence (110 nt)" in capsys.readouterr().err

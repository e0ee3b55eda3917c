"""The training loop under KERAS_BACKEND=jax end to end: the same run folder, metrics, early stopping, NaN policy
and TensorBoard as under TensorFlow, every registry model, and not one TensorFlow import.

Every job blocks `import tensorflow` (an ImportError), so the engine, the reader and Keras' own optional
TensorFlow probes all run without it. The run folders are then checked from this (TensorFlow) process:
a JAX run's model.keras loads and predicts here.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.engine.jax_jobs import SMALL, build_dataset, job, max_diff, result, run_jobs, weights
from tests.helpers import assert_jobs_ok as ok
from tests.helpers import assert_run_folder, tensorboard_scalars

DROPOUT = {**SMALL, "dense_dropouts": [0.2]}  # seed states must be carried from step to step
WARMUP_COSINE = {"name": "warmup_cosine", "warmup_epochs": 1}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_runs")
    data = build_dataset(tmp, 400)
    # single steps (the default is 8 per call): TensorBoard samples every 3rd step, and spe3 is compared with it
    settings = {"epochs": 4, "batch_size": 32, "log_every_seconds": 1000, "tensorboard_every": 3,
                "steps_per_execution": 1}
    jobs = {
        "full": job(data, tmp, "full", model=DROPOUT, schedule=WARMUP_COSINE, settings=settings),
        "spe3": job(data, tmp, "spe3", model=DROPOUT, schedule=WARMUP_COSINE,
                    settings={**settings, "steps_per_execution": 3}),
        # one bad batch (row 40: the second batch of every epoch) is skipped, the others apply
        "skip": job(data, tmp, "skip", settings={"epochs": 1, "batch_size": 32, "nan_policy": "skip",
                                                              "log_every_seconds": 1000}, nan_label_rows=[40]),
        # lr 1e30: the first update blows the weights up, every later loss is non-finite and dropped, including
        # the batch-norm statistics those forward passes computed
        "skip_absurd": job(data, tmp, "skip_absurd", schedule={"name": "constant", "lr": 1e30},
                           settings={"epochs": 1, "batch_size": 32, "nan_policy": "skip", "log_every_seconds": 1000}),
        "stop": job(data, tmp, "stop", settings={"epochs": 2, "batch_size": 32, "log_every_seconds": 1000},
                    schedule={"name": "constant", "lr": 1e30}, expect_error=True),
        "patience": job(data, tmp, "patience", schedule={"name": "constant", "lr": 0.03},
                        settings={"epochs": 6, "batch_size": 32, "patience": 2, "log_every_seconds": 1000}),
    }
    return tmp, jobs, run_jobs(tmp, jobs)


def test_run_folder_matches_the_tensorflow_engine(runs):
    import crmnet.registry  # noqa: F401  registers CRMnet's layers for loading

    _, jobs, results = runs
    ok(results, "full")
    out = result(jobs["full"])
    assert out["tensorflow_imported"] is False
    rows = out["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[-1]["skipped_steps"] == 0
    run = Path(jobs["full"]["run_dir"])
    # model.keras, written under JAX, read under TF here: the trainer's final (restored best) weights
    metrics = assert_run_folder(run, rows, 4 * (326 // 32), weights(jobs["full"]["out"]))
    assert metrics["global_batch_size"] == 32 and metrics["val"]["n"] == 74
    assert metrics["strategy"]["name"] == "OneDevice" and metrics["strategy"]["backend"] == "jax"
    state = json.loads((run / "checkpoints" / "checkpoint.json").read_text())
    assert [e["epoch"] for e in state["checkpoints"]] == [2, 3, 4]  # keep_checkpoints=3
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*")) == ["ckpt-2.npz", "ckpt-3.npz", "ckpt-4.npz"]
    assert (run / "best" / "weights.npz").exists()


def test_tensorboard_train_and_validation_runs(runs):
    """Per-step scalars every 3 optimizer steps (read from the compiled step's state mid-epoch), epoch scalars."""
    from seq2exp.engine.optim import build_schedule

    _, jobs, results = runs
    ok(results, "full")
    board = Path(jobs["full"]["run_dir"]) / "tensorboard"
    train, val = tensorboard_scalars(board / "train"), tensorboard_scalars(board / "validation")
    rows = result(jobs["full"])["history"]
    assert [s for s, _ in train["loss"]] == [1, *range(3, 41, 3)]
    schedule = build_schedule(WARMUP_COSINE, 10, 4)  # the rate the next update uses: schedule(updates so far)
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in train["learning_rate"]] == \
        [(s, float(schedule(s))) for s, _ in train["loss"]]
    assert [(s, pytest.approx(v, rel=1e-6)) for s, v in train["epoch_loss"]] == [(r["step"], r["loss"]) for r in rows]
    for tag in ("loss", "r2", "pearson"):  # the same tags as the TensorFlow run's (tests/engine/test_monitor.py)
        assert [(s, pytest.approx(v, rel=1e-6)) for s, v in val[f"epoch_{tag}"]] == \
            [(r["step"], r[f"val_{tag}"]) for r in rows]
    assert (Path(jobs["full"]["run_dir"]) / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_steps_per_execution_matches_single_steps(runs):
    _, jobs, results = runs
    ok(results, "full", "spe3")
    assert max_diff(weights(jobs["spe3"]["out"]), weights(jobs["full"]["out"])) < 1e-6
    a, b = result(jobs["full"])["history"], result(jobs["spe3"])["history"]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)


def test_nan_policy_skip_drops_only_the_bad_batch(runs):
    _, jobs, results = runs
    ok(results, "skip")
    out = result(jobs["skip"])
    row = out["history"][0]
    assert row["skipped_steps"] == 1 and row["step"] == 326 // 32 - 1 and np.isfinite(row["loss"])
    assert "dropped 1 of 10 updates" in results["skip"]["log"]
    assert all(np.all(np.isfinite(w)) for w in weights(jobs["skip"]["out"]))  # batch-norm statistics included
    archive = np.load(Path(jobs["skip"]["run_dir"]) / "checkpoints" / "ckpt-1.npz")
    assert all(np.all(np.isfinite(archive[k])) for k in archive.files if k.startswith(("model/", "optimizer/")))


def test_nan_policy_skip_keeps_batch_norm_statistics_of_dropped_steps_out(runs):
    _, jobs, results = runs
    ok(results, "skip_absurd")
    row = result(jobs["skip_absurd"])["history"][0]
    assert row["skipped_steps"] == 9 and row["step"] == 1, row
    archive = np.load(Path(jobs["skip_absurd"]["run_dir"]) / "checkpoints" / "ckpt-1.npz")
    paths = list(archive["paths/model"])
    stats = [archive[f"model/{i}"] for i, p in enumerate(paths) if p.endswith(("moving_mean", "moving_variance"))]
    assert stats and all(np.all(np.isfinite(v)) for v in stats)
    assert all(np.all(np.isfinite(archive[k])) for k in archive.files if k.startswith(("model/", "optimizer/")))


def test_nan_policy_stop_on_absurd_learning_rate(runs):
    _, jobs, results = runs
    ok(results, "stop")
    out = result(jobs["stop"])
    assert out["error"]["type"] == "NonFiniteLossError", out
    assert re.search(r"non-finite training loss at epoch 1, step \d+/10 \(lr 1e\+30\)", out["error"]["message"])
    assert out["history"] == [] and not list(Path(jobs["stop"]["run_dir"]).glob("checkpoints/ckpt-*"))
    assert all(np.all(np.isfinite(w)) for w in weights(jobs["stop"]["out"]))  # the bad update was not applied


def test_early_stopping_follows_the_validation_r2(runs):
    """The shared loop's rule, replayed on the recorded history: stop once `patience` epochs in a row did not
    beat the best validation R^2; the summary names the best epoch and whether it stopped early."""
    _, jobs, results = runs
    ok(results, "patience")
    out = result(jobs["patience"])
    rows, best, bad, best_epoch = out["history"], -np.inf, 0, 0
    for r in rows:
        assert bad < 2, f"epoch {r['epoch']} ran after {bad} epochs without improvement"
        if r["val_r2"] > best:
            best, bad, best_epoch = r["val_r2"], 0, r["epoch"]
        else:
            bad += 1
    assert out["summary"]["stopped_early"] == (bad >= 2) and out["summary"]["best_epoch"] == best_epoch
    assert len(rows) == 6 or bad >= 2
    print(f"patience run: {len(rows)} epochs, val r2 {[round(r['val_r2'], 4) for r in rows]}")


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory):
    """Every registry model's tiny preset, one epoch of 3 steps, through the same engine."""
    tmp = tmp_path_factory.mktemp("jax_models")
    data = {layout: build_dataset(tmp, 400, layout) for layout in ("crmnet", "legnet")}
    settings = {"epochs": 1, "batch_size": 32, "steps_per_epoch": 3, "log_every_seconds": 1000}
    jobs = {name: job(data["legnet" if name == "legnet" else "crmnet"], tmp, name, model_name=name,
                      model="tiny", schedule={}, settings=settings)
            for name in ("legnet", "cnn_bilstm", "macaron")}
    return jobs, run_jobs(tmp, jobs)


@pytest.mark.parametrize("name", ["legnet", "cnn_bilstm", "macaron"])
def test_every_registry_model_trains_and_evaluates_under_jax(model_runs, name):
    import keras

    from seq2exp.engine.registry import get_model_spec

    jobs, results = model_runs
    ok(results, name)
    out = result(jobs[name])
    assert out["tensorflow_imported"] is False and out["prediction_dtype"] == "float32"
    row = out["history"][0]
    assert row["step"] == 3 and np.isfinite(row["loss"]) and np.isfinite(row["val_r2"]) and row["val_n"] == 74
    spec = get_model_spec(name)
    model = keras.saving.load_model(Path(jobs[name]["run_dir"]) / "model.keras", safe_mode=True)
    length = 150 if spec.layout == "legnet" else 112
    batch = {"seq": np.zeros((2, length), np.uint8), "is_singleton": np.zeros(2, np.uint8)}
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(spec.predict(model, batch, spec.inputs))))

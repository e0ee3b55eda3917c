"""A model.keras trained under one backend evaluates and predicts under the other, with the same numbers.

The TF run is trained here (TensorFlow process), the JAX run by the JAX worker. Each run folder is then
evaluated (`python -m seq2exp.evaluate`) and predicted (`python -m seq2exp.predict`) in fresh processes
under KERAS_BACKEND=tensorflow and KERAS_BACKEND=jax (the JAX ones with `import tensorflow` blocked).
Tolerance: predictions within 1e-5 (float32 arithmetic of two backends), metrics within rel 1e-5.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.engine.jax_jobs import SMALL, build_dataset, job, run_jobs
from tests.helpers import assert_jobs_ok as ok

ROOT = Path(__file__).resolve().parents[2]
#: runs a seq2exp command with `import tensorflow` failing (the JAX worker's blocker)
BLOCKED = ("import runpy, sys; sys.path.insert(0, {tests!r}); from jax_train_worker import _BlockTensorFlow; "
           "sys.meta_path.insert(0, _BlockTensorFlow()); sys.argv = {argv!r}; "
           "runpy.run_module({module!r}, run_name='__main__')")


def _command(backend: str, module: str, args: list[str]) -> list[str]:
    if backend == "jax":
        code = BLOCKED.format(tests=str(ROOT / "tests" / "engine"), argv=[module, *args], module=module)
        return [sys.executable, "-c", code]
    return [sys.executable, "-m", module, *args]


def _run(backend: str, module: str, args: list[str]) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(_command(backend, module, args), env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{backend} {module} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stderr


def _predictions(path: Path) -> np.ndarray:
    with open(path) as fh:
        return np.array([float(r["prediction"]) for r in csv.DictReader(fh, delimiter="\t")])


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory):
    from data_prep.simulate import simulate, write_tsv
    from seq2exp.engine.data import input_batches
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    tmp = tmp_path_factory.mktemp("cross_backend")
    data = build_dataset(tmp, 300)
    write_tsv(simulate(120, seed=9), tmp / "holdout.tsv")
    settings = {"epochs": 1, "batch_size": 32, "log_every_seconds": 1000}
    jax_job = job(data, tmp, "jax", settings=settings)
    results = run_jobs(tmp, {"jax": jax_job})
    ok(results, "jax")
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(tmp / "run_tf"), settings=TrainSettings(**settings),
                      train_examples=300)
    trainer.fit(lambda ctx, seed: input_batches(data, "train", 32, ctx, training=True, seed=seed,
                                                drop_remainder=True, shuffle_buffer=1024),
                lambda ctx: input_batches(data, "val", 32, ctx, training=False))
    return tmp, {"tf": tmp / "run_tf", "jax": Path(jax_job["run_dir"])}


@pytest.mark.parametrize("trained", ["tf", "jax"])
def test_model_keras_evaluates_and_predicts_under_both_backends(run_folders, trained):
    tmp, runs = run_folders
    metrics, preds = {}, {}
    for backend in ("tensorflow", "jax"):
        out = tmp / f"{trained}_on_{backend}"
        _run(backend, "seq2exp.evaluate", [str(runs[trained]), str(tmp / "holdout.tsv"), "--model", "crmnet",
                                           "--work", str(out) + "_data", "--metrics-json", str(out) + ".json"])
        _run(backend, "seq2exp.predict", [str(runs[trained]), str(tmp / "holdout.tsv"), "--model", "crmnet",
                                          "--predictions", str(out) + ".tsv"])
        metrics[backend] = json.loads(Path(str(out) + ".json").read_text())
        preds[backend] = _predictions(Path(str(out) + ".tsv"))
    assert len(preds["tensorflow"]) == len(preds["jax"]) == 120
    assert np.all(np.isfinite(preds["jax"]))
    diff = float(np.max(np.abs(preds["tensorflow"] - preds["jax"])))
    print(f"model.keras trained under {trained}: max |prediction TF - JAX| = {diff:.2g}")
    assert diff < 1e-5
    (name,) = metrics["jax"]
    assert metrics["jax"][name]["n"] == 120
    assert metrics["jax"][name] == pytest.approx(metrics["tensorflow"][name], rel=1e-5, abs=1e-6)

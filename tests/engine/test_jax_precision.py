"""Precision policies under JAX: mixed_bfloat16 and mixed_float16 (dynamic loss scaling through Keras'
LossScaleOptimizer, applied statelessly inside the compiled step) train with float32 variables and float32
predictions; a float16 overflow stops the run under nan_policy "stop" and leaves only finite checkpoints."""
from pathlib import Path

import numpy as np
import pytest

from tests.engine.jax_jobs import build_dataset, job, result, run_jobs, weights
from tests.helpers import assert_jobs_ok as ok


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """bfloat16 on the CRMnet used elsewhere; float16 on LegNet: XLA's CPU backend has no float16 matrix product
    with float32 accumulation, which attention (CRMnet, Macaron) needs, and the engine says so up front."""
    tmp = tmp_path_factory.mktemp("jax_precision")
    data = build_dataset(tmp, 300)
    legnet = {"data": build_dataset(tmp, 300, "legnet"), "model_name": "legnet", "model": "tiny", "schedule": {}}
    settings = {"epochs": 1, "batch_size": 32, "log_every_seconds": 1000}
    jobs = {"bf16": job(data, tmp, "bf16", precision="mixed_bfloat16", settings=settings),
            "f16": job(tmp=tmp, name="f16", precision="mixed_float16", settings=settings, **legnet),
            # after a good epoch the first kernel is scaled past float16's range (65504)
            "overflow": job(tmp=tmp, name="overflow", precision="mixed_float16", settings={**settings, "epochs": 2},
                            fault={"kind": "overflow_after_epoch", "epoch": 1}, expect_error=True, **legnet),
            "f16_attention_cpu": job(data, tmp, "f16_attention_cpu", precision="mixed_float16", settings=settings,
                                     expect_error=True)}
    return jobs, run_jobs(tmp, jobs)


def test_float16_with_attention_on_cpu_is_refused_before_training(runs):
    jobs, results = runs
    ok(results, "f16_attention_cpu")
    out = result(jobs["f16_attention_cpu"])
    assert out["error"]["type"] == "ValueError" and "mixed_float16 under JAX on CPU" in out["error"]["message"]
    assert "mixed_bfloat16" in out["error"]["message"] and out["history"] == []


@pytest.mark.parametrize("name, compute", [("bf16", "bfloat16"), ("f16", "float16")])
def test_mixed_precision_trains_with_float32_variables_and_outputs(runs, name, compute):
    jobs, results = runs
    ok(results, name)
    out = result(jobs[name])
    assert compute in out["compute_dtypes"] and "float32" in out["compute_dtypes"]  # the output layer stays float32
    assert out["prediction_dtype"] == "float32"
    assert out["optimizer"] == ("LossScaleOptimizer" if name == "f16" else "Adam")
    row = out["history"][0]
    assert np.isfinite(row["loss"]) and np.isfinite(row["val_r2"]) and row["step"] > 0
    assert all(w.dtype == np.float32 and np.all(np.isfinite(w)) for w in weights(jobs[name]["out"]))


def test_float16_loss_scale_is_checkpointed(runs):
    jobs, results = runs
    ok(results, "f16")
    archive = np.load(Path(jobs["f16"]["run_dir"]) / "checkpoints" / "ckpt-1.npz")
    paths = list(archive["paths/optimizer"])
    scale = archive[f"optimizer/{next(i for i, p in enumerate(paths) if p.endswith('/dynamic_scale'))}"]
    assert scale.dtype == np.float32 and scale.shape == () and scale >= 1.0  # 2**15 at the start, halved on overflow


def test_float16_overflow_stops_and_keeps_the_last_finite_checkpoint(runs):
    jobs, results = runs
    ok(results, "overflow")
    out = result(jobs["overflow"])
    assert out["error"]["type"] == "NonFiniteLossError", out
    assert "non-finite training loss at epoch 2, step 1/" in out["error"]["message"]
    ckpts = Path(jobs["overflow"]["run_dir"]) / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("ckpt-*")) == ["ckpt-1.npz"]
    for path in (ckpts / "ckpt-1.npz", Path(jobs["overflow"]["run_dir"]) / "best" / "weights.npz"):
        archive = np.load(path)
        values = [archive[k] for k in archive.files if k.startswith(("model/", "optimizer/"))]
        assert all(np.all(np.isfinite(v)) for v in values), path

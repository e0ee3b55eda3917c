"""Data parallel under JAX (keras.distribution.DataParallel) reaches the one-device weights on the same global batch.

As the TF mirrored / multi-worker test does: global batch 32 = 1 x 32 on one device = 2 x 16 on two CPU devices
of one process (XLA_FLAGS=--xla_force_host_platform_device_count=2) = 2 x 16 on two processes on 127.0.0.1
(keras.distribution.initialize through KERAS_DISTRIBUTION_*, one CPU device each, gloo collectives), no dropout,
no shuffle. The one-shard dataset is split between processes by record (rows i::2), so each global batch holds
the same rows as on one device. Tolerance 1e-4 (max abs weight), as for TensorFlow: only the order of the
batch reductions differs.
"""
import json
from pathlib import Path

import pytest

from tests.engine.jax_jobs import SMALL, build_dataset, job, max_diff, result, run_jobs, weights
from tests.helpers import assert_jobs_ok as ok
from tests.helpers import free_ports


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_distribution")
    data = build_dataset(tmp, 400)
    settings = {"epochs": 2, "batch_size": 16, "log_every_seconds": 1000}
    common = {"shuffle": False, "model": SMALL}
    jobs = {"one": job(data, tmp, "one", **common, settings={**settings, "batch_size": 32},
                       strategy="default", init_out=str(tmp / "init.npz")),
            "two_devices": job(data, tmp, "two_devices", **common, settings=settings, strategy="mirrored",
                               devices=2)}
    port = free_ports(1)[0]
    for i in range(2):
        env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
               "KERAS_DISTRIBUTION_PROCESS_ID": str(i)}
        jobs[f"process{i}"] = job(data, tmp, f"process{i}", **common, settings=settings,
                                  strategy="multiworker", env=env, run_dir=str(tmp / "run_processes"))
    return tmp, jobs, run_jobs(tmp, jobs)


def test_two_devices_reach_the_one_device_weights(runs):
    tmp, jobs, results = runs
    ok(results, "one", "two_devices")
    ref = weights(jobs["one"]["out"])
    assert max_diff(ref, weights(tmp / "init.npz")) > 1e-2  # training moved the weights
    ref_val = result(jobs["one"])["summary"]["val"]
    assert ref_val["n"] == 74  # every validation record once, the short last batch included
    diff = max_diff(weights(jobs["two_devices"]["out"]), ref)
    print(f"two devices vs one: max |weight difference| {diff:g}")
    assert diff < 1e-4
    assert result(jobs["two_devices"])["summary"]["val"] == pytest.approx(ref_val, rel=1e-4, abs=1e-5)
    metrics = json.loads((Path(jobs["two_devices"]["run_dir"]) / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["global_batch_size"] == 32 and metrics["per_replica_batch_size"] == 16
    assert metrics["strategy"]["name"] == "DataParallel" and len(metrics["strategy"]["devices"]) == 2


def test_two_processes_reach_the_one_device_weights(runs):
    _, jobs, results = runs
    ok(results, "one", "process0", "process1")
    ref, ref_val = weights(jobs["one"]["out"]), result(jobs["one"])["summary"]["val"]
    for name in ("process0", "process1"):
        diff = max_diff(weights(jobs[name]["out"]), ref)
        print(f"{name} vs one device: max |weight difference| {diff:g}")
        assert diff < 1e-4, name
        assert result(jobs[name])["summary"]["val"] == pytest.approx(ref_val, rel=1e-4, abs=1e-5), name
        assert result(jobs[name])["tensorflow_imported"] is False
    run = Path(jobs["process0"]["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"]["workers"] == 2 and metrics["strategy"]["worker_index"] == 0
    assert metrics["global_batch_size"] == 32 and metrics["replicas"] == 2
    assert (run / "model.keras").exists() and (run / "checkpoints" / "ckpt-2.npz").exists()
    assert "training crmnet" not in results["process1"]["log"]  # only the chief reports and writes

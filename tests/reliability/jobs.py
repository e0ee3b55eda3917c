"""Shared pieces of the reliability tests: tiny datasets and models, and training jobs in fresh processes.

Jobs run tests/engine/train_worker.py (TF_CONFIG, op determinism and fault injection need a fresh
process). Every wait is bounded: a job that hangs fails the test instead of hanging CI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_ports  # noqa: F401  (re-exported for the reliability tests)

WORKER = Path(__file__).resolve().parents[1] / "engine" / "train_worker.py"
#: CRMnet's wiring at ~6k parameters, no dropout: traces fast and multi-worker runs match one device
SMALL = {"seq_len": 112, "encoder_filters": [8, 8], "kernel_size": 5, "num_transformer_blocks": 1, "num_heads": 1,
         "key_dim": 4, "embed_dim": 8, "ffn_dim": 8, "decoder_filters": 4, "head_conv_filters": [4],
         "dense_units": [8], "dense_dropouts": [0.0], "encoder_dropout": 0.0, "transformer_dropout": 0.0}
#: hard limit for one phase of subprocess jobs (tracing dominates: ~10-30 s each on 2 busy cores)
JOB_TIMEOUT_S = 300


def build_dataset(folder: Path, n: int = 400, layout: str = "crmnet", seed: int = 1, **flags) -> str:
    from data_prep.build import build, parser
    from data_prep.simulate import simulate, write_tsv

    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"sim{seed}.tsv"
    write_tsv(simulate(n, seed=seed), tsv)
    out = folder / f"ds_{layout}_{seed}"
    extra = [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    args = parser().parse_args([str(tsv), "--out", str(out), "--layout", layout, "--workers", "1",
                                "--val-folds", "8,9", "--quiet", *extra])
    build(args.inputs, args.out, args)
    return str(out)




def job(data: str, tmp: Path, name: str, **overrides) -> dict:
    spec = {"data": data, "model": SMALL, "schedule": {"name": "constant", "lr": 1e-3}, "shuffle": True,
            "settings": {"epochs": 3, "batch_size": 32, "log_every_seconds": 1000},
            "run_dir": str(tmp / f"run_{name}"), "out": str(tmp / f"{name}.npz"), "timeout": 30}
    spec.update(overrides)
    return spec


def run_jobs(tmp: Path, jobs: dict, timeout_s: float = JOB_TIMEOUT_S) -> dict:
    """Start all jobs at once; {name: {"rc", "log", "seconds" (start to exit)}}. Kills everything on timeout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(WORKER.parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs, t0 = {}, time.time()
    for name, spec in jobs.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(spec))
        log = open(tmp / f"{name}.log", "w")
        procs[name] = (subprocess.Popen([sys.executable, str(WORKER), str(path)], stdout=log,
                                        stderr=subprocess.STDOUT, env=env), log)
    ended: dict[str, float] = {}
    while len(ended) < len(procs) and time.time() - t0 < timeout_s:
        for name, (proc, _) in procs.items():
            if name not in ended and proc.poll() is not None:
                ended[name] = time.time() - t0
        time.sleep(0.2)
    for proc, log in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if len(ended) < len(procs):
        pytest.fail(f"jobs {sorted(set(procs) - set(ended))} still running after {timeout_s}s (a hang); "
                    f"logs in {tmp}")
    return {name: {"rc": proc.returncode, "log": (tmp / f"{name}.log").read_text(), "seconds": ended[name]}
            for name, (proc, _) in procs.items()}


def ok(results: dict, *names: str) -> None:
    for name in names:
        r = results[name]
        assert r["rc"] == 0, f"job {name} failed (rc {r['rc']}):\n{r['log'][-4000:]}"


def weights(path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in f.files]


def max_diff(a: list, b: list) -> float:
    assert len(a) == len(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def history(spec: dict) -> dict:
    with open(spec["out"] + ".json") as fh:
        return json.load(fh)


def checkpoint_floats(prefix: str) -> dict[str, np.ndarray]:
    """Every floating-point tensor stored in a TF checkpoint (read from the files, not from a model)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    out = {}
    for name in reader.get_variable_to_shape_map():
        value = np.asarray(reader.get_tensor(name))
        if np.issubdtype(value.dtype, np.floating):
            out[name] = value
    return out

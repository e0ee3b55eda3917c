"""Shared pieces of the JAX engine tests: training jobs under KERAS_BACKEND=jax in fresh processes.

Jobs run tests/engine/jax_train_worker.py (the backend, device count and processes must be set before
JAX starts). They share one JAX compilation cache per test session, so a step compiled once (several
minutes on two busy cores) is reused by every job training the same model.
"""
from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from tests.conftest import require_module
from tests.helpers import run_jobs as _run_jobs
from tests.reliability.jobs import max_diff, weights  # noqa: F401  (re-exported for the JAX tests)

WORKER = Path(__file__).with_name("jax_train_worker.py")
TF_WORKER = Path(__file__).with_name("train_worker.py")
#: CRMnet's wiring at ~6k parameters (tests/reliability/jobs.py's SMALL): compiles fastest
SMALL = {"seq_len": 112, "encoder_filters": [8, 8], "kernel_size": 5, "num_transformer_blocks": 1, "num_heads": 1,
         "key_dim": 4, "embed_dim": 8, "ffn_dim": 8, "decoder_filters": 4, "head_conv_filters": [4],
         "dense_units": [8], "dense_dropouts": [0.0], "encoder_dropout": 0.0, "transformer_dropout": 0.0}
#: hang bound of one phase of jobs (compiling dominates)
JOB_TIMEOUT_S = 1500


@functools.cache
def jax_cache() -> str:
    """This test session's JAX compilation cache folder (removed when the session ends); jax must import."""
    require_module("jax")
    folder = tempfile.mkdtemp(prefix="seq2exp-jax-cache-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build_dataset(folder: Path, n: int = 400, layout: str = "crmnet", seed: int = 1) -> str:
    from data_prep.build import build, parser
    from data_prep.simulate import simulate, write_tsv

    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"sim{seed}.tsv"
    if not tsv.exists():
        write_tsv(simulate(n, seed=seed), tsv)
    out = folder / f"ds_{layout}_{seed}"
    args = parser().parse_args([str(tsv), "--out", str(out), "--layout", layout, "--workers", "1",
                                "--val-folds", "8,9", "--quiet"])
    build(args.inputs, args.out, args)
    return str(out)


def job(data: str, tmp: Path, name: str, **overrides) -> dict:
    spec = {"data": data, "model": SMALL, "schedule": {"name": "constant", "lr": 1e-3}, "shuffle": True,
            "settings": {"epochs": 3, "batch_size": 32, "log_every_seconds": 1000},
            "run_dir": str(tmp / f"run_{name}"), "out": str(tmp / f"{name}.npz"), "cache": jax_cache(),
            "block_tf": True}
    spec.update(overrides)
    return spec


def run_jobs(tmp: Path, jobs: dict, worker: Path = WORKER) -> dict:
    return _run_jobs(worker, tmp, jobs, JOB_TIMEOUT_S)


def result(spec: dict) -> dict:
    with open(spec["out"] + ".json") as fh:
        return json.load(fh)

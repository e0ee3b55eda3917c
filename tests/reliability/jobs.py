"""Shared pieces of the reliability tests: tiny datasets and models, and training jobs in fresh processes.

Jobs run tests/engine/train_worker.py (TF_CONFIG, op determinism and fault injection need a fresh
process). Every wait is bounded: a job that hangs fails the test instead of hanging CI.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import (
    COLLECTIVE_TIMEOUT_S,
    free_ports,  # noqa: F401
)
from tests.helpers import assert_jobs_ok as ok  # noqa: F401  (re-exported for the reliability tests)
from tests.helpers import run_jobs as _run_jobs

WORKER = Path(__file__).resolve().parents[1] / "engine" / "train_worker.py"
#: CRMnet's wiring at ~6k parameters, no dropout: traces fast and multi-worker runs match one device
SMALL = {"seq_len": 112, "encoder_filters": [8, 8], "kernel_size": 5, "num_transformer_blocks": 1, "num_heads": 1,
         "key_dim": 4, "embed_dim": 8, "ffn_dim": 8, "decoder_filters": 4, "head_conv_filters": [4],
         "dense_units": [8], "dense_dropouts": [0.0], "encoder_dropout": 0.0, "transformer_dropout": 0.0}


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
            "run_dir": str(tmp / f"run_{name}"), "out": str(tmp / f"{name}.npz"), "timeout": COLLECTIVE_TIMEOUT_S}
    spec.update(overrides)
    return spec


def run_jobs(tmp: Path, jobs: dict) -> dict:
    """Start all jobs at once; {name: {"rc", "log", "seconds" (start to exit)}}; a hang fails the test."""
    return _run_jobs(WORKER, tmp, jobs)


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

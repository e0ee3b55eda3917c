"""Writes REAL Keras-2 SavedModels (tf-keras, in a subprocess) for the converter tests.

``benchmarks/crmnet_keras2_reference.py`` builds the published architecture in Keras 2 with the
published object structure, randomises every weight and BatchNorm statistic, trains one Adam step
and ``model.save(dir)``s it, plus its own predictions on sequences containing N.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import require_installed

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 3600  # only stops a hung subprocess; not a performance limit


def require_tf_keras():
    """Skips without tf-keras locally; under CI (tests/conftest.py strict(): ``CI`` or REQUIRE_SHARED_DATA=1,
    as for every optional dependency) its absence is a failure. Not imported here: it runs in a subprocess."""
    require_installed("tf_keras", "tf-keras is not installed (pip install -e '.[test]'); the Keras-2 reference "
                                  "needs it")


def subprocess_env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def run(args, **extra_env):
    """``python args...`` from the repository root; fails the test with its output on error."""
    proc = subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env=subprocess_env(**extra_env),
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, f"{args} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def write_reference(out, preset="small", config=None, skip_first=False, num_sequences=64, seed=0):
    """Runs the Keras-2 builder under ``TF_USE_LEGACY_KERAS=1``; returns its output folder's contents."""
    require_tf_keras()
    args = ["-m", "benchmarks.crmnet_keras2_reference", "--out", str(out), "--preset", preset,
            "--seed", str(seed), "--num-sequences", str(num_sequences)]
    if config:
        args += ["--config", json.dumps(config)]
    if skip_first:
        args.append("--skip-first")
    run(args, TF_USE_LEGACY_KERAS="1")
    return load_reference(out)


def load_reference(out):
    out = Path(out)
    rows = [line.split("\t") for line in (out / "predictions.tsv").read_text().splitlines()[1:]]
    return {
        "dir": out,
        "saved_model": out / "saved_model",
        "config": json.loads((out / "config.json").read_text()),
        "summary": json.loads((out / "summary.json").read_text()),
        "predictions_tsv": out / "predictions.tsv",
        "sequences": [seq for seq, _ in rows],
        "expected": np.array([float(value) for _, value in rows]),
    }


def codes_of(sequences):
    """uint8 base codes (A=0, C=1, G=2, T=3, N=4) of equal-length sequences."""
    from data_prep import alphabet

    return np.stack([alphabet.encode(seq) for seq in sequences])


def assert_predictions_match(actual, reference):
    """max |diff| <= 1e-4 x max(1, SD) on >= 48 sequences, all containing N, with a real spread."""
    expected = reference["expected"]
    assert len(expected) >= 48 and all("N" in seq for seq in reference["sequences"])
    spread = float(np.std(expected))
    assert spread >= 0.1, f"reference predictions barely vary (SD {spread})"
    diff = float(np.max(np.abs(np.asarray(actual, dtype=np.float64).reshape(-1) - expected)))
    assert diff <= 1e-4 * max(1.0, spread), f"max |diff| {diff:.3g} for prediction SD {spread:.3g}"
    return diff

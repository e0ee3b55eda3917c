"""Prediction compiles once per model and padded batch shape (eager Keras under JAX compiled every op for every
new shape: a 4,000-sequence predict took 47-54 s against 0.66 s warm), and padding never changes a prediction."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
import numpy as np
import keras
from seq2exp.analysis.evaluation import padded_size, predict_codes
from seq2exp.engine.registry import ModelSpec, identity_prediction

traces = []

def predict(model, batch, transform):  # runs in Python only while the compiled function is traced
    traces.append(batch["seq"].shape[0])  # None: TensorFlow relaxed the batch dimension
    return identity_prediction(model, batch, transform)

inp = keras.Input((12,), dtype="uint8")
x = keras.layers.Embedding(5, 3)(inp)
out = keras.layers.Dense(1)(keras.layers.Flatten()(x))
model = keras.Model(inp, out)
spec = ModelSpec(name="toy", layout="crmnet", build=lambda c: model, default_config=dict, predict=predict)
codes = np.random.default_rng(0).integers(0, 5, (300, 12)).astype(np.uint8)
eager = keras.ops.convert_to_numpy(model(codes)).reshape(-1)
for n, batch in [(300, 64), (300, 64), (7, 64), (250, 100), (5, 1024)]:
    got = predict_codes(model, spec, codes[:n], batch)
    np.testing.assert_allclose(got, eager[:n], rtol=1e-5, atol=1e-6)
print("TRACES", json.dumps(traces))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_one_compilation_per_padded_shape(backend):
    path = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("TRACES"))
    traces = json.loads(line.split(" ", 1)[1])
    # batches of 64 (and 300 % 64 = 44 -> 64), 7 -> 32, 100 -> 128 (and 50 -> 64), 5 -> 32: three padded shapes.
    # JAX compiles each once; TensorFlow (reduce_retracing) traces the first shapes, then one shape-generic graph
    assert len(traces) <= 4, traces
    if backend == "jax":
        assert traces == [64, 32, 128]
    else:
        assert set(traces) <= {32, 64, 128, None}


def test_padded_sizes():
    from seq2exp.analysis.evaluation import padded_size

    assert [padded_size(n) for n in (1, 31, 32, 33, 64, 65, 1000, 1024)] == [32, 32, 32, 64, 64, 128, 1024, 1024]
    assert np.all(np.diff([padded_size(n) for n in range(1, 5000)]) >= 0)

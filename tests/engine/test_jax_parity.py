"""TensorFlow <-> JAX parity: the same tiny CRMnet, data, order and initial weights, trained 2 epochs (20 Adam
steps, batch 32, shuffled) under each backend's engine, ends with the same losses and weights within tolerance.

What differs, and so is pinned or tolerated:
- initial weights: Keras' initializers draw from each backend's own RNG (tf.random vs jax.random), so the JAX
  run starts from the TF run's initial weights (job["init_weights"] = the TF job's init_out);
- dropout: the masks come from each backend's RNG stream, so the model has no dropout (SMALL);
- the input order is the same by construction (the tf.data and numpy readers share data_prep.order);
- arithmetic: TensorFlow's CPU kernels (oneDNN convolutions and matmuls) and XLA sum in different orders,
  so float32 results differ in the last bits; Adam's normalised steps then carry such differences on
  (a weight whose gradient is near zero moves by about the learning rate, 1e-3, whichever sign its
  gradient has).
Measured (2 cores, load ~12): epoch losses rel 1.5e-6 and 7e-5, validation R^2 rel 3e-4, final weights max
|TF - JAX| 1.4e-3 and ||W_TF - W_JAX|| / ||W_TF - W_0|| = 6.3e-3. The tolerances below are about 10x those.
"""
from pathlib import Path

import numpy as np
import pytest

from tests.engine.jax_jobs import TF_WORKER, build_dataset, job, max_diff, result, run_jobs, weights
from tests.helpers import assert_jobs_ok as ok
from tests.helpers import tensorboard_scalars

LOSS_RTOL = 1e-3  # epoch training loss, relative
VAL_RTOL = 3e-3  # validation R^2, relative
WEIGHT_ATOL = 1e-2  # final weights, max abs
UPDATE_RTOL = 5e-2  # ||W_TF - W_JAX|| / ||W_TF - W_0||: how far apart, relative to how far each went


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_parity")
    data = build_dataset(tmp, 400)
    settings = {"epochs": 2, "batch_size": 32, "log_every_seconds": 1000}
    tf_job = job(data, tmp, "tf", settings=settings, init_out=str(tmp / "tf_init.npz"),
                 strategy="default", timeout=60)
    tf_results = run_jobs(tmp, {"tf": tf_job}, worker=TF_WORKER)
    ok(tf_results, "tf")
    jax_job = job(data, tmp, "jax", settings=settings, init_weights=tf_job["init_out"],
                  init_out=str(tmp / "jax_init.npz"), strategy="default")
    jax_results = run_jobs(tmp, {"jax": jax_job})
    ok(jax_results, "jax")
    return tf_job, jax_job


def _history(spec):
    import json

    with open(spec["out"] + ".json") as fh:
        return json.load(fh)["history"]


def test_same_start_same_losses_and_weights(runs):
    tf_job, jax_job = runs
    assert max_diff(weights(tf_job["init_out"]), weights(jax_job["init_out"])) == 0.0
    start = weights(tf_job["init_out"])
    tf_rows, jax_rows = _history(tf_job), result(jax_job)["history"]
    assert [r["step"] for r in tf_rows] == [r["step"] for r in jax_rows] == [10, 20]
    for a, b in zip(tf_rows, jax_rows):
        rel = abs(a["loss"] - b["loss"]) / abs(a["loss"])
        print(f"epoch {a['epoch']}: loss TF {a['loss']:.7f} JAX {b['loss']:.7f} (rel {rel:.2g}); val r2 TF "
              f"{a['val_r2']:.6f} JAX {b['val_r2']:.6f}")
        assert rel < LOSS_RTOL
        assert b["val_r2"] == pytest.approx(a["val_r2"], rel=VAL_RTOL)
    tf_w, jax_w = weights(tf_job["out"]), weights(jax_job["out"])
    moved, diff = max_diff(tf_w, start), max_diff(tf_w, jax_w)
    apart = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(tf_w, jax_w)))
    went = np.sqrt(sum(np.sum((a - w0) ** 2) for a, w0 in zip(tf_w, start)))
    print(f"final weights: max |TF - JAX| {diff:.3g} (max |TF - start| {moved:.3g}); "
          f"||W_TF - W_JAX|| / ||W_TF - W_0|| = {apart / went:.3g}")
    assert moved > 1e-2 and diff < WEIGHT_ATOL and apart / went < UPDATE_RTOL


def test_one_tensorboard_format_on_both_backends(runs):
    """The same runs, tags and steps, read back with tensorboard's EventAccumulator (simple scalars: a tensor
    summary would list no scalar); the validation loss agrees as the validation R^2 does."""
    tf_job, jax_job = runs
    for run in ("train", "validation"):
        tf_board = tensorboard_scalars(Path(tf_job["run_dir"]) / "tensorboard" / run)
        jax_board = tensorboard_scalars(Path(jax_job["run_dir"]) / "tensorboard" / run)
        assert tf_board and sorted(tf_board) == sorted(jax_board)
        for tag in tf_board:
            assert [s for s, _ in tf_board[tag]] == [s for s, _ in jax_board[tag]], (run, tag)
    assert {"loss", "learning_rate", "epoch_loss"} <= set(tensorboard_scalars(Path(tf_job["run_dir"]) / "tensorboard"
                                                                              / "train"))
    tf_val = tensorboard_scalars(Path(tf_job["run_dir"]) / "tensorboard" / "validation")
    jax_val = tensorboard_scalars(Path(jax_job["run_dir"]) / "tensorboard" / "validation")
    assert {"epoch_loss", "epoch_r2", "epoch_pearson"} <= set(tf_val)
    for (_, a), (_, b) in zip(tf_val["epoch_loss"], jax_val["epoch_loss"]):
        assert b == pytest.approx(a, rel=VAL_RTOL)
    assert [v for _, v in tf_val["epoch_loss"]] == pytest.approx([r["val_loss"] for r in _history(tf_job)], rel=1e-6)

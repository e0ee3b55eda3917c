"""Each DREAM peer trains through the shared engine under the default and mirrored strategies.

Tiny presets on 1,200 simulated sequences (on 600, 479 training records, the tiny CNN-BiLSTM mostly
memorised them: 5 epochs moved validation MSE by 0-16% depending on the seed); one fresh process per
model (the mirrored strategy needs two logical CPUs before TensorFlow starts), both processes at once.
"""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from data_prep.build import build, parser
from data_prep.simulate import simulate, write_tsv
from tests.helpers import assert_jobs_ok as _ok
from tests.helpers import run_jobs

WORKER = Path(__file__).with_name("train_worker.py")
SEQUENCES = 1200
# Macaron: the published optimiser and clipping, with a warm-up that suits a ~150-step run
SHORT_WARMUP = {"name": "inverse_sqrt", "d_model": 512, "warmup_steps": 30}
# CNN-BiLSTM: the published (constant) lr 0.003 as the peak of a one-cycle schedule, which anneals to ~0 by
# the last step: at a constant 0.003 and batch 32 (published: 512) the last epochs' validation MSE jumped
# by up to 35% from one epoch to the next, sometimes above the untrained model's
SHORT_RUN = {"name": "one_cycle", "max_lr": 0.003}
EPOCHS = 5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dream_peers_train")
    write_tsv(simulate(SEQUENCES, seed=3), tmp / "sim.tsv")
    args = parser().parse_args([str(tmp / "sim.tsv"), "--out", str(tmp / "ds"), "--layout", "crmnet",
                                "--workers", "1", "--val-folds", "8,9", "--quiet"])
    build(args.inputs, args.out, args)
    jobs = {}
    for model, schedule in (("cnn_bilstm", SHORT_RUN), ("macaron", SHORT_WARMUP)):
        jobs[model] = {"data": str(tmp / "ds"), "out": str(tmp / f"{model}_result.json"), "runs": [
            {"name": strategy, "model": model, "strategy": strategy, "epochs": EPOCHS, "batch_size": bs,
             "schedule": schedule, "run_dir": str(tmp / f"{model}_{strategy}")}
            for strategy, bs in (("default", 32), ("mirrored", 16))]}
    t0 = time.time()
    results = run_jobs(WORKER, tmp, jobs)
    print(f"dream peer training runs: {time.time() - t0:.1f}s")
    return jobs, results


@pytest.mark.parametrize("model", ["cnn_bilstm", "macaron"])
@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_validation_loss_falls(runs, model, strategy):
    jobs, results = runs
    _ok(results, model)
    with open(jobs[model]["out"]) as fh:
        run = json.load(fh)[strategy]
    assert run["replicas"] == (2 if strategy == "mirrored" else 1) and run["global_batch_size"] == 32
    rows = run["history"]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_mse"]) for r in rows)
    assert rows[-1]["val_n"] == run["before"]["n"] > 0  # every validation record, both times
    # validation MSE in expression units (LabelScale): before training vs after each epoch
    val_mse = [r["val_mse"] for r in rows]
    assert min(val_mse) < 0.9 * run["before"]["mse"] and val_mse[-1] < run["before"]["mse"], (run["before"], rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    mean, std = run["label_scale"]
    assert std > 1.0 and 0.0 < mean < 17.0  # the engine standardised with the training label stats

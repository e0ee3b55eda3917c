"""Under JAX, kill -9 during a training step and inside a checkpoint write, then --resume: the run ends where
an uninterrupted one does, and a half-written or damaged checkpoint is never used (the TF test's shape, on the
JAX engine's numpy-archive checkpoints).

Tolerance: final weights within 1e-6 (max abs) and history within rel 1e-6 of the uninterrupted run; XLA on
CPU is deterministic, so the measured difference is 0.0 (printed).
"""
import json

import pytest

from tests.engine.jax_jobs import SMALL, build_dataset, job, run_jobs
from tests.reliability.test_interruption import (  # the TF test's scenario and checks
    _same_as_full,
    check_kill_during_a_step,
    check_kill_inside_a_checkpoint_write,
    interrupted_runs,
)

DROPOUT = {**SMALL, "dense_dropouts": [0.2]}  # dropout seed states must survive the kill as well


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_interruption")
    # one flipped byte in the newest archive: caught by the SHA-256 recorded at the commit
    return interrupted_runs(tmp, build_dataset, job, run_jobs, DROPOUT, "ckpt-3.npz")


def test_kill_during_a_step_resumes_from_last_checkpoint(runs):
    check_kill_during_a_step(runs, "ckpt-2.npz")


def test_kill_inside_checkpoint_write_never_uses_the_partial_checkpoint(runs):
    # what the kill left: ckpt-2 cut in half plus a temp file, but no commit
    ckpts = check_kill_inside_a_checkpoint_write(runs, {"ckpt-2.npz", "ckpt-2.npz.tmp", "ckpt-1.npz"})
    assert not list(ckpts.glob("*.tmp"))
    state = json.loads((ckpts / "checkpoint.json").read_text())
    assert [e["epoch"] for e in state["checkpoints"]] == [1, 2, 3]
    for entry in state["checkpoints"]:  # the rewritten ckpt-2/3 read back whole
        from seq2exp.engine.checkpointing_npz import read_archive

        assert read_archive(str(ckpts / entry["file"]), entry["sha256"])


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(runs):
    log = runs["results"]["damaged_resumed"]["log"]
    assert "ckpt-3.npz is unreadable (OSError" in log and "SHA-256" in log, log[-3000:]
    assert "epochs 3..3" in log
    _same_as_full(runs, "damaged_resumed")

"""Under JAX, kill -9 during a training step and inside a checkpoint write, then --resume: the run ends where
an uninterrupted one does, and a half-written or damaged checkpoint is never used (the TF test's shape, on the
JAX engine's numpy-archive checkpoints).

Tolerance: final weights within 1e-6 (max abs) and history within rel 1e-6 of the uninterrupted run; XLA on
CPU is deterministic, so the measured difference is 0.0 (printed).
"""
import json
from pathlib import Path

import pytest

from tests.engine.jax_jobs import SMALL, build_dataset, job, run_jobs
from tests.reliability.test_interruption import _same_as_full, interrupted_runs  # the TF test's scenario

SIGKILL_RC = -9
DROPOUT = {**SMALL, "dense_dropouts": [0.2]}  # dropout seed states must survive the kill as well


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_interruption")
    # one flipped byte in the newest archive: caught by the SHA-256 recorded at the commit
    return interrupted_runs(tmp, build_dataset, job, run_jobs, DROPOUT, "ckpt-3.npz")


def test_kill_during_a_step_resumes_from_last_checkpoint(runs):
    r = runs["results"]
    assert r["kill_step"]["rc"] == SIGKILL_RC, r["kill_step"]["log"][-3000:]
    assert "model.keras" not in runs["after_kill"]["kill_step"]
    assert "checkpoints/ckpt-2.npz" in runs["after_kill"]["kill_step"]
    assert runs["epochs_logged"]["kill_step"] == [1, 2]
    assert "resumed from" in r["kill_step_resumed"]["log"] and "ckpt-2" in r["kill_step_resumed"]["log"]
    assert "epochs 3..3" in r["kill_step_resumed"]["log"]
    _same_as_full(runs, "kill_step_resumed")


def test_kill_inside_checkpoint_write_never_uses_the_partial_checkpoint(runs):
    r = runs["results"]
    assert r["kill_ckpt"]["rc"] == SIGKILL_RC, r["kill_ckpt"]["log"][-3000:]
    assert "inside the checkpoint save" in r["kill_ckpt"]["log"]
    # what the kill left: ckpt-2 cut in half plus a temp file, but no commit
    left = set(runs["after_kill"]["kill_ckpt"])
    assert {"checkpoints/ckpt-2.npz", "checkpoints/ckpt-2.npz.tmp", "checkpoints/ckpt-1.npz"} <= left, sorted(left)
    assert runs["epochs_logged"]["kill_ckpt"] == [1, 2]  # history is written before the commit; cut back on resume
    log = r["kill_ckpt_resumed"]["log"]
    assert "ckpt-1" in log and "epochs 2..3" in log, log[-3000:]
    assert "unreadable" not in log  # the uncommitted file was not even tried
    _same_as_full(runs, "kill_ckpt_resumed")
    ckpts = Path(runs["jobs"]["kill_ckpt"]["run_dir"]) / "checkpoints"
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

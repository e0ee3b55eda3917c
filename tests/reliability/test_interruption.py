"""kill -9 during a training step and inside a checkpoint write, then --resume: the run ends where an
uninterrupted one does, and a half-written or damaged checkpoint is never used.

Tolerance: final weights within 1e-6 (max abs) and history within rel 1e-6 of the uninterrupted
run; with op determinism on CPU the measured difference is 0.0 (printed).
"""
import json
import shutil
from pathlib import Path

import pytest

from tests.reliability.jobs import SMALL, build_dataset, history, job, max_diff, ok, run_jobs, weights

SIGKILL_RC = -9
DROPOUT = {"dense_dropouts": [0.2]}  # dropout RNG state must survive the kill as well


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interruption")
    # one flipped byte in the tensor data: caught by the tensor CRC32C on restore
    return interrupted_runs(tmp, build_dataset, job, run_jobs, {**SMALL, **DROPOUT}, "ckpt-3.data-00000-of-00001")


def interrupted_runs(tmp, build_dataset, job, run_jobs, model: dict, newest_checkpoint_file: str) -> dict:
    """Phase 1: uninterrupted / killed mid-step / killed inside a checkpoint write.
    Phase 2: the killed runs resumed, and a copy of the finished run with one byte of
    `checkpoints/<newest_checkpoint_file>` flipped. Shared by the JAX engine's test (its own job helpers)."""
    data = build_dataset(tmp, 400)
    first = {
        "full": job(data, tmp, "full", model=model),
        # 10 steps per epoch: step 25 is the middle of epoch 3, after ckpt-2
        "kill_step": job(data, tmp, "kill_step", model=model, fault={"kind": "kill_at_step", "step": 25}),
        # dies inside epoch 2's save after cutting its files in half and leaving a temp file
        "kill_ckpt": job(data, tmp, "kill_ckpt", model=model,
                         fault={"kind": "kill_in_checkpoint", "epoch": 2, "partial": True}),
    }
    phase1 = run_jobs(tmp, first)
    ok(phase1, "full")
    killed = {name: Path(first[name]["run_dir"]) for name in ("kill_step", "kill_ckpt")}
    after_kill = {name: sorted(str(p.relative_to(d)) for p in d.rglob("*")) for name, d in killed.items()}
    epochs_logged = {name: [r["epoch"] for r in json.loads((d / "history.json").read_text())]
                     for name, d in killed.items()}
    damaged = tmp / "run_damaged"
    shutil.copytree(first["full"]["run_dir"], damaged)
    target = damaged / "checkpoints" / newest_checkpoint_file
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    second = {f"{name}_resumed": {**first[name], "fault": None, "resume": True,
                                  "out": str(tmp / f"{name}_resumed.npz")} for name in ("kill_step", "kill_ckpt")}
    second["damaged_resumed"] = {**first["full"], "run_dir": str(damaged), "resume": True,
                                 "out": str(tmp / "damaged_resumed.npz")}
    phase2 = run_jobs(tmp, second)
    return {"jobs": {**first, **second}, "results": {**phase1, **phase2}, "after_kill": after_kill,
            "epochs_logged": epochs_logged}


def _same_as_full(runs, name):
    jobs, results = runs["jobs"], runs["results"]
    ok(results, name)
    diff = max_diff(weights(jobs[name]["out"]), weights(jobs["full"]["out"]))
    print(f"{name}: max |weight difference| vs uninterrupted = {diff:g}")
    assert diff <= 1e-6
    full, resumed = history(jobs["full"]), history(jobs[name])
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    for a, b in zip(full["history"], resumed["history"]):
        for key in ("step", "lr", "loss", "val_r2", "val_pearson", "skipped_steps"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (name, key)
    assert resumed["summary"]["val"] == pytest.approx(full["summary"]["val"], rel=1e-6)
    assert resumed["summary"]["best_epoch"] == full["summary"]["best_epoch"]
    run = Path(jobs[name]["run_dir"])
    csv_rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 4  # header + 3 epochs, none duplicated by the redone epoch
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3


def check_kill_during_a_step(runs: dict, second_checkpoint: str) -> None:
    """Killed mid-epoch 3: no model.keras, `second_checkpoint` committed; --resume from it runs epoch 3 only
    and ends as the uninterrupted run. Shared with the JAX engine's test."""
    r = runs["results"]
    assert r["kill_step"]["rc"] == SIGKILL_RC, r["kill_step"]["log"][-3000:]
    assert "model.keras" not in runs["after_kill"]["kill_step"]
    assert f"checkpoints/{second_checkpoint}" in runs["after_kill"]["kill_step"]
    assert runs["epochs_logged"]["kill_step"] == [1, 2]
    assert "resumed from" in r["kill_step_resumed"]["log"] and "ckpt-2" in r["kill_step_resumed"]["log"]
    assert "epochs 3..3" in r["kill_step_resumed"]["log"]
    _same_as_full(runs, "kill_step_resumed")


def check_kill_inside_a_checkpoint_write(runs: dict, left_by_the_kill: set) -> Path:
    """Killed inside epoch 2's save, which leaves `left_by_the_kill` (half-written ckpt-2 files, a temp) beside
    ckpt-1 but no commit: --resume uses ckpt-1 without trying the partial files and ends as the uninterrupted
    run. Returns the checkpoint folder for the format's own checks. Shared with the JAX engine's test."""
    r = runs["results"]
    assert r["kill_ckpt"]["rc"] == SIGKILL_RC, r["kill_ckpt"]["log"][-3000:]
    assert "inside the checkpoint save" in r["kill_ckpt"]["log"]
    left = set(runs["after_kill"]["kill_ckpt"])
    assert {f"checkpoints/{n}" for n in left_by_the_kill} <= left, sorted(left)
    assert runs["epochs_logged"]["kill_ckpt"] == [1, 2]  # history is written before the commit; cut back on resume
    log = r["kill_ckpt_resumed"]["log"]
    assert "ckpt-1" in log and "epochs 2..3" in log, log[-3000:]
    assert "unreadable" not in log  # the uncommitted files were not even tried
    _same_as_full(runs, "kill_ckpt_resumed")
    return Path(runs["jobs"]["kill_ckpt"]["run_dir"]) / "checkpoints"


def test_kill_during_a_step_resumes_from_last_checkpoint(runs):
    check_kill_during_a_step(runs, "ckpt-2.index")


def test_kill_inside_checkpoint_write_never_uses_the_partial_checkpoint(runs):
    import tensorflow as tf

    ckpts = check_kill_inside_a_checkpoint_write(
        runs, {"ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-2_temp", "ckpt-1.index"})
    assert not list(ckpts.glob("*_temp")) and not list(ckpts.glob("*tempstate*"))
    state = tf.train.get_checkpoint_state(str(ckpts))
    assert state.model_checkpoint_path.endswith("ckpt-3")
    tf.train.load_checkpoint(state.model_checkpoint_path)  # the rewritten ckpt-2/3 read back whole


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(runs):
    log = runs["results"]["damaged_resumed"]["log"]
    assert "ckpt-3 is unreadable (DataLossError" in log and "Checksum does not match" in log, log[-3000:]
    assert "epochs 3..3" in log
    _same_as_full(runs, "damaged_resumed")

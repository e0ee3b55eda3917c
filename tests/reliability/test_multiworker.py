"""Two workers on 127.0.0.1 under MultiWorkerMirroredStrategy: one is killed -9 mid-epoch; the other stops
with a clear error instead of hanging; restarting both resumes from the chief's checkpoint and ends
where a one-process run with the same global batch ends. Only the chief writes into the run folder.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.jobs import build_dataset, free_ports, history, job, max_diff, ok, run_jobs, weights

SETTINGS = {"epochs": 3, "batch_size": 16, "log_every_seconds": 1000, "sync_batch_norm": True}


def _pair(data, tmp, run_dir, suffix, extra):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    return {f"w{i}{suffix}": job(data, tmp, f"w{i}{suffix}", strategy="multiworker", shuffle=False,
                                 settings=SETTINGS, run_dir=run_dir,
                                 tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}},
                                 **extra.get(i, {}))
            for i in range(2)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiworker")
    data = build_dataset(tmp, 400)
    run_dir = str(tmp / "run_mw")
    first = _pair(data, tmp, run_dir, "", {1: {"fault": {"kind": "kill_at_step", "step": 15}}})  # in epoch 2
    first["reference"] = job(data, tmp, "reference", shuffle=False, settings={**SETTINGS, "batch_size": 32})
    phase1 = run_jobs(tmp, first)
    files_after_kill = sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*"))
    second = _pair(data, tmp, run_dir, "_resumed", {i: {"resume": True, "audit": str(tmp / f"w{i}_audit.json")}
                                                    for i in range(2)})
    phase2 = run_jobs(tmp, second)
    return {"tmp": tmp, "run_dir": Path(run_dir), "jobs": {**first, **second}, "results": {**phase1, **phase2},
            "files_after_kill": files_after_kill}


def test_killed_worker_makes_the_other_fail_clearly_not_hang(runs):
    r = runs["results"]
    assert r["w1"]["rc"] == -9 and "SIGKILL after training step 15" in r["w1"]["log"], r["w1"]["log"][-3000:]
    survivor = r["w0"]
    assert survivor["rc"] not in (0, None), survivor["log"][-3000:]
    assert "WorkerLostError: worker 0 of 2 lost contact with the others in epoch 2" in survivor["log"]
    assert "Restart EVERY worker" in survivor["log"] and "ckpt-1" in survivor["log"]
    print(f"survivor exited {survivor['seconds'] - r['w1']['seconds']:.1f} s after the killed worker")
    assert "checkpoints/ckpt-1.index" in runs["files_after_kill"]
    assert "model.keras" not in runs["files_after_kill"]


def test_restarting_both_resumes_from_the_shared_checkpoint(runs):
    jobs, r = runs["jobs"], runs["results"]
    ok(r, "reference", "w0_resumed", "w1_resumed")
    assert "resumed from" in r["w0_resumed"]["log"] and "epochs 2..3" in r["w0_resumed"]["log"]
    ref = weights(jobs["reference"]["out"])
    ref_val = history(jobs["reference"])["summary"]["val"]
    for name in ("w0_resumed", "w1_resumed"):
        diff = max_diff(weights(jobs[name]["out"]), ref)
        print(f"{name}: max |weight difference| vs one process = {diff:g}")
        assert diff < 1e-4, name  # same tolerance as the uninterrupted multi-worker test (sync BN, f32 sums)
        assert history(jobs[name])["summary"]["val"] == pytest.approx(ref_val, rel=1e-4, abs=1e-5), name
    metrics = json.loads((runs["run_dir"] / "metrics.json").read_text())
    assert metrics["strategy"]["workers"] == 2 and metrics["epochs_run"] == 3
    assert [row["epoch"] for row in json.loads((runs["run_dir"] / "history.json").read_text())] == [1, 2, 3]


def test_only_the_chief_writes_into_the_run_folder(runs):
    run_dir = str(runs["run_dir"])
    audits = {i: json.loads((runs["tmp"] / f"w{i}_audit.json").read_text()) for i in range(2)}
    inside = {i: [p for p in paths if p.startswith(run_dir + os.sep)] for i, paths in audits.items()}
    stray = [p for p in inside[1] if ".worker1_tmp" not in p]
    assert inside[1] and not stray, stray  # the non-chief took part in saves, only into its own temp folders
    chief = {os.path.relpath(p, run_dir) for p in inside[0]}
    assert {"metrics.json.tmp", "history.json.tmp", "model.keras", "model.partial.keras"} <= chief, sorted(chief)
    assert any(p.startswith("checkpoints/ckpt-3") for p in chief) and any(p.startswith("best") for p in chief)
    leftovers = [str(p) for p in runs["run_dir"].rglob("*") if "worker1_tmp" in str(p) or ".partial" in str(p)]
    assert not leftovers, leftovers


def test_watchdog_ends_a_stalled_process(tmp_path):
    """A worker stuck outside any collective (e.g. on a hung file system) exits with status 75 and says why."""
    code = textwrap.dedent("""
        import time
        from seq2exp.engine.strategy import Watchdog
        with Watchdog(1.0, " (worker 1 of 2)") as dog:
            dog.beat("training epoch 3 step 7")
            time.sleep(10 ** 6)  # stuck until the watchdog ends the process
    """)
    root = Path(__file__).resolve().parents[2]
    try:  # the watchdog fires after 1 s of no progress; 600 s only bounds a watchdog that never fires
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    except subprocess.TimeoutExpired:
        pytest.fail("waited 600 s for the watchdog (1 s without progress) to end the stalled process; it never did")
    assert proc.returncode == 75, proc.stderr[-2000:]
    assert "no training progress for" in proc.stderr and "training epoch 3 step 7 (worker 1 of 2)" in proc.stderr
    assert "--resume" in proc.stderr

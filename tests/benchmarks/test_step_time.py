"""benchmarks.step_time: the CLI end to end on CPU, the out-of-memory paths, the JAX path, the report."""
import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report, step_time
from benchmarks.step_engines import RSSSampler, oom_reason
from tests.conftest import require_module

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--preset", "tiny", "--warmup", "1", "--steps", "2", "--precisions", "float32"]


def _results(out: Path, name: str = "step_time") -> list:
    return json.loads((out / f"{name}.json").read_text())["results"]


def test_help_lists_the_options():
    text = step_time.parser().format_help()
    for option in ("--batch-sizes", "--precisions", "--strategies", "--jit", "--synthetic-input", "--peak-tflops",
                   "--dataset-size", "--max-memory-gb", "--data"):
        assert option in text


def test_cli_end_to_end_on_cpu_with_the_reader(tmp_path):
    """Simulated dataset -> data_prep build -> TFRecord reader -> Trainer step; CSV, JSON, MD and PNG written."""
    out = tmp_path / "out"
    rc = step_time.main(["--models", "legnet", *TINY, "--batch-sizes", "8", "--sim-sequences", "200",
                         "--dataset-size", "1000", "--epochs", "20", "--peak-tflops", "float32=0.5,mixed_float16=2",
                         "--out-dir", str(out)])
    assert rc == 0
    for ext in ("csv", "json", "md", "png"):
        assert (out / f"step_time.{ext}").stat().st_size > 0
    payload = json.loads((out / "step_time.json").read_text())
    env = payload["env"]
    assert env["tensorflow"] and env["keras"] and env["keras_backend"] == "tensorflow" and env["cpu_model"]
    (row,) = payload["results"]
    assert row["status"] == "ok" and row["input"] == "tfrecord" and row["model"] == "legnet"
    assert row["strategy"] == "default" and row["replicas"] == 1 and row["jit"] is False
    assert row["timed_steps"] == 2 and len(row["warmup_s"]) == 1
    assert row["min_s"] <= row["median_s"] <= row["max_s"]
    assert row["seq_per_s"] == pytest.approx(8 / row["median_s"])
    assert row["flops_per_step"] == 3 * 8 * row["flops_fwd_per_seq"] > 0
    assert row["tflops_achieved"] == pytest.approx(row["flops_per_step"] / row["median_s"] / 1e12)
    assert row["peak_tflops"] == 0.5 and row["utilisation"] == pytest.approx(row["tflops_achieved"] / 0.5)
    assert row["steps_per_epoch"] == 1000 // 8
    assert row["epoch_s"] == pytest.approx(125 * row["median_s"])
    assert row["train_s"] == pytest.approx(20 * row["epoch_s"])
    assert row["memory_kind"] == "host_rss_delta" and row["memory_gb"] is not None
    assert np.isfinite(row["loss_last"])
    with open(out / "step_time.csv") as fh:
        (csv_row,) = list(csv.DictReader(fh))
    assert csv_row["status"] == "ok" and float(csv_row["median_s"]) == pytest.approx(row["median_s"], rel=1e-5)
    md = (out / "step_time.md").read_text()
    assert "| local batch | global batch | float32 s/step (IQR)" in md and "legnet (tiny" in md


def test_absurd_batch_is_recorded_as_out_of_memory(tmp_path):
    """A batch of 10^13 cannot be allocated: recorded as OOM (not a crash); the larger batch is skipped."""
    out = tmp_path / "oom"
    rc = step_time.main(["--models", "crmnet", *TINY, "--synthetic-input", "--max-memory-gb", "0", "--no-plot",
                         "--batch-sizes", f"{10**13},{2 * 10**13}", "--out-dir", str(out)])
    assert rc == 0
    first, second = _results(out)
    assert first["status"] == "oom" and "MemoryError" in first["oom_reason"]
    assert second["status"] == "skipped" and str(10**13) in second["oom_reason"]
    assert "OOM" in (out / "step_time.md").read_text()


def test_memory_guard_records_out_of_memory_without_running(tmp_path):
    out = tmp_path / "guard"
    rc = step_time.main(["--models", "legnet", *TINY, "--synthetic-input", "--max-memory-gb", "1e-6", "--no-plot",
                         "--batch-sizes", "2,4", "--out-dir", str(out)])
    assert rc == 0
    first, second = _results(out)
    assert first["status"] == "oom" and first["oom_reason"].startswith("guard: estimated")
    assert first["estimated_memory_gb"] > 1e-6 and "timed_steps" not in first
    assert second["status"] == "skipped"


def test_budget_spent_leaves_not_run_rows_and_the_tables(tmp_path):
    """--budget-s: nothing is started past a model's share; every configuration still gets its row and the
    tables are written (the device check relies on this to end on time)."""
    out = tmp_path / "budget"
    rc = step_time.main(["--models", "crmnet,legnet", *TINY, "--synthetic-input", "--budget-s", "0.001",
                         "--no-plot", "--batch-sizes", "2,4", "--out-dir", str(out)])
    assert rc == 0
    rows = _results(out)
    assert [(r["model"], r["batch_per_replica"], r["status"]) for r in rows] == [
        ("crmnet", 2, "not_run"), ("crmnet", 4, "not_run"), ("legnet", 2, "not_run"), ("legnet", 4, "not_run")]
    assert all("budget" in r["reason"] and "timed_steps" not in r for r in rows)
    assert "not_run" in (out / "step_time.md").read_text()
    with pytest.raises(SystemExit, match="--budget-s must be positive"):
        step_time.main(["--models", "legnet", *TINY, "--budget-s", "0", "--out-dir", str(out)])


def test_oom_reason_classifies_framework_errors():
    class ResourceExhaustedError(Exception):
        pass

    assert oom_reason(MemoryError("Unable to allocate 4 PiB")).startswith("MemoryError")
    assert oom_reason(ResourceExhaustedError("OOM when allocating tensor")).startswith("ResourceExhaustedError")
    assert "RESOURCE_EXHAUSTED" in oom_reason(RuntimeError("XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory"))
    assert oom_reason(ValueError("shapes do not match")) is None


def test_rss_sampler_keeps_the_peak_of_a_freed_allocation():
    """The sampler thread records a 64 MiB block while it lives and keeps that peak after it is freed.

    Event-based: wait (generously) until the thread has seen the block, whatever the machine's load."""
    import time

    sampler = RSSSampler(interval_s=0.001).start()
    block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, touched
    assert block.sum() == block.size
    deadline = time.monotonic() + 300
    while sampler.peak - sampler.base < 48 * 2**20:
        if time.monotonic() > deadline:
            sampler.stop()
            pytest.fail(f"waited 300 s for the sampler thread to see the 64 MiB block; its peak is "
                        f"{(sampler.peak - sampler.base) / 2**20:.1f} MiB above the start")
        time.sleep(0.01)
    del block  # numpy returns a block this large to the OS: RSS falls, the recorded peak must not
    assert sampler.stop() >= 48 * 2**20


def test_report_formats_and_table_shape():
    assert report.duration(12.34) == "12.3 s"
    assert report.duration(3723) == "1:02:03"
    assert report.duration(2 * 86400 + 5) == "2 d 00:00:05"
    base = {"model": "m", "preset": "p", "backend": "tensorflow", "hardware": "hw", "strategy": "default",
            "replicas": 1, "jit": False, "input": "synthetic", "params": 10, "dataset_size": 100, "epochs": 20}
    ok = {**base, "precision": "float32", "batch_per_replica": 4, "global_batch": 4, "status": "ok", "median_s": 2.0,
          "p25_s": 1.5, "p75_s": 2.5, "seq_per_s": 2.0, "epoch_s": 50.0, "train_s": 1000.0}
    mixed = {**ok, "precision": "mixed_bfloat16", "median_s": 1.0, "seq_per_s": 4.0, "epoch_s": 25.0, "train_s": 500.0}
    oom = {**base, "precision": "float32", "batch_per_replica": 8, "global_batch": 8, "status": "oom"}
    table = report.table1_markdown([ok, mixed, oom])
    lines = [l for l in table.splitlines() if l.startswith("|")]
    assert "float32 s/step (IQR)" in lines[0] and "mixed_bfloat16 20 epochs" in lines[0]
    assert lines[2].split("|")[1].strip() == "4" and "16:40" in lines[2] and "8:20" in lines[2]
    assert "OOM" in lines[3]


def test_jax_backend_times_without_tensorflow(tmp_path):
    """KERAS_BACKEND=jax: the same registry model through the JAX engine's step, synthetic input, no TensorFlow."""
    require_module("jax", "the JAX path is timed with jax on CPU (pip install jax)")
    out = tmp_path / "jax"
    script = textwrap.dedent(f"""
        import sys
        from benchmarks import step_time
        rc = step_time.main(["--models", "legnet", "--preset", "tiny", "--warmup", "1", "--steps", "2",
                             "--batch-sizes", "4", "--jit", "--synthetic-input", "--no-plot",
                             "--out-dir", {str(out)!r}])
        print("TF_IMPORTED", "tensorflow" in sys.modules)
        sys.exit(rc)
    """)
    # XLA's CPU backend optimisations off: half the compile time; this checks the path, not its speed
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    try:  # a bound on a hang only: the run traces and times 3 steps of the tiny LegNet
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=1800)
    except subprocess.TimeoutExpired:
        pytest.fail("waited 1800 s for the JAX step-time subprocess (3 tiny-LegNet steps) to exit; it hangs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TF_IMPORTED False" in proc.stdout
    (row,) = _results(out)
    assert row["status"] == "ok" and row["backend"] == "jax" and row["input"] == "synthetic" and row["jit"] is True
    assert row["timed_steps"] == 2 and row["median_s"] > 0 and np.isfinite(row["loss_last"])
    assert json.loads((out / "step_time.json").read_text())["env"]["jax"]

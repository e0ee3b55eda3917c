"""What a benchmark number was measured on: the library's provenance record (versions, git commit, devices,
CPU model and its bf16 flags, load; seq2exp.engine.provenance) plus what only benchmarks time (PyTorch).

Backend-neutral: TensorFlow is imported only when it is the Keras backend (or asked for), so the
JAX path of ``benchmarks.step_time`` records its environment without TensorFlow installed.
"""
from __future__ import annotations

from seq2exp.engine.provenance import (  # noqa: F401  (the benchmarks' names for them)
    ENV_VARS,
    cpu_model,
    git_state,
    load_average,
    summary_line,
)
from seq2exp.engine.provenance import environment as _environment


def torch_environment(threads: int) -> dict:
    import torch

    return {"torch": torch.__version__, "torch_threads": threads,
            "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}


def environment(backend: str | None = None, torch_threads: int | None = None) -> dict:
    """The whole record: base + the Keras backend's framework (+ torch when timing it too) + the git commit."""
    env = _environment(backend)
    env["git"] = git_state()
    if "tensorflow" in env:
        env["tf_gpus"] = env["accelerator_count"] if env["accelerator"] != "CPU" else 0
    if torch_threads is not None:
        env.update(torch_environment(torch_threads))
    return env

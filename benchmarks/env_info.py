"""What a benchmark number was measured on: versions, devices, CPU, threads, load.

Backend-neutral: TensorFlow is imported only when it is the Keras backend (or asked for), so the
JAX path of ``benchmarks.step_time`` records its environment without TensorFlow installed.
"""
from __future__ import annotations

import os
import platform
import socket
import sys

ENV_VARS = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_XLA_FLAGS",
            "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "TF_GPU_ALLOCATOR", "XLA_PYTHON_CLIENT_MEM_FRACTION",
            "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            return round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def base_environment() -> dict:
    import keras
    import numpy as np

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "cpu_model": cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "mem_total_gb": _mem_total_gb(),
        "load_average": load_average(),
        "env_vars": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }


def tensorflow_environment() -> dict:
    import tensorflow as tf

    devices = []
    for d in tf.config.list_physical_devices():
        entry = {"name": d.name, "type": d.device_type}
        if d.device_type in ("GPU", "TPU"):
            try:
                details = tf.config.experimental.get_device_details(d)
                entry.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in details.items()})
            except (ValueError, RuntimeError):
                pass
        devices.append(entry)
    accel = [d for d in devices if d["type"] in ("GPU", "TPU")]
    build = tf.sysconfig.get_build_info()
    return {
        "tensorflow": tf.__version__,
        "tf_cuda": build.get("cuda_version"),
        "tf_cudnn": build.get("cudnn_version"),
        "tf_devices": devices,
        "accelerator": accel[0].get("device_name", accel[0]["type"]) if accel else "CPU",
        "accelerator_count": len(accel),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
    }


def jax_environment() -> dict:
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    accel = [d for d in devices if d.platform != "cpu"]
    return {
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "accelerator": accel[0].device_kind if accel else "CPU",
        "accelerator_count": len(accel),
        "jax_device_kinds": kinds,
    }


def torch_environment(threads: int) -> dict:
    import torch

    return {"torch": torch.__version__, "torch_threads": threads,
            "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_mkldnn": bool(torch.backends.mkldnn.is_available())}


def environment(backend: str | None = None, torch_threads: int | None = None) -> dict:
    """The whole record: base + the Keras backend's framework (+ torch when timing it too)."""
    env = base_environment()
    backend = backend or env["keras_backend"]
    if backend == "tensorflow":
        env.update(tensorflow_environment())
        env["tf_gpus"] = env["accelerator_count"] if env["accelerator"] != "CPU" else 0
    elif backend == "jax":
        env.update(jax_environment())
    if torch_threads is not None:
        env.update(torch_environment(torch_threads))
    return env


def summary_line(env: dict) -> str:
    fw = (f"TF {env['tensorflow']}" if "tensorflow" in env else f"JAX {env.get('jax', '?')}")
    dev = (f"{env['accelerator_count']} x {env['accelerator']}" if env.get("accelerator_count")
           else "CPU only")
    return (f"{env['cpu_model']}, {env['os_cpu_count']} cores, {dev}; {fw} / Keras {env['keras']} "
            f"(backend {env['keras_backend']}); load average {env['load_average']}")

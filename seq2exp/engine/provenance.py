"""What made a result: the code, the software, the machine, the command and the data.

Every run folder (`provenance.json`), evaluation result and benchmark result file carries this record, so a
number can be traced to the versions that produced it (the JAX demo gave test r 0.764 on one machine and
0.780 on another, and nothing said which versions ran). TensorFlow or JAX is described only when it is the
active Keras backend (or asked for): the JAX path records its environment without TensorFlow installed.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import platform
import shlex
import socket
import subprocess
import sys

#: environment variables that change what a run computes or how fast
ENV_VARS = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_XLA_FLAGS",
            "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "TF_GPU_ALLOCATOR", "XLA_PYTHON_CLIENT_MEM_FRACTION",
            "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS", "TF_USE_LEGACY_KERAS")
#: CPU flags that decide whether bfloat16 (and wide float32) matrix work is native
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                out[key.strip().lower()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (as lscpu lists them)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in CPU_FLAGS if f in flags]


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def package_version() -> str:
    from seq2exp._version import __version__

    return __version__


def git_state(root: str = _ROOT) -> dict | None:
    """{"commit", "dirty"} of the checkout the package runs from; None when it is not one (an installed wheel)."""
    if not os.path.isdir(os.path.join(root, ".git")) and not os.path.isfile(os.path.join(root, ".git")):
        return None
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_hashes(folders) -> list[dict]:
    """{"path", "manifest_sha256"} of built dataset folders (manifest.json lists every shard's SHA-256)."""
    out = []
    for folder in folders:
        manifest = os.path.join(folder, "manifest.json")
        out.append({"path": os.path.abspath(folder),
                    "manifest_sha256": file_sha256(manifest) if os.path.isfile(manifest) else None})
    return out


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
    import jaxlib

    devices = jax.devices()
    accel = [d for d in devices if d.platform != "cpu"]
    env = {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "accelerator": accel[0].device_kind if accel else "CPU",
        "accelerator_count": len(accel),
        "jax_device_kinds": sorted({d.device_kind for d in devices}),
    }
    if accel:  # the CUDA / cuDNN versions jaxlib was built with, where this jaxlib says
        try:
            from jax._src.lib import cuda_versions

            if cuda_versions is not None:
                env["jax_cuda"] = cuda_versions.cuda_runtime_get_version()
                env["jax_cudnn"] = cuda_versions.cudnn_get_version()
        except (ImportError, AttributeError, RuntimeError):
            pass
    return env


def environment(backend: str | None = None) -> dict:
    """Software and machine: versions, the active backend's framework and devices, CPU, memory, load."""
    import keras
    import numpy as np

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    env = {
        "seq2exp": package_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "os_cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average": load_average(),
        "env_vars": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }
    try:
        with open("/proc/meminfo") as fh:
            env["mem_total_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        env["mem_total_gb"] = None
    backend = backend or env["keras_backend"]
    if backend == "tensorflow":
        env.update(tensorflow_environment())
    elif backend == "jax":
        env.update(jax_environment())
    return env


def provenance(argv: list[str] | None = None, datasets=(), backend: str | None = None) -> dict:
    """The whole record: when, which code (version, git commit and dirty flag), the environment, the command
    line (`argv`, default this process's) and the SHA-256 of the datasets' manifests."""
    command = [sys.executable, *sys.argv] if argv is None else list(argv)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "command": shlex.join(command),
        "cwd": os.getcwd(),
        **environment(backend),
        "datasets": dataset_hashes(datasets),
    }


def summary_line(env: dict) -> str:
    fw = f"TF {env['tensorflow']}" if "tensorflow" in env else f"JAX {env.get('jax', '?')}"
    dev = f"{env['accelerator_count']} x {env['accelerator']}" if env.get("accelerator_count") else "CPU only"
    flags = ", ".join(env.get("cpu_flags") or []) or "none of " + "/".join(CPU_FLAGS[2:])
    return (f"{env['cpu_model']} ({flags}), {env['os_cpu_count']} cores, {dev}; {fw} / Keras {env['keras']} "
            f"(backend {env['keras_backend']}); load average {env['load_average']}")

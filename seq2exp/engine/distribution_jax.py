"""Device placement for the JAX engine: what a `tf.distribute` strategy is to the TensorFlow engine.

`--strategy` under KERAS_BACKEND=jax (keras.distribution; one process per host):

- `auto`: several processes when the environment names them (below), then data parallel over every
  device of every process when there is more than one device, else one device;
- `default`: one device (this process's first);
- `mirrored`: data parallel over this process's devices (all local GPUs);
- `multiworker`: several processes through `keras.distribution.initialize`, data parallel over all their
  devices; the processes come from KERAS_DISTRIBUTION_JOB_ADDRESSES (the coordinator's host:port first),
  KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID, or from the TF_CONFIG a TensorFlow
  multi-worker run uses (its first chief/worker address becomes the coordinator, the task index the
  process id);
- `tpu`: data parallel over the TPU chips JAX sees (run on the TPU VM itself: `--tpu` may only be 'local').

Data parallel is `keras.distribution.DataParallel`: variables are replicated, each batch is split on
its first axis over the devices, and the jit-compiled step sees the global batch (so BatchNorm
statistics are global, like the TensorFlow engine's synchronised ones). Each process reads its own
files (`seq2exp.engine.data.process_input`) and contributes its rows of the global batch.
"""
from __future__ import annotations

import contextlib
import json
import os

import keras
import numpy as np

from seq2exp.engine.runtime import StrategyError
from seq2exp.engine.settings import STRATEGIES

_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")
_initialized: tuple | None = None


class JaxPlacement:
    """The devices a JAX run uses and how batches are laid out on them (see module docstring)."""

    def __init__(self, distribution=None, name: str = "OneDevice"):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

        self.distribution, self.name = distribution, name
        if distribution is None:
            self.devices = [jax.local_devices()[0]]
            self.data_sharding = self.replicated = SingleDeviceSharding(self.devices[0])
        else:
            mesh = distribution.device_mesh.backend_mesh
            self.devices = list(np.asarray(mesh.devices).flat)
            self.data_sharding = NamedSharding(mesh, PartitionSpec(distribution.batch_dim_name))
            self.replicated = NamedSharding(mesh, PartitionSpec())
        self.process_index, self.process_count = jax.process_index(), jax.process_count()

    @property
    def num_replicas_in_sync(self) -> int:
        """Devices the global batch is split over (the TF strategy's replicas)."""
        return len(self.devices)

    @contextlib.contextmanager
    def scope(self):
        """Where variables are created: replicated over the devices under data parallelism, else on one device
        (whatever Keras' global distribution is meanwhile)."""
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(self.distribution)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)

    def put(self, local: dict) -> dict:
        """This process's rows of a batch -> global arrays laid out over the devices (batch axis split)."""
        import jax

        if self.distribution is None:
            return jax.device_put(local, self.data_sharding)
        return {k: jax.make_array_from_process_local_data(self.data_sharding, np.asarray(v)) for k, v in local.items()}

    def barrier(self, name: str = "seq2exp") -> None:
        if self.process_count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def describe(self) -> dict:
        return {"name": self.name, "replicas": self.num_replicas_in_sync, "devices": [str(d) for d in self.devices],
                "workers": self.process_count, "task_type": "worker" if self.process_count > 1 else None,
                "worker_index": self.process_index, "chief": self.process_index == 0}


def cluster_from_env() -> tuple[str, int, int] | None:
    """(coordinator host:port, processes, this process's id) from KERAS_DISTRIBUTION_* or TF_CONFIG; None if unset."""
    if any(os.environ.get(k) for k in _ENV):
        missing = [k for k in _ENV if not os.environ.get(k)]
        if missing:
            raise StrategyError(f"several JAX processes need all of {', '.join(_ENV)}; {', '.join(missing)} unset")
        try:
            count, index = int(os.environ[_ENV[1]]), int(os.environ[_ENV[2]])
        except ValueError as err:
            raise StrategyError(f"{_ENV[1]} and {_ENV[2]} must be integers ({err})") from None
        addresses = os.environ[_ENV[0]].split(",")
        if not 0 <= index < count or (len(addresses) > 1 and len(addresses) != count):
            raise StrategyError(f"process id {index} of {count} processes with {len(addresses)} job address(es) "
                                f"in {_ENV[0]}: out of range or the counts differ")
        return addresses[0], count, index
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        members = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        index = int(task["index"]) + (len(cluster.get("chief", [])) if task["type"] == "worker" else 0)
    except (ValueError, KeyError, TypeError) as err:
        raise StrategyError(f"TF_CONFIG cannot name the JAX processes ({type(err).__name__}: {err}); expected "
                            '{"cluster": {"worker": ["host1:port", ...]}, "task": {"type": "worker", "index": 0}}') \
            from None
    if not 0 <= index < len(members):
        raise StrategyError(f"TF_CONFIG task index {task['index']} is out of range for {len(members)} processes")
    return members[0], len(members), index


def initialize(coordinator: str, count: int, index: int) -> None:
    """Join the other processes (once per process, before any other JAX work)."""
    global _initialized
    if _initialized is not None:
        if _initialized != (coordinator, count, index):
            raise StrategyError(f"this process already joined {_initialized}; cannot also join "
                                f"{(coordinator, count, index)}")
        return
    from keras.src.backend.common import global_state

    if global_state.get_global_attribute("global_random_seed") is None:
        # keras' own agreement on a seed would go through keras.utils.set_random_seed, which imports TensorFlow;
        # every process seeds itself alike anyway (Trainer: keras seed = settings.seed)
        global_state.set_global_attribute("global_random_seed", 0)
    keras.distribution.initialize(coordinator, count, index)
    _initialized = (coordinator, count, index)


def resolve_placement(name: str = "auto", tpu: str | None = None) -> JaxPlacement:
    """The JAX placement for a `--strategy` name (module docstring); sets Keras' global distribution."""
    key = (name or "auto").lower().replace("-", "").replace("_", "")
    key = {"multiworkermirrored": "multiworker", "onedevice": "default"}.get(key, key)
    if key not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    cluster = cluster_from_env() if key in ("auto", "multiworker", "tpu") else None
    if key == "multiworker" and cluster is None:
        raise StrategyError(f"strategy 'multiworker' under JAX needs the processes named: {', '.join(_ENV)} "
                            "(e.g. 10.0.0.1:1234, 2, 0) or TF_CONFIG")
    if cluster is not None:
        initialize(*cluster)
    import jax

    if key == "tpu":
        if tpu not in (None, "", "local"):
            raise StrategyError(f"--tpu {tpu}: under JAX run on the TPU VM itself (--tpu local, or leave it out)")
        if jax.default_backend() != "tpu":
            raise StrategyError(f"strategy 'tpu': JAX sees no TPU here (its devices: {jax.devices()}); choose "
                                "another strategy")
    if key == "default":
        if jax.process_count() > 1:
            raise StrategyError("strategy 'default' is one device of one process; use 'auto' or 'multiworker'")
        keras.distribution.set_distribution(None)
        return JaxPlacement(None)
    devices = jax.local_devices() if key == "mirrored" else jax.devices()
    if key == "auto" and len(devices) == 1:
        keras.distribution.set_distribution(None)
        return JaxPlacement(None)
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return JaxPlacement(distribution, "DataParallel")


def current_placement() -> JaxPlacement:
    """Keras' global distribution if one is set (data parallel), else one device."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return JaxPlacement(None)
    if not isinstance(distribution, keras.distribution.DataParallel):
        raise StrategyError(f"the engine runs data parallel only; Keras' global distribution is "
                            f"{type(distribution).__name__}")
    return JaxPlacement(distribution, "DataParallel")

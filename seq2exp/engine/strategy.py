"""Choosing a `tf.distribute` strategy and a precision policy, with errors that say what to fix.

The trainer runs one custom loop under every strategy, so all that differs between a laptop, a
multi-GPU box, a multi-worker cluster and a TPU is what this module returns. Multi-worker and TPU
strategies must be created before any other TensorFlow op runs, so call `resolve_strategy` first.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from seq2exp.engine.runtime import DEFAULT_COLLECTIVE_TIMEOUT_S, StrategyError, Watchdog, WorkerLostError, set_precision  # noqa: F401 (public here)
from seq2exp.engine.settings import STRATEGIES

log = logging.getLogger(__name__)


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not raw:
        raise StrategyError(f"strategy 'multiworker' needs the TF_CONFIG environment variable, e.g. {example}")
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as err:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({err}); expected e.g. {example}") from None
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(f"TF_CONFIG needs 'cluster' and 'task' objects; got keys {sorted(cfg)}; e.g. {example}")
    ttype, index = task.get("type"), task.get("index")
    members = cluster.get(ttype)
    if not isinstance(members, list) or not members:
        raise StrategyError(f"TF_CONFIG task type {ttype!r} is not a non-empty list in cluster {sorted(cluster)}")
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise StrategyError(f"TF_CONFIG task index {index!r} is out of range for {len(members)} {ttype!r} task(s)")
    if ttype not in ("chief", "worker"):
        raise StrategyError(f"TF_CONFIG task type {ttype!r}: MultiWorkerMirroredStrategy runs only chief/worker tasks")
    return cfg


def _multiworker(timeout_s: float | None) -> tf.distribute.Strategy:
    _tf_config()
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=timeout_s if timeout_s and timeout_s > 0 else None)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(tpu: str | None) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":  # a TPU VM's own chips need no remote connection
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as err:  # noqa: BLE001 - resolver failures come as ValueError, URLError, OpError, ...
        where = f"tpu={tpu!r}" if tpu else "the TPU_NAME environment variable / this VM"
        raise StrategyError(f"no usable TPU found via {where}: {err}. Pass --tpu NAME (or 'local' on a TPU VM), "
                            f"or choose another strategy.") from err
    return tf.distribute.TPUStrategy(resolver)


def _tpu_configured(tpu: str | None) -> bool:
    # Only cheap local signals: probing the GCE metadata server can hang off-cloud.
    return bool(tpu or os.environ.get("TPU_NAME") or tf.config.list_physical_devices("TPU"))


def resolve_strategy(name: str = "auto", tpu: str | None = None,
                     collective_timeout_s: float | None = DEFAULT_COLLECTIVE_TIMEOUT_S) -> tf.distribute.Strategy:
    """Strategy by name. "auto": a configured TPU, else multi-worker when TF_CONFIG is set, else all
    local GPUs if more than one, else one device. Call before any other TensorFlow work."""
    key = (name or "auto").lower().replace("-", "").replace("_", "")
    key = {"multiworkermirrored": "multiworker", "onedevice": "default"}.get(key, key)
    if key not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if key == "auto":
        if _tpu_configured(tpu):
            return _tpu(tpu if tpu else ("local" if not os.environ.get("TPU_NAME") else None))
        if os.environ.get("TF_CONFIG"):
            log.info("TF_CONFIG is set: using MultiWorkerMirroredStrategy")
            return _multiworker(collective_timeout_s)
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        return tf.distribute.get_strategy()
    if key == "default":
        return tf.distribute.get_strategy()
    if key == "mirrored":
        return tf.distribute.MirroredStrategy()
    if key == "multiworker":
        return _multiworker(collective_timeout_s)
    return _tpu(tpu)


_FRIENDLY = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
             "_DefaultDistributionStrategy": "DefaultStrategy"}


def _cluster(strategy) -> tuple[str | None, int, dict]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return None, 0, {}
    spec = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    return resolver.task_type, int(resolver.task_id or 0), spec


def is_chief(strategy=None) -> bool:
    """The one worker that writes checkpoints, logs and the final model (worker 0 when no chief task)."""
    strategy = strategy or tf.distribute.get_strategy()
    task_type, task_id, spec = _cluster(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in spec


def describe(strategy=None) -> dict:
    """JSON-friendly summary for logs and metrics.json."""
    strategy = strategy or tf.distribute.get_strategy()
    task_type, task_id, spec = _cluster(strategy)
    workers = sum(len(v) for k, v in spec.items() if k in ("chief", "worker")) or 1
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):  # the default strategy: TF's usual placement
        devices = [d.name for d in tf.config.list_logical_devices("GPU")[:1]] or ["/device:CPU:0"]
    name = _FRIENDLY.get(type(strategy).__name__, type(strategy).__name__)
    return {"name": name, "replicas": int(strategy.num_replicas_in_sync), "devices": devices,
            "workers": workers, "task_type": task_type, "worker_index": task_id, "chief": is_chief(strategy)}


def _one():
    return tf.constant(1.0)


def barrier(strategy) -> None:
    """Block until every worker gets here (a one-number all-reduce); e.g. before reading the chief's files."""
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(_one), axis=None)


#: errors a collective raises when a peer died, stalled past the collective timeout or was aborted
PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                 tf.errors.AbortedError)


def lost_worker_error(err: Exception, info: dict, epoch: int, last_checkpoint: str | None) -> WorkerLostError | None:
    """The error a surviving worker raises instead of TF's, or None when `err` is something else."""
    reason = peer_failure_reason(err)
    if reason is None:
        return None
    return WorkerLostError(
        f"worker {info['worker_index']} of {info['workers']} lost contact with the others in epoch {epoch}: "
        f"{reason.rstrip('.')}. A worker died, stalled past the collective timeout or became unreachable; the "
        f"collectives were aborted, so this worker stops instead of hanging. Last complete checkpoint: "
        f"{last_checkpoint or 'none'}. Restart EVERY worker (same TF_CONFIG) with --resume to continue from it.")


def peer_failure_reason(err: Exception) -> str | None:
    """One line saying why a collective failed, or None when `err` is not a lost/stalled worker."""
    text = str(getattr(err, "message", err))
    if not isinstance(err, PEER_FAILURES) and "Collective ops is aborted" not in text:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for key in ("Collective ops is aborted by:", "unhealthy", "Connection refused", "Deadline", "timed out"):
        for i, ln in enumerate(lines):
            if key in ln:  # "... unhealthy (stopped sending heartbeats):" names the task on the next line
                ln = f"{ln} {lines[i + 1]}" if ln.endswith(":") and i + 1 < len(lines) else ln
                return f"{type(err).__name__}: {ln[:300]}"
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"



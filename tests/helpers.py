"""Assertions shared by the model test suites (CRMnet, LegNet, ...)."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np


def assert_layer_config_roundtrip(layer):
    """``from_config(get_config())`` must rebuild a layer with an equal config.

    Also checks the class is registered, so ``.keras`` files load under
    ``safe_mode=True`` without ``custom_objects``.
    """
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config, (
        f"{layer.__class__.__name__} config changed on round trip:\n"
        f"{config}\n!=\n{clone.get_config()}"
    )
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    return clone


def assert_keras_roundtrip(model, inputs, tmp_path, atol=1e-6):
    """Save as ``.keras``, reload with ``safe_mode=True``, predict the same.

    Inference mode is used on both sides so dropout does not differ.
    """
    path = Path(tmp_path) / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    actual = keras.ops.convert_to_numpy(reloaded(inputs, training=False))
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)
    return reloaded


@contextlib.contextmanager
def policy_scope(policy_name):
    """Sets the global dtype policy for the block and always restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


def run_under_policy(policy_name, fn=None, *args, **kwargs):
    """Runs ``fn(*args, **kwargs)`` under a global dtype policy, then restores it.

    Without ``fn`` it is a context manager::

        with run_under_policy("mixed_bfloat16"):
            model = build(...)

        outputs = run_under_policy("mixed_bfloat16", build_and_predict)
    """
    if fn is None:
        return policy_scope(policy_name)
    with policy_scope(policy_name):
        return fn(*args, **kwargs)


def random_codes(batch, length, seed=0, with_n=True):
    """uint8 base codes (A=0, C=1, G=2, T=3, N=4) for model inputs."""
    rng = np.random.default_rng(seed)
    high = 5 if with_n else 4
    return rng.integers(0, high, size=(batch, length), dtype=np.uint8)


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 right now (for multi-worker TF_CONFIGs in subprocess tests)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


#: How long a subprocess job may go without writing to its log or exiting before it counts as hung. Not a
#: speed limit: a healthy job prints at start-up and at every epoch end, and a test phase takes 1-3 minutes.
IDLE_TIMEOUT_S = 900
#: The collective-op timeout of multi-worker test jobs: it only bounds a hang (a killed peer is noticed by
#: "connection refused" within seconds), so it is the product default rather than a race against tracing.
COLLECTIVE_TIMEOUT_S = 600


def run_jobs(worker, tmp, jobs: dict, idle_timeout_s: float = IDLE_TIMEOUT_S) -> dict:
    """Run ``worker JOB.json`` for every job at once and wait for every one of them to exit.

    Returns ``{name: {"rc", "log", "seconds" (start to exit)}}``. There is no limit on how long the jobs
    take; a job counts as hung when none of the running jobs has written to its log or exited for
    ``idle_timeout_s``: then all are killed and the test fails naming them (a hang must not hang CI).
    """
    import pytest

    tmp = Path(tmp)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs, t0 = {}, time.monotonic()
    for name, spec in jobs.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(spec))
        log = open(tmp / f"{name}.log", "w")
        procs[name] = (subprocess.Popen([sys.executable, str(worker), str(path)], stdout=log,
                                        stderr=subprocess.STDOUT, env=env), log)
    ended: dict[str, float] = {}
    sizes: dict[str, int] = {}
    last_event = time.monotonic()
    while len(ended) < len(procs) and time.monotonic() - last_event < idle_timeout_s:
        for name, (proc, _) in procs.items():
            if name in ended:
                continue
            if proc.poll() is not None:
                ended[name] = time.monotonic() - t0
                last_event = time.monotonic()
            elif (size := (tmp / f"{name}.log").stat().st_size) != sizes.get(name):
                sizes[name] = size
                last_event = time.monotonic()
        time.sleep(0.2)
    for proc, log in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if len(ended) < len(procs):
        hung = sorted(set(procs) - set(ended))
        tails = "\n".join(f"--- {n}.log (last lines) ---\n" + "\n".join(
            (tmp / f"{n}.log").read_text(errors="replace").splitlines()[-15:]) for n in hung)
        pytest.fail(f"waited for jobs {hung} to exit; none of them wrote to its log or exited for "
                    f"{idle_timeout_s:.0f} s (a hang), so all were killed; logs in {tmp}\n{tails}")
    return {name: {"rc": proc.returncode, "log": (tmp / f"{name}.log").read_text(), "seconds": ended[name]}
            for name, (proc, _) in procs.items()}


def assert_jobs_ok(results: dict, *names: str) -> None:
    for name in names:
        r = results[name]
        assert r["rc"] == 0, f"job {name} failed (rc {r['rc']}):\n{r['log'][-4000:]}"


def assert_run_folder(run: Path, rows: list[dict], steps: int, final_weights: list) -> dict:
    """What both engines leave after a finished single-replica run (tests/engine/test_trainer.py and
    test_jax_trainer.py): finite history rows, a falling loss, `steps` optimizer steps, history.csv,
    metrics.json's common keys, and a model.keras that loads in safe mode, holds the trainer's final weights
    exactly and predicts. Returns metrics.json for the engine-specific checks."""
    for r in rows:
        for key in ("loss", "val_pearson", "val_spearman", "val_r2", "val_mse", "val_mae", "lr", "seq_per_s"):
            assert np.isfinite(r[key]), (key, r)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["step"] == steps
    csv_lines = (run / "history.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("epoch,step,lr,loss,") and len(csv_lines) == len(rows) + 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["replicas"] == 1 and metrics["global_batch_size"] == metrics["per_replica_batch_size"]
    assert metrics["val"]["r2"] == max(r["val_r2"] for r in rows)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    got = [np.asarray(w) for w in model.get_weights()]  # the restored best weights = the trainer's final ones
    assert len(got) == len(final_weights) and all(np.array_equal(a, b) for a, b in zip(got, final_weights))
    pred = model.predict(np.zeros((2, 112), np.uint8), verbose=0)
    assert pred.shape == (2, 1) and np.all(np.isfinite(pred))
    return metrics


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of one TensorBoard run, read as TensorBoard reads it (simple scalars only:
    a tensor summary would not be listed by `EventAccumulator.Scalars`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


#: a tiny, quick training on one device (the misuse tests' runs)
TINY_TRAIN_ARGS = ["--preset", "tiny", "--batch-size", "32", "--strategy", "default", "--seed", "1"]


def untrained_run_folder(run: Path, config: str = "model: crmnet\n", history: bool = False) -> Path:
    """An untrained tiny CRMnet saved as a run folder holds it (model.keras, config.yaml; history.json when
    `history`: then the folder counts as a run that trained), for the commands that read a trained model."""
    from seq2exp.engine.checkpointing import save_keras
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec("crmnet")
    save_keras(spec.build(spec.presets["tiny"]()), str(run / "model.keras"))
    (run / "config.yaml").write_text(config)
    if history:
        (run / "history.json").write_text("[]\n")
    return run


def two_tables(folder: Path, second: str) -> Path:
    """train.tsv and `second` (300 simulated sequences each, seeds 1 and 2) in `folder`."""
    from data_prep.simulate import simulate, write_tsv

    write_tsv(simulate(300, seed=1), folder / "train.tsv")
    write_tsv(simulate(300, seed=2), folder / second)
    return folder

"""Runs one `Trainer` in a fresh process: `python train_worker.py JOB.json`.

Strategy tests need this because logical CPU devices and TF_CONFIG must be set before TensorFlow
initialises, and op determinism is process-wide. Writes the final weights to job["out"] (.npz)
and fit's summary beside it (.json). `kill_after_epoch` ends the process abruptly after that
epoch's checkpoint, like a preempted machine.

Fault injection for the reliability tests (job["fault"], test-only: the package has no such hooks):
  {"kind": "kill_at_step", "step": N}        SIGKILL right after the N-th training step of this process (the
                                             `run_steps` call that would pass it is cut short at N)
  {"kind": "kill_in_checkpoint", "epoch": E, "partial": bool}
                                             SIGKILL inside epoch E's checkpoint save: after TF wrote the
                                             files, before the `checkpoint` state file names them; with
                                             partial=True the data/index files are first cut short and a
                                             half-written temp file is left, as a kill mid-write would
  {"kind": "stop_after_epoch", "epoch": E}   SIGSTOP itself after epoch E: a hung, not a dead, worker
  {"kind": "sleep_at_step", "step": N}       block in Python before the call that runs step N: alive (heartbeats
                                             go on) but stuck
job["audit"] = path: record every file this process opens for writing (JSON list, written at the end).
"""
from __future__ import annotations

import builtins
import dataclasses
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def data_fns(data_dir: str, global_batch: int, shuffle: bool):
    """(train_fn(ctx, seed), val_fn(ctx), train record count) over a data_prep.build folder."""
    from data_prep.dataset import make_dataset
    from data_prep.manifest import load_manifest

    m = load_manifest(data_dir)

    def train_fn(ctx, seed):
        return make_dataset(m, "train", global_batch, ctx, training=shuffle, seed=seed, shuffle_buffer=1024,
                            drop_remainder=True)

    def val_fn(ctx):
        return make_dataset(m, "val", global_batch, ctx, training=False)

    return train_fn, val_fn, m.records("train")


def run(job: dict) -> dict:
    import tensorflow as tf

    if job.get("cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * job["cpus"])
    if job.get("tf_config"):
        os.environ["TF_CONFIG"] = json.dumps(job["tf_config"])
    tf.config.experimental.enable_op_determinism()

    import numpy as np

    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.strategy import resolve_strategy
    from seq2exp.engine.trainer import Trainer, TrainSettings

    strategy = resolve_strategy(job.get("strategy", "default"), collective_timeout_s=job.get("timeout", 120))
    written = _audit_writes() if job.get("audit") else None
    settings = TrainSettings(**{**job["settings"], "precision": job.get("precision", "float32"),
                                "optimizer": job.get("optimizer") or {}, "schedule": job.get("schedule") or {}})
    train_fn, val_fn, n_train = data_fns(job["data"], settings.batch_size * strategy.num_replicas_in_sync,
                                         job.get("shuffle", True))
    # engine numerics from the model's plain initial weights, the ones `init_out` records (Trainer.fit's data-aware
    # init of a fresh start is checked in tests/api/test_training.py)
    spec = dataclasses.replace(get_model_spec("crmnet"), initialize=None)
    trainer = Trainer(spec, job["model"], job["run_dir"], strategy, settings=settings, train_examples=n_train)

    _inject_fault(trainer, job.get("fault"))

    if job.get("init_out"):
        np.savez(job["init_out"], *[v.numpy() for v in trainer.model.weights])

    def on_epoch_end(row):
        if row["epoch"] == job.get("kill_after_epoch"):
            sys.stderr.flush()
            os._exit(17)  # no cleanup, no final files: a hard kill
        fault = job.get("fault") or {}
        if fault.get("kind") == "stop_after_epoch" and row["epoch"] == fault["epoch"]:
            print(f"worker stopping itself (SIGSTOP) after epoch {row['epoch']}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    summary = trainer.fit(train_fn, val_fn, resume=job.get("resume", False), on_epoch_end=on_epoch_end)
    if job.get("out"):
        np.savez(job["out"], *[v.numpy() for v in trainer.model.weights])
        with open(job["out"] + ".json", "w") as fh:
            json.dump({"summary": summary, "history": trainer.history}, fh, default=str)
    if written is not None:
        with open(job["audit"], "w") as fh:
            json.dump(sorted(set(written)), fh)
    return summary


def _die(what: str) -> None:
    print(f"fault injection: SIGKILL {what}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _inject_fault(trainer, fault: dict | None) -> None:
    if not fault:
        return
    if fault["kind"] in ("kill_at_step", "sleep_at_step"):
        import time

        step_fn, steps = trainer.run_steps, [0]  # training steps so far (a call runs steps_per_execution at most)

        def counted(iterator, n):
            n = int(n)
            if steps[0] < fault["step"] <= steps[0] + n:  # this call would run step N
                if fault["kind"] == "sleep_at_step":
                    print(f"fault injection: stuck before training step {steps[0] + 1}", file=sys.stderr, flush=True)
                    time.sleep(10 ** 6)
                n = fault["step"] - steps[0]  # kill_at_step: end the call at step N exactly
            out = step_fn(iterator, n)
            steps[0] += int(out[2])
            if fault["kind"] == "kill_at_step" and steps[0] >= fault["step"]:
                _die(f"after training step {steps[0]}")
            return out

        trainer.run_steps = counted
    elif fault["kind"] == "kill_in_checkpoint":
        import copy

        import tensorflow as tf

        write = tf.train.Checkpoint._write

        def dying_write(self, file_prefix, options=None):
            if not str(file_prefix).endswith(f"ckpt-{fault['epoch']}"):
                return write(self, file_prefix, options)
            options = copy.copy(options) if options else tf.train.CheckpointOptions()
            options.experimental_write_callbacks = None  # the manager's commit (state file) never runs
            path = write(self, file_prefix, options)
            if fault.get("partial"):
                for name in tf.io.gfile.glob(path + ".*"):
                    with open(name, "r+b") as fh:
                        fh.truncate(os.path.getsize(name) // 2)
                os.makedirs(path + "_temp", exist_ok=True)
                with open(os.path.join(path + "_temp", "part-00000-of-00001.data-00000-of-00001.tempstate1"),
                          "wb") as fh:
                    fh.write(b"\0" * 100)
            _die(f"inside the checkpoint save of {path}")

        tf.train.Checkpoint._write = dying_write
    elif fault["kind"] != "stop_after_epoch":
        raise ValueError(f"unknown fault {fault}")


def _audit_writes() -> list[str]:
    """Paths this process writes through Python, TF file APIs, checkpoints, Keras saves and summaries."""
    import keras
    import tensorflow as tf

    written: list[str] = []

    def wrap(owner, name, path_of):
        original = getattr(owner, name)

        def audited(*args, **kwargs):
            path = path_of(*args, **kwargs)
            if path is not None:
                written.append(os.path.abspath(str(path)))
            return original(*args, **kwargs)

        setattr(owner, name, audited)

    wrap(builtins, "open", lambda f, mode="r", *a, **k: f if any(c in mode for c in "wax+") else None)
    wrap(tf.io.gfile.GFile, "__init__", lambda self, name, mode="r": name if "w" in mode or "a" in mode else None)
    wrap(tf.io.gfile, "rename", lambda src, dst, overwrite=False: dst)
    wrap(tf.train.Checkpoint, "_write", lambda self, prefix, options=None: prefix)
    wrap(keras.Model, "save", lambda self, path, *a, **k: path)
    wrap(tf.summary, "create_file_writer", lambda logdir, *a, **k: logdir)
    return written


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        run(json.load(fh))

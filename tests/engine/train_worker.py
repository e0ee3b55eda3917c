"""Runs one `Trainer` in a fresh process: `python train_worker.py JOB.json`.

Strategy tests need this because logical CPU devices and TF_CONFIG must be set before TensorFlow
initialises, and op determinism is process-wide. Writes the final weights to job["out"] (.npz)
and fit's summary beside it (.json). `kill_after_epoch` ends the process abruptly after that
epoch's checkpoint, like a preempted machine.
"""
from __future__ import annotations

import json
import os
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

    from seq2exp.registry import get_model_spec
    from seq2exp.strategy import resolve_strategy
    from seq2exp.trainer import Trainer, TrainSettings

    strategy = resolve_strategy(job.get("strategy", "default"), collective_timeout_s=job.get("timeout", 120))
    settings = TrainSettings(**job["settings"])
    train_fn, val_fn, n_train = data_fns(job["data"], settings.batch_size * strategy.num_replicas_in_sync,
                                         job.get("shuffle", True))
    trainer = Trainer(get_model_spec("crmnet"), job["model"], job["run_dir"], strategy,
                      precision=job.get("precision", "float32"), optimizer_cfg=job.get("optimizer"),
                      schedule_cfg=job.get("schedule"), settings=settings, train_examples=n_train)

    if job.get("init_out"):
        np.savez(job["init_out"], *[v.numpy() for v in trainer.model.weights])

    def on_epoch_end(row):
        if row["epoch"] == job.get("kill_after_epoch"):
            sys.stderr.flush()
            os._exit(17)  # no cleanup, no final files: a hard kill

    summary = trainer.fit(train_fn, val_fn, resume=job.get("resume", False), on_epoch_end=on_epoch_end)
    if job.get("out"):
        np.savez(job["out"], *[v.numpy() for v in trainer.model.weights])
        with open(job["out"] + ".json", "w") as fh:
            json.dump({"summary": summary, "history": trainer.history}, fh, default=str)
    return summary


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        run(json.load(fh))

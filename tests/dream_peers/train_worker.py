"""Trains DREAM peer models in a fresh process: `python train_worker.py JOB.json`.

A fresh process because the mirrored strategy needs two logical CPUs set before TensorFlow
starts. JOB: {"data": dataset folder, "out": result JSON, "runs": [{"name", "model", "strategy",
"epochs", "batch_size", "schedule"?, "run_dir"}]}. Each run: the registry's model (tiny preset)
initialised with the training label stats, validation metrics before training, then `Trainer.fit`;
the runs' histories go to the result JSON.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def main(job: dict) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.experimental.enable_op_determinism()

    from data_prep.manifest import load_manifest
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.strategy import resolve_strategy
    from seq2exp.engine.trainer import Trainer, TrainSettings
    from tests.engine.train_worker import data_fns

    stats = load_manifest(job["data"]).label_stats("train")
    results = {}
    for run in job["runs"]:
        strategy = resolve_strategy(run["strategy"])
        spec = get_model_spec(run["model"])
        settings = TrainSettings(epochs=run["epochs"], batch_size=run["batch_size"], patience=None, seed=0,
                                 log_every_seconds=1000, schedule=run.get("schedule") or {})
        train_fn, val_fn, n_train = data_fns(job["data"], settings.batch_size * strategy.num_replicas_in_sync,
                                             shuffle=True)
        trainer = Trainer(spec, "tiny", run["run_dir"], strategy, settings=settings, train_examples=n_train)
        with strategy.scope():
            spec.initialize(trainer.model, stats)
        before = trainer.evaluate(val_fn)
        summary = trainer.fit(train_fn, val_fn, label_stats=stats)  # the same init again, not an estimate
        scale = trainer.model.get_layer("label_scale")
        results[run["name"]] = {"before": before, "history": trainer.history, "replicas": summary["replicas"],
                                "global_batch_size": summary["global_batch_size"],
                                "label_scale": [float(v.numpy()) for v in scale.weights]}
    with open(job["out"], "w") as fh:
        json.dump(results, fh, default=float)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        main(json.load(fh))

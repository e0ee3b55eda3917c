"""Runs one `Trainer` under KERAS_BACKEND=jax in a fresh process: `python jax_train_worker.py JOB.json`.

The JAX sibling of tests/engine/train_worker.py (same job keys where they mean the same): the device
count (XLA_FLAGS), the processes (KERAS_DISTRIBUTION_*) and the backend must be set before JAX starts.
Writes the final weights to job["out"] (.npz, `model.weights` order) and fit's summary and history beside
it (.json, with "tensorflow_imported"). Extra keys:

  model_name       registry model (default crmnet); model: config dict or preset name
  devices          CPU devices for this process (--xla_force_host_platform_device_count)
  env              environment to set first (e.g. KERAS_DISTRIBUTION_* for several processes)
  block_tf         make `import tensorflow` fail (an ImportError), so using it anywhere fails the run
  init_weights     .npz of `model.weights` to start from (e.g. a TF run's init_out)
  nan_label_rows   training rows (0-based, of every epoch's stream) whose label is replaced by NaN
  expect_error     record an exception's type and message in the .json instead of failing
  cache            JAX persistent compilation cache folder (tests share compiled steps)

Faults (job["fault"], test-only):
  {"kind": "kill_at_step", "step": N}       SIGKILL right after the N-th training step of this process (the
                                            `run_steps` call that would pass it is cut short at N)
  {"kind": "kill_in_checkpoint", "epoch": E, "partial": bool}
                                            SIGKILL inside epoch E's save: after the archive is written, before
                                            checkpoint.json commits it; partial=True first cuts it in half
                                            and leaves a half-written .tmp, as a kill mid-write would
  {"kind": "overflow_after_epoch", "epoch": E}  scale the first kernel by 1e6 after epoch E
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys


class _BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked in this test process (the JAX engine must not import it)")
        return None


def _setup(job: dict) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.update(job.get("env") or {})
    if job.get("devices"):
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={job['devices']}"
    if job.get("block_tf"):
        sys.meta_path.insert(0, _BlockTensorFlow())
    if job.get("cache"):
        import jax

        jax.config.update("jax_compilation_cache_dir", job["cache"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _train_fns(job: dict, trainer):
    import numpy as np

    from data_prep.manifest import load_manifest
    from seq2exp.engine.data import input_batches

    m = load_manifest(job["data"])
    nan_rows = set(job.get("nan_label_rows") or [])

    def train_fn(ctx, seed):
        batches = input_batches(m, "train", trainer.global_batch, ctx, training=job.get("shuffle", True), seed=seed,
                                shuffle_buffer=1024, drop_remainder=True)
        if not nan_rows:
            return batches

        def poisoned():
            start = 0
            for batch in batches:
                label = batch["label"].copy()
                for r in nan_rows:
                    if start <= r < start + len(label):
                        label[r - start] = np.nan
                start += len(label)
                yield {**batch, "label": label}
        return poisoned()

    def val_fn(ctx):
        return input_batches(m, "val", trainer.global_batch, ctx, training=False)

    return train_fn, val_fn, m.records("train")


def run(job: dict) -> dict:
    _setup(job)
    import numpy as np

    from seq2exp.engine.backend import resolve_strategy
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    placement = resolve_strategy(job.get("strategy", "auto"))
    settings = TrainSettings(**{**job["settings"], "precision": job.get("precision", "float32"),
                                "optimizer": job.get("optimizer") or {}, "schedule": job.get("schedule") or {}})
    from data_prep.manifest import load_manifest

    n_train = load_manifest(job["data"]).records("train")
    try:
        # engine numerics from the model's plain initial weights, the ones `init_out` records (as the TF worker)
        spec = dataclasses.replace(get_model_spec(job.get("model_name", "crmnet")), initialize=None)
        trainer = Trainer(spec, job["model"], job["run_dir"], placement, settings=settings, train_examples=n_train)
    except Exception as err:  # noqa: BLE001 - recorded for the test when expected
        if not job.get("expect_error"):
            raise
        with open(job["out"] + ".json", "w") as fh:
            json.dump({"error": {"type": type(err).__name__, "message": str(err)}, "history": []}, fh)
        return {}
    train_fn, val_fn, _ = _train_fns(job, trainer)
    if job.get("init_weights"):
        with np.load(job["init_weights"]) as f:
            trainer.model.set_weights([f[k] for k in f.files])
    if job.get("init_out"):
        np.savez(job["init_out"], *[np.asarray(v) for v in trainer.model.weights])
    _inject_fault(trainer, job.get("fault"))

    def on_epoch_end(row):
        if row["epoch"] == job.get("kill_after_epoch"):
            sys.stderr.flush()
            os._exit(17)
        fault = job.get("fault") or {}
        if fault.get("kind") == "overflow_after_epoch" and row["epoch"] == fault["epoch"]:
            kernel = next(v for v in trainer.model.trainable_variables if "kernel" in v.path)
            kernel.assign(np.asarray(kernel) * 1e6)

    result = {"info": trainer.info}
    try:
        result["summary"] = trainer.fit(train_fn, val_fn, resume=job.get("resume", False),
                                        init_from=job.get("init_from"), on_epoch_end=on_epoch_end)
    except Exception as err:  # noqa: BLE001 - recorded for the test when expected
        if not job.get("expect_error"):
            raise
        result["error"] = {"type": type(err).__name__, "message": str(err)}
    result["history"] = trainer.history
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    result["compute_dtypes"] = sorted({layer.compute_dtype for layer in trainer.model.layers})
    schema = load_manifest(job["data"]).schema
    probe = {"seq": np.zeros((2, schema.length), np.uint8), "label": np.zeros(2, np.float32),
             "is_singleton": np.zeros(2, np.uint8)}
    result["prediction_dtype"] = str(trainer.spec.predict(trainer.model, probe, trainer.spec.inputs).dtype)
    result["optimizer"] = type(trainer.optimizer).__name__
    if job.get("out"):
        np.savez(job["out"], *[np.asarray(v) for v in trainer.model.weights])
        with open(job["out"] + ".json", "w") as fh:
            json.dump(result, fh, default=str)
    return result


def _die(what: str) -> None:
    print(f"fault injection: SIGKILL {what}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _inject_fault(trainer, fault: dict | None) -> None:
    if not fault or fault["kind"] == "overflow_after_epoch":
        return
    if fault["kind"] == "kill_at_step":
        step_fn, steps = trainer.run_steps, [0]

        def counted(iterator, n):
            n = min(int(n), fault["step"] - steps[0])  # a call that would pass step N ends there
            out = step_fn(iterator, n)
            steps[0] += int(out[2])  # the steps of this call have run (steps_per_execution of them at most)
            if steps[0] >= fault["step"]:
                _die(f"after training step {steps[0]}")
            return out

        trainer.run_steps = counted
    elif fault["kind"] == "kill_in_checkpoint":
        from seq2exp.engine import checkpointing_npz

        commit = checkpointing_npz.write_text

        def dying_commit(path, text):
            name = f"ckpt-{fault['epoch']}.npz"
            if os.path.basename(path) != checkpointing_npz.STATE_FILE or name not in text:
                return commit(path, text)
            archive = os.path.join(os.path.dirname(path), name)
            if fault.get("partial"):
                with open(archive, "r+b") as fh:
                    fh.truncate(os.path.getsize(archive) // 2)
                with open(archive + ".tmp", "wb") as fh:
                    fh.write(b"\0" * 100)
            _die(f"inside the checkpoint save of {archive}")

        checkpointing_npz.write_text = dying_commit
    else:
        raise ValueError(f"unknown fault {fault}")


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        run(json.load(fh))

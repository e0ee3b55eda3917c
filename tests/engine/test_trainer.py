"""The training loop end to end on 400 simulated sequences with a very small CRMnet.

Runs that compare weights happen in fresh processes (tests/engine/train_worker.py) with op
determinism on, because logical CPU devices and TF_CONFIG must be set before TensorFlow starts.
Independent processes run at the same time: most of their time is single-threaded tracing.
"""
import json
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from data_prep.build import build, parser
from data_prep.simulate import simulate, write_tsv
from tests.helpers import COLLECTIVE_TIMEOUT_S, assert_run_folder, free_ports, run_jobs
from tests.helpers import assert_jobs_ok as _ok  # noqa: F401  (also used by tests/dream_peers)
from tests.reliability.jobs import history, max_diff, weights

WORKER = Path(__file__).with_name("train_worker.py")
# Same wiring as CRMnet (encoder, transformer, decoder, SE head) at ~6k parameters: traces fast.
SMALL = {"seq_len": 112, "encoder_filters": [8, 8], "kernel_size": 5, "num_transformer_blocks": 1, "num_heads": 1,
         "key_dim": 4, "embed_dim": 8, "ffn_dim": 8, "decoder_filters": 4, "head_conv_filters": [4],
         "dense_units": [8], "dense_dropouts": [0.2]}
NO_DROPOUT = {**SMALL, "dense_dropouts": [0.0], "encoder_dropout": 0.0, "transformer_dropout": 0.0}
WARMUP_COSINE = {"name": "warmup_cosine", "warmup_epochs": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("trainer_data")
    write_tsv(simulate(400, seed=1), d / "sim.tsv")
    args = parser().parse_args([str(d / "sim.tsv"), "--out", str(d / "ds"), "--layout", "crmnet", "--workers", "1",
                                "--val-folds", "8,9", "--quiet"])
    build(args.inputs, args.out, args)
    return str(d / "ds")




def _run_jobs(tmp, jobs: dict) -> dict:
    return run_jobs(WORKER, tmp, jobs)


def _job(data_dir, tmp, name, **overrides):
    job = {"data": data_dir, "model": SMALL, "schedule": WARMUP_COSINE, "shuffle": True,
           "settings": {"epochs": 4, "batch_size": 32, "log_every_seconds": 1000},
           "run_dir": str(tmp / f"run_{name}"), "out": str(tmp / f"{name}.npz")}
    job.update(overrides)
    return job


@pytest.fixture(scope="module")
def default_runs(data_dir, tmp_path_factory):
    """Seeded 4-epoch runs (shuffled, dropout on): uninterrupted, killed after epoch 2, 3 steps per call."""
    tmp = tmp_path_factory.mktemp("default_runs")
    jobs = {"full": _job(data_dir, tmp, "full", settings={"epochs": 4, "batch_size": 32, "log_every_seconds": 1000,
                                                           "steps_per_execution": 1}),
            "killed": _job(data_dir, tmp, "killed", kill_after_epoch=2),
            "spe3": _job(data_dir, tmp, "spe3", settings={"epochs": 4, "batch_size": 32, "log_every_seconds": 1000,
                                                           "steps_per_execution": 3})}
    t0 = time.time()
    results = _run_jobs(tmp, jobs)
    print(f"default runs: {time.time() - t0:.1f}s")
    return tmp, jobs, results


def test_default_strategy_run_writes_everything(default_runs):
    import crmnet.registry  # noqa: F401  registers CRMnet's layers for loading

    _, jobs, results = default_runs
    _ok(results, "full")
    run = Path(jobs["full"]["run_dir"])
    rows = history(jobs["full"])["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    # one pass over the train split per epoch; model.keras = the trainer's final (restored best) weights
    metrics = assert_run_folder(run, rows, 4 * (326 // 32), weights(jobs["full"]["out"]))
    assert metrics["best_epoch"] in (1, 2, 3, 4) and metrics["global_batch_size"] == 32
    assert metrics["strategy"]["name"] == "DefaultStrategy" and metrics["precision"] == "float32"
    assert metrics["val"]["n"] == 74
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]  # keep_checkpoints=3
    assert (run / "best" / "weights.index").exists() and any((run / "tensorboard").iterdir())


def test_resume_after_kill_matches_uninterrupted_run(default_runs):
    tmp, jobs, results = default_runs
    _ok(results, "full")
    rc, text = results["killed"]["rc"], results["killed"]["log"]
    assert rc == 17, text[-3000:]
    run = Path(jobs["killed"]["run_dir"])
    assert (run / "checkpoints" / "ckpt-2.index").exists() and not (run / "model.keras").exists()
    resume = {**jobs["killed"], "kill_after_epoch": None, "resume": True, "out": str(tmp / "resumed.npz")}
    res = _run_jobs(tmp, {"resumed": resume})
    _ok(res, "resumed")
    assert "resumed from" in res["resumed"]["log"] and "epochs 3..4" in res["resumed"]["log"]
    assert max_diff(weights(resume["out"]), weights(jobs["full"]["out"])) < 1e-6
    full, resumed = history(jobs["full"]), history(resume)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(full["history"], resumed["history"]):
        for key in ("step", "lr", "loss", "val_r2", "val_pearson"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    assert resumed["summary"]["val"] == pytest.approx(full["summary"]["val"], rel=1e-6)


def test_steps_per_execution_matches_single_steps(default_runs):
    _, jobs, results = default_runs
    _ok(results, "full", "spe3")
    assert max_diff(weights(jobs["spe3"]["out"]), weights(jobs["full"]["out"])) < 1e-6
    a, b = history(jobs["full"])["history"], history(jobs["spe3"])["history"]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)


def test_mirrored_and_multiworker_match_default_strategy(data_dir, tmp_path):
    """Same GLOBAL batch (32 = 1x32 = 2x16), no dropout, no shuffle, synchronized batch norm."""
    settings = {"epochs": 2, "batch_size": 16, "log_every_seconds": 1000, "sync_batch_norm": True}
    common = {"model": NO_DROPOUT, "shuffle": False, "schedule": {"name": "constant", "lr": 1e-3},
              "timeout": COLLECTIVE_TIMEOUT_S}
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    jobs = {"default": _job(data_dir, tmp_path, "default", **common, settings={**settings, "batch_size": 32},
                            init_out=str(tmp_path / "init.npz")),
            "mirrored": _job(data_dir, tmp_path, "mirrored", **common, settings=settings, strategy="mirrored", cpus=2)}
    for i in range(2):
        jobs[f"worker{i}"] = _job(data_dir, tmp_path, f"worker{i}", **common, settings=settings, strategy="multiworker",
                                  run_dir=str(tmp_path / "run_multiworker"),
                                  tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}})
    results = _run_jobs(tmp_path, jobs)
    _ok(results, *jobs)
    ref = weights(jobs["default"]["out"])
    assert max_diff(ref, weights(tmp_path / "init.npz")) > 1e-2  # training moved the weights
    ref_val = history(jobs["default"])["summary"]["val"]
    assert ref_val["n"] == 74  # every validation record once, the short last batch included
    for name in ("mirrored", "worker0", "worker1"):
        assert max_diff(weights(jobs[name]["out"]), ref) < 1e-4, name
        val = history(jobs[name])["summary"]["val"]
        assert val == pytest.approx(ref_val, rel=1e-4, abs=1e-5), name
    mirrored = json.loads((Path(jobs["mirrored"]["run_dir"]) / "metrics.json").read_text())
    assert mirrored["replicas"] == 2 and mirrored["global_batch_size"] == 32
    assert mirrored["per_replica_batch_size"] == 16 and mirrored["strategy"]["name"] == "MirroredStrategy"
    run = tmp_path / "run_multiworker"
    multi = json.loads((run / "metrics.json").read_text())
    assert multi["strategy"]["name"] == "MultiWorkerMirroredStrategy" and multi["strategy"]["workers"] == 2
    assert multi["strategy"]["worker_index"] == 0 and multi["global_batch_size"] == 32
    assert (run / "model.keras").exists() and (run / "checkpoints" / "ckpt-2.index").exists()
    assert not [p for p in run.rglob("*") if "worker1_tmp" in str(p)]  # the non-chief cleaned up


def _in_process_trainer(data_dir, run_dir, **kwargs):
    sys.path.insert(0, str(WORKER.parent))
    try:
        from train_worker import data_fns
    finally:
        sys.path.remove(str(WORKER.parent))
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    settings = TrainSettings(**{"epochs": 1, "batch_size": 32, "log_every_seconds": 1000,
                                **kwargs.pop("settings", {})})
    train_fn, val_fn, n = data_fns(data_dir, settings.batch_size, shuffle=True)
    trainer = Trainer(get_model_spec("crmnet"), kwargs.pop("model", SMALL), str(run_dir), settings=settings,
                      train_examples=n, **kwargs)
    return trainer, train_fn, val_fn


def test_mixed_bfloat16_trains(data_dir, tmp_path):
    import keras

    trainer, train_fn, val_fn = _in_process_trainer(
        data_dir, tmp_path / "bf16",
        settings={"steps_per_epoch": 4, "precision": "mixed_bfloat16", "schedule": {"name": "constant", "lr": 1e-3}})
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after building
    assert trainer.model.get_layer("head_conv1").compute_dtype == "bfloat16"
    assert trainer.model.get_layer("expression").compute_dtype == "float32"
    summary = trainer.fit(train_fn, val_fn)
    assert summary["precision"] == "mixed_bfloat16"
    assert np.isfinite(trainer.history[0]["loss"]) and np.isfinite(summary["val"]["r2"])
    assert all(np.all(np.isfinite(w)) for w in trainer.model.get_weights())


def test_nan_policy_stop_on_absurd_learning_rate(default_runs, tmp_path):
    """Fine-tune a finished run at lr 1e30: it stops with a clear error and writes no checkpoint."""
    import tensorflow as tf

    from seq2exp.engine.trainer import NonFiniteLossError

    _, jobs, results = default_runs
    _ok(results, "full")
    run = tmp_path / "run"
    shutil.copytree(jobs["full"]["run_dir"], run)
    before = sorted(p.name for p in run.rglob("*") if p.is_file() and "tensorboard" not in str(p))
    trainer, train_fn, val_fn = _in_process_trainer(data_dir=jobs["full"]["data"], run_dir=run,
                                                    settings={"schedule": {"name": "constant", "lr": 1e30}})
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at epoch 1, step \d+/10.*lr 1e\+30"):
        trainer.fit(train_fn, val_fn, init_from=str(run))
    after = sorted(p.name for p in run.rglob("*") if p.is_file() and "tensorboard" not in str(p))
    assert after == before  # nothing new saved
    for prefix in [str(run / "checkpoints" / f"ckpt-{i}") for i in (2, 3, 4)] + [str(run / "best" / "weights")]:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating) and "best_score" not in name:
                assert np.all(np.isfinite(value)), (prefix, name)


def test_settings_and_construction_errors():
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    with pytest.raises(ValueError, match="nan_policy"):
        TrainSettings(nan_policy="ignore")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Trainer(get_model_spec("crmnet"), SMALL, "/nonexistent/never-created", settings=TrainSettings())


def test_evaluate_counts_every_record_once(default_runs):
    """Trainer.evaluate (padded + masked final batch) equals metrics over model.predict on the whole split."""
    import tensorflow as tf

    from data_prep.dataset import make_dataset
    from seq2exp.engine.metrics import regression_metrics

    _, jobs, results = default_runs
    _ok(results, "full")
    run = Path(jobs["full"]["run_dir"])
    trainer, _, val_fn = _in_process_trainer(jobs["full"]["data"], run / "unused", settings={"steps_per_epoch": 1})
    trainer.load_weights(str(run / "model.keras"))
    batches = list(make_dataset(jobs["full"]["data"], "val", 1000, training=False))
    seq = np.concatenate([b["seq"].numpy() for b in batches])
    label = np.concatenate([b["label"].numpy() for b in batches])
    out = trainer.model.predict(seq, verbose=0)
    expected = regression_metrics(label, out)
    assert expected["n"] == 74
    spec = trainer.spec  # and the validation loss: the training loss (CRMnet: Huber) averaged over the same rows
    expected["loss"] = float(np.mean(keras.ops.convert_to_numpy(spec.loss(spec.targets({"label": label}), out))))
    assert trainer.evaluate(val_fn) == pytest.approx(expected, rel=1e-5)
    odd = tf.data.Dataset.from_tensor_slices({"seq": seq, "label": label}).batch(7)  # any batching is re-cut
    assert trainer.evaluate(odd) == pytest.approx(expected, rel=1e-5)


def test_strategy_helpers(monkeypatch):
    import keras
    import tensorflow as tf

    from seq2exp.engine.strategy import StrategyError, describe, is_chief, resolve_strategy, set_precision

    default = resolve_strategy("default")
    assert is_chief(default) and describe(default)["replicas"] == 1
    assert describe(default)["name"] == "DefaultStrategy" and describe(default)["worker_index"] == 0
    assert resolve_strategy("auto").num_replicas_in_sync == 1  # no TPU, no GPU here
    with pytest.raises(StrategyError, match="unknown strategy"):
        resolve_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(StrategyError, match="needs the TF_CONFIG"):
        resolve_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="not valid JSON"):
        resolve_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 3}}))
    with pytest.raises(StrategyError, match="out of range"):
        resolve_strategy("multiworker")
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.delenv("TPU_NAME", raising=False)
    if not tf.config.list_physical_devices("TPU"):
        with pytest.raises(StrategyError, match="no usable TPU"):
            resolve_strategy("tpu")
    with pytest.raises(ValueError, match="unknown precision"):
        set_precision("float64")
    previous = keras.config.dtype_policy()
    try:
        assert set_precision("mixed_bfloat16") == "mixed_bfloat16"
        assert keras.config.dtype_policy().compute_dtype == "bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)


def test_build_optimizer():
    import keras

    from seq2exp.engine.optim import build_optimizer, build_schedule, current_lr

    opt = build_optimizer({"name": "adamw", "weight_decay": 0.05, "clipnorm": 1.0},
                          {"name": "one_cycle", "max_lr": 0.01}, steps_per_epoch=10, epochs=3)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 0.05 and opt.clipnorm == 1.0
    assert current_lr(opt) == pytest.approx(0.01 / 25, rel=1e-5)  # one-cycle starts at max_lr / div_factor
    assert build_schedule({"name": "one_cycle", "max_lr": 0.01}, 10, 3).total_steps == 30
    crm = build_schedule({"name": "warmup_cosine", "base_lr": 1e-4, "peak_lr": 1e-3, "final_lr": 1e-4,
                          "warmup_epochs": 2, "scale_with_replicas": True}, 5, 10, replicas=4)
    assert float(crm(0)) == pytest.approx(4e-4) and float(crm(10)) == pytest.approx(4e-3)
    assert crm.decay_steps == 40
    assert build_schedule({"name": "constant", "lr": 0.1}, 1, 1, replicas=8) == pytest.approx(0.1)
    assert build_schedule({"name": "inverse_sqrt", "d_model": 64, "warmup_epochs": 2}, 50, 1).warmup_steps == 100
    scaled = build_optimizer(None, {"name": "constant", "lr": 1e-3}, 1, 1, precision="mixed_float16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert current_lr(scaled) == pytest.approx(1e-3)
    for opt_cfg, sched_cfg, match in [({"name": "sgd"}, None, "unknown optimizer"),
                                      ({"name": "adam", "weight_decay": 0.1}, None, "use 'adamw'"),
                                      ({"name": "adam", "momentum": 0.9}, None, "unknown optimizer settings"),
                                      (None, {"name": "step_decay"}, "unknown schedule"),
                                      (None, {"name": "one_cycle", "peak": 1}, "unknown one_cycle")]:
        with pytest.raises(ValueError, match=match):
            build_optimizer(opt_cfg, sched_cfg, 10, 2)


def test_nan_policy_skip_drops_only_the_bad_batch(tmp_path):
    """A NaN label poisons one batch: that update is skipped, the others apply; no validation set."""
    import tensorflow as tf

    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    rng = np.random.default_rng(0)
    seq = rng.integers(0, 4, (96, 112), dtype=np.uint8)
    label = rng.normal(5.0, 2.0, 96).astype(np.float32)
    label[40] = np.nan  # in the second of three batches

    def train_fn(ctx, seed):
        return tf.data.Dataset.from_tensor_slices({"seq": seq, "label": label}).batch(32, drop_remainder=True)

    settings = TrainSettings(epochs=1, batch_size=32, steps_per_epoch=3, nan_policy="skip", log_every_seconds=1000,
                             schedule={"name": "constant", "lr": 1e-3})
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(tmp_path), settings=settings)
    summary = trainer.fit(train_fn)
    row = trainer.history[0]
    assert row["step"] == 2 and np.isfinite(row["loss"])  # 3 batches, 1 update skipped
    assert summary["best_epoch"] == 1 and (tmp_path / "checkpoints" / "ckpt-1.index").exists()
    assert all(np.all(np.isfinite(w)) for w in trainer.model.get_weights())

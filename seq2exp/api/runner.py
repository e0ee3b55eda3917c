"""The training run that the train command and `seq2exp.train` share, once the config is checked.

Inputs are built into the run folder, then optional pre-training, training, and the test sets scored
against the 6-mer ridge baseline. `run_training` raises `Seq2ExpError` subclasses; the command
(`seq2exp.cli.run`) maps them to a one-line message and an exit code. With no data: the embedded demo,
simulated GPRA data with a known ground truth.
"""
from __future__ import annotations

import copy
import json
import os
import time

from seq2exp.cli.checks import UsageError
from seq2exp.cli.config import RunConfig
from seq2exp.engine.registry import ModelSpec

#: the embedded demo: a tiny model, CPU-sized batches, one warm-up epoch to a 3x higher peak than the paper's
#: 1e-3, then 5 epochs of cosine. Against the earlier 12 epochs at 1e-3 over seeds 0-3: the same mean test r
#: (0.775 vs 0.778) in less than half the training time; 5 epochs lost 0.03 of it (README, the demo). The tiny
#: model's step costs the same per sequence at batch 64 and 256.
DEMO_DEFAULTS = {"preset": "tiny", "epochs": 6, "batch_size": 64, "demo_size": 20000,
                 "schedule": {"name": "warmup_cosine", "warmup_epochs": 1, "peak_lr": 0.003}}


def check_model_builds(spec: ModelSpec, cfg: RunConfig) -> None:
    """--model-config values of the right type can still be refused by the model (CRMnet: seq_len a multiple
    of 8): a trial build says so before any data work. Keras' layer-name counters are put back, so the run's
    own model gets the names it would have had."""
    if not cfg.model_config:
        return
    from keras.src.backend.common import global_state

    saved = copy.copy(global_state.get_global_attribute("object_name_uids"))
    try:
        spec.build({**(spec.presets[cfg.preset]() if cfg.preset else {}), **cfg.model_config})
    except (ValueError, TypeError, KeyError, AssertionError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UsageError(f"--model-config {json.dumps(cfg.model_config)}: model {spec.name} cannot be built with "
                         f"it ({why})") from None
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def demo_data(cfg: RunConfig) -> None:
    """Simulated train/val data and a test set from the same ground truth, written into the run."""
    from data_prep.simulate import simulate, write_tsv

    d = os.path.join(cfg.run_dir, "demo")
    os.makedirs(d, exist_ok=True)
    train_file, test_file = os.path.join(d, "train.tsv"), os.path.join(d, "test.tsv")
    truth = os.path.join(d, "test_truth.tsv")
    if not os.path.exists(truth):
        write_tsv(simulate(cfg.demo_size, seed=cfg.seed), train_file)
        sim = simulate(max(cfg.demo_size // 5, 500), seed=cfg.seed + 1000)
        write_tsv(sim, test_file)
        write_tsv(sim, truth, values=sim.true_expression)
    cfg.data, cfg.test = [train_file], [test_file, truth]
    print(f"demo: simulated {cfg.demo_size:,} training sequences and a test set with its noiseless truth in {d}")


def _write_frames(frames: dict, resuming: bool) -> None:
    """Each DataFrame as the TSV file config.yaml names; a resumed run's training table must be the one it
    started with (refused before anything is written or built)."""
    from seq2exp.cli.run_folder import RunFolderError
    from seq2exp.engine.files import write_text

    for path, table in frames.items():
        text = table.to_csv(sep="\t", index=False)
        if os.path.isfile(path):
            with open(path) as fh:
                if fh.read() == text:
                    continue
            if resuming and os.path.basename(path).startswith("train"):
                raise RunFolderError(f"--resume: the training DataFrame differs from the one the run started with "
                                     f"({path}); resume with the same data, or start another run (overwrite=True, "
                                     "or another run_dir)")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_text(path, text)


def _planned_folders(cfg: RunConfig, spec: ModelSpec, data_dir: str) -> list[str] | None:
    """The dataset folders the training and pre-training data are (or will be built into); None if an input is
    missing (the build names it)."""
    from seq2exp.engine.data import build_target

    out = []
    for items, group in ((cfg.data, True), (cfg.pretrain_data, False)):
        raw = [p for p in items if not os.path.isdir(p)]
        if any(not os.path.isfile(p) for p in raw):
            return None
        out += [p for p in items if os.path.isdir(p)]
        out += [build_target(b, spec.layout, data_dir) for b in ([raw] if group and raw else [[p] for p in raw])]
    return out


def _ran_with(cfg: RunConfig, info: dict) -> dict:
    """Where the run really trains, for config.yaml; said aloud when the backend maps --strategy to something else."""
    import keras

    backend = keras.backend.backend()
    ran = {"backend": backend, "strategy": info["name"], "replicas": info["replicas"], "workers": info["workers"]}
    if backend != "tensorflow" and cfg.strategy not in ("auto", "default"):
        print(f"strategy: --strategy {cfg.strategy} runs under {backend} as {info['name']} over {info['replicas']} "
              "device(s) (keras.distribution); config.yaml records it (ran_with)")
    return ran


def _pooled_stats(cfg: RunConfig, train_sets) -> dict:
    stats = [m.label_stats(cfg.train_split) for m in train_sets]
    counts = [st.get("count", 0) for st in stats]
    total = max(sum(counts), 1)
    mean = sum(st["mean"] * c for st, c in zip(stats, counts)) / total
    # pooled: E[y^2] of each set is std^2 + mean^2
    square = sum((st.get("std", 0.0) ** 2 + st["mean"] ** 2) * c for st, c in zip(stats, counts)) / total
    return {"mean": mean, "std": max(square - mean ** 2, 0.0) ** 0.5}


def train_stage(cfg: RunConfig, spec: ModelSpec, strategy, run_dir: str, train_sets, val_sets, epochs: int,
                init_from: str | None = None, resume: bool = False, pins=None, on_epoch_end=None):
    """One training stage (pre-training or fine-tuning) into its own run folder.

    `resume` continues the stage's newest checkpoint; with none yet (an empty folder) it is a fresh start,
    data-aware init included (Trainer.fit, from the pooled label statistics of the training sets). `pins`
    (DataPins) is checked as every epoch starts and before it is committed; `on_epoch_end(row)` runs after.
    """
    from seq2exp.cli.checks import check_batch_fits
    from seq2exp.engine.data import dataset_source, input_batches
    from seq2exp.engine.preflight import check_before_training
    from seq2exp.engine.trainer import Trainer

    model_config = {**(spec.presets[cfg.preset]() if cfg.preset else {}), **cfg.model_config}
    n_train = sum(m.records(cfg.train_split) for m in train_sets)
    check_batch_fits(cfg.batch_size, strategy.num_replicas_in_sync, cfg.steps_per_epoch, n_train,
                     ", ".join(dataset_source(m) for m in train_sets))
    settings = cfg.train_settings(epochs=epochs)
    if len(train_sets) > 1 and settings.steps_per_epoch is None:  # media sampled evenly: one pass's worth
        settings.steps_per_epoch = max(n_train // (cfg.batch_size * strategy.num_replicas_in_sync), 1)
    has_val = cfg.val_split != "none"  # a missing or empty split was refused (check_val_split)
    n_val = sum(m.records(cfg.val_split) for m in val_sets) if has_val else 0
    resume = resume and has_checkpoint(run_dir)
    trainer = Trainer(spec, model_config, run_dir, strategy, settings, train_examples=n_train, val_examples=n_val)
    check_before_training(trainer, spec, list({id(m): m for m in [*train_sets, *val_sets]}.values()),
                          [cfg.train_split] + ([cfg.val_split] if has_val else []), cfg.verify_data,
                          say=trainer._say)
    check = pins.check if pins is not None else (lambda when: None)

    def train_fn(ctx, seed):
        check(f"as epoch {seed - cfg.seed + 1} starts")
        return input_batches(train_sets, cfg.train_split, trainer.global_batch, ctx, training=True, seed=seed,
                             drop_remainder=True, shuffle_buffer=cfg.shuffle_buffer)

    def val_fn(ctx):
        check("before the epoch is saved")
        return input_batches(val_sets, cfg.val_split, trainer.global_batch, ctx, training=False)

    metrics = trainer.fit(train_fn, val_fn if has_val else None, resume=resume, init_from=init_from,
                          on_epoch_end=on_epoch_end, label_stats=_pooled_stats(cfg, train_sets))
    return trainer, metrics


def has_checkpoint(run_dir: str) -> bool:
    """Whether a stage folder has a committed checkpoint to resume from (in the backend's format)."""
    from seq2exp.engine.backend import has_checkpoint as committed

    return committed(run_dir)


def test_report(cfg: RunConfig, spec: ModelSpec, trainer, train_sets, tests) -> dict:
    """Test metrics of the trained model and of the 6-mer ridge baseline on the same sequences."""
    import numpy as np

    from seq2exp.analysis.baseline import KmerRidge
    from seq2exp.engine.data import dataset_labels, eval_split, input_batches, read_arrays
    from seq2exp.engine.metrics import regression_metrics

    tr = [read_arrays(m, cfg.train_split, limit=500_000) for m in train_sets]
    ridge = KmerRidge().fit(np.concatenate([t["seq"] for t in tr]), np.concatenate([t["label"] for t in tr]))
    report = {}
    for m, name in zip(tests, dataset_labels(tests)):
        split = eval_split(m)
        model_metrics = trainer.evaluate(
            lambda ctx, m=m, split=split: input_batches(m, split, trainer.global_batch, ctx, training=False))
        arr = read_arrays(m, split)
        report[name] = {"model": model_metrics,
                        "ridge_6mer": regression_metrics(arr["label"], ridge.predict(arr["seq"]))}
    print(f"\n{'test set':40s} {'n':>7s} | {spec.name + ' r':>10s} {'rho':>6s} {'R2':>6s} | "
          f"{'ridge r':>8s} {'rho':>6s}")
    for name, r in report.items():
        a, b = r["model"], r["ridge_6mer"]
        print(f"{name:40s} {a['n']:7d} | {a['pearson']:10.3f} {a['spearman']:6.3f} {a['r2']:6.3f} | "
              f"{b['pearson']:8.3f} {b['spearman']:6.3f}")
    return report


def run_training(cfg: RunConfig, spec: ModelSpec, demo: bool = False, frames: dict | None = None) -> dict:
    """The whole training once the config is checked (`configure`): returns the final stage's metrics and raises
    `Seq2ExpError` subclasses. A refusal or interruption before the first epoch is saved removes what this call
    added to the run folder (the folder itself if it made it); after that, the checkpoints stay for --resume."""
    from seq2exp.cli.checks import check_label_range, check_labeled, check_val_split
    from seq2exp.cli.run_folder import DataPins, RunFolder, earlier_run
    from seq2exp.engine.backend import barrier, describe, resolve_strategy
    from seq2exp.engine.data import prepare
    from seq2exp.engine.files import write_text
    from seq2exp.engine.preflight import check_data, check_output_dir

    strategy = resolve_strategy(cfg.strategy, cfg.tpu)  # before other TF work (multi-worker, TPU)
    info = describe(strategy)
    ran_with = _ran_with(cfg, info)
    check_model_builds(spec, cfg)  # before any data work
    data_dir = os.path.join(cfg.run_dir, "data")

    def inputs():  # only the chief writes into the run folder; the other workers then read what it built
        if demo and not info["chief"]:  # the chief made the demo's files (and set cfg.data) before this
            demo_data(cfg)
        return (prepare(cfg.data, spec.layout, data_dir),
                prepare(cfg.test, spec.layout, data_dir, split="none", group=False),
                prepare(cfg.pretrain_data, spec.layout, data_dir, group=False) if cfg.pretrain_data else [])

    folder = RunFolder(cfg.run_dir)
    trained = []  # one entry per committed epoch: from then on the run folder is kept whatever happens
    resuming = False
    try:
        resuming = folder.claim(cfg, cfg.overwrite) if info["chief"] else cfg.resume  # lock, then one run per folder
        check_output_dir(cfg.run_dir)
        if info["chief"]:
            _write_frames(frames or {}, resuming)
            if demo:
                demo_data(cfg)
            planned = _planned_folders(cfg, spec, data_dir) if resuming else None
            if planned is not None:  # an edited input is refused before it is built
                DataPins.compare_planned(cfg.run_dir, planned)
            cfg.save(os.path.join(cfg.run_dir, "config.yaml"), ran_with)
            train_sets, tests, media = inputs()
        if info["workers"] > 1:
            barrier(strategy)
        if not info["chief"]:
            train_sets, tests, media = inputs()
        if info["chief"]:  # what made this run: code, versions, devices, command line, the data's hashes
            from seq2exp.engine.provenance import provenance

            record = provenance(datasets=[m.folder for m in train_sets + tests + media])
            write_text(os.path.join(cfg.run_dir, "provenance.json"), json.dumps(record, indent=1, default=str))
        check_labeled(train_sets + media, "trained on", "build it from a file with an expression column")
        check_labeled(tests, "a --test set", "score unlabeled sequences with predict instead")
        check_label_range(train_sets + media, cfg.train_split)
        check_val_split(train_sets + media, cfg.val_split, cfg.train_split)
        pins = DataPins(train_sets + media)
        pins.record_or_compare(cfg.run_dir, resuming, info["chief"])
        check_data(tests, spec.layout, None, cfg.verify_data)  # before hours of training, not after
        if cfg.val_split == "none":
            print("validation: none (--val-split none): no best-weights selection and no early stopping; the last "
                  "epoch's weights are kept (metrics.json: validation false)")
        init_from = cfg.init_from
        t0 = time.time()
        if cfg.pretrain_data:
            pre_dir = os.path.join(cfg.run_dir, "pretrain")
            train_stage(cfg, spec, strategy, pre_dir, media, media, cfg.pretrain_epochs or cfg.epochs,
                        resume=cfg.resume, pins=pins, on_epoch_end=trained.append)
            init_from = os.path.join(pre_dir, "model.keras")
            print(f"pre-training done; fine-tuning all weights from {init_from}")
        final_dir = os.path.join(cfg.run_dir, "finetune") if cfg.pretrain_data else cfg.run_dir
        trainer, metrics = train_stage(cfg, spec, strategy, final_dir, train_sets, train_sets, cfg.epochs,
                                       init_from=init_from, resume=cfg.resume, pins=pins,
                                       on_epoch_end=trained.append)
        if tests:
            metrics["test"] = test_report(cfg, spec, trainer, train_sets, tests)
            if info["chief"]:
                write_text(os.path.join(final_dir, "metrics.json"), json.dumps(metrics, indent=2, default=float))
    except BaseException:
        folder.release()
        if info["chief"] and not trained and (resuming or earlier_run(cfg.run_dir) is None):
            folder.remove_new()  # nothing trained: the folder as it was
        raise
    finally:
        folder.release()
    if cfg.val_split == "none":
        print("\nvalidation: none (--val-split none)")
    else:
        print("\nvalidation: " + ", ".join(f"{k} {metrics.get('val', {}).get(k, float('nan')):.3f}"
                                          for k in ("pearson", "spearman", "r2")))
    print(f"run folder: {final_dir} ({time.time() - t0:.0f} s)")
    return metrics


"""Thin command lines over the engine: train / evaluate / predict for any registered model.

`python -m crmnet.train`, `python -m legnet_tf.train`, ... call these with their model name.
With no data, `train` runs the embedded demo: simulated GPRA data with a known ground truth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from seq2exp import config as run_config
from seq2exp.registry import get_model_spec, model_names


#: the embedded demo: a tiny model, short warm-up, CPU-sized batches (measured: beats the 6-mer ridge)
DEMO_DEFAULTS = {"preset": "tiny", "epochs": 12, "batch_size": 64, "demo_size": 20000,
                 "schedule": {"name": "crmnet_warmup_cosine", "warmup_epochs": 2}}


def _eval_split(m) -> str:
    for name in ("all", "test"):
        if name in m.splits:
            return name
    raise ValueError(f"{m.path}: no 'all' or 'test' split to evaluate (splits: {m.splits})")


def _demo_data(cfg) -> None:
    """Simulated train/val data and a test set from the same ground truth, written into the run."""
    from data_prep.simulate import simulate, write_tsv

    d = os.path.join(cfg.run_dir, "demo")
    os.makedirs(d, exist_ok=True)
    train, test = os.path.join(d, "train.tsv"), os.path.join(d, "test.tsv")
    truth = os.path.join(d, "test_truth.tsv")
    if not os.path.exists(truth):
        write_tsv(simulate(cfg.demo_size, seed=cfg.seed), train)
        sim = simulate(max(cfg.demo_size // 5, 500), seed=cfg.seed + 1000)
        write_tsv(sim, test)
        write_tsv(sim, truth, values=sim.true_expression)
    cfg.data, cfg.test = [train], [test, truth]
    print(f"demo: simulated {cfg.demo_size:,} training sequences and a test set with its noiseless truth in {d}")


def _settings(cfg, epochs: int):
    from seq2exp.settings import TrainSettings

    return TrainSettings(epochs=epochs, batch_size=cfg.batch_size, steps_per_epoch=cfg.steps_per_epoch,
                         steps_per_execution=cfg.steps_per_execution, jit=cfg.jit, patience=cfg.patience,
                         seed=cfg.seed, nan_policy=cfg.nan_policy,
                         log_every_seconds=10.0 if sys.stderr.isatty() else 30.0)


def _stage(cfg, spec, strategy, run_dir, train_sets, val_sets, epochs, init_from=None, resume=False):
    """One training stage (pre-training or fine-tuning) into its own run folder."""
    from data_prep.dataset import make_dataset
    from seq2exp.preflight import check_before_training
    from seq2exp.trainer import Trainer

    model_config = {**(spec.presets[cfg.preset]() if cfg.preset else {}), **cfg.model_config}
    mixed = len(train_sets) > 1
    n_train = sum(m.records(cfg.train_split) for m in train_sets)
    settings = _settings(cfg, epochs)
    if mixed and settings.steps_per_epoch is None:  # media sampled evenly: an epoch = one pass's worth
        settings.steps_per_epoch = max(n_train // (cfg.batch_size * strategy.num_replicas_in_sync), 1)
    trainer = Trainer(spec, model_config, run_dir, strategy, cfg.precision, cfg.optimizer or None,
                      cfg.schedule or None, settings, train_examples=n_train)
    check_before_training(trainer, spec, list({id(m): m for m in [*train_sets, *val_sets]}.values()),
                          [cfg.train_split, cfg.val_split], cfg.verify_data, say=trainer._say)

    def train_fn(ctx, seed):
        return make_dataset(train_sets, cfg.train_split, trainer.global_batch, ctx, training=True, seed=seed,
                            drop_remainder=True, shuffle_buffer=cfg.shuffle_buffer)

    def val_fn(ctx):
        return make_dataset(val_sets, cfg.val_split, trainer.global_batch, ctx, training=False)

    if spec.initialize and not resume and not init_from:
        stats = [m.label_stats(cfg.train_split) for m in train_sets]
        counts = [st.get("count", 0) for st in stats]
        total = max(sum(counts), 1)
        mean = sum(st["mean"] * c for st, c in zip(stats, counts)) / total
        # pooled: E[y^2] of each set is std^2 + mean^2
        square = sum((st.get("std", 0.0) ** 2 + st["mean"] ** 2) * c for st, c in zip(stats, counts)) / total
        with strategy.scope():
            spec.initialize(trainer.model, {"mean": mean, "std": max(square - mean ** 2, 0.0) ** 0.5})
    has_val = all(cfg.val_split in m.splits for m in val_sets)
    metrics = trainer.fit(train_fn, val_fn if has_val else None, resume=resume, init_from=init_from)
    return trainer, metrics


def _test_report(cfg, spec, trainer, train_sets, tests) -> dict:
    """Test metrics of the trained model and of the 6-mer ridge baseline on the same sequences."""
    import numpy as np

    from data_prep.dataset import make_dataset
    from seq2exp.baseline import KmerRidge
    from seq2exp.data import read_arrays
    from seq2exp.metrics import regression_metrics

    tr = [read_arrays(m, cfg.train_split, limit=500_000) for m in train_sets]
    ridge = KmerRidge().fit(np.concatenate([t["seq"] for t in tr]), np.concatenate([t["label"] for t in tr]))
    report = {}
    for m in tests:
        split = _eval_split(m)
        name = os.path.basename(m.folder)
        model_metrics = trainer.evaluate(
            lambda ctx, m=m, split=split: make_dataset(m, split, trainer.global_batch, ctx, training=False))
        arr = read_arrays(m, split)
        report[name] = {"model": model_metrics, "ridge_6mer": regression_metrics(arr["label"], ridge.predict(arr["seq"]))}
    print(f"\n{'test set':40s} {'n':>7s} | {spec.name + ' r':>10s} {'rho':>6s} {'R2':>6s} | {'ridge r':>8s} {'rho':>6s}")
    for name, r in report.items():
        a, b = r["model"], r["ridge_6mer"]
        print(f"{name:40s} {a['n']:7d} | {a['pearson']:10.3f} {a['spearman']:6.3f} {a['r2']:6.3f} | "
              f"{b['pearson']:8.3f} {b['spearman']:6.3f}")
    return report


def train_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {model or 'seq2exp'}.train" if model else "python -m seq2exp.train",
                                description="Train a sequence-to-expression model (no data: the embedded demo).")
    run_config.add_arguments(p, model)
    args = p.parse_args(argv)
    demo = not args.data and not (args.config and run_config.load_file(args.config).get("data"))
    if demo:  # a CPU-sized run unless the user says otherwise
        for key, value in DEMO_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    cfg = run_config.resolve(args, model)
    spec = get_model_spec(cfg.model)
    from data_prep.manifest import ManifestError
    from seq2exp.checkpointing import write_text
    from seq2exp.data import prepare
    from seq2exp.preflight import PreflightError, check_data, check_output_dir
    from seq2exp.strategy import barrier, describe, resolve_strategy
    from seq2exp.trainer import CheckpointWriteError, NonFiniteLossError, WorkerLostError

    strategy = resolve_strategy(cfg.strategy, cfg.tpu)  # before other TF work (multi-worker, TPU)
    info = describe(strategy)
    data_dir = os.path.join(cfg.run_dir, "data")

    def inputs():  # only the chief writes into the run folder; the other workers then read what it built
        if demo:
            _demo_data(cfg)
        if info["chief"]:
            cfg.save(os.path.join(cfg.run_dir, "config.yaml"))
        return (prepare(cfg.data, spec.layout, data_dir),
                prepare(cfg.test, spec.layout, data_dir, split="none", group=False),
                prepare(cfg.pretrain_data, spec.layout, data_dir, group=False) if cfg.pretrain_data else [])

    try:
        check_output_dir(cfg.run_dir)
        if info["chief"]:
            train_sets, tests, media = inputs()
        if info["workers"] > 1:
            barrier(strategy)
        if not info["chief"]:
            train_sets, tests, media = inputs()
        check_data(tests, spec.layout, None, cfg.verify_data)  # before hours of training, not after
        init_from = cfg.init_from
        t0 = time.time()
        if cfg.pretrain_data:
            pre_dir = os.path.join(cfg.run_dir, "pretrain")
            _stage(cfg, spec, strategy, pre_dir, media, media, cfg.pretrain_epochs or cfg.epochs, resume=cfg.resume)
            init_from = os.path.join(pre_dir, "model.keras")
            print(f"pre-training done; fine-tuning all weights from {init_from}")
        final_dir = os.path.join(cfg.run_dir, "finetune") if cfg.pretrain_data else cfg.run_dir
        trainer, metrics = _stage(cfg, spec, strategy, final_dir, train_sets, train_sets, cfg.epochs,
                                  init_from=init_from, resume=cfg.resume)
        if tests:
            metrics["test"] = _test_report(cfg, spec, trainer, train_sets, tests)
            if info["chief"]:
                write_text(os.path.join(final_dir, "metrics.json"), json.dumps(metrics, indent=2, default=float))
    except (PreflightError, ManifestError, NonFiniteLossError, CheckpointWriteError, WorkerLostError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    print(f"\nvalidation: " + ", ".join(f"{k} {metrics.get('val', {}).get(k, float('nan')):.3f}"
                                       for k in ("pearson", "spearman", "r2")))
    print(f"run folder: {final_dir} ({time.time() - t0:.0f} s)")
    return 0


def _load_model(path: str, model_name: str | None):
    import keras

    import seq2exp.registry  # noqa: F401

    for name in model_names():  # importing registers every model's custom layers
        try:
            get_model_spec(name)
        except ImportError:
            pass
    run_dir = path if os.path.isdir(path) else os.path.dirname(path)
    file = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    cfg_file = os.path.join(run_dir, "config.yaml")
    if model_name is None and os.path.exists(cfg_file):
        model_name = run_config.load_file(cfg_file).get("model")
    model = keras.saving.load_model(file, safe_mode=True)
    return model, get_model_spec(model_name or model.name)


def evaluate_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {model or 'seq2exp'}.evaluate",
                                description="Exact metrics of a trained model on test data (folders or raw files).")
    p.add_argument("model_path", help="run folder or .keras file")
    p.add_argument("data", nargs="+", help="dataset folders or TSV/CSV files")
    p.add_argument("--model", default=model, help="model name, when the .keras file does not say")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--out", help="write metrics JSON here")
    p.add_argument("--work", default=None, help="where raw files are built (default: a temp folder)")
    r = p.add_argument_group("report (seq2exp.report): CIs, comparison, variant effects, ISM, saliency")
    r.add_argument("--report", metavar="DIR", help="write a self-contained report folder here")
    r.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples for the CIs (0: none)")
    r.add_argument("--compare-col", default="Predicted Expression",
                   help="another predictor's column in the data files to compare with ('none': off)")
    r.add_argument("--ism", nargs="+", default=[], metavar="SEQ", help="saturation mutagenesis of these sequences")
    r.add_argument("--saliency", action="store_true", help="input x gradient saliency, logos, motif enrichment")
    r.add_argument("--saliency-n", type=int, default=200, help="sequences sampled for the motif saliency")
    r.add_argument("--motif", nargs="+", default=None, metavar="MOTIF",
                   help="PWM files, NAME=CONSENSUS or IUPAC consensus (default: the demo's yeast sites)")
    r.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the saliency sample")
    args = p.parse_args(argv)
    import tempfile

    from seq2exp.data import prepare
    from seq2exp.evaluation import evaluate_model

    keras_model, spec = _load_model(args.model_path, args.model)
    if args.report:
        from seq2exp.report import write_report

        rep = write_report(keras_model, spec, args.data, args.report, n_boot=args.bootstrap,
                           compare_col=args.compare_col, ism=args.ism, saliency=args.saliency,
                           saliency_n=args.saliency_n, motifs=args.motif, seed=args.seed,
                           batch_size=args.batch_size, model_path=args.model_path)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({k: {m: v["model"][m]["value"] for m in ("pearson", "spearman", "r2", "mse", "mae")}
                           | {"n": v["n"]} for k, v in rep["subsets"].items()}, fh, indent=2)
        return 0
    work = args.work or tempfile.mkdtemp(prefix="seq2exp-eval-")
    results = {}
    for m in prepare(args.data, spec.layout, work, split="none", group=False):
        r = evaluate_model(keras_model, spec, m, _eval_split(m), args.batch_size)
        results[os.path.basename(m.folder)] = r
        print(f"{os.path.basename(m.folder):40s} n={r['n']:7d} pearson {r['pearson']:.4f} spearman "
              f"{r['spearman']:.4f} R2 {r['r2']:.4f} MSE {r['mse']:.4f} MAE {r['mae']:.4f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


def predict_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {model or 'seq2exp'}.predict",
                                description="Predict expression for sequences in TSV/CSV/FASTA (.gz) files.")
    p.add_argument("model_path", help="run folder or .keras file")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--model", default=model)
    p.add_argument("--out", default="-", help="output TSV (default: stdout)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seq-col", default=None)
    p.add_argument("--header", default="auto", choices=["auto", "yes", "no"])
    args = p.parse_args(argv)
    from seq2exp.evaluation import predict_files

    keras_model, spec = _load_model(args.model_path, args.model)
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    try:
        n = predict_files(keras_model, spec, args.inputs, out, args.batch_size, args.seq_col, args.header)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"predicted {n:,} sequences", file=sys.stderr)
    return 0

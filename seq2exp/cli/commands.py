"""The command lines: train / evaluate / predict for any registered model.

`python -m seq2exp.train|evaluate|predict` and each model package's `python -m crmnet.train`, ...
call these (the latter with their model name fixed). The run itself is in `seq2exp.cli.run`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from seq2exp.cli import config as run_config
from seq2exp.cli.checks import UsageError, check_keras_file, check_labeled, check_model_options
from seq2exp.cli.outputs import atomic_output, check_inputs_exist, check_out, exit_code, scratch_dir
from seq2exp.engine.registry import get_model_spec, load_all_models


def train_main(argv: list[str] | None = None, model: str | None = None) -> int:
    from seq2exp.cli.run import DEMO_DEFAULTS, run_training

    p = argparse.ArgumentParser(prog=f"python -m {model or 'seq2exp'}.train" if model else "python -m seq2exp.train",
                                description="Train a sequence-to-expression model (no data: the embedded demo).")
    run_config.add_arguments(p, model)
    args = p.parse_args(argv)
    try:  # every flag and config value is checked here, before the run folder or the data are touched
        in_file = run_config.load_file(args.config) if args.config else {}
        demo = not args.data and not in_file.get("data")
        if demo:  # a CPU-sized run unless the user says otherwise (by flag or in the config file)
            for key, value in DEMO_DEFAULTS.items():
                if getattr(args, key) is None and key not in in_file:
                    setattr(args, key, value)
        cfg = run_config.resolve(args, model)
        spec = get_model_spec(cfg.model)
        check_model_options(spec, cfg.preset, cfg.model_config)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run_training(cfg, spec, demo)


def _load_model(path: str, model_name: str | None):
    import keras

    load_all_models()  # importing registers every model's custom layers
    run_dir = path if os.path.isdir(path) else os.path.dirname(path)
    file = check_keras_file(path)
    cfg_file = os.path.join(run_dir, "config.yaml")
    if model_name is None and os.path.exists(cfg_file):
        model_name = run_config.load_file(cfg_file).get("model")
    try:
        model = keras.saving.load_model(file, safe_mode=True)
    except (ValueError, OSError, TypeError, KeyError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UsageError(f"{file}: cannot load this .keras file ({why})") from None
    return model, get_model_spec(model_name or model.name)


def _guarded(body, args) -> int:
    """A command body with its known failures as one line (exit 2), interruptions as 130/143."""
    from data_prep.errors import BuildError
    from data_prep.manifest import ManifestError
    from data_prep.sources import InputError

    try:
        return body(args)
    except (UsageError, BuildError, ManifestError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM while a temporary file or folder was open
        print("interrupted; temporary files removed, nothing half-written left", file=sys.stderr)
        return exit_code(err)


def evaluate_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {model or 'seq2exp'}.evaluate",
                                description="Exact metrics of a trained model on test data (folders or raw files).")
    p.add_argument("model_path", help="run folder or .keras file")
    p.add_argument("data", nargs="+", help="dataset folders or TSV/CSV files")
    p.add_argument("--model", default=model, help="model name, when the .keras file does not say")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--out", help="write metrics JSON here")
    p.add_argument("--work", default=None, help="where raw files are built (default: a temp folder)")
    r = p.add_argument_group("report (seq2exp.analysis.report): CIs, comparison, variant effects, ISM, saliency")
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
    return _guarded(_evaluate, args)


def _evaluate(args) -> int:
    from seq2exp.analysis.evaluation import evaluate_model
    from seq2exp.engine.data import dataset_labels, eval_split, prepare

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    check_inputs_exist(args.data, "test data")
    check_out(args.out, args.data, overwrite=True)  # a metrics file may be rewritten, an input never
    keras_model, spec = _load_model(args.model_path, args.model)
    if args.report:
        from seq2exp.analysis.report import write_report

        rep = write_report(keras_model, spec, args.data, args.report, n_boot=args.bootstrap,
                           compare_col=args.compare_col, ism=args.ism, saliency=args.saliency,
                           saliency_n=args.saliency_n, motifs=args.motif, seed=args.seed,
                           batch_size=args.batch_size, model_path=args.model_path)
        if args.out:
            with atomic_output(args.out) as fh:
                json.dump({k: {m: v["model"][m]["value"] for m in ("pearson", "spearman", "r2", "mse", "mae")}
                           | {"n": v["n"]} for k, v in rep["subsets"].items()}, fh, indent=2)
        return 0
    results = {}
    with scratch_dir("seq2exp-eval-", args.work) as work:  # removed on any exit unless --work was given
        manifests = prepare(args.data, spec.layout, work, split="none", group=False)
        check_labeled(manifests, "evaluated", "score unlabeled sequences with predict instead")
        for m, name in zip(manifests, dataset_labels(manifests)):
            r = evaluate_model(keras_model, spec, m, eval_split(m), args.batch_size)
            results[name] = r
            print(f"{name:40s} n={r['n']:7d} pearson {r['pearson']:.4f} spearman "
                  f"{r['spearman']:.4f} R2 {r['r2']:.4f} MSE {r['mse']:.4f} MAE {r['mae']:.4f}")
    if args.out:
        with atomic_output(args.out) as fh:
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    return _guarded(_predict, args)


def _predict(args) -> int:
    from seq2exp.analysis.evaluation import check_prediction_inputs, predict_files

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    check_inputs_exist(args.inputs)
    check_out(args.out, args.inputs, args.overwrite)
    check_prediction_inputs(args.inputs, args.seq_col, args.header)  # every file readable before --out is touched
    keras_model, spec = _load_model(args.model_path, args.model)
    stats: dict = {}
    with atomic_output(args.out) as out:  # written beside --out and renamed into place when complete
        n = predict_files(keras_model, spec, args.inputs, out, args.batch_size, args.seq_col, args.header, stats)
    cut = stats.get("truncated", 0)
    note = (f"; {cut:,} longer than the {stats['length']}-nt {spec.layout} layout were cut ({stats['cut']}; "
            "see the note column)") if cut else ""
    print(f"predicted {n:,} sequences{note}", file=sys.stderr)
    return 0

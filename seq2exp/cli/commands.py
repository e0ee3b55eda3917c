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
from seq2exp.engine.registry import get_model_spec, load_all_models


def train_main(argv: list[str] | None = None, model: str | None = None) -> int:
    from seq2exp.cli.run import DEMO_DEFAULTS, run_training

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
    return run_training(cfg, get_model_spec(cfg.model), demo)


def _load_model(path: str, model_name: str | None):
    import keras

    load_all_models()  # importing registers every model's custom layers
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
    import tempfile

    from seq2exp.analysis.evaluation import evaluate_model
    from seq2exp.engine.data import eval_split, prepare

    keras_model, spec = _load_model(args.model_path, args.model)
    if args.report:
        from seq2exp.analysis.report import write_report

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
        r = evaluate_model(keras_model, spec, m, eval_split(m), args.batch_size)
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
    from seq2exp.analysis.evaluation import predict_files

    keras_model, spec = _load_model(args.model_path, args.model)
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    try:
        n = predict_files(keras_model, spec, args.inputs, out, args.batch_size, args.seq_col, args.header)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"predicted {n:,} sequences", file=sys.stderr)
    return 0

"""The command lines: build / train / evaluate / predict / report for any registered model.

Console scripts (`seq2exp-train`, `crmnet-train`, ...) and the `python -m` forms (`seq2exp.train`,
`crmnet.train`, ...) call these; a model package's own commands fix `model`. Flags are parsed and
checked before TensorFlow is imported; the run itself is `seq2exp.api.runner.run_training`.
"""
from __future__ import annotations

import json
import os
import sys

from data_prep.outputs import OutputRule
from seq2exp.cli import config as run_config
from seq2exp.cli.checks import UsageError, check_label_range, check_labeled
from seq2exp.cli.outputs import check_inputs_exist, exit_code, model_inputs, scratch_dir
from seq2exp.cli.parsing import CommandParser, command_name, quiet_tensorflow
from seq2exp.engine.registry import get_model_spec, load_all_models, model_names

_HELP = ("-h", "--help")


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return 2


def _presets(model: str | None) -> list[str]:
    """Preset names for --help (imports the model packages, so only when help is asked for)."""
    specs = [get_model_spec(model)] if model else load_all_models()
    return sorted({name for spec in specs for name in spec.presets})


def train_main(argv: list[str] | None = None, model: str | None = None) -> int:
    """The train command: flags -> RunConfig (checked before TensorFlow starts), then `seq2exp.cli.run.run_command`
    runs `seq2exp.api.runner.run_training`, the code path of `seq2exp.train`."""
    from seq2exp.api.runner import DEMO_DEFAULTS
    from seq2exp.api.training import configure

    argv = sys.argv[1:] if argv is None else list(argv)
    prog = command_name(f"{model}-train" if model else "seq2exp-train")
    p = CommandParser(prog=prog, description="Train a sequence-to-expression model (no --data: the embedded "
                      "demo on simulated data).\n\nEvery setting can also come from --config FILE (YAML/JSON; "
                      "a run's config.yaml reproduces that run); flags override the file.")
    help_asked = any(a in _HELP for a in argv)
    if help_asked:
        quiet_tensorflow("--verbose" in argv)
    run_config.add_arguments(p, model, _presets(model) if help_asked else None)
    args = p.parse_args(argv)
    try:
        in_file = run_config.load_file(args.config) if args.config else {}
        demo = not args.data and not in_file.get("data")
        if demo:  # a CPU-sized run unless the user says otherwise (by flag or in the config file)
            for key, value in DEMO_DEFAULTS.items():
                if getattr(args, key) is None and key not in in_file:
                    setattr(args, key, value)
        cfg = run_config.resolve(args, model)  # every value checked here, before TensorFlow starts
        quiet_tensorflow(args.verbose)
        spec = get_model_spec(cfg.model)
        configure(cfg, spec)
    except (ValueError, OSError) as err:
        return _fail(prog, str(err))
    from seq2exp.cli.run import run_command

    return run_command(cfg, spec, demo, argv, prog)


def _load_model(path: str, model_name: str | None):
    from seq2exp.api.predictor import load_keras_model

    return load_keras_model(os.fspath(path), model_name)


def _guarded(body, args, prog: str) -> int:
    """A command body with its known failures as one line (exit 2), interruptions as 130/143."""
    from data_prep.errors import Seq2ExpError

    try:
        return body(args)
    except Seq2ExpError as err:  # every error a user acts on (bad flag, input, output, manifest, build)
        return _fail(prog, str(err))
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM while a temporary file or folder was open
        print(f"{prog}: interrupted; temporary files removed, nothing half-written left", file=sys.stderr)
        return exit_code(err)


def _trained_model_parser(command: str, model: str | None, description: str) -> CommandParser:
    """The parser of a command that reads a trained model: RUN first, then --model unless it is fixed."""
    p = CommandParser(prog=command_name(f"{model}-{command}" if model else f"seq2exp-{command}"),
                      description=description)
    p.add_argument("model_path", metavar="RUN", help="run folder or .keras file")
    if model is None:
        names = model_names()
        p.add_argument("--model", choices=names, metavar="{" + ",".join(names) + "}",
                       help=f"model name, when the run folder does not say: one of {', '.join(names)}")
    else:
        p.set_defaults(model=model)
    return p


def evaluate_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = _trained_model_parser("evaluate", model, "Exact metrics of a trained model on test data (folders or raw "
                                                 "files); --report writes a full report folder.")
    p.add_argument("data", nargs="+", metavar="DATA", help="dataset folders or TSV/CSV files")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N", help="sequences per prediction batch "
                                                                              "(default: 1024)")
    p.add_argument("--metrics-json", metavar="FILE", help="write the metrics as JSON to this file (default: none)")
    p.add_argument("--work", default=None, metavar="DIR", help="where raw files are built and their rejected.tsv "
                                                             "kept (default: a temporary folder, removed at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --metrics-json file or the "
                   "report's files in an existing --report folder (never an input or a run's own files)")
    r = p.add_argument_group("report (seq2exp.analysis.report): CIs, comparison, variant effects, ISM, saliency")
    r.add_argument("--report", metavar="DIR", help="write a self-contained report folder here")
    r.add_argument("--bootstrap", type=int, default=10000, metavar="N",
                   help="bootstrap resamples for the CIs (0: none; default: 10000)")
    r.add_argument("--compare-col", default="Predicted Expression", metavar="COLUMN",
                   help="another predictor's column in the data files to compare with ('none': off; default: "
                        "'Predicted Expression')")
    r.add_argument("--ism", nargs="+", default=[], metavar="SEQ", help="saturation mutagenesis of these sequences")
    r.add_argument("--saliency", action="store_true", help="input x gradient saliency, logos, motif enrichment")
    r.add_argument("--saliency-n", type=int, default=200, metavar="N",
                   help="sequences sampled for the motif saliency (default: 200)")
    r.add_argument("--motif", nargs="+", default=None, metavar="MOTIF",
                   help="PWM files, NAME=CONSENSUS or IUPAC consensus (default: the demo's yeast sites)")
    r.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the bootstrap and of the saliency sample (default: 0)")
    args = p.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return _guarded(_evaluate, args, p.prog)


def _evaluate(args) -> int:
    from seq2exp.analysis.evaluation import evaluate_model
    from seq2exp.engine.data import dataset_labels, eval_split, prepare

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    check_inputs_exist(args.data, "test data")
    rule = OutputRule([*args.data, *model_inputs(args.model_path)], args.overwrite)
    rule.check_file(args.metrics_json, "--metrics-json")
    if args.report:
        rule.check_folder(args.report, "--report")
        if args.metrics_json and os.path.realpath(args.metrics_json).startswith(
                os.path.realpath(args.report) + os.sep):
            raise UsageError(f"--metrics-json {args.metrics_json} is inside --report {args.report}, where the report "
                             "writes its own metrics.json; give a path outside it")
    if args.work:
        rule.check_protected(args.work, "--work")
    keras_model, spec = _load_model(args.model_path, args.model)
    if args.report:
        from seq2exp.analysis.report import write_report

        rep = write_report(keras_model, spec, args.data, args.report, n_boot=args.bootstrap,
                           compare_col=args.compare_col, ism=args.ism, saliency=args.saliency,
                           saliency_n=args.saliency_n, motifs=args.motif, seed=args.seed,
                           batch_size=args.batch_size, model_path=args.model_path, rule=rule)
        if args.metrics_json:
            with rule.open(args.metrics_json, flag="--metrics-json") as fh:
                json.dump({k: {m: v["model"][m]["value"] for m in ("pearson", "spearman", "r2", "mse", "mae")}
                           | {"n": v["n"]} for k, v in rep["subsets"].items()}, fh, indent=2)
        return 0
    results = {}
    with scratch_dir("seq2exp-eval-", args.work) as work:  # removed on any exit unless --work was given
        manifests = prepare(args.data, spec.layout, work, split="none", group=False, keep_rejected=bool(args.work))
        check_labeled(manifests, "evaluated", "score unlabeled sequences with predict instead")
        for m in manifests:
            check_label_range([m], eval_split(m))
        for m, name in zip(manifests, dataset_labels(manifests)):
            r = evaluate_model(keras_model, spec, m, eval_split(m), args.batch_size)
            results[name] = r
            print(f"{name:40s} n={r['n']:7d} pearson {r['pearson']:.4f} spearman "
                  f"{r['spearman']:.4f} R2 {r['r2']:.4f} MSE {r['mse']:.4f} MAE {r['mae']:.4f}")
    if args.metrics_json:
        with rule.open(args.metrics_json, flag="--metrics-json") as fh:
            json.dump(results, fh, indent=2)
    return 0


def predict_main(argv: list[str] | None = None, model: str | None = None) -> int:
    p = _trained_model_parser("predict", model, "Predict expression for sequences in TSV/CSV/FASTA (.gz) files; "
                                                "every input line gets an output row (invalid ones with the reason).")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="TSV/CSV/FASTA files, optionally .gz")
    p.add_argument("--predictions", default="-", metavar="FILE",
                   help="write the predictions TSV to this file (default: standard output)")
    p.add_argument("--batch-size", type=int, default=1024, metavar="N",
                   help="sequences per prediction batch (default: 1024)")
    p.add_argument("--seq-col", default=None, metavar="COLUMN",
                   help="sequence column name or 0-based index (default: found from the header)")
    p.add_argument("--header", default="auto", choices=["auto", "yes", "no"],
                   help="whether table files start with a header line: one of auto, yes, no (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --predictions file (never an input, "
                   "the model read, or a run's own files)")
    args = p.parse_args(argv)
    quiet_tensorflow(args.verbose)
    return _guarded(_predict, args, p.prog)


def _predict(args) -> int:
    from seq2exp.analysis.evaluation import check_prediction_inputs, predict_files

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    check_inputs_exist(args.inputs)
    rule = OutputRule([*args.inputs, *model_inputs(args.model_path)], args.overwrite)
    rule.check_file(args.predictions, "--predictions")
    check_prediction_inputs(args.inputs, args.seq_col, args.header)  # every file readable before the output is made
    from seq2exp.api.predictor import load_run

    predictor = load_run(args.model_path, args.model)
    stats: dict = {}
    with rule.open(args.predictions, flag="--predictions") as out:  # written beside its name, renamed when complete
        n = predict_files(predictor.model, predictor.spec, args.inputs, out, args.batch_size, args.seq_col,
                          args.header, stats, shortest=predictor.shortest)
    cut, short = stats.get("truncated", 0), stats.get("short", 0)
    note = (f"; {cut:,} longer than the {stats['length']}-nt {predictor.spec.layout} layout were cut "
            f"({stats['cut']}; see the note column)") if cut else ""
    if short:
        note += (f"; {short:,} shorter than the shortest training sequence ({predictor.shortest} nt) were padded "
                 "(see the note column)")
    elif predictor.shortest is None:
        note += "; no training data beside the model, so input lengths were not compared with it"
    print(f"predicted {n:,} sequences{note}", file=sys.stderr)
    return 0


def build_main(argv: list[str] | None = None) -> int:
    """data_prep.build, with the layouts of every registered model (a model package may add its own)."""
    from data_prep import build
    from data_prep.layouts import LAYOUTS

    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    layout = next((a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
                   for i, a in enumerate(argv) if a.split("=", 1)[0] == "--layout"), None)
    if any(a in _HELP for a in argv) or (layout is not None and layout not in LAYOUTS):
        quiet_tensorflow(verbose)
        load_all_models()  # their registry modules register any layout of their own
    return build.main(argv, prog=command_name("seq2exp-build"))


def report_main(argv: list[str] | None = None) -> int:
    """`seq2exp-report dream PREDICTIONS --subsets JSON`: the DREAM 2022 weighted score."""
    from seq2exp.analysis import stats

    argv = sys.argv[1:] if argv is None else list(argv)
    prog = command_name("seq2exp-report")
    if argv[:1] == ["dream"]:
        return stats.dream_main(argv[1:], prog=f"{prog} dream")
    usage = (f"usage: {prog} dream PREDICTIONS --subsets JSON [--score-json FILE]\n\n"
             "The DREAM 2022 weighted Pearson/Spearman score of a predictions table "
             f"({prog} dream --help for its flags).\nReport folders for a trained run: "
             "seq2exp-evaluate RUN DATA... --report DIR\n\nexample:\n"
             f"  {prog} dream predictions.tsv --subsets subsets.json --score-json score.json")
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    print(usage if not argv else f"{prog}: error: {argv[0]}: unknown report; the one report is 'dream' (see --help)",
          file=sys.stderr)
    return 2

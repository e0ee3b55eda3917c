"""Port the released CRMnet weights (a Keras-2 SavedModel) into our Keras 3 model.

Keras 3 cannot load that SavedModel, but its ``variables/`` checkpoint is an ordinary TF2
checkpoint. ``crmnet.keras2_checkpoint`` identifies every variable through the checkpoint's object
graph (the functional model's ``layer-<i>`` and the attribute path inside it; never key order or
shapes), ``crmnet.keras2_mapping`` maps those onto ``build_crmnet(config)``, and this module copies
the values and writes a ``.keras`` file. Optimizer slots, metrics and bookkeeping are skipped on
purpose; anything else unmapped, missing or mis-shaped is an error that names it.

Library: ``convert_checkpoint(path, config)``, ``plan_mapping(read_keras2_checkpoint(path), model)``.
CLI: ``python -m crmnet.convert SAVED_MODEL_DIR --out model.keras [--check-input seqs.tsv]``.
"""
from __future__ import annotations

import json
import os
import sys

from data_prep.command_line import Parser, one_line_errors, quiet_tensorflow
from data_prep.outputs import OutputRule

if __name__ == "__main__":  # before Keras starts TensorFlow: its C++ start-up lines only with --verbose
    quiet_tensorflow("--verbose" in sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402

from crmnet.keras2_checkpoint import (  # noqa: E402, F401  (re-exported: part of this module's API)
    Keras2Checkpoint,
    Keras2Layer,
    Keras2Variable,
    is_ignored_key,
    read_keras2_checkpoint,
    resolve_checkpoint_prefix,
)
from crmnet.keras2_mapping import (  # noqa: E402, F401  (re-exported)
    CheckpointMappingError,
    MappingEntry,
    MappingReport,
    concat_transforms,
    keras2_role,
    model_units,
    plan_mapping,
)
from crmnet.model import CRMnetConfig, build_crmnet  # noqa: E402
from data_prep.errors import Seq2ExpError  # noqa: E402


class CheckpointFileError(Seq2ExpError, ValueError):
    """The input is not a Keras-2 checkpoint this converter can read (named, with what to give instead)."""


# --------------------------------------------------------------------------- conversion


def as_config(config) -> CRMnetConfig:
    """``None`` (published), a ``CRMnetConfig``, a dict, a JSON string or a JSON file path."""
    if config is None:
        return CRMnetConfig()
    if isinstance(config, CRMnetConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        text = os.fspath(config)
        if os.path.isfile(text):
            with open(text) as handle:
                text = handle.read()
        config = json.loads(text)
    if isinstance(config, dict):
        return CRMnetConfig.from_dict(config)
    raise TypeError(f"config must be a CRMnetConfig, dict or JSON; got {type(config).__name__}")


def convert_checkpoint(saved_model_dir_or_checkpoint_prefix, config=None) -> keras.Model:
    """Builds CRMnet (float32) and fills it from a Keras-2 CRMnet SavedModel or checkpoint.

    Args:
        saved_model_dir_or_checkpoint_prefix: the released SavedModel directory, its
            ``variables/`` folder, or a checkpoint prefix.
        config: the architecture the checkpoint was trained with (see ``as_config``);
            default: the published one.

    Returns:
        The model; ``model.mapping_report`` is the ``MappingReport`` used.

    Raises:
        CheckpointMappingError: when the checkpoint and the model disagree.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    source = os.fspath(saved_model_dir_or_checkpoint_prefix)
    try:
        checkpoint = read_keras2_checkpoint(source)
        reader = tf.train.load_checkpoint(checkpoint.source)
    except (tf.errors.OpError, DecodeError) as err:  # e.g. "not an sstable (bad magic number)"
        why = (str(getattr(err, "message", err)).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointFileError(f"{source}: not a Keras-2 checkpoint ({why}); give the released CRMnet SavedModel "
                                  "folder, its variables/ folder or a checkpoint prefix") from None
    model = build_crmnet(as_config(config), dtype="float32")
    report = plan_mapping(checkpoint, model)
    dtypes = reader.get_variable_to_dtype_map()
    not_float = [e.checkpoint_key for e in report if not dtypes[e.checkpoint_key].is_floating]
    if not_float:
        raise CheckpointMappingError(f"non-float checkpoint variables: {not_float}", unmapped_keys=not_float)
    variables = {w.path: w for w in model.weights}
    for entry in report:
        value = np.asarray(reader.get_tensor(entry.checkpoint_key))
        if entry.checkpoint_key in report.transforms:
            value = report.transforms[entry.checkpoint_key](value)
        variables[entry.weight_path].assign(value.astype(variables[entry.weight_path].dtype))
    # object.__setattr__: a plain attribute, not tracked (and saved) as layer state.
    object.__setattr__(model, "mapping_report", report)
    return model


def write_report(report, path, rule: OutputRule | None = None):
    """TSV: checkpoint key, Keras-2 source (object path and name), our weight path, shape, transform."""
    with (rule or OutputRule(overwrite=True)).open(path, flag="--report") as handle:
        handle.write("checkpoint_key\tkeras2_source\tweight\tshape\ttransform\n")
        for entry in report:
            shape = ",".join(str(d) for d in entry.shape)
            handle.write(f"{entry.checkpoint_key}\t{entry.source}\t{entry.weight_path}\t{shape}\t{entry.transform}\n")


def read_check_input(path, seq_len):
    """Sequences (column 1) and optional expected predictions (column 2) from a TSV.

    Sequences are N-padded / truncated at the 3' end, as the published code does. A first line
    that does not parse is taken as a header.
    """
    from data_prep import alphabet

    def parse(fields):
        seq = alphabet.encode(fields[0].strip())
        if not seq.size or (seq == alphabet.INVALID).any():
            return None
        try:
            value = float(fields[1]) if len(fields) > 1 and fields[1].strip() else None
        except ValueError:
            return None
        row = np.full(seq_len, alphabet.N, dtype=np.uint8)
        row[: min(seq_len, seq.size)] = seq[:seq_len]
        return row, value

    rows = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parsed = parse(line.rstrip("\n\r").split("\t"))
            if parsed is None:
                if number == 1:
                    continue  # header
                raise ValueError(f"{path}:{number}: not a 'sequence[<TAB>expected]' line: {line.strip()!r}")
            rows.append(parsed)
    if not rows:
        raise ValueError(f"{path}: no sequences")
    expected = [value for _, value in rows]
    if any(v is None for v in expected) and not all(v is None for v in expected):
        raise ValueError(f"{path}: give an expected value on every line or on none")
    codes = np.stack([row for row, _ in rows])
    return codes, (None if expected[0] is None else np.asarray(expected, dtype=np.float64))


def _count(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _check(model, args, seq_len) -> bool:
    """Runs ``--check-input`` through ``model``; False when predictions differ from the expected ones."""
    codes, expected = read_check_input(args.check_input, seq_len)
    preds = np.asarray(model.predict(codes, batch_size=args.batch_size, verbose=0), dtype=np.float64).reshape(-1)
    print(f"check input: {len(preds)} sequences, predictions mean {preds.mean():.6g} SD {preds.std():.6g} "
          f"min {preds.min():.6g} max {preds.max():.6g}")
    if expected is None:
        return True
    tolerance = args.check_atol if args.check_atol is not None else 1e-4 * max(1.0, float(expected.std()))
    diff = float(np.max(np.abs(preds - expected)))
    ok = diff <= tolerance
    print(f"max |converted - expected| = {diff:.3g} ({'OK' if ok else 'FAIL'}, tolerance {tolerance:.3g})")
    return ok


@one_line_errors("python -m crmnet.convert")
def main(argv=None) -> int:
    parser = Parser(
        prog="python -m crmnet.convert",
        description="Convert a Keras-2 CRMnet SavedModel (the released weights) into a Keras 3 .keras file.",
        epilog="example: python -m crmnet.convert CRMnet_saved_model/ --out crmnet.keras --check-input seqs.tsv",
    )
    parser.add_argument("saved_model", help="SavedModel directory, its variables/ folder, or a checkpoint prefix")
    parser.add_argument("--out", required=True, help="output .keras file (required)")
    parser.add_argument("--config", help="CRMnetConfig as a JSON string or JSON file (default: the published one)")
    parser.add_argument("--report", help="write the key -> weight mapping as TSV here (default: none)")
    parser.add_argument("--check-input", metavar="TSV",
                        help="sequences (col 1) and optionally the original model's predictions (col 2) "
                             "to run through the reloaded model (default: none)")
    parser.add_argument("--check-atol", type=float, default=None,
                        help="max |converted - expected| allowed with --check-input "
                             "(default 1e-4 x max(1, SD of the expected values))")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size for --check-input (default: 256)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out / --report file (never an input or a run's own files)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and C++ log lines (hidden by default)")
    args = parser.parse_args(argv)

    if not args.out.endswith(".keras"):
        parser.error("--out must end with .keras")
    for flag, path in (("saved_model", args.saved_model), ("--check-input", args.check_input)):
        if path and not os.path.exists(path) and not os.path.exists(path + ".index"):
            parser.error(f"{flag}: {path} does not exist")
    inputs = [args.saved_model, args.check_input]
    if args.config and os.path.isfile(args.config):
        inputs.append(args.config)
    rule = OutputRule(inputs, overwrite=args.overwrite)
    rule.check_file(args.out, "--out")
    rule.check_file(args.report, "--report")
    config = as_config(args.config)
    try:
        model = convert_checkpoint(args.saved_model, config)
    except (CheckpointMappingError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = model.mapping_report
    print(f"mapped {len(report)} checkpoint variables ({report.num_values:,} values) onto "
          f"{len(model.weights)} weights; skipped {len(report.ignored_keys)} optimizer/metric/bookkeeping keys")
    for note in report.notes:
        print(f"note: {note}")
    if args.report:
        write_report(report, args.report, rule)
        print(f"wrote mapping report {args.report}")

    with rule.staged(args.out, "--out") as tmp:  # renamed onto --out only once written whole
        model.save(tmp)
    reloaded = keras.saving.load_model(args.out, safe_mode=True)
    same = len(reloaded.weights) == len(model.weights) and all(
        np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
        for a, b in zip(model.weights, reloaded.weights)
    )
    print(f"wrote {args.out}; reloaded with safe_mode=True: {reloaded.count_params():,} parameters "
          f"(trainable {_count(reloaded.trainable_weights):,}, "
          f"non-trainable {_count(reloaded.non_trainable_weights):,}); "
          f"weights {'identical' if same else 'DIFFER'} after reload")
    if not same:
        return 1
    if args.check_input and not _check(reloaded, args, config.seq_len):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

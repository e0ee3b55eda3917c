"""Command-line values checked before any work: one line naming the flag (or config-file key) and the valid choices.

A careless value must never surface as a traceback from deep inside TensorFlow (`--batch-size 0`:
"OutOfRangeError: End of sequence"; `--preset tiyn`: "KeyError"; `--model-config '{"seq_len":"112"}'`:
"TypeError: not all arguments converted") nor be silently misread (YAML `data: ds/crm` iterated
letter by letter). The TrainSettings/RunConfig field types are the contract checked here.
"""
from __future__ import annotations

import difflib
import os
import zipfile

from data_prep.errors import Seq2ExpError

#: numeric settings and their smallest valid value (None is allowed where the field is Optional)
MINIMUM = {"epochs": 1, "batch_size": 1, "steps_per_epoch": 1, "steps_per_execution": 1, "patience": 0,
           "keep_checkpoints": 1, "pretrain_epochs": 1, "shuffle_buffer": 0, "demo_size": 10,
           "log_every_seconds": 0, "stall_timeout_s": 1, "tensorboard_every": 0}
LIST_FIELDS = ("data", "test", "pretrain_data")


class UsageError(Seq2ExpError, ValueError):
    """A value the user gave cannot work; the message names the flag or file key and what would."""


def _where(key: str, args, config_path: str | None) -> str:
    flag = "--" + key.replace("_", "-")
    if args is None or getattr(args, key, None) is not None or not config_path:
        return flag
    return f"{config_path}: {key}"


def _kind(annotation) -> tuple[set, bool]:
    """The Python types a dataclass field accepts, and whether None is allowed."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    optional = "None" in text
    base = text.replace("| None", "").replace("None |", "").strip()
    kinds = {"int": {int}, "float": {int, float}, "bool": {bool}, "str": {str}, "list": {list, tuple},
             "dict": {dict}}.get(base, {object})
    return kinds, optional


def _type_name(kinds: set) -> str:
    names = {int: "a whole number", float: "a number", bool: "true/false", str: "a string", list: "a list",
             dict: "a mapping"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds if k is not tuple))


def check_values(values: dict, fields, args=None, config_path: str | None = None) -> dict:
    """Types and ranges of run-config values (from flags or a config file); returns them, lists normalised.

    A list field given as one string (YAML `data: ds/crm`) becomes a list, split at commas like the flag.
    """
    out = dict(values)
    hints = {f.name: f.type for f in fields}  # annotations as text ("int | None"): the module defers them
    problems = []
    for key, value in values.items():
        where = _where(key, args, config_path)
        if key in LIST_FIELDS and isinstance(value, str):
            out[key] = value = [x.strip() for x in value.split(",") if x.strip()]
        kinds, optional = _kind(hints.get(key, object))
        if value is None:
            if not optional and object not in kinds:
                problems.append(f"{where}: needs {_type_name(kinds)}, got nothing (null)")
            continue
        is_bool_only = isinstance(value, bool) and bool not in kinds  # True is an int to Python, not to a config
        ok = object in kinds or (isinstance(value, tuple(kinds)) and not is_bool_only)
        if not ok:
            problems.append(f"{where}: needs {_type_name(kinds)}, got {value!r} ({type(value).__name__})")
            continue
        if key in LIST_FIELDS and any(not isinstance(v, str) or not v for v in value):
            problems.append(f"{where}: needs a list of paths, got {value!r}")
        if key in MINIMUM and isinstance(value, (int, float)) and not isinstance(value, bool) and value < MINIMUM[key]:
            problems.append(f"{where} {value}: must be at least {MINIMUM[key]}")
    if problems:
        raise UsageError("; ".join(problems))
    return out


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_model_config(spec, model_config: dict) -> None:
    """--model-config names the model's constructor arguments, with values of their type (--preset is checked
    by `seq2exp.cli.commands.effective_config`)."""
    if not isinstance(model_config, dict):
        raise UsageError(f"--model-config needs a JSON object like '{{\"seq_len\": 112}}', got {model_config!r}")
    defaults = spec.default_config()
    problems = []
    for key, value in model_config.items():
        if key not in defaults:
            problems.append(f"unknown key {key!r} for {spec.name}{_suggest(key, defaults)} "
                            f"(keys: {', '.join(sorted(defaults))})")
            continue
        want = defaults[key]
        if want is None or value is None:
            continue
        if isinstance(want, bool):
            ok = isinstance(value, bool)
        elif isinstance(want, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(want, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(want, (list, tuple)):
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, type(want[0])) or (isinstance(want[0], float) and isinstance(v, int))
                for v in value) if want else isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, type(want))
        if not ok:
            problems.append(f"{key} needs {type(want).__name__} like {want!r}, got {value!r} ({type(value).__name__})")
    if problems:
        raise UsageError(f"--model-config: {'; '.join(problems)}")


def check_batch_fits(batch_size: int, replicas: int, steps_per_epoch: int | None, n_train: int, where: str) -> None:
    """A global batch larger than the training split leaves no full batch to train on (with --steps-per-epoch too:
    batches drop their remainder, so such data yields none at all)."""
    global_batch = batch_size * replicas
    if n_train < global_batch:
        per = f" ({batch_size} per replica x {replicas} replicas)" if replicas > 1 else ""
        raise UsageError(f"--batch-size {batch_size}{per} is larger than the {n_train:,} training records in {where}; "
                         f"use --batch-size {max(n_train // replicas, 1)} or smaller")


def check_labeled(manifests, what: str, fix: str) -> None:
    """Scoring needs measured expression: an unlabeled dataset (FASTA, --expr-col none) is named, not a KeyError."""
    from seq2exp.engine.data import dataset_source

    for m in manifests:
        if not m.schema.labeled:
            raise UsageError(f"{dataset_source(m)}: has no measured expression (built from FASTA or with "
                             f"--expr-col none), so it cannot be {what}; {fix}")


def check_keras_file(path: str) -> str:
    """The .keras file a run folder or path names: exists, and is a whole Keras archive (a zip with a config)."""
    file = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    if not os.path.exists(file):
        if os.path.isdir(path):
            raise UsageError(f"{path}: no model.keras in this run folder (the training has not finished; "
                             "pass a finished run folder or a .keras file)")
        raise UsageError(f"{path}: not found (pass a run folder or a .keras file)")
    try:
        with zipfile.ZipFile(file) as z:
            names = set(z.namelist())
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        raise UsageError(f"{file}: not a valid .keras file (truncated or not a Keras model archive: {err})") from None
    if bad is not None or "config.json" not in names:
        raise UsageError(f"{file}: not a valid .keras file ({'damaged member ' + bad if bad else 'no config.json'})")
    return file


#: |label| above this squares past float32's range: the float32 loss and metrics would be inf
LABEL_LIMIT = 1.8e19


def check_label_range(manifests, split: str) -> None:
    """Labels a float32 loss cannot square (1e30 passes the build's float32 check, then kills the training)."""
    for m in manifests:
        stats = m.label_stats(split) if split in m.splits else {}
        worst = max(abs(stats.get("min", 0.0)), abs(stats.get("max", 0.0)))
        if worst > LABEL_LIMIT:
            from seq2exp.engine.data import dataset_source

            at = stats.get("max_at" if abs(stats.get("max", 0.0)) >= abs(stats.get("min", 0.0)) else "min_at")
            raise UsageError(f"{at or dataset_source(m)}: labels in the {split} split reach {worst:.3g}, beyond "
                             f"±{LABEL_LIMIT:.2g} where their squares overflow float32 (the loss and metrics would "
                             "be inf); rescale them (e.g. log) or remove the outliers and rebuild")


def check_run_dir(run_dir: str | None) -> None:
    """--run-dir names a folder (or nothing yet), never an existing file."""
    if run_dir and "://" not in run_dir and os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError(f"--run-dir {run_dir}: is a file, not a folder; choose a folder name (it is created)")


def _keras_classes(node):
    """Every class_name in a Keras config tree."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            yield node["class_name"]
        for value in node.values():
            yield from _keras_classes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keras_classes(value)


def check_init_from(path: str | None) -> None:
    """--init-from is something weights can be read from, checked before any data is built: a whole .keras
    archive without Python code (Lambda layers are never run), an .npz of plain arrays, a run / checkpoint
    folder, or a checkpoint prefix."""
    if not path or "://" in path:
        return
    flag = f"--init-from {path}"
    if os.path.isdir(path):
        marks = ("model.keras", "checkpoints", "best", "checkpoint")
        if not any(os.path.exists(os.path.join(path, m)) for m in marks) and not any(
                f.startswith("ckpt-") for f in os.listdir(path)):
            raise UsageError(f"{flag}: the folder holds no model.keras, checkpoints/ or best/ (not a run folder); "
                             "pass a run folder, a .keras file or a checkpoint")
        return
    if not os.path.exists(path):
        if os.path.exists(path + ".index"):  # a TensorFlow checkpoint prefix (ckpt-3)
            return
        raise UsageError(f"{flag}: not found (pass a .keras file, a run folder or a checkpoint)")
    if path.endswith(".keras"):
        import json

        try:
            check_keras_file(path)
        except UsageError as err:
            raise UsageError(f"--init-from {err}") from None
        with zipfile.ZipFile(path) as z:
            try:
                classes = set(_keras_classes(json.loads(z.read("config.json"))))
            except ValueError as err:
                raise UsageError(f"{flag}: its config.json is not valid JSON ({err})") from None
        if "Lambda" in classes:
            raise UsageError(f"{flag}: the model holds a Lambda layer (Python code, which is never run from a "
                             "file); initialise from a model saved without Lambda layers")
        return
    if path.endswith(".npz"):
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as archive:
                for name in archive.files:
                    archive[name]  # noqa: B018 - reading each array is the check
        except ValueError as err:
            why = "it holds Python objects (pickled), which are never loaded" if "allow_pickle" in str(err) \
                else str(err).splitlines()[0]
            raise UsageError(f"{flag}: not a weights archive of plain arrays ({why})") from None
        except (OSError, zipfile.BadZipFile) as err:
            raise UsageError(f"{flag}: not a readable .npz archive ({err})") from None
        return
    base = os.path.basename(path)
    hint = (f"; pass the checkpoint prefix {path.split('.index')[0].split('.data-')[0]}"
            if ".index" in base or ".data-" in base else "")
    raise UsageError(f"{flag}: not a checkpoint (neither a .keras file, an .npz archive, a run folder nor a "
                     f"checkpoint prefix){hint}")


def check_val_split(manifests, split: str, train_split: str) -> None:
    """The validation split exists in every training dataset and is not empty; 'none' means no validation."""
    if split == "none":
        return
    from seq2exp.engine.data import dataset_source

    for m in manifests:
        if split not in m.splits or m.records(split) == 0:
            what = f"has no {split!r} split" if split not in m.splits else f"has an empty {split!r} split"
            others = ", ".join(s for s in m.splits if s != train_split) or "none"
            raise UsageError(f"--val-split {split}: {dataset_source(m)} {what} (its other splits: {others}); pass "
                             "one of those, or --val-split none to train without validation (no best-weights "
                             "selection, no early stopping)")

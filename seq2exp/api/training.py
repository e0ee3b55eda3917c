"""`seq2exp.train`: a training run from Python through the train command's own code path.

The train command (`seq2exp.cli.commands.train_main`) parses its flags into a `RunConfig`, checks it
(`configure`) and calls `seq2exp.api.runner.run_training`, which raises `Seq2ExpError` subclasses; the
command only maps them to a one-line message and an exit code. `train()` builds the same `RunConfig` from
keyword settings, checked as the flags are, and calls the same function: the same run folder (lock,
resume, overwrite, data pins), preflight, data-aware initialisation, pre-training then fine-tuning, and
test report. A DataFrame is written as a TSV file the run owns (`RUN/inputs/`), which config.yaml names,
then built like any raw file.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from types import SimpleNamespace

from seq2exp.cli.checks import (
    UsageError,
    check_init_from,
    check_model_config,
    check_run_dir,
    check_values,
)
from seq2exp.cli.config import RunConfig, effective_config
from seq2exp.engine.registry import ModelSpec, get_model_spec

#: train()'s own arguments, not settings
_ARGUMENTS = ("data", "model", "run_dir", "preset", "test")
#: DataFrame columns named by hand, as data_prep.build's --seq-col / --expr-col (label_col: another name)
_COLUMNS = ("seq_col", "expr_col", "label_col")
_WHERE = "seq2exp.train"


class Run:
    """A training run folder as Python values, read when asked (a resumed run's files are read afresh)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = os.fspath(run_dir)
        self._predictor = None

    @property
    def final_dir(self) -> str:
        """Where the trained model is: the run folder, or its finetune/ after pre-training."""
        finetune = os.path.join(self.run_dir, "finetune")
        return finetune if os.path.isdir(finetune) else self.run_dir

    @property
    def config(self) -> dict:
        """The run's config.yaml (every setting, filled in; `ran_with`: where it really trained)."""
        import yaml

        with open(os.path.join(self.run_dir, "config.yaml")) as fh:
            return yaml.safe_load(fh) or {}

    @property
    def history(self):
        """One row per epoch (loss, learning rate, validation metrics, seconds), as a pandas DataFrame."""
        import pandas as pd

        with open(os.path.join(self.final_dir, "history.json")) as fh:
            return pd.DataFrame(json.load(fh))

    @property
    def metrics(self) -> dict:
        """metrics.json: best epoch, validation metrics, settings; `test` when test sets were given."""
        with open(os.path.join(self.final_dir, "metrics.json")) as fh:
            return json.load(fh)

    @property
    def predictor(self):
        """A `seq2exp.Predictor` of the trained model (loaded on first use)."""
        if self._predictor is None:
            from seq2exp.api.predictor import load_run

            final = self.final_dir
            self._predictor = load_run(final if final == self.run_dir else os.path.join(final, "model.keras"))
        return self._predictor

    def __repr__(self) -> str:
        return f"Run({self.run_dir!r})"


def train(data, *, model: str, run_dir: str | os.PathLike, preset: str | None = None, test=None,
          **settings) -> Run:
    """Train `model` on `data` into `run_dir`, exactly as the train command would; returns the `Run`.

    `data`: a path or a list of paths (TSV/CSV/FASTA files, optionally .gz, or built dataset folders), or a
    pandas DataFrame (its columns found as `data_prep.build` finds them, or named with `seq_col=` and
    `expr_col=`, also spelled `label_col=`). `test`: the same kinds, or a list of them, scored after training
    next to the 6-mer ridge baseline. `settings`: any `RunConfig` field (epochs, batch_size, seed, precision,
    strategy, schedule, optimizer, val_split, resume, overwrite, ...), checked as the command checks its
    flags. Every refusal is a `seq2exp.Seq2ExpError` with a one-line message.
    """
    from seq2exp.cli.parsing import quiet_tensorflow

    cfg, spec, frames = make_config(data, model=model, run_dir=run_dir, preset=preset, test=test,
                                    settings=settings)
    quiet_tensorflow()
    from seq2exp.api.runner import run_training

    run_training(cfg, spec, frames=frames)
    return Run(cfg.run_dir)


def make_config(data, *, model, run_dir, preset, test, settings: dict) -> tuple[RunConfig, ModelSpec, dict]:
    """The RunConfig of a `train()` call, checked as the command checks its flags; DataFrames become the paths
    of the files they are written to ({path: table})."""
    settings = dict(settings)
    columns = {k: settings.pop(k) for k in _COLUMNS if k in settings}
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    valid = [f for f in fields if f not in _ARGUMENTS]
    for key in settings:
        if key not in valid:
            close = difflib.get_close_matches(key, valid + list(_COLUMNS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{_WHERE}: unknown setting {key!r}{hint}; settings are RunConfig fields: "
                             f"{', '.join(valid)}")
    if data is None or (isinstance(data, (list, tuple)) and not data):
        raise UsageError(f"{_WHERE}: no data; pass a file, a dataset folder, a list of them, or a DataFrame")
    if run_dir is None:
        raise UsageError(f"{_WHERE}: run_dir is needed (the folder the run is written to)")
    run_dir = os.fspath(run_dir)
    frames: dict = {}
    table = _table_maker(columns)
    values = {**settings, "model": model, "preset": preset, "run_dir": run_dir,
              "data": _paths(data, os.path.join(run_dir, "inputs", "train"), frames, table),
              "test": _paths(test, os.path.join(run_dir, "inputs", "test"), frames, table)}
    if columns and not frames:
        raise UsageError(f"{_WHERE}: {'/'.join(columns)} name DataFrame columns; a file's columns are found from "
                         "its header (or build it first: seq2exp-build FILE --seq-col ... --expr-col ...)")
    values = check_values(values, dataclasses.fields(RunConfig), SimpleNamespace(), _WHERE)
    try:
        cfg = RunConfig(**values)
        spec = get_model_spec(cfg.model)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{_WHERE}: {err}") from None
    configure(cfg, spec, pending=frames)
    return cfg, spec, frames


def _paths(value, stem: str, frames: dict, table) -> list:
    """Paths of data given as a path, a DataFrame, or a list of them; each DataFrame gets a file under RUN/inputs."""
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    n_frames = sum(hasattr(v, "to_csv") for v in items)
    out = []
    for item in items:
        if hasattr(item, "to_csv"):
            path = f"{stem}-{len(frames) + 1}.tsv" if n_frames > 1 else f"{stem}.tsv"
            frames[path] = table(item)
            out.append(path)
        else:
            out.append(os.fspath(item) if isinstance(item, (str, os.PathLike)) else item)
    return out


def _table_maker(columns: dict):
    """DataFrame -> the table written for it: as it is, or the two named columns under names the build knows."""
    seq, expr = columns.get("seq_col"), columns.get("expr_col", columns.get("label_col"))
    if "expr_col" in columns and "label_col" in columns:
        raise UsageError(f"{_WHERE}: expr_col and label_col are one setting; give one of them")
    if (seq is None) != (expr is None):
        raise UsageError(f"{_WHERE}: name both seq_col= and expr_col= (or neither, to find the columns by name)")

    def table(frame):
        if seq is None:
            return frame
        missing = [c for c in (seq, expr) if c not in frame.columns]
        if missing:
            names = [str(c) for c in frame.columns]
            close = difflib.get_close_matches(str(missing[0]), names, n=1)
            raise UsageError(f"{_WHERE}: no column {missing[0]!r} in the DataFrame"
                             f"{f' (did you mean {close[0]!r}?)' if close else ''}; its columns: {', '.join(names)}")
        return frame[[seq, expr]].set_axis(["sequence", "expression"], axis=1)

    return table


def configure(cfg: RunConfig, spec: ModelSpec, pending=()) -> None:
    """What the command and `train()` check once every value has its type, before TensorFlow or any data work:
    the preset, the model config's keys and types, --run-dir, --init-from and that the inputs exist (`pending`:
    paths that DataFrames are written to later)."""
    try:
        effective_config(cfg, spec)
    except ValueError as err:
        raise UsageError(str(err)) from None
    check_model_config(spec, cfg.model_config)
    check_run_dir(cfg.run_dir)
    check_init_from(cfg.init_from)
    for flag, paths in (("--data", cfg.data), ("--test", cfg.test), ("--pretrain-data", cfg.pretrain_data)):
        for path in paths:
            if path not in pending and "://" not in path and not os.path.exists(path):
                raise UsageError(f"{flag} {path}: not found (neither a file nor a dataset folder)")

"""One run config: dataclass defaults < YAML/JSON file < command-line flags; saved with the run.

A config file is data (YAML `safe_load` / JSON), never code. Every field is also a flag
(`batch_size` -> `--batch-size`); dict fields take JSON on the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field

import yaml

from seq2exp.cli.checks import check_values
from seq2exp.engine.settings import STRATEGIES, VERIFY_MODES, TrainSettings, check_choice


@dataclass
class RunConfig(TrainSettings):
    """A training command's whole configuration: the loop's `TrainSettings` and what the command adds."""
    model: str = "crmnet"
    #: named small configuration from the model's registry entry ("tiny", "small"); None = published size
    preset: str | None = None
    #: overrides of the model's constructor arguments
    model_config: dict = field(default_factory=dict)
    #: training data: dataset folders (data_prep.build output) or raw TSV/CSV files (built into the run)
    data: list = field(default_factory=list)
    train_split: str = "train"
    val_split: str = "val"
    #: test sets evaluated with the best weights after training (folders or raw files)
    test: list = field(default_factory=list)
    #: pre-training data (e.g. two growth media, sampled evenly); then fine-tune on `data`
    pretrain_data: list = field(default_factory=list)
    pretrain_epochs: int | None = None
    #: initial weights (checkpoint or .keras) for fine-tuning
    init_from: str | None = None
    run_dir: str | None = None
    resume: bool = False
    #: replace an earlier run in run_dir (its files only); without it such a folder is refused
    overwrite: bool = False
    #: one of seq2exp.engine.settings.STRATEGIES
    strategy: str = "auto"
    tpu: str | None = None
    shuffle_buffer: int = 100_000
    #: one of seq2exp.engine.settings.VERIFY_MODES
    verify_data: str = "sha256"
    #: demo data size when no data is given (simulated)
    demo_size: int = 12_000

    def __post_init__(self):
        super().__post_init__()
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("verify_data", self.verify_data, VERIFY_MODES)

    def train_settings(self, **changes) -> TrainSettings:
        """The loop's share of this config (e.g. `epochs=` of a pre-training stage)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)}
        return TrainSettings(**{**values, **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w") as fh:  # whole or not at all: a resumed run reads it back
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)
        os.replace(tmp, path)


def load_file(path: str) -> dict:
    """A config file as plain data: JSON, or YAML through `safe_load` (no tags that build Python objects)."""
    with open(path) as fh:
        text = fh.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ValueError(f"{where}: not valid plain-data YAML ({getattr(err, 'problem', None) or err}); a config "
                         "holds only mappings, lists, strings and numbers (no !!python tags)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config must be a mapping of field: value")
    unknown = set(data) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {sorted(unknown)}")
    return data


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(p: argparse.ArgumentParser, model: str | None) -> None:
    """One flag per RunConfig field; defaults are None so 'not given' is distinguishable."""
    p.add_argument("--config", help="YAML/JSON run config; flags override it")
    for f in dataclasses.fields(RunConfig):
        if f.name == "model" and model is not None:
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        help_text = f"(default: {f.default if f.default is not dataclasses.MISSING else f.default_factory()})"
        if f.name == "model":
            from seq2exp.engine.registry import model_names

            help_text = f"one of {', '.join(model_names())} {help_text}"
        if kind == "bool":
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind == "list":
            p.add_argument(_flag(f.name), nargs="+", default=None, help=help_text)
        elif kind == "dict":
            p.add_argument(_flag(f.name), type=json.loads, default=None, help="JSON " + help_text)
        elif kind.startswith("int"):
            p.add_argument(_flag(f.name), type=int, default=None, help=help_text)
        elif kind.startswith("float"):
            p.add_argument(_flag(f.name), type=float, default=None, help=help_text)
        else:
            p.add_argument(_flag(f.name), default=None, help=help_text)


def resolve(args: argparse.Namespace, model: str | None = None) -> RunConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(load_file(args.config))
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            if f.name in ("data", "test", "pretrain_data"):  # accept comma-separated lists too
                v = [x for item in v for x in str(item).split(",") if x]
            values[f.name] = v
    if model is not None:
        values["model"] = model
    values = check_values(values, dataclasses.fields(RunConfig), args, getattr(args, "config", None))
    cfg = RunConfig(**values)
    if cfg.run_dir is None:
        import time
        cfg.run_dir = os.path.join("runs", f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg

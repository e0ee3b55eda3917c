"""One run config: dataclass defaults < YAML/JSON file < command-line flags; saved with the run.

A config file is data (YAML `safe_load` / JSON), never code. Every field is also a flag
(`batch_size` -> `--batch-size`); dict fields take JSON on the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass

import yaml

from seq2exp.cli.checks import check_values
from seq2exp.engine.settings import STRATEGIES, VERIFY_MODES, TrainSettings, setting


@dataclass
class RunConfig(TrainSettings):
    """A training command's whole configuration: the loop's `TrainSettings` and what the command adds."""
    model: str = setting("crmnet", help="the model to train")
    preset: str | None = setting(None, help="a named size from the model's registry entry (default: the published "
                                            "size)")
    model_config: dict = setting(factory=dict, help="overrides of the model's constructor arguments, as JSON")
    data: list = setting(factory=list, help="training data: dataset folders (data_prep.build output) or raw "
                                            "TSV/CSV/FASTA files, built into the run (space- or comma-separated)")
    train_split: str = setting("train", help="split of the data to train on")
    val_split: str = setting("val", help="split of the data to validate on (early stopping, best weights)")
    test: list = setting(factory=list, help="test sets scored with the best weights after training, next to the "
                                            "6-mer ridge baseline (folders or raw files)")
    pretrain_data: list = setting(factory=list, help="pre-training data (e.g. two growth media, sampled evenly); "
                                                     "then fine-tune on --data")
    pretrain_epochs: int | None = setting(None, help="epochs of pre-training (default: --epochs)")
    init_from: str | None = setting(None, help="initial weights for fine-tuning: a .keras file, checkpoint or run "
                                               "folder")
    run_dir: str | None = setting(None, help="the run folder (default: runs/MODEL-DATE-TIME)")
    resume: bool = setting(False, help="continue the run in --run-dir from its newest intact checkpoint")
    overwrite: bool = setting(False, help="replace an earlier run in --run-dir (only its files); without it such a "
                                          "folder is refused")
    strategy: str = setting("auto", choices=STRATEGIES,
                            help="tf.distribute strategy; auto: a TPU, TF_CONFIG's workers, all local GPUs or one "
                                 "device")
    tpu: str | None = setting(None, help="TPU name or 'local' (a TPU VM's own chips)")
    shuffle_buffer: int = setting(100_000, help="records in the training shuffle buffer")
    verify_data: str = setting("sha256", choices=VERIFY_MODES,
                               help="shard check before training: sha256 (size + hash, ~1 s/GB) or size (instant)")
    demo_size: int = setting(12_000, help="simulated training sequences of the demo (when no --data is given)")

    def train_settings(self, **changes) -> TrainSettings:
        """The loop's share of this config (e.g. `epochs=` of a pre-training stage)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)}
        return TrainSettings(**{**values, **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike, ran_with: dict | None = None) -> None:
        """`ran_with`: where the run really trained (backend, the strategy that ran, replicas, devices), a record
        beside the settings (`--strategy mirrored` runs as keras.distribution DataParallel under JAX)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w") as fh:  # whole or not at all: a resumed run reads it back
            yaml.safe_dump({**self.to_dict(), **({RAN_WITH: ran_with} if ran_with else {})}, fh, sort_keys=False)
        os.replace(tmp, path)


#: config.yaml's record of where the run trained; not a setting (read back, it is dropped)
RAN_WITH = "ran_with"


def effective_config(cfg: RunConfig, spec) -> None:
    """Fill what the model's registry entry decides, so the saved config.yaml reproduces the run alone."""
    if cfg.preset is not None and cfg.preset not in spec.presets:
        raise ValueError(f"preset must be one of {', '.join(sorted(spec.presets))} for model {spec.name}; "
                         f"got {cfg.preset!r}")
    from seq2exp.engine.optim import effective_optimizer, effective_schedule

    # every optimizer and schedule value written out (Keras' defaults included): a rerun from config.yaml, or a
    # diff of two runs' configs, sees every value the run used
    cfg.optimizer = effective_optimizer(cfg.optimizer or spec.optimizer)
    cfg.schedule = effective_schedule(cfg.schedule or spec.schedule)


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
    data.pop(RAN_WITH, None)  # what an earlier run recorded, not a setting
    unknown = set(data) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ValueError(f"{path}: unknown config field(s) {sorted(unknown)}")
    return data


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg} at character {err.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def _choices_text(choices) -> str:
    return ", ".join(map(str, choices))


def add_arguments(p: argparse.ArgumentParser, model: str | None, presets: list[str] | None = None) -> None:
    """One flag per RunConfig field, with its help and closed set; defaults are None so 'not given' is
    distinguishable from the default (a config file fills in between)."""
    p.add_argument("--config", metavar="FILE", help="YAML/JSON run config (e.g. a run's config.yaml); flags "
                                                    "override it")
    for f in dataclasses.fields(RunConfig):
        if f.name == "model" and model is not None:
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        choices = f.metadata.get("choices")
        help_text = f.metadata["help"]
        if f.name == "model":
            from seq2exp.engine.registry import model_names

            choices = tuple(model_names())
            help_text = f"{help_text}: one of {_choices_text(choices)}"
        elif f.name == "preset" and presets:
            help_text = f"{help_text}: one of {_choices_text(presets)}"
        elif choices:
            help_text = f"{help_text}: one of {_choices_text(choices)}"
        if default not in (None, {}, []):
            help_text = f"{help_text} (default: {default})"
        kwargs = {"default": None, "help": help_text}
        if kind == "bool":
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif kind == "list":
            p.add_argument(_flag(f.name), nargs="+", metavar="PATH", **kwargs)
        elif kind == "dict":
            p.add_argument(_flag(f.name), type=_json_object, metavar="JSON", **kwargs)
        elif kind.startswith("int"):
            p.add_argument(_flag(f.name), type=int, metavar="N", **kwargs)
        elif kind.startswith("float"):
            p.add_argument(_flag(f.name), type=float, metavar="X", **kwargs)
        else:
            p.add_argument(_flag(f.name), choices=choices, metavar="{" + ",".join(choices) + "}" if choices else
                           f.name.split("_")[-1].upper(), **kwargs)


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

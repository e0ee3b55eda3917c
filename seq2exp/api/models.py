"""The registered models and their presets, and building one by name (seq2exp.engine.registry)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from seq2exp.cli.checks import UsageError, check_model_config
from seq2exp.engine.registry import get_model_spec, model_names

if TYPE_CHECKING:
    import keras

    from seq2exp.engine.registry import ModelSpec

__all__ = ["models", "build_model", "model_spec"]


def models() -> dict[str, list[str]]:
    """{model name: [preset names]} of every registered model (imports the model packages, hence Keras)."""
    return {name: sorted(get_model_spec(name).presets) for name in model_names()}


def model_spec(name: str) -> ModelSpec:
    """The registry entry of `name`; an unknown name is a Seq2ExpError listing the registered ones."""
    if not isinstance(name, str) or name not in model_names():
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return get_model_spec(name)


def model_config(spec: ModelSpec, preset: str | None = None, config: dict | None = None) -> dict:
    """A preset's constructor arguments overridden by `config`, checked as the train command checks them."""
    if preset is not None and preset not in spec.presets:
        raise UsageError(f"unknown preset {preset!r} for model {spec.name}; choose one of "
                         f"{', '.join(sorted(spec.presets))}")
    config = {} if config is None else config
    try:
        check_model_config(spec, config)
    except UsageError as err:  # the command's wording names its flag; here it is an argument
        raise UsageError(str(err).replace("--model-config", "config", 1)) from None
    return {**(spec.presets[preset]() if preset else {}), **config}


def build_model(name: str, preset: str | None = None, config: dict | None = None) -> keras.Model:
    """An untrained model: `preset` (e.g. "tiny") and/or `config` (constructor arguments) over the defaults.

    The weights are freshly initialised; training (`seq2exp.train`) also sets the data-aware start
    (e.g. the output bias at the label mean) that a model built here does not have.
    """
    spec = model_spec(name)
    return spec.build(model_config(spec, preset, config))

"""Model registry: everything the engine needs to know about a model, so it has no `if model ==`.

A `ModelSpec` ties a model builder to its data layout, its input transform (uint8 records -> model
inputs, run inside the replicated step, i.e. on the accelerator), its training targets and loss,
how a scalar expression prediction is read from its outputs (with test-time augmentation), and
how saliency reaches its one-hot input.

The engine names no model. Model packages declare their specs as `seq2exp.models` entry points
(setup.cfg: `crmnet = crmnet.registry:SPEC`); `get_model_spec` loads them lazily. Run from a
checkout that was never pip-installed, the same declarations are read from the setup.cfg files
found on `sys.path`, so both ways see exactly the models setup.cfg lists.
"""
from __future__ import annotations

import configparser
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry itself imports no Keras: command lines list models before TensorFlow starts
    import keras

Batch = dict  # {"seq": uint8 (b, L), "label": float32 (b,), "is_singleton": uint8 (b,), ...}
ENTRY_POINT_GROUP = "seq2exp.models"


def _seq_only(batch: Batch, training: bool) -> Any:
    return batch["seq"]


def _label(batch: Batch) -> Any:
    return batch["label"]


def identity_prediction(model: keras.Model, batch: Batch, transform: Callable) -> Any:
    """The default `ModelSpec.predict`: the model's one output for the untransformed batch."""
    from keras import ops

    return ops.reshape(model(transform(batch, False), training=False), (-1,))


def squared_error(targets: Any, outputs: Any) -> Any:
    """The default `ModelSpec.loss`: seq2exp.engine.losses.mse."""
    from seq2exp.engine.losses import mse

    return mse(targets, outputs)


@dataclass
class OneHotAdapter:
    """How saliency reaches a model: uint8 codes have no gradient, so it is taken at the one-hot."""
    encode: Callable  # (b, L) codes -> (b, L, C) float32 numpy
    predict: Callable  # (b, L, C) tensor -> (b,) tensor, differentiable, equal to spec.predict
    acgt: list  # channel index of A, C, G, T


@dataclass(frozen=True)
class ModelSpec:
    name: str
    #: data_prep layout of the records this model reads (a `data_prep.layouts.LAYOUTS` name)
    layout: str
    #: config dict (may be partial; defaults fill the rest) -> uncompiled keras.Model
    build: Callable[[dict], keras.Model]
    #: the full default config for `build`, and small ones for tests / the CPU demo
    default_config: Callable[[], dict]
    presets: dict[str, Callable[[], dict]] = field(default_factory=dict)
    #: (targets, outputs) -> (b,) per-example loss (seq2exp.engine.losses, or the model package's own)
    loss: Callable[[Any, Any], Any] = squared_error
    #: batch -> model inputs (training=True may augment, e.g. reverse complement)
    inputs: Callable[[Batch, bool], Any] = _seq_only
    #: batch -> what the loss compares the model output with (e.g. soft labels)
    targets: Callable[[Batch], Any] = _label
    #: (model, batch, inputs) -> (b,) float32 expression predictions, with any test-time averaging
    predict: Callable[..., Any] = identity_prediction
    #: (model, training label stats {"mean", "std", ...}) -> None: data-aware init of a fresh model
    #: (e.g. the output bias at the label mean, so early epochs learn shape, not offset)
    initialize: Callable[[keras.Model, dict], None] | None = None
    #: default optimizer / schedule names and settings for this model (see seq2exp.engine.optim)
    optimizer: dict = field(default_factory=lambda: {"name": "adam"})
    schedule: dict = field(default_factory=lambda: {"name": "constant", "lr": 1e-3})
    #: (model, batch, model inputs, model outputs) -> (b,) per-example training loss; replaces
    #: `loss`/`targets` for losses that need the inputs or the model (masked-token reconstruction,
    #: targets standardised with statistics the model holds)
    compute_loss: Callable[[keras.Model, Batch, Any, Any], Any] | None = None
    #: model -> OneHotAdapter for saliency; None: the model's input feeds a `OneHotIndex` layer and
    #: `predict` is `identity_prediction` (seq2exp.analysis.interpret then finds its way alone)
    onehot: Callable[[keras.Model], OneHotAdapter] | None = None


def per_example_loss(spec: ModelSpec, model: keras.Model, batch: Batch, inputs: Any, outputs: Any) -> Any:
    """(b,) training loss of `outputs`: the spec's `compute_loss` when it has one, else `loss(targets(batch), outputs)`.
    The training steps and the validation loss of both backends all use this one definition."""
    if spec.compute_loss is not None:  # needs the (e.g. masked) inputs or the model's label stats
        return spec.compute_loss(model, batch, inputs, outputs)
    return spec.loss(spec.targets(batch), outputs)


_REGISTRY: dict[str, ModelSpec] = {}
_declared: dict[str, str] | None = None


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec by hand (a model defined in a script or a test); installed packages use entry points."""
    _REGISTRY[spec.name] = spec
    return spec


def _from_setup_cfg() -> dict[str, str]:
    """`seq2exp.models` entry points declared in the setup.cfg of checkouts on sys.path (not installed)."""
    found: dict[str, str] = {}
    for entry in sys.path:
        path = os.path.join(entry or os.getcwd(), "setup.cfg")
        if not os.path.isfile(path):
            continue
        cfg = configparser.ConfigParser(interpolation=None)
        try:
            cfg.read(path)
            text = cfg.get("options.entry_points", ENTRY_POINT_GROUP, fallback="")
        except configparser.Error:
            continue
        for line in text.splitlines():
            if "=" in line:
                name, target = (s.strip() for s in line.split("=", 1))
                found.setdefault(name, target)
    return found


def declared_models() -> dict[str, str]:
    """model name -> "module:attribute" of its ModelSpec, from entry points and checkouts on sys.path."""
    global _declared
    if _declared is None:
        from importlib.metadata import entry_points

        _declared = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        for name, target in _from_setup_cfg().items():
            _declared.setdefault(name, target)
    return _declared


def _load(target: str) -> ModelSpec:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    if not isinstance(obj, ModelSpec):
        raise TypeError(f"entry point {target!r} ({ENTRY_POINT_GROUP}) is not a ModelSpec but {type(obj).__name__}")
    return obj


def get_model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY and name in declared_models():
        spec = _load(declared_models()[name])
        if spec.name != name:
            raise ValueError(f"entry point {name!r} ({ENTRY_POINT_GROUP}) loads the spec of model {spec.name!r}")
        register(spec)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}") from None


def model_names() -> list[str]:
    """Every registered or declared model, without importing any model package."""
    return sorted(set(_REGISTRY) | set(declared_models()))


def load_all_models() -> list[ModelSpec]:
    """Import every declared model package (which registers their layers for `.keras` loading)."""
    specs = []
    for name in model_names():
        try:
            specs.append(get_model_spec(name))
        except ImportError:  # an optional model whose dependencies are missing here
            pass
    return specs

"""Model registry: everything the engine needs to know about a model, so it has no `if model ==`.

A `ModelSpec` ties a model builder to its data layout, its input transform (uint8 records -> model
inputs, run inside the replicated step, i.e. on the accelerator), its training targets and loss,
and how a scalar expression prediction is read from its outputs (with test-time augmentation).
Model packages register themselves on import; `get_model_spec` imports the known packages lazily.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import keras

Batch = dict  # {"seq": uint8 (b, L), "label": float32 (b,), "is_singleton": uint8 (b,), ...}


def _seq_only(batch: Batch, training: bool) -> Any:
    return batch["seq"]


def _label(batch: Batch) -> Any:
    return batch["label"]


def _identity_prediction(model: keras.Model, batch: Batch, transform: Callable) -> Any:
    return keras.ops.reshape(model(transform(batch, False), training=False), (-1,))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    #: data_prep layout of the records this model reads ("crmnet" | "legnet")
    layout: str
    #: config dict (may be partial; defaults fill the rest) -> uncompiled keras.Model
    build: Callable[[dict], keras.Model]
    #: the full default config for `build`, and small ones for tests / the CPU demo
    default_config: Callable[[], dict]
    presets: dict[str, Callable[[], dict]] = field(default_factory=dict)
    #: loss name from seq2exp.losses ("huber" | "mse" | "kl_soft_label")
    loss: str = "mse"
    #: batch -> model inputs (training=True may augment, e.g. reverse complement)
    inputs: Callable[[Batch, bool], Any] = _seq_only
    #: batch -> what the loss compares the model output with (e.g. soft labels)
    targets: Callable[[Batch], Any] = _label
    #: (model, batch, inputs) -> (b,) float32 expression predictions, with any test-time averaging
    predict: Callable[..., Any] = _identity_prediction
    #: default optimizer / schedule names and settings for this model (see seq2exp.optim)
    #: (model, training label stats {"mean", "std", ...}) -> None: data-aware init of a fresh model
    #: (e.g. the output bias at the label mean, so early epochs learn shape, not offset)
    initialize: Callable[[keras.Model, dict], None] | None = None
    optimizer: dict = field(default_factory=lambda: {"name": "adam"})
    schedule: dict = field(default_factory=lambda: {"name": "constant", "lr": 1e-3})
    #: (model, batch, model inputs, model outputs) -> (b,) per-example training loss; replaces
    #: `loss`/`targets` for losses that need the inputs or the model (masked-token reconstruction,
    #: targets standardised with statistics the model holds)
    compute_loss: Callable[[keras.Model, Batch, Any, Any], Any] | None = None


_REGISTRY: dict[str, ModelSpec] = {}
_KNOWN_PACKAGES = {"crmnet": "crmnet.registry", "legnet": "legnet_tf.registry",
                   "cnn_bilstm": "dream_peers.registry", "macaron": "dream_peers.registry"}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY and name in _KNOWN_PACKAGES:
        importlib.import_module(_KNOWN_PACKAGES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(set(_REGISTRY) | set(_KNOWN_PACKAGES))}") from None


def model_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_KNOWN_PACKAGES))

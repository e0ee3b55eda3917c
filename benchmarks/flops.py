"""Analytic FLOPs of a Keras model, read off the shapes its layers actually see in one forward call.

Convention (the one the CRMnet paper's "3.9 TFLOP per 1024-sequence step" and most MFU figures use):

* a multiply-accumulate is 2 FLOPs; only the matmul/convolution-like work is counted: Conv1D/2D/3D
  (incl. ``groups``), Conv1DTranspose, DepthwiseConv1D, SeparableConv1D, Dense, EinsumDense, the two
  attention products of MultiHeadAttention (its Q/K/V/output projections are EinsumDense layers and
  are counted as such; CRMnet's TransformerBlock, which computes them from the sublayer's weights, is
  counted the same way), LSTM/GRU/SimpleRNN (input and recurrent kernels per time step; Bidirectional
  is counted through its two wrapped layers), and LegNet's ``GroupedConv1D`` and ``CPBilinear``
  (x.A, x.B, then through C: the three factors' sizes per position);
* biases, activations, normalisation, softmax, pooling, SE gating products, the input transform
  (one-hot) and the optimizer update are NOT counted (they are O(activations), not O(activations x width));
* a training step is 3 x the forward pass (backward = gradient w.r.t. inputs + w.r.t. weights, each
  about one forward). The first layer needs no input gradient, so 3x slightly over-counts; that is
  the usual convention and keeps figures comparable.

GroupedConv1D (LegNet) keeps ``Conv1D(groups=G)``'s kernel ``(k, C_in/G, C_out)``; its depthwise
implementation runs ``C_in`` channels x ``C_out/G`` multipliers x ``k`` taps = the same MACs as the
grouped conv, plus a per-group sum that is not counted.

How: every layer's ``call`` is wrapped for one forward pass at batch 1 (so shared layers count once
per call, and shapes are the real ones, whatever the model's wiring), then restored. Under JAX the
pass is ``jax.eval_shape`` (nothing is computed); under TensorFlow it runs eagerly.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

TRAIN_STEP_FACTOR = 3


@dataclasses.dataclass
class LayerCount:
    name: str
    kind: str
    flops: int  # forward FLOPs per example


@dataclasses.dataclass
class FlopReport:
    """Forward FLOPs per example, split by layer; ``activation_elements``: every leaf layer output per example."""
    layers: list[LayerCount]
    activation_elements: int
    #: classes of weight-owning leaf layers that are not counted and not known to be O(activations)
    #: (normalisation, embeddings, ...): a custom matmul layer shows up here, so an under-count is visible
    uncounted: list[str] = dataclasses.field(default_factory=list)

    @property
    def forward_per_example(self) -> int:
        return sum(c.flops for c in self.layers)

    @property
    def train_per_example(self) -> int:
        return TRAIN_STEP_FACTOR * self.forward_per_example

    def train_per_step(self, global_batch: int) -> int:
        return self.train_per_example * int(global_batch)

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.layers:
            out[c.kind] = out.get(c.kind, 0) + c.flops
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _per_example(shape) -> int:
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"FLOP count needs static non-batch dimensions; got shape {tuple(shape)}")
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


def _size(variable) -> int:
    return int(np.prod(tuple(variable.shape), dtype=np.int64))


def _first(x):
    while isinstance(x, (list, tuple)):
        x = x[0]
    return x


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _positions(layer, tensor, channels: int) -> int:
    """Spatial positions per example of a conv input/output (elements / channels)."""
    return _per_example(tensor.shape) // channels


def _conv(layer, args, out) -> int:
    # output positions x (k x C_in/groups x C_out): the kernel size covers all of it (any rank, any groups)
    out = _first(out)
    channels = out.shape[-1] if _channels_last(layer) else out.shape[1]
    return 2 * _positions(layer, out, channels) * _size(layer.kernel)


def _conv_transpose(layer, args, out) -> int:
    # every INPUT position is scattered through the whole kernel (k x C_out x C_in)
    x = _first(args)
    channels = x.shape[-1] if _channels_last(layer) else x.shape[1]
    return 2 * _positions(layer, x, channels) * _size(layer.kernel)


def _separable(layer, args, out) -> int:
    out = _first(out)
    channels = out.shape[-1] if _channels_last(layer) else out.shape[1]
    return 2 * _positions(layer, out, channels) * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))


def _dense(layer, args, out) -> int:
    out = _first(out)
    return 2 * (_per_example(out.shape) // int(out.shape[-1])) * _size(layer.kernel)


def _einsum_dense(layer, args, out) -> int:
    # output elements x product of the contracted kernel axes (kernel letters absent from the output)
    equation = layer.equation.replace(" ", "")
    inputs, output = equation.split("->")
    kernel_spec = inputs.split(",")[1]
    if "." in kernel_spec:
        raise ValueError(f"{layer.name}: EinsumDense kernel spec with an ellipsis is not supported: {equation}")
    contracted = [d for letter, d in zip(kernel_spec, layer.kernel.shape) if letter not in output]
    return 2 * _per_example(_first(out).shape) * int(np.prod(contracted, dtype=np.int64))


def _attention(layer, args, out, kwargs=None) -> int:
    # the two products QK^T and AV; the projections are the layer's own EinsumDense sublayers
    kwargs = kwargs or {}
    query = args[0] if args else kwargs["query"]
    value = args[1] if len(args) > 1 else kwargs.get("value", query)
    key = args[2] if len(args) > 2 and args[2] is not None else kwargs.get("key") or value
    tq = _per_example(query.shape) // int(query.shape[-1])
    tk = _per_example(key.shape) // int(key.shape[-1])
    heads, dk = int(layer.num_heads), int(layer.key_dim)
    dv = int(layer.value_dim or dk)
    return 2 * heads * tq * tk * (dk + dv)


def _attention_from_weights(layer, args, out) -> list[tuple[str, str, int]]:
    """A layer that computes self-attention on its input from its ``attention`` sublayer's weights without
    calling it (CRMnet's TransformerBlock, for speed): the four projections and the two products, counted
    as if the MultiHeadAttention had been called on (x, x)."""
    x, mha = _first(args), layer.attention
    rows = _per_example(x.shape) // int(x.shape[-1])
    parts = [(d.name, "EinsumDense", 2 * rows * _size(d.kernel))
             for d in (mha.query_dense, mha.key_dense, mha.value_dense, mha.output_dense)]
    return parts + [(mha.name, "Attention (QK, AV)", _attention(mha, (x, x), None))]


def _rnn(layer, args, out) -> int:
    x = _first(args)
    steps = int(x.shape[1]) if not getattr(layer, "time_major", False) else int(x.shape[0])
    cell = layer.cell
    return 2 * steps * (_size(cell.kernel) + _size(cell.recurrent_kernel))


def _cp_bilinear(layer, args, out) -> int:
    # x.A and x.B (m x R each), then the rank-R product through C (R x out): the factors' sizes
    x = _first(args)
    rows = _per_example(x.shape) // int(x.shape[-1])
    return 2 * rows * (_size(layer.factor_0) + _size(layer.factor_1) + _size(layer.factor_2))


def _handlers() -> list[tuple[type, str, Callable]]:
    L = keras.layers
    handlers = [
        (L.SeparableConv1D, "SeparableConv", _separable),
        (L.SeparableConv2D, "SeparableConv", _separable),
        (L.DepthwiseConv1D, "DepthwiseConv", _conv),
        (L.DepthwiseConv2D, "DepthwiseConv", _conv),
        (L.Conv1DTranspose, "ConvTranspose", _conv_transpose),
        (L.Conv2DTranspose, "ConvTranspose", _conv_transpose),
        (L.Conv1D, "Conv", _conv),
        (L.Conv2D, "Conv", _conv),
        (L.Conv3D, "Conv", _conv),
        (L.EinsumDense, "EinsumDense", _einsum_dense),
        (L.Dense, "Dense", _dense),
        (L.MultiHeadAttention, "Attention (QK, AV)", _attention),
        (L.LSTM, "RNN", _rnn),
        (L.GRU, "RNN", _rnn),
        (L.SimpleRNN, "RNN", _rnn),
    ]
    try:  # optional: only when CRMnet is installed alongside
        from crmnet.layers.transformer_block import TransformerBlock

        handlers.insert(0, (TransformerBlock, "Attention", _attention_from_weights))
    except ImportError:  # pragma: no cover
        pass
    try:  # optional: only when LegNet is installed alongside
        from legnet_tf.layers import CPBilinear, GroupedConv1D

        handlers.insert(0, (GroupedConv1D, "GroupedConv", _conv))
        handlers.insert(0, (CPBilinear, "CPBilinear", _cp_bilinear))
    except ImportError:  # pragma: no cover
        pass
    return handlers


#: weight-owning layers whose cost is O(activations): not counted, by convention
_NOT_MATMUL = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
               "RMSNormalization", "Embedding", "PReLU")


def layer_flops(layer, args: tuple, out: Any, kwargs: dict | None = None) -> list[tuple[str, str, int]]:
    """[(layer name, kind, forward FLOPs per example)] of one call of ``layer`` (empty if not a counted type;
    several entries for a layer that does its sublayers' work itself)."""
    for cls, kind, fn in _handlers():
        if isinstance(layer, cls):
            flops = fn(layer, args, out, kwargs) if fn is _attention else fn(layer, args, out)
            if isinstance(flops, list):
                return [(name, k, int(f)) for name, k, f in flops]
            return [(layer.name, kind, int(flops))]
    return []


def _forward(model, inputs, transform):
    def fn(x):
        return model(transform(x) if transform else x, training=False)

    if keras.backend.backend() == "jax":  # shapes only: no op-by-op compilation of an eager pass
        import jax

        return jax.eval_shape(fn, inputs)
    return fn(inputs)


def count_flops(model: keras.Model, inputs: Any, transform: Callable | None = None) -> FlopReport:
    """Run ``model(transform(inputs), training=False)`` once (use a batch of 1) and count every layer call."""
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    handlers = _handlers()
    counted: list[LayerCount] = []
    activations = [0]
    uncounted: set[str] = set()
    patched = []

    def wrap(layer, original):
        leaf = not any(True for _ in layer._flatten_layers(include_self=False, recursive=False))
        counts = any(isinstance(layer, cls) for cls, _, _ in handlers)

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            if counts:
                counted.extend(LayerCount(*entry) for entry in layer_flops(layer, args, out, kwargs))
            elif leaf and layer.weights and type(layer).__name__ not in _NOT_MATMUL and id(layer) not in covered:
                uncounted.add(type(layer).__name__)
            if leaf:
                for t in keras.tree.flatten(out):
                    if hasattr(t, "shape") and len(t.shape) > 0:
                        activations[0] += _per_example(t.shape)
            return out

        return call

    covered = set()  # sublayers of counted layers (RNN cells): their work is in the parent's count
    for layer in layers:
        if any(isinstance(layer, cls) for cls, _, _ in handlers):
            covered.update(id(sub) for sub in layer._flatten_layers(include_self=False, recursive=True))
    seen = set()
    try:
        for layer in layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            original = layer.call
            object.__setattr__(layer, "call", wrap(layer, original))
            patched.append(layer)
        _forward(model, inputs, transform)
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
    return FlopReport(counted, activations[0], sorted(uncounted))


def model_flops(spec, model: keras.Model, batch: dict) -> FlopReport:
    """FLOPs of a registry model on a record batch (``spec.inputs`` makes the model input)."""
    return count_flops(model, batch, transform=lambda b: spec.inputs(b, False))


def format_flops(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}FLOP"
    return f"{x:.3g} FLOP"

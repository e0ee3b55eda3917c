"""Maps a Keras-2 CRMnet checkpoint, read by ``crmnet.keras2_checkpoint``, onto our Keras 3 model.

- Layer kinds and roles come from attribute paths: a stock layer's own ``kernel``/``bias``/
  ``gamma``/...; the published squeeze-excite ``Model``'s ``excitation_a`` (our ``reduce``) and
  ``excitation_b`` (``expand``); the transformer block's ``att/_query_dense`` ... ``_output_dense``,
  ``layernorm1``/``layernorm2`` and ``ffn/layer_with_weights-0``/``-1``.
- Layers pair with ours in ``model.layers`` order, which Keras 2 sorts by graph depth: in CRMnet
  that is the dataflow order, except that the two transformer blocks of a summed pair share a
  depth; they read the same input and are added, so either pairing predicts the same.
- When ``keras_metadata.pb`` shows a decoder concatenating ``[skip, upsampled]`` (ours is
  ``[upsampled, skip]``), the following convolution's input rows are reordered to match.

Optimizer slots, metrics and bookkeeping were already set aside by the reader; any other checkpoint
variable that fills none of our weights, any weight left unfilled and any shape mismatch is an error
naming them.
"""
from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

import numpy as np

from crmnet.keras2_checkpoint import Keras2Checkpoint, Keras2Layer
from crmnet.layers import DecoderBlock, EncoderBlock, SqueezeExcite, TransformerBlock
from data_prep.errors import Seq2ExpError

_MAX_LISTED = 40
_SE_ROLES = {"excitation_a": "reduce", "excitation_b": "expand"}
_ATTENTION_ROLES = {"_query_dense": "query", "_key_dense": "key", "_value_dense": "value", "_output_dense": "output"}
_NORM_RE = re.compile(r"^(?:layer_?norm|norm|ln)_?([12])$")
_WEIGHTED_RE = re.compile(r"^(?:layer_with_weights-)?(\d+)$")  # a Sequential's, or a list's, n-th weighted layer


class MappingEntry(NamedTuple):
    """One checkpoint tensor, the weight of ours it fills and how it was reshaped (if at all)."""

    checkpoint_key: str
    weight_path: str
    shape: tuple
    source: str = ""  # Keras-2 object path (and variable name when known)
    transform: str = ""


class MappingReport(list):
    """``[MappingEntry, ...]`` in our weight order, plus what was skipped.

    Attributes:
        ignored_keys: optimizer slots, metrics and bookkeeping keys that were skipped.
        notes: assumptions and reorderings worth a look.
        transforms: ``{checkpoint key: fn(value) -> value}`` for the entries with a ``transform``.
    """

    def __init__(self, entries=(), ignored_keys=(), notes=(), transforms=None):
        super().__init__(entries)
        self.ignored_keys = list(ignored_keys)
        self.notes = list(notes)
        self.transforms = dict(transforms or {})

    @property
    def num_values(self) -> int:
        return int(sum(int(np.prod(entry.shape)) for entry in self))


class CheckpointMappingError(Seq2ExpError, ValueError):
    """The checkpoint does not fit the model; the message names every offending key.

    Attributes:
        unmapped_keys: checkpoint keys that fill none of our weights.
        unassigned_weights: our weight paths that no checkpoint key fills.
        shape_mismatches: ``(key, checkpoint shape, weight path, our shape)``.
    """

    def __init__(self, message, unmapped_keys=(), unassigned_weights=(), shape_mismatches=()):
        super().__init__(message)
        self.unmapped_keys = list(unmapped_keys)
        self.unassigned_weights = list(unassigned_weights)
        self.shape_mismatches = list(shape_mismatches)


# --------------------------------------------------------------------------- our side


@dataclasses.dataclass
class _Unit:
    """One published weight-holding layer's worth of our weights: ``parts`` are ``(role, layer)``."""

    name: str
    parts: list

    def weights(self):
        """``{(role, attr): variable}``."""
        return {(role, variable.path.rsplit("/", 1)[-1]): variable
                for role, layer in self.parts for variable in layer.weights}

    def signature(self):
        return tuple(sorted((role, attr, tuple(v.shape)) for (role, attr), v in self.weights().items()))


def _plain(layer):
    return _Unit(layer.weights[0].path.rsplit("/", 1)[0], [("", layer)])


def _se(se):
    return _Unit(se.name, [("reduce", se.reduce), ("expand", se.expand)])


def _layer_units(layer):
    """Our layer split into the published model's weight-holding layers, in dataflow order."""
    if isinstance(layer, TransformerBlock):
        att = layer.attention
        return [_Unit(layer.name, [
            ("query", att._query_dense), ("key", att._key_dense), ("value", att._value_dense),
            ("output", att._output_dense), ("norm1", layer.norm1), ("ffn1", layer.ffn_dense1),
            ("ffn2", layer.ffn_dense2), ("norm2", layer.norm2)])]
    if isinstance(layer, EncoderBlock):
        units = [_plain(layer.conv1), _se(layer.se1), _plain(layer.bn1),
                 _plain(layer.conv2), _se(layer.se2), _plain(layer.bn2)]
        return units + ([_plain(layer.down)] if layer.down is not None else [])
    if isinstance(layer, DecoderBlock):
        return [_plain(layer.up), _plain(layer.conv1), _se(layer.se1), _plain(layer.bn1),
                _plain(layer.conv2), _se(layer.se2), _plain(layer.bn2)]
    if isinstance(layer, SqueezeExcite):
        return [_se(layer)]
    if any(sub.weights for sub in layer._flatten_layers(include_self=False)):
        raise TypeError(f"no checkpoint layout known for composite layer {layer.name!r} ({type(layer).__name__})")
    return [_plain(layer)]


def model_units(model):
    """Our weight-holding units in published order; every model weight in exactly one."""
    units = [unit for layer in model.layers if layer.weights for unit in _layer_units(layer)]
    covered = [id(v) for unit in units for v in unit.weights().values()]
    missing = [w.path for w in model.weights if id(w) not in set(covered)]
    if missing or len(covered) != len(set(covered)):
        raise TypeError(f"model weights not covered exactly once by the converter's units: {missing}")
    return units


# --------------------------------------------------------------------------- checkpoint side


def keras2_role(paths) -> tuple | None:
    """``(role, attr)`` of a variable from its attribute paths inside its layer, or ``None``.

    Role ``""`` is a stock layer's own variable; the others name a sub-layer of the published
    squeeze-excite (``reduce``, ``expand``) or transformer block (``query`` ... ``norm2``).
    """
    found = {role for role in map(_role_of, paths) if role is not None}
    return found.pop() if len(found) == 1 else None


def _role_of(path):
    head, attr = tuple(path[:-1]), path[-1]
    if not head:
        return "", attr
    for part in head:
        if part in _ATTENTION_ROLES:
            return _ATTENTION_ROLES[part], attr
    if len(head) == 1:
        if head[0] in _SE_ROLES:
            return _SE_ROLES[head[0]], attr
        norm = _NORM_RE.match(head[0].lower())
        if norm:
            return f"norm{norm.group(1)}", attr
    if len(head) == 2 and "ffn" in head[0].lower():
        index = _WEIGHTED_RE.match(head[1])
        if index and int(index.group(1)) < 2:
            return f"ffn{int(index.group(1)) + 1}", attr
    return None


@dataclasses.dataclass
class _Group:
    """A checkpoint layer's variables by ``(role, attr)``; ``loose`` ones have no known role."""

    layer: Keras2Layer
    roles: dict
    loose: list

    def signature(self):
        return tuple(sorted((role, attr, v.shape) for (role, attr), vs in self.roles.items() for v in vs))


def _group(layer):
    roles, loose = {}, []
    for variable in layer.variables:
        role = keras2_role(variable.paths)
        if role is None:
            loose.append(variable)
        else:
            roles.setdefault(role, []).append(variable)
    return _Group(layer, roles, loose)


def _origin(checkpoint, name, downstream=False):
    """The nearest weight-holding layer from layer ``name`` along single-input/-consumer links."""
    layer = checkpoint.layer_named(name)
    for _ in range(len(checkpoint.layers)):
        if layer is None or layer.variables:
            return layer
        if downstream:
            consumers = [other for other in checkpoint.layers if other.inbound and layer.name in other.inbound]
            layer = consumers[0] if len(consumers) == 1 else None
        else:
            layer = checkpoint.layer_named(layer.inbound[0]) if layer.inbound and len(layer.inbound) == 1 else None
    return None


def concat_transforms(checkpoint: Keras2Checkpoint):
    """``{checkpoint key: (description, fn)}`` for decoders that concatenate ``[skip, upsampled]``."""
    transforms, notes = {}, []
    if not checkpoint.has_metadata:
        notes.append("no keras_metadata.pb: assumed each decoder concatenates [upsampled, skip] as the spec does")
        return transforms, notes
    for concat in checkpoint.layers:
        if concat.class_name != "Concatenate" or not concat.inbound or len(concat.inbound) != 2:
            continue
        producers = [_origin(checkpoint, name) for name in concat.inbound]
        is_up = [p is not None and p.class_name == "Conv1DTranspose" for p in producers]
        consumer = _origin(checkpoint, concat.name, downstream=True)
        if is_up != [False, True] or consumer is None:
            continue
        kernel = next((v for v in consumer.variables if v.path == "kernel"), None)
        up_kernel = next((v for v in producers[1].variables if v.path == "kernel"), None)
        if kernel is None or up_kernel is None or len(kernel.shape) != 3:
            continue
        skip = kernel.shape[1] - up_kernel.shape[1]

        def swap(value, skip=skip):
            return np.concatenate([value[:, skip:, :], value[:, :skip, :]], axis=1)

        text = f"input rows reordered: the checkpoint's {concat.title()} is [skip, upsampled], ours [upsampled, skip]"
        transforms[kernel.key] = (text, swap)
        notes.append(f"{consumer.title()}: {text}")
    return transforms, notes


# --------------------------------------------------------------------------- matching


def _align(units, groups):
    """Edit-distance alignment of our units and the checkpoint's layers, for precise error reports.

    A correct checkpoint aligns diagonally at cost 0; otherwise an inserted, dropped or reshaped
    layer shows up as one extra layer, one lone unit or one mismatched pair instead of shifting
    every later layer.
    """
    n, m = len(units), len(groups)
    us = [u.signature() for u in units]
    gs = [g.signature() for g in groups]

    def sub_cost(i, j):
        if us[i] == gs[j]:
            return 0
        ours, theirs = {s[:2] for s in us[i]}, {s[:2] for s in gs[j]}
        return 1 if ours & theirs else 3  # same roles/attrs: report as a near-miss pair

    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[n, :] = np.arange(m, -1, -1)
    cost[:, m] = np.arange(n, -1, -1)
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            cost[i, j] = min(sub_cost(i, j) + cost[i + 1, j + 1], 1 + cost[i + 1, j], 1 + cost[i, j + 1])
    ops, i, j = [], 0, 0
    while i < n or j < m:
        if i < n and j < m and cost[i, j] == sub_cost(i, j) + cost[i + 1, j + 1]:
            ops.append((i, j))
            i, j = i + 1, j + 1
        elif i < n and (j == m or cost[i, j] == 1 + cost[i + 1, j]):
            ops.append((i, None))
            i += 1
        else:
            ops.append((None, j))
            j += 1
    return ops


def _fmt(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class _Collector:
    """Gathers matches and every problem, so one error can list them all."""

    def __init__(self, transforms):
        self.transforms = transforms
        self.entries, self.unmapped, self.unassigned, self.mismatched, self.notes = [], [], [], [], []

    def match(self, layer, variable, weight):
        ours = tuple(weight.shape)
        source = f"{layer.node}/{variable.path}" + (f" ({variable.name})" if variable.name else "")
        if variable.shape == ours:
            text = self.transforms.get(variable.key, ("",))[0]
            self.entries.append(MappingEntry(variable.key, weight.path, ours, source, text))
        else:
            self.mismatched.append((variable, layer, weight.path, ours))

    def unmap(self, variable, layer=None):
        self.unmapped.append((variable, layer))

    def lines(self):
        lines = [f"shape mismatch: checkpoint variable {v.describe(layer)} has shape {_fmt(v.shape)} but our "
                 f"weight {path!r} has shape {_fmt(ours)}" for v, layer, path, ours in self.mismatched]
        lines += [f"unmapped checkpoint variable {v.describe(layer)} {_fmt(v.shape)}"
                  + (f" of {layer.title()}" if layer is not None and layer.class_name else "")
                  for v, layer in self.unmapped]
        lines += [f"unassigned weight {path!r} {_fmt(shape)}: no checkpoint variable for it"
                  for path, shape in self.unassigned]
        return lines + self.notes


def _assign(unit, group, out):
    ours = unit.weights()
    for variable in group.loose:
        out.unmap(variable, group.layer)
    for role, variables in group.roles.items():
        weight = ours.pop(role, None)
        if weight is None or len(variables) > 1:
            if weight is not None:
                out.notes.append(f"{group.layer.title()} has several {role} variables: "
                                 f"{[v.describe() for v in variables]}")
                out.unassigned.append((weight.path, tuple(weight.shape)))
            for variable in variables:
                out.unmap(variable, group.layer)
            continue
        out.match(group.layer, variables[0], weight)
    for weight in ours.values():
        out.unassigned.append((weight.path, tuple(weight.shape)))


def _listed(lines):
    if len(lines) <= _MAX_LISTED:
        return lines
    return lines[:_MAX_LISTED] + [f"... and {len(lines) - _MAX_LISTED} more"]


def plan_mapping(checkpoint: Keras2Checkpoint, model) -> MappingReport:
    """Maps a read checkpoint onto ``model``'s weights (shapes only, no values).

    Returns:
        A ``MappingReport`` covering every weight of ``model``.

    Raises:
        CheckpointMappingError: naming every unmapped key, unassigned weight and shape mismatch.
    """
    units = model_units(model)
    groups = [_group(layer) for layer in checkpoint.weighted_layers]
    transforms, notes = concat_transforms(checkpoint)
    out = _Collector(transforms)
    for variable in checkpoint.stray:
        out.unmap(variable)
    for i, j in _align(units, groups):
        if i is not None and j is not None:
            _assign(units[i], groups[j], out)
        elif i is not None:
            out.unassigned.extend((w.path, tuple(w.shape)) for w in units[i].weights().values())
        else:
            for variable in groups[j].layer.variables:
                out.unmap(variable, groups[j].layer)
    lines = out.lines()
    if lines:
        head = (f"cannot map {checkpoint.source} onto the model: {len(groups)} weight-holding Keras-2 layers "
                f"for {len(units)} of ours; {len(lines)} problem(s):")
        raise CheckpointMappingError(
            "\n  ".join([head] + _listed(lines)),
            unmapped_keys=[v.key for v, _ in out.unmapped],
            unassigned_weights=[p for p, _ in out.unassigned],
            shape_mismatches=[(v.key, v.shape, p, s) for v, _, p, s in out.mismatched],
        )
    order = {w.path: n for n, w in enumerate(model.weights)}
    entries = sorted(out.entries, key=lambda e: order[e.weight_path])
    return MappingReport(entries, ignored_keys=checkpoint.ignored_keys, notes=checkpoint.notes + notes,
                         transforms={key: fn for key, (_, fn) in transforms.items()})

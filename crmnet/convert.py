"""Port the released CRMnet weights (a Keras-2 SavedModel) into our Keras 3 model.

Keras 3 cannot load that SavedModel, but its ``variables/`` checkpoint is an ordinary TF2
checkpoint. ``crmnet.keras2_checkpoint`` identifies every variable through the checkpoint's object
graph: the functional model's layer ``layer-<i>`` (``i`` = its index in Keras-2 ``model.layers``)
and the attribute path inside it. This module maps those onto ``build_crmnet(config)``:

- layer kinds and roles come from attribute paths: a stock layer's own ``kernel``/``bias``/
  ``gamma``/...; the published squeeze-excite ``Model``'s ``excitation_a`` (our ``reduce``) and
  ``excitation_b`` (``expand``); the transformer block's ``att/_query_dense`` ... ``_output_dense``,
  ``layernorm1``/``layernorm2`` and ``ffn/layer_with_weights-0``/``-1``;
- layers pair with ours in ``model.layers`` order, which Keras 2 sorts by graph depth: in CRMnet
  that is the dataflow order, except that the two transformer blocks of a summed pair share a
  depth; they read the same input and are added, so either pairing predicts the same;
- when ``keras_metadata.pb`` shows a decoder concatenating ``[skip, upsampled]`` (ours is
  ``[upsampled, skip]``), the following convolution's input rows are reordered to match.

Optimizer slots, metrics and bookkeeping are skipped on purpose; any other checkpoint variable that
fills none of our weights, any weight left unfilled and any shape mismatch is an error naming them.

Library: ``convert_checkpoint(path, config)``, ``plan_mapping(checkpoint, model)``.
CLI: ``python -m crmnet.convert SAVED_MODEL_DIR --out model.keras [--check-input seqs.tsv]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from typing import NamedTuple

import keras
import numpy as np

from crmnet.keras2_checkpoint import (  # noqa: F401  (re-exported: part of this module's API)
    Keras2Checkpoint,
    Keras2Layer,
    Keras2Variable,
    is_ignored_key,
    read_keras2_checkpoint,
    resolve_checkpoint_prefix,
)
from crmnet.layers import DecoderBlock, EncoderBlock, SqueezeExcite, TransformerBlock
from crmnet.model import CRMnetConfig, build_crmnet

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


class CheckpointMappingError(ValueError):
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

    checkpoint = read_keras2_checkpoint(saved_model_dir_or_checkpoint_prefix)
    model = build_crmnet(as_config(config), dtype="float32")
    report = plan_mapping(checkpoint, model)
    reader = tf.train.load_checkpoint(checkpoint.source)
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


def write_report(report, path):
    """TSV: checkpoint key, Keras-2 source (object path and name), our weight path, shape, transform."""
    with open(path, "w") as handle:
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crmnet.convert",
        description="Convert a Keras-2 CRMnet SavedModel (the released weights) into a Keras 3 .keras file.",
    )
    parser.add_argument("saved_model", help="SavedModel directory, its variables/ folder, or a checkpoint prefix")
    parser.add_argument("--out", required=True, help="output .keras file")
    parser.add_argument("--config", help="CRMnetConfig as a JSON string or JSON file (default: published)")
    parser.add_argument("--report", help="write the key -> weight mapping as TSV here")
    parser.add_argument("--check-input", metavar="TSV",
                        help="sequences (col 1) and optionally the original model's predictions (col 2) "
                             "to run through the reloaded model")
    parser.add_argument("--check-atol", type=float, default=None,
                        help="max |converted - expected| allowed with --check-input "
                             "(default 1e-4 x max(1, SD of the expected values))")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size for --check-input")
    args = parser.parse_args(argv)

    if not args.out.endswith(".keras"):
        parser.error("--out must end with .keras")
    for flag, path in (("saved_model", args.saved_model), ("--check-input", args.check_input)):
        if path and not os.path.exists(path) and not os.path.exists(path + ".index"):
            parser.error(f"{flag}: {path} does not exist")
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
        write_report(report, args.report)
        print(f"wrote mapping report {args.report}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
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

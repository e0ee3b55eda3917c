"""Port the released CRMnet weights (TF 2.8 / Keras 2 SavedModel) into our Keras 3 model.

Keras 3 cannot load that SavedModel, but its ``variables/`` checkpoint is an
ordinary TF checkpoint, so this module reads the tensors and places them into
``build_crmnet(config)``. The mapping is explicit and checked: every
checkpoint variable (optimizer / bookkeeping keys aside) must land on exactly
one of our weights with the same shape, and every weight must be filled;
anything else is an error that names the keys.

Assumed checkpoint layout (a Keras-2 functional model):

- ``layer_with_weights-<i>/<sub>/<attr>/.ATTRIBUTES/VARIABLE_VALUE``; ``i``
  counts the weight-holding layers in ``model.layers`` order. Plain layers
  (Conv1D, Conv1DTranspose, Dense incl. the SE Denses, BatchNormalization)
  have no ``<sub>``; a transformer block is one custom layer whose weights sit
  under attribute paths (``att/_query_dense``, ``ffn/layer_with_weights-0``,
  ``layernorm1``, ...).
- That order equals our dataflow order. Keras 2 lists functional layers by
  graph depth, and in CRMnet only the two transformer blocks of a summed pair
  share a depth; their order in the checkpoint is therefore uncertain, but the
  pair is applied to the same input and added, so swapping them changes nothing.

Library: ``convert_checkpoint(path, config)``; ``plan_mapping(shapes, model)``
(shapes only, no values). CLI: ``python -m crmnet.convert SAVED_MODEL_DIR --out
model.keras``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import warnings
from typing import Mapping, NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from crmnet.layers import DecoderBlock, EncoderBlock, SqueezeExcite, TransformerBlock
from crmnet.model import CRMnetConfig, build_crmnet

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_GROUP_RE = re.compile(r"^layer_with_weights-(\d+)/(.+)" + re.escape(VALUE_SUFFIX) + r"$")
# Training state, not model state: left out on purpose.
_IGNORED_PREFIXES = ("optimizer/", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH", "keras_api/")
_TRANSFORMER_PARTS = ("query", "key", "value", "output", "norm1", "ffn1", "ffn2", "norm2")
_MAX_LISTED = 40


class MappingEntry(NamedTuple):
    """One checkpoint tensor and the weight of ours it fills."""

    checkpoint_key: str
    weight_path: str
    shape: tuple


class MappingReport(list):
    """``[MappingEntry, ...]`` in our weight order, plus what was left out.

    Attributes:
        ignored_keys: optimizer slots and bookkeeping keys that were skipped.
        order_only: weight paths whose source was chosen by position among
            same-shaped candidates (names gave no hint); worth a look.
    """

    def __init__(self, entries=(), ignored_keys=(), order_only=()):
        super().__init__(entries)
        self.ignored_keys = list(ignored_keys)
        self.order_only = list(order_only)

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
    """One Keras-2 ``layer_with_weights-i``'s worth of our weights.

    ``parts`` are ``(role, layer)``: role ``""`` for a plain layer, a
    ``_TRANSFORMER_PARTS`` name inside a transformer block.
    """

    name: str
    parts: list
    composite: bool = False

    def weights(self):
        """``(role, attr, variable)`` in layer order."""
        return [
            (role, _leaf(variable.path), variable)
            for role, layer in self.parts
            for variable in layer.weights
        ]

    def signature(self):
        return tuple(sorted((attr, tuple(v.shape)) for _, attr, v in self.weights()))


def _leaf(path):
    return path.rsplit("/", 1)[-1]


def _prefix(path):
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _plain(layer):
    return _Unit(_prefix(layer.weights[0].path), [("", layer)])


def _se_units(se):
    return [_plain(se.reduce), _plain(se.expand)]


def _layer_units(layer):
    """Our weight-holding layers split as the published plain functional layers were."""
    if isinstance(layer, TransformerBlock):
        att = layer.attention
        parts = [
            ("query", att._query_dense),
            ("key", att._key_dense),
            ("value", att._value_dense),
            ("output", att._output_dense),
            ("norm1", layer.norm1),
            ("ffn1", layer.ffn_dense1),
            ("ffn2", layer.ffn_dense2),
            ("norm2", layer.norm2),
        ]
        return [_Unit(layer.name, parts, composite=True)]
    if isinstance(layer, EncoderBlock):
        units = [_plain(layer.conv1), *_se_units(layer.se1), _plain(layer.bn1),
                 _plain(layer.conv2), *_se_units(layer.se2), _plain(layer.bn2)]
        if layer.down is not None:
            units.append(_plain(layer.down))
        return units
    if isinstance(layer, DecoderBlock):
        return [_plain(layer.up), _plain(layer.conv1), *_se_units(layer.se1), _plain(layer.bn1),
                _plain(layer.conv2), *_se_units(layer.se2), _plain(layer.bn2)]
    if isinstance(layer, SqueezeExcite):
        return _se_units(layer)
    nested = [sub for sub in layer._flatten_layers(include_self=False) if sub.weights]
    if nested:
        raise TypeError(f"no checkpoint layout known for composite layer {layer.name!r} "
                        f"({type(layer).__name__})")
    return [_plain(layer)]


def model_units(model):
    """Our weight-holding units in published order; every model weight in exactly one."""
    units = [unit for layer in model.layers if layer.weights for unit in _layer_units(layer)]
    covered = [id(v) for unit in units for _, _, v in unit.weights()]
    seen = set(covered)
    missing = [w.path for w in model.weights if id(w) not in seen]
    if missing or len(covered) != len(seen):
        raise TypeError(f"model weights not covered exactly once by the converter's units: {missing}")
    return units


# --------------------------------------------------------------------------- checkpoint side


@dataclasses.dataclass
class _Group:
    """The variables of one checkpoint ``layer_with_weights-i``: ``{sub path: key}``."""

    index: int
    keys: dict
    shapes: dict

    @property
    def name(self):
        return f"layer_with_weights-{self.index}"

    def signature(self):
        return tuple(sorted((_leaf(sub), self.shapes[sub]) for sub in self.keys))


def is_ignored_key(key: str) -> bool:
    """Optimizer slots, optimizer state and checkpoint bookkeeping."""
    return ".OPTIMIZER_SLOT" in key or key.startswith(_IGNORED_PREFIXES)


def _group_checkpoint(shapes):
    groups, ignored, stray = {}, [], []
    for key, shape in shapes.items():
        if is_ignored_key(key):
            ignored.append(key)
            continue
        match = _GROUP_RE.match(key)
        if not match:
            stray.append(key)
            continue
        index, sub = int(match.group(1)), match.group(2)
        group = groups.setdefault(index, _Group(index, {}, {}))
        group.keys[sub] = key
        group.shapes[sub] = tuple(int(d) for d in shape)
    return [groups[i] for i in sorted(groups)], sorted(ignored), sorted(stray)


# --------------------------------------------------------------------------- matching


class _Collector:
    """Gathers matches and every problem, so one error can list them all."""

    def __init__(self):
        self.entries, self.order_only = [], []
        self.unmapped, self.unassigned, self.mismatched, self.notes = [], [], [], []

    def match(self, key, ckpt_shape, variable):
        ours = tuple(variable.shape)
        if tuple(ckpt_shape) == ours:
            self.entries.append(MappingEntry(key, variable.path, ours))
        else:
            self.mismatched.append((key, tuple(ckpt_shape), variable.path, ours))

    def unassign(self, variable):
        self.unassigned.append((variable.path, tuple(variable.shape)))

    def unmap(self, key, shape):
        self.unmapped.append((key, tuple(shape)))


def _pair_by_attr(items, sub_of, group, out):
    """Fills ``items`` (attr, variable) from ``group`` sub paths ``sub_of[attr]``."""
    for attr, variable in items:
        sub = sub_of.pop(attr, None)
        if sub is None:
            out.unassign(variable)
        else:
            out.match(group.keys[sub], group.shapes[sub], variable)
    for sub in sub_of.values():
        out.unmap(group.keys[sub], group.shapes[sub])


def _assign_plain(unit, group, out):
    by_attr = {}
    for sub in group.keys:
        by_attr.setdefault(_leaf(sub), []).append(sub)
    sub_of = {}
    for attr, subs in by_attr.items():
        if len(subs) == 1:
            sub_of[attr] = subs[0]
        else:
            out.notes.append(f"{group.name} has several {attr!r} variables: {sorted(subs)}")
            for sub in subs:
                out.unmap(group.keys[sub], group.shapes[sub])
    _pair_by_attr([(a, v) for _, a, v in unit.weights()], sub_of, group, out)


_NORM_RE = re.compile(r"^(?:layer_?norm|norm|ln)_?([12])$")
_FFN_INDEX_RE = re.compile(r"^layer(?:_with_weights)?-(\d+)$")
_FFN_NAME_RE = re.compile(r"^ffn_?(?:dense)?_?([12])$")


def transformer_part(prefix: str) -> Optional[str]:
    """Our part for a checkpoint sub-layer path, when its name says so unambiguously.

    Auto-generated names (``dense_1``, ``layer_normalization_1``) are left to
    shape-and-order matching: their numbers are global counters, not roles.
    """
    parts = prefix.lower().split("/")
    text = "/".join(parts)
    if "query" in text:
        return "query"
    if re.search(r"(^|[/_])key($|[/_])", text):
        return "key"
    if "value" in text:
        return "value"
    if "output" in text or "out_proj" in text:
        return "output"
    last = parts[-1]
    norm = _NORM_RE.match(last)
    if norm:
        return f"norm{norm.group(1)}"
    if "ffn" in text:
        index = _FFN_INDEX_RE.match(last)
        if index and int(index.group(1)) < 2:
            return f"ffn{int(index.group(1)) + 1}"
        name = _FFN_NAME_RE.match(last)
        if name:
            return f"ffn{name.group(1)}"
    return None


def _natural_key(text):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _assign_transformer(unit, group, out):
    """Names first; unnamed sub-layers by (attr, shape) in natural key order."""
    by_prefix = {}
    for sub in group.keys:
        by_prefix.setdefault(_prefix(sub), {})[_leaf(sub)] = sub
    ours = {role: layer for role, layer in unit.parts}
    claims = {}
    for prefix in by_prefix:
        role = transformer_part(prefix)
        if role is not None:
            claims.setdefault(role, []).append(prefix)
    named = {role: prefixes[0] for role, prefixes in claims.items() if len(prefixes) == 1}
    pool = sorted((p for p in by_prefix if p not in named.values()), key=_natural_key)
    left = [role for role, _ in unit.parts if role not in named]

    def signature_of(prefix):
        return {attr: group.shapes[sub] for attr, sub in by_prefix[prefix].items()}

    for role in list(left):
        wanted = {_leaf(v.path): tuple(v.shape) for v in ours[role].weights}
        candidates = [p for p in pool if signature_of(p) == wanted]
        if not candidates:
            continue
        if len(candidates) > 1:
            out.order_only.extend(v.path for v in ours[role].weights)
        named[role] = candidates[0]
        pool.remove(candidates[0])
        left.remove(role)
    if len(left) == 1 and len(pool) == 1:  # one leftover each: diagnose as a pair
        named[left.pop()] = pool.pop()
    for role, layer in unit.parts:
        items = [(_leaf(v.path), v) for v in layer.weights]
        if role in named:
            _pair_by_attr(items, dict(by_prefix[named[role]]), group, out)
        else:
            for _, variable in items:
                out.unassign(variable)
    for prefix in pool:
        for sub in by_prefix[prefix].values():
            out.unmap(group.keys[sub], group.shapes[sub])


def _attrs(signature):
    return {attr for attr, _ in signature}


def _align(units, groups):
    """Edit-distance alignment of units and groups, for precise error reports.

    A correct checkpoint aligns diagonally at cost 0; otherwise an inserted,
    dropped or reshaped layer shows up as one extra group, one lone unit or one
    mismatched pair instead of shifting every later layer.
    """
    n, m = len(units), len(groups)
    us = [u.signature() for u in units]
    gs = [g.signature() for g in groups]

    def sub_cost(i, j):
        if us[i] == gs[j]:
            return 0
        # Sharing attribute names (kernel, gamma, ...) makes a near miss worth
        # reporting as a pair; otherwise an insertion plus a deletion is likelier.
        return 1 if _attrs(us[i]) & _attrs(gs[j]) else 3

    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[n, :] = np.arange(m, -1, -1)
    cost[:, m] = np.arange(n, -1, -1)
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            cost[i, j] = min(sub_cost(i, j) + cost[i + 1, j + 1],
                             1 + cost[i + 1, j], 1 + cost[i, j + 1])
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


def _listed(lines):
    if len(lines) <= _MAX_LISTED:
        return lines
    return lines[:_MAX_LISTED] + [f"... and {len(lines) - _MAX_LISTED} more"]


def plan_mapping(shapes: Mapping[str, Sequence[int]], model, source: str = "checkpoint") -> MappingReport:
    """Maps checkpoint keys onto ``model`` weights from shapes alone.

    Args:
        shapes: ``{checkpoint key: shape}``, e.g. ``reader.get_variable_to_shape_map()``.
        model: a model from ``build_crmnet``.
        source: how to name the checkpoint in error messages.

    Returns:
        A ``MappingReport`` covering every weight of ``model``.

    Raises:
        CheckpointMappingError: naming every unmapped key, unassigned weight and
            shape mismatch.
    """
    units = model_units(model)
    groups, ignored, stray = _group_checkpoint(shapes)
    out = _Collector()
    for key in stray:
        out.unmap(key, shapes[key])
    for i, j in _align(units, groups):
        if i is not None and j is not None:
            assign = _assign_transformer if units[i].composite else _assign_plain
            assign(units[i], groups[j], out)
        elif i is not None:
            for _, _, variable in units[i].weights():
                out.unassign(variable)
        else:
            for sub, key in groups[j].keys.items():
                out.unmap(key, groups[j].shapes[sub])
    if out.unmapped or out.unassigned or out.mismatched or out.notes:
        lines = [f"shape mismatch: checkpoint key {k!r} has shape {_fmt(cs)} but our weight "
                 f"{p!r} has shape {_fmt(os_)}" for k, cs, p, os_ in out.mismatched]
        lines += [f"unmapped checkpoint variable {k!r} {_fmt(s)}" for k, s in out.unmapped]
        lines += [f"unassigned weight {p!r} {_fmt(s)}: no checkpoint variable for it"
                  for p, s in out.unassigned]
        lines += out.notes
        head = (f"cannot map {source} onto the model: {len(groups)} checkpoint weight groups for "
                f"{len(units)} weight-holding layers; {len(lines)} problem(s):")
        raise CheckpointMappingError(
            "\n  ".join([head] + _listed(lines)),
            unmapped_keys=[k for k, _ in out.unmapped],
            unassigned_weights=[p for p, _ in out.unassigned],
            shape_mismatches=out.mismatched,
        )
    order = {w.path: n for n, w in enumerate(model.weights)}
    entries = sorted(out.entries, key=lambda e: order[e.weight_path])
    return MappingReport(entries, ignored_keys=ignored, order_only=out.order_only)


# --------------------------------------------------------------------------- conversion


def resolve_checkpoint_prefix(path) -> str:
    """The checkpoint prefix for a SavedModel dir, its ``variables/`` dir or a prefix."""
    path = os.fspath(path)
    candidates = []
    if os.path.isdir(path):
        candidates += [os.path.join(path, "variables", "variables"), os.path.join(path, "variables")]
    candidates.append(path)
    for prefix in candidates:
        if os.path.exists(prefix + ".index"):
            return prefix
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
    raise FileNotFoundError(
        f"no TF checkpoint found at {path!r} (looked for " + ", ".join(c + ".index" for c in candidates) + ")"
    )


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
    """Builds CRMnet (float32) and fills it from a Keras-2 CRMnet checkpoint.

    Args:
        saved_model_dir_or_checkpoint_prefix: the released SavedModel
            directory, its ``variables/`` folder, or a checkpoint prefix.
        config: the architecture the checkpoint was trained with (see
            ``as_config``); default: the published one.

    Returns:
        The model; ``model.mapping_report`` is the ``MappingReport`` used.

    Raises:
        CheckpointMappingError: when the checkpoint and the model disagree.
    """
    prefix = resolve_checkpoint_prefix(saved_model_dir_or_checkpoint_prefix)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    model = build_crmnet(as_config(config), dtype="float32")
    report = plan_mapping(shapes, model, source=prefix)
    not_float = [e.checkpoint_key for e in report if not dtypes[e.checkpoint_key].is_floating]
    if not_float:
        raise CheckpointMappingError(f"non-float checkpoint variables: {not_float}", unmapped_keys=not_float)
    variables = {w.path: w for w in model.weights}
    for entry in report:
        variable = variables[entry.weight_path]
        variable.assign(np.asarray(reader.get_tensor(entry.checkpoint_key)).astype(variable.dtype))
    if report.order_only:
        warnings.warn(
            "transformer weights matched by position among same-shaped candidates "
            f"(no role in their names): {_listed(report.order_only)}",
            stacklevel=2,
        )
    # object.__setattr__: a plain attribute, not tracked (and saved) as layer state.
    object.__setattr__(model, "mapping_report", report)
    return model


def write_report(report, path):
    """TSV of checkpoint key, our weight path, shape (comma-separated dims)."""
    with open(path, "w") as handle:
        handle.write("checkpoint_key\tweight\tshape\n")
        for key, weight, shape in report:
            handle.write(f"{key}\t{weight}\t{','.join(str(d) for d in shape)}\n")


def read_check_input(path, seq_len):
    """Sequences (column 1) and optional expected predictions (column 2) from a TSV.

    Sequences are N-padded / truncated at the 3' end, as the published code
    does. A first line that does not parse is taken as a header.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crmnet.convert",
        description="Convert the released Keras-2 CRMnet SavedModel into a Keras 3 .keras file.",
    )
    parser.add_argument("saved_model", help="SavedModel directory, its variables/ folder, or a checkpoint prefix")
    parser.add_argument("--out", required=True, help="output .keras file")
    parser.add_argument("--config", help="CRMnetConfig as a JSON string or JSON file (default: published)")
    parser.add_argument("--report", help="write the key -> weight mapping as TSV here")
    parser.add_argument("--check-input", metavar="TSV",
                        help="sequences (col 1) and optionally the original model's predictions (col 2) "
                             "to run through the reloaded model")
    parser.add_argument("--check-atol", type=float, default=1e-4,
                        help="max |converted - expected| allowed with --check-input (default 1e-4)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size for --check-input")
    args = parser.parse_args(argv)

    if not args.out.endswith(".keras"):
        parser.error("--out must end with .keras")
    config = as_config(args.config)
    model = convert_checkpoint(args.saved_model, config)
    report = model.mapping_report
    print(f"mapped {len(report)} checkpoint variables ({report.num_values:,} values) onto "
          f"{len(model.weights)} weights; ignored {len(report.ignored_keys)} optimizer/bookkeeping keys")
    if report.order_only:
        print(f"matched by position only (check the report): {len(report.order_only)} weights")
    if args.report:
        write_report(report, args.report)
        print(f"wrote mapping report {args.report}")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    model.save(args.out)
    reloaded = keras.saving.load_model(args.out, safe_mode=True)
    same = len(reloaded.weights) == len(model.weights) and all(
        np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
        for a, b in zip(model.weights, reloaded.weights)
    )
    total = reloaded.count_params()
    print(f"wrote {args.out}; reloaded with safe_mode=True: {total:,} parameters "
          f"(trainable {_count(reloaded.trainable_weights):,}, "
          f"non-trainable {_count(reloaded.non_trainable_weights):,}); "
          f"weights {'identical' if same else 'DIFFER'} after reload")
    if not same:
        return 1

    if args.check_input:
        codes, expected = read_check_input(args.check_input, config.seq_len)
        preds = np.asarray(reloaded.predict(codes, batch_size=args.batch_size, verbose=0)).reshape(-1)
        print(f"check input: {len(preds)} sequences, predictions mean {preds.mean():.6g} "
              f"min {preds.min():.6g} max {preds.max():.6g}")
        if expected is not None:
            diff = float(np.max(np.abs(preds - expected)))
            ok = diff <= args.check_atol
            print(f"max |converted - expected| = {diff:.3g} ({'OK' if ok else 'FAIL'}, atol {args.check_atol:g})")
            if not ok:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

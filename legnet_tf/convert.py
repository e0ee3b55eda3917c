"""Load reference (PyTorch) LegNet weights into ``build_legnet``.

The reference state_dict keys (``seqextractor.blc0.0.weight``, ...,
``mapper.0.bias``) map one-to-one onto our variables:

- conv kernels ``(out, in/groups, k)`` -> Keras ``(k, in/groups, out)``;
- Linear ``(out, in)`` -> Dense kernel ``(in, out)``;
- BatchNorm ``weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/moving_variance``;
- the SE's tltorch TRL (``fc.3.mod.trl``) ``weight.weights`` / ``weight.factors.factor_{0,1,2}`` /
  ``bias`` -> ``CPBilinear`` ``weights`` / ``factor_{0,1,2}`` / ``bias`` unchanged.

``num_batches_tracked`` and ``bins`` are bookkeeping and are ignored. Any other
unknown key, any missing key and any shape mismatch raises
``StateDictMismatchError`` naming every offending key.

Library: ``convert_state_dict(state_dict, config=None)``, ``load_pth(path)``,
``reference_shapes(config)``, ``to_state_dict(model)``. CLI:
``python -m legnet_tf.convert CHECKPOINT(.pth|.npz) --out model.keras``.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping

from data_prep.command_line import Parser, one_line_errors, quiet_tensorflow
from data_prep.errors import Seq2ExpError
from data_prep.outputs import OutputRule

if __name__ == "__main__":  # before Keras starts TensorFlow: its C++ start-up lines only with --verbose
    quiet_tensorflow("--verbose" in sys.argv[1:])

import numpy as np  # noqa: E402

from legnet_tf.layers import cp_rank  # noqa: E402
from legnet_tf.model import LegNetConfig, as_config, build_legnet  # noqa: E402

_BN = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
       ("running_var", "moving_variance"))
_MAX_LISTED = 30


class StateDictMismatchError(Seq2ExpError, ValueError):
    """The state_dict does not fit the model; the message names every offending key."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)  # (key, given shape, expected shape)

    @property
    def count(self):
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)


class CheckpointFileError(Seq2ExpError, ValueError):
    """The file is not a state_dict this converter can read (named, with what to give instead)."""


def is_ignored(key: str) -> bool:
    """Buffers that carry no learned state."""
    return key == "bins" or key.endswith(".num_batches_tracked")


# ------------------------------------------------------------------------------ shapes


def _stages(c: LegNetConfig):
    for i, (prev, size) in enumerate(zip(c.block_sizes[:-1], c.block_sizes[1:])):
        m = c.squeeze_units(prev)
        yield i, prev, size, size * c.resize_factor, m, m // 2


def reference_shapes(config=None, include_buffers=False) -> dict:
    """Reference state_dict key -> PyTorch shape, computed from the config alone."""
    c = as_config(config)
    shapes = {}

    def bn(prefix, n):
        for torch_name, _ in _BN:
            shapes[f"{prefix}.{torch_name}"] = (n,)
        if include_buffers:
            shapes[f"{prefix}.num_batches_tracked"] = ()

    if include_buffers:
        shapes["bins"] = (c.final_ch,)
    shapes["seqextractor.blc0.0.weight"] = (c.block_sizes[0], c.in_channels, c.kernel_size)
    bn("seqextractor.blc0.1", c.block_sizes[0])
    for i, prev, size, wide, m, out in _stages(c):
        p, r = f"seqextractor.inv_res_blc{i}", cp_rank(m, out)
        trl = f"{p}.6.fc.3.mod.trl"
        shapes[f"{p}.0.weight"] = (wide, prev, 1)
        bn(f"{p}.1", wide)
        shapes[f"{p}.3.weight"] = (wide, c.filter_per_group, c.kernel_size)
        bn(f"{p}.4", wide)
        shapes.update({
            f"{p}.6.fc.0.weight": (m, wide), f"{p}.6.fc.0.bias": (m,),
            f"{p}.6.fc.2.weight": (m, m), f"{p}.6.fc.2.bias": (m,),
            f"{trl}.bias": (out,), f"{trl}.weight.weights": (r,),
            f"{trl}.weight.factors.factor_0": (m, r), f"{trl}.weight.factors.factor_1": (m, r),
            f"{trl}.weight.factors.factor_2": (out, r),
            f"{p}.6.fc.5.weight": (wide, m + out), f"{p}.6.fc.5.bias": (wide,),
            f"{p}.7.weight": (prev, wide, 1),
        })
        bn(f"{p}.8", prev)
        shapes[f"seqextractor.resize_blc{i}.0.weight"] = (size, 2 * prev, c.kernel_size)
        bn(f"seqextractor.resize_blc{i}.1", size)
    shapes["mapper.0.weight"] = (c.final_ch, c.block_sizes[-1], 1)
    shapes["mapper.0.bias"] = (c.final_ch,)
    return shapes


def infer_config(shapes: Mapping[str, tuple], seqsize: int = 150, bn_momentum: float = 0.1) -> LegNetConfig:
    """The ``LegNetConfig`` a state_dict was made with, read from its shapes (seqsize cannot be)."""
    stages = sorted({int(m.group(1)) for k in shapes for m in [re.match(r"seqextractor\.resize_blc(\d+)\.", k)]
                     if m})
    stem = shapes["seqextractor.blc0.0.weight"]
    sizes = [stem[0]] + [shapes[f"seqextractor.resize_blc{i}.0.weight"][0] for i in range(len(stages))]
    wide = shapes["seqextractor.inv_res_blc0.0.weight"][0]
    m = shapes["seqextractor.inv_res_blc0.6.fc.0.weight"][0]
    reduction = sizes[0] // m if sizes[0] % m == 0 else sizes[0] / m
    return LegNetConfig(
        seq_len=seqsize, in_channels=stem[1], block_sizes=tuple(sizes), kernel_size=stem[2],
        resize_factor=wide // sizes[1], filter_per_group=shapes["seqextractor.inv_res_blc0.3.weight"][1],
        se_reduction=reduction, final_ch=shapes["mapper.0.weight"][0], bn_momentum=bn_momentum)


def check_shapes(shapes: Mapping[str, tuple], config) -> StateDictMismatchError | None:
    """``None`` if ``shapes`` (key -> PyTorch shape) fits ``config``, else the error naming the keys."""
    expected = reference_shapes(config)
    given = {k: tuple(v) for k, v in shapes.items() if not is_ignored(k)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [(k, given[k], expected[k]) for k in expected if k in given and given[k] != expected[k]]
    if not (missing or unexpected or mismatched):
        return None
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", [f"{k}: got {g}, expected {e}" for k, g, e in mismatched])):
        if items:
            shown = ", ".join(items[:_MAX_LISTED]) + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED
                                                       else "")
            parts.append(f"{label}: {shown}")
    return StateDictMismatchError("state_dict does not fit LegNet " + json.dumps(as_config(config).to_dict())
                                  + "; " + "; ".join(parts), missing, unexpected, mismatched)


def _resolve_config(shapes, config, seqsize):
    """The given config, else the inferred or paper config that fits (best candidate's error if none)."""
    if config is not None:
        candidates = [as_config(config)]
    else:
        candidates = []
        try:
            candidates.append(infer_config(shapes, seqsize=seqsize or 150))
        except (KeyError, IndexError, ValueError, ZeroDivisionError, TypeError):
            pass  # too broken to read; the paper config's report names what is wrong
        candidates.append(LegNetConfig(seq_len=seqsize or 150))
    errors = []
    for candidate in candidates:
        error = check_shapes(shapes, candidate)
        if error is None:
            return candidate
        errors.append(error)
    raise min(errors, key=lambda e: e.count)


# ------------------------------------------------------------------------------ weights


def weight_plan(model) -> list:
    """``[(reference key, keras variable, kind)]`` with kind ``conv`` | ``dense`` | ``plain``."""
    plan = []

    def conv(key, variable):
        plan.append((key, variable, "conv"))

    def bn(prefix, layer):
        for torch_name, keras_name in _BN:
            plan.append((f"{prefix}.{torch_name}", getattr(layer, keras_name), "plain"))

    def dense(prefix, layer):
        plan.append((f"{prefix}.weight", layer.kernel, "dense"))
        plan.append((f"{prefix}.bias", layer.bias, "plain"))

    stem = model.get_layer("stem")
    conv("seqextractor.blc0.0.weight", stem.conv.kernel)
    bn("seqextractor.blc0.1", stem.bn)
    i = 0
    while any(layer.name == f"inv_res{i}" for layer in model.layers):
        block, resize = model.get_layer(f"inv_res{i}"), model.get_layer(f"resize{i}")
        p, se = f"seqextractor.inv_res_blc{i}", block.se
        trl, cp = f"{p}.6.fc.3.mod.trl", block.se.bilinear
        conv(f"{p}.0.weight", block.expand_conv.kernel)
        bn(f"{p}.1", block.expand_bn)
        conv(f"{p}.3.weight", block.group_conv.kernel)
        bn(f"{p}.4", block.group_bn)
        dense(f"{p}.6.fc.0", se.squeeze)
        dense(f"{p}.6.fc.2", se.mix)
        plan += [(f"{trl}.bias", cp.bias, "plain"), (f"{trl}.weight.weights", cp.cp_weights, "plain")]
        plan += [(f"{trl}.weight.factors.factor_{j}", getattr(cp, f"factor_{j}"), "plain") for j in range(3)]
        dense(f"{p}.6.fc.5", se.excite)
        conv(f"{p}.7.weight", block.project_conv.kernel)
        bn(f"{p}.8", block.project_bn)
        conv(f"seqextractor.resize_blc{i}.0.weight", resize.conv.kernel)
        bn(f"seqextractor.resize_blc{i}.1", resize.bn)
        i += 1
    mapper = model.get_layer("mapper")
    plan += [("mapper.0.weight", mapper.kernel, "conv"), ("mapper.0.bias", mapper.bias, "plain")]
    return plan


def _to_keras(value, kind):
    if kind == "conv":
        return np.transpose(value, (2, 1, 0))
    return value.T if kind == "dense" else value


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def strip_wrapper_prefix(state_dict: Mapping) -> dict:
    """Drops a ``module.`` (DataParallel) or ``model.`` (Lightning) prefix carried by every key."""
    state = dict(state_dict)
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def convert_state_dict(state_dict: Mapping, config=None, seqsize=None, dtype=None):
    """A ``build_legnet`` model holding the weights of a reference state_dict.

    Args:
        state_dict: key -> array (numpy or torch), keyed exactly as the reference.
        config: ``LegNetConfig`` or dict; ``None`` reads it from the shapes
            (the paper config for the released checkpoints).
        seqsize: input length when ``config`` is ``None`` (default 150).
        dtype: dtype policy passed to ``build_legnet``.

    Raises:
        StateDictMismatchError: missing, unknown or misshaped keys (all named).
    """
    state = {k: _to_numpy(v) for k, v in strip_wrapper_prefix(state_dict).items()}
    config = _resolve_config({k: v.shape for k, v in state.items()}, config, seqsize)
    model = build_legnet(config, dtype=dtype)
    for key, variable, kind in weight_plan(model):
        value = _to_keras(state[key], kind)
        if tuple(value.shape) != tuple(variable.shape):  # only if weight_plan and reference_shapes disagree
            raise StateDictMismatchError(f"{key}: {value.shape} does not fit {variable.path} {variable.shape}",
                                         mismatched=[(key, value.shape, tuple(variable.shape))])
        variable.assign(value.astype(variable.dtype))
    return model


def to_state_dict(model) -> dict:
    """The reference-layout state_dict (numpy, PyTorch shapes) of one of our models, buffers included."""
    state = {}
    for key, variable, kind in weight_plan(model):
        value = np.asarray(variable.numpy())
        state[key] = np.ascontiguousarray(np.transpose(value, (2, 1, 0)) if kind == "conv"
                                          else value.T if kind == "dense" else value)
        if key.endswith(".running_var"):
            state[key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
    state["bins"] = np.arange(model.output_shape[-1], dtype=np.int64)
    return state


# ------------------------------------------------------------------------------ files


def load_pth(path) -> dict:
    """numpy state_dict of a PyTorch checkpoint: a raw state_dict, or one under "state_dict"/"model"."""
    try:
        import torch
    except ImportError as err:
        raise ImportError("reading .pth checkpoints needs PyTorch: `pip install torch` "
                          "(or convert it to .npz where torch is installed)") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for such files
        # not torch's own text: it suggests weights_only=False, which would run whatever code the file holds
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:  # a pickled object that is not a tensor: refused, never run
            raise CheckpointFileError(f"{path}: refused: it holds a pickled {found.group(1)} object, which no "
                                      "state_dict of tensors holds (it would run when unpickled); give the reference "
                                      "LegNet .pth/.pt/.ckpt checkpoint or an .npz of its arrays") from None
        text = (str(err).strip().splitlines() or [""])[0][:120]
        why = type(err).__name__ + ("" if "weights_only" in str(err) or len(text) < 8 else f": {text}")
        raise CheckpointFileError(f"{path}: not a PyTorch state_dict file ({why}); give the "
                                  "reference LegNet .pth/.pt/.ckpt checkpoint or an .npz of its arrays") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointFileError(f"{path}: expected a state_dict (a mapping of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not hasattr(v, "detach")]
    if bad:
        raise CheckpointFileError(f"{path}: entries that are not tensors: {bad[:_MAX_LISTED]}")
    return {k: _to_numpy(v) for k, v in obj.items()}


def load_checkpoint(path) -> dict:
    """numpy state_dict from a ``.pth``/``.pt``/``.ckpt`` (PyTorch) or ``.npz`` file."""
    if str(path).endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError) as err:  # not a zip, an object array, a truncated member
            why = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise CheckpointFileError(f"{path}: not an .npz of numeric arrays ({why}); give the arrays of a LegNet "
                                      "state_dict (np.savez, no pickled objects) or the .pth checkpoint") from None
    return load_pth(path)


@one_line_errors("python -m legnet_tf.convert")
def main(argv=None) -> int:
    parser = Parser(
        prog="python -m legnet_tf.convert",
        description="Convert reference (PyTorch) LegNet weights to a Keras .keras model.",
        epilog="example: python -m legnet_tf.convert legnet_fold0.pth --out legnet.keras")
    parser.add_argument("checkpoint", help="state_dict file: .pth/.pt/.ckpt (needs torch) or .npz")
    parser.add_argument("--out", required=True, help="output .keras path (required)")
    parser.add_argument("--config", help="JSON file: a LegNetConfig dict, or the reference config "
                        "(ks, use_single_channel, ...), optionally under a 'config' key (default: from the shapes)")
    parser.add_argument("--seqsize", type=int, default=None, help="input length (default: 150)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never an input or a run's own files)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and C++ log lines (hidden by default)")
    args = parser.parse_args(argv)
    if not args.out.endswith(".keras"):
        parser.error("--out must end with .keras")
    for flag, path in (("checkpoint", args.checkpoint), ("--config", args.config)):
        if path and not os.path.isfile(path):
            parser.error(f"{flag}: {path} is not a file")
    rule = OutputRule([args.checkpoint, args.config], overwrite=args.overwrite)
    rule.check_file(args.out, "--out")
    config = None
    if args.config:
        with open(args.config) as f:
            data = json.load(f)
        data = data.get("config", data)
        config = LegNetConfig.from_reference(data) if "ks" in data else LegNetConfig.from_dict(data)
        if args.seqsize:
            config.seq_len = args.seqsize
    try:
        model = convert_state_dict(load_checkpoint(args.checkpoint), config, seqsize=args.seqsize)
    except (StateDictMismatchError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with rule.staged(args.out, "--out") as tmp:  # renamed onto --out only once written whole
        model.save(tmp)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    print(f"wrote {args.out}: {trainable:,} trainable parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

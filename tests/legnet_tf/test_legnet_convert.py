"""Reference state_dict -> Keras conversion: key coverage, errors, and numerics against independent forwards.

Two independent references of the tiny config check BatchNorm inference semantics,
kernel layouts, the [input, branch] concatenation order and the CP bilinear: a
pure-numpy forward pass over the PyTorch-layout arrays (always), and a small
PyTorch LegNet written from the spec with the reference's module names (if torch
is installed).
"""
import json

import keras
import numpy as np
import pytest

from legnet_tf import LegNetConfig, make_inputs
from legnet_tf.convert import (
    StateDictMismatchError,
    convert_state_dict,
    is_ignored,
    load_checkpoint,
    main,
    reference_shapes,
    to_state_dict,
)
from legnet_tf.layers import cp_rank
from tests.conftest import require_shared_specs
from tests.helpers import random_codes

TINY = LegNetConfig.tiny()


def _reference_key_shapes():
    """The PUBLISHED key list (../shared/specs), never our own reference_shapes: required under CI."""
    data = json.loads((require_shared_specs() / "legnet_reference_state_dict.json").read_text())
    return {k: tuple(v) for k, v in data["state_dict"].items()}


def random_state_dict(shapes, seed=0):
    """O(1)-scaled random weights; BatchNorm statistics far from 0/1 so inference semantics matter."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key == "bins":
            state[key] = np.arange(shape[0], dtype=np.int64)
        elif key.endswith("num_batches_tracked"):
            state[key] = np.array(7, dtype=np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.3, 3.0, size=shape).astype("float32")
        elif key.endswith("running_mean"):
            state[key] = rng.normal(0.0, 0.5, size=shape).astype("float32")
        elif len(shape) == 1 and ".weight" in key and not key.endswith("weights"):  # BN gamma
            state[key] = rng.uniform(0.5, 1.5, size=shape).astype("float32")
        elif len(shape) == 1:  # biases, BN beta, CP weights
            state[key] = rng.normal(0.0, 0.3, size=shape).astype("float32")
        else:
            fan_in = int(np.prod(shape[1:])) if "factor" not in key else shape[1]
            state[key] = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=shape).astype("float32")
    return state


def _inputs(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    codes = random_codes(batch, 150, seed=seed)
    reverse = rng.integers(0, 2, size=batch).astype(bool)
    return np.asarray(keras.ops.convert_to_numpy(make_inputs(codes, rng.integers(0, 2, size=batch), reverse)))


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------- numpy reference forward (channels first)
def _silu(x):
    return x / (1.0 + np.exp(-x))


def _conv(x, w, bias=None, groups=1):
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2)))
    cin, cout = x.shape[1] // groups, w.shape[0] // groups
    outs = []
    for g in range(groups):
        win = np.lib.stride_tricks.sliding_window_view(xp[:, g * cin:(g + 1) * cin], k, axis=2)
        outs.append(np.einsum("bclk,ock->bol", win, w[g * cout:(g + 1) * cout]))
    y = np.concatenate(outs, axis=1)
    return y if bias is None else y + bias[None, :, None]


def _bn(x, sd, p, eps=1e-5):
    scale = sd[f"{p}.weight"] / np.sqrt(sd[f"{p}.running_var"] + eps)
    return (x - sd[f"{p}.running_mean"][None, :, None]) * scale[None, :, None] + sd[f"{p}.bias"][None, :, None]


def numpy_legnet(sd, x, config):
    """Eval-mode forward of the PyTorch-layout weights; x is (b, L, 6) channels-last."""
    x = np.transpose(x, (0, 2, 1)).astype("float64")
    x = _silu(_bn(_conv(x, sd["seqextractor.blc0.0.weight"]), sd, "seqextractor.blc0.1"))
    for i in range(len(config.block_sizes) - 1):
        p = f"seqextractor.inv_res_blc{i}"
        y = _silu(_bn(_conv(x, sd[f"{p}.0.weight"]), sd, f"{p}.1"))
        groups = y.shape[1] // config.filter_per_group
        y = _silu(_bn(_conv(y, sd[f"{p}.3.weight"], groups=groups), sd, f"{p}.4"))
        s = y.mean(axis=2)
        z = _silu(s @ sd[f"{p}.6.fc.0.weight"].T + sd[f"{p}.6.fc.0.bias"])
        z = z @ sd[f"{p}.6.fc.2.weight"].T + sd[f"{p}.6.fc.2.bias"]
        t = f"{p}.6.fc.3.mod.trl"
        full = np.einsum("r,ir,jr,or->ijo", sd[f"{t}.weight.weights"], sd[f"{t}.weight.factors.factor_0"],
                         sd[f"{t}.weight.factors.factor_1"], sd[f"{t}.weight.factors.factor_2"])
        z = _silu(np.concatenate([z, np.einsum("bi,bj,ijo->bo", z, z, full) + sd[f"{t}.bias"]], axis=1))
        gate = 1.0 / (1.0 + np.exp(-(z @ sd[f"{p}.6.fc.5.weight"].T + sd[f"{p}.6.fc.5.bias"])))
        y = y * gate[:, :, None]
        y = _silu(_bn(_conv(y, sd[f"{p}.7.weight"]), sd, f"{p}.8"))
        x = np.concatenate([x, y], axis=1)
        x = _silu(_bn(_conv(x, sd[f"seqextractor.resize_blc{i}.0.weight"]), sd, f"seqextractor.resize_blc{i}.1"))
    x = _silu(_conv(x, sd["mapper.0.weight"], bias=sd["mapper.0.bias"]))
    return x.mean(axis=2)


# ----------------------------------------------------------------- tests
def test_reference_shapes_match_published_keys():
    expected = _reference_key_shapes()
    assert len(expected) == 219
    assert reference_shapes(None, include_buffers=True) == expected
    learned = {k: s for k, s in expected.items() if not is_ignored(k) and "running_" not in k}
    assert sum(int(np.prod(s)) for s in learned.values()) == 1_852_846
    assert [cp_rank(m, m // 2) for m in (64, 32, 16)] == [410, 102, 26]


def test_random_reference_state_dict_converts_and_runs():
    state = random_state_dict(_reference_key_shapes(), seed=1)
    model = convert_state_dict(state)
    assert model.get_layer("inv_res0").se.bilinear.effective_rank == 410
    out = keras.ops.convert_to_numpy(model(_inputs(2), training=False))
    assert out.shape == (2, 18) and np.isfinite(out).all()
    back = to_state_dict(model)
    assert set(back) == set(state)
    for key, value in state.items():
        if not is_ignored(key):
            np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_tiny_config_is_inferred_and_matches_numpy_forward():
    state = random_state_dict(reference_shapes(TINY, include_buffers=True), seed=2)
    model = convert_state_dict(state)  # config read from the shapes
    x = _inputs(5, seed=3)
    ours = keras.ops.convert_to_numpy(model(x, training=False))
    ref = numpy_legnet(state, x, TINY)
    assert np.abs(ref).max() > 0.1  # not a trivially flat network
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(_log_softmax(ours) - _log_softmax(ref)).max() < 1e-4


@pytest.mark.parametrize("case", ["missing", "extra", "misshaped", "all"])
def test_bad_state_dicts_name_the_keys(case):
    state = random_state_dict(_reference_key_shapes(), seed=4)
    gone, extra = "seqextractor.inv_res_blc2.6.fc.3.mod.trl.weight.factors.factor_1", "seqextractor.head.weight"
    bad_shape = "seqextractor.resize_blc1.0.weight"  # also a key the config inference reads
    if case in ("missing", "all"):
        del state[gone]
    if case in ("extra", "all"):
        state[extra] = np.zeros(3, "float32")
    if case in ("misshaped", "all"):
        state[bad_shape] = np.zeros((64, 256, 5), "float32")
    with pytest.raises(StateDictMismatchError) as info:
        convert_state_dict(state)
    err, message = info.value, str(info.value)
    if case in ("missing", "all"):
        assert err.missing == [gone] and gone in message
    if case in ("extra", "all"):
        assert err.unexpected == [extra] and extra in message
    if case in ("misshaped", "all"):
        assert [m[0] for m in err.mismatched] == [bad_shape] and bad_shape in message


def test_explicit_config_mismatch_and_wrapper_prefix():
    state = random_state_dict(reference_shapes(TINY, include_buffers=True), seed=5)
    with pytest.raises(StateDictMismatchError, match="seqextractor.blc0.0.weight"):
        convert_state_dict(state, config=LegNetConfig())
    wrapped = {f"module.{k}": v for k, v in state.items()}
    model = convert_state_dict(wrapped, config=TINY.to_dict())
    np.testing.assert_array_equal(to_state_dict(model)["mapper.0.bias"], state["mapper.0.bias"])


def test_cli_converts_npz(tmp_path, capsys):
    state = random_state_dict(reference_shapes(TINY, include_buffers=True), seed=6)
    np.savez(tmp_path / "w.npz", **state)
    assert load_checkpoint(tmp_path / "w.npz").keys() == state.keys()
    out = tmp_path / "legnet.keras"
    assert main([str(tmp_path / "w.npz"), "--out", str(out)]) == 0
    assert "12,306 trainable" in capsys.readouterr().out
    reloaded = keras.saving.load_model(out, safe_mode=True)
    x = _inputs(2, seed=7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x, training=False)),
                               numpy_legnet(state, x, TINY), atol=1e-4, rtol=1e-4)
    del state["mapper.0.bias"]
    np.savez(tmp_path / "bad.npz", **state)
    assert main([str(tmp_path / "bad.npz"), "--out", str(tmp_path / "bad.keras")]) == 1
    assert "mapper.0.bias" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])


def test_load_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match="pip install torch"):
        load_checkpoint(tmp_path / "weights.pth")

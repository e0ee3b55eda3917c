"""LegNet layers: CPBilinear against explicit full-tensor bilinear maps, config round trips, dtypes."""
import keras
import numpy as np
import pytest

from legnet_tf.layers import CPBilinear, GroupedConv1D, InvertedResidual, ResizeBlock, SEBlock, cp_rank
from tests.conftest import require_module
from tests.helpers import assert_layer_config_roundtrip, run_under_policy


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _random_cp(layer, rng):
    """Gives a built CPBilinear O(1) random factors (its init is tiny) and returns them."""
    values = {}
    for name in ("cp_weights", "factor_0", "factor_1", "factor_2", "bias"):
        variable = getattr(layer, name)
        values[name] = rng.normal(size=tuple(variable.shape)).astype("float32")
        variable.assign(values[name])
    return values


@pytest.mark.parametrize("m, out, rank", [(64, 32, 410), (32, 16, 102), (16, 8, 26)])
def test_auto_rank_matches_reference(m, out, rank):
    assert cp_rank(m, out, 0.5) == rank
    layer = CPBilinear(out)
    layer.build((None, m))
    assert layer.effective_rank == rank
    assert tuple(layer.factor_0.shape) == (m, rank)
    assert tuple(layer.factor_2.shape) == (out, rank)
    assert tuple(layer.cp_weights.shape) == (rank,)


def test_cp_bilinear_equals_full_tensor_bilinear():
    rng = np.random.default_rng(0)
    layer = CPBilinear(5, rank=7)
    layer.build((None, 6))
    w = _random_cp(layer, rng)
    x = rng.normal(size=(4, 6)).astype("float32")
    full = np.einsum("r,ir,jr,or->ijo", w["cp_weights"], w["factor_0"], w["factor_1"], w["factor_2"])
    expected = np.einsum("bi,bj,ijo->bo", x, x, full) + w["bias"]
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_cp_bilinear_equals_tensorly_cp_tensor():
    tl = require_module("tensorly", "the CP bilinear is checked against tensorly.cp_to_tensor")
    rng = np.random.default_rng(1)
    layer = CPBilinear(4)
    layer.build((None, 8))
    w = _random_cp(layer, rng)
    full = tl.cp_to_tensor((w["cp_weights"], [w["factor_0"], w["factor_1"], w["factor_2"]]))
    assert full.shape == (8, 8, 4)
    x = rng.normal(size=(3, 8)).astype("float32")
    expected = np.stack([x[b] @ np.tensordot(x[b], full, axes=([0], [1])) for b in range(3)]) + w["bias"]
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_cp_bilinear_reference_init():
    keras.utils.set_random_seed(3)
    layer = CPBilinear(32)
    layer.build((None, 64))
    np.testing.assert_array_equal(_np(layer.cp_weights), 1.0)
    expected_std = (0.00075 / np.sqrt(410)) ** (1 / 3)
    assert abs(_np(layer.factor_0).std() / expected_std - 1) < 0.05
    bias = _np(layer.bias)
    assert bias.min() >= -1 and bias.max() <= 1 and bias.std() > 0.4


def test_cp_bilinear_without_bias_and_validation():
    layer = CPBilinear(3, rank=2, use_bias=False)
    assert layer(np.ones((2, 4), "float32")).shape == (2, 3)
    assert layer.bias is None and len(layer.weights) == 4
    with pytest.raises(ValueError):
        CPBilinear(3, rank=0)
    with pytest.raises(ValueError):
        CPBilinear(0)


def _layers():
    return [
        CPBilinear(4, rank=3, rank_ratio=0.25, factor_initializer="zeros", name="cp"),
        CPBilinear(4),
        SEBlock(8, bilinear_rank=5, name="se"),
        InvertedResidual(32, kernel_size=5, filters_per_group=4, squeeze_units=4, batch_norm_momentum=0.8,
                         batch_norm_epsilon=1e-4, name="ir"),
        ResizeBlock(8, kernel_size=3, batch_norm_momentum=0.7, name="rb"),
        GroupedConv1D(12, 5, groups=3, kernel_initializer="he_normal", name="gc"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_layer_config_roundtrip(index):
    layer = _layers()[index]
    clone = assert_layer_config_roundtrip(layer)
    assert clone.get_config() == layer.get_config()


def test_block_shapes_and_reference_wiring():
    x = np.random.default_rng(2).normal(size=(2, 20, 16)).astype("float32")
    block = InvertedResidual(32, kernel_size=7, filters_per_group=2, squeeze_units=4)
    assert block(x).shape == (2, 20, 16)
    assert tuple(block.group_conv.kernel.shape) == (7, 2, 32)  # groups = 32 / 2
    assert tuple(block.expand_conv.kernel.shape) == (1, 16, 32)
    assert tuple(block.project_conv.kernel.shape) == (1, 32, 16)
    assert tuple(block.se.excite.kernel.shape) == (4 + 2, 32)  # concat(z, bilinear(z))
    assert block.expand_bn.momentum == pytest.approx(0.9) and block.expand_bn.epsilon == pytest.approx(1e-5)
    assert ResizeBlock(8)(x).shape == (2, 20, 8)


@pytest.mark.parametrize("filters, groups", [(24, 6), (24, 12), (12, 12), (24, 1), (6, 3)])
def test_grouped_conv_equals_keras_grouped_conv1d(filters, groups):
    """Same kernel layout and result as ``Conv1D(groups=...)``, incl. in/out per group != 2 and groups=1."""
    x = np.random.default_rng(7).normal(size=(3, 17, 12)).astype("float32")
    reference = keras.layers.Conv1D(filters, 7, groups=groups, padding="same", use_bias=False)
    reference.build(x.shape)
    ours = GroupedConv1D(filters, 7, groups=groups)
    ours.build(x.shape)
    assert tuple(ours.kernel.shape) == tuple(reference.kernel.shape)
    ours.kernel.assign(_np(reference.kernel))
    np.testing.assert_allclose(_np(ours(x)), _np(reference(x)), atol=1e-5)


def test_grouped_conv_rejects_bad_groups():
    with pytest.raises(ValueError, match="multiple of groups"):
        GroupedConv1D(10, 3, groups=4)
    with pytest.raises(ValueError, match="input channels 10"):
        GroupedConv1D(8, 3, groups=4).build((None, 5, 10))


def test_se_gate_starts_near_half():
    """Reference init (Linear N(0, 0.001)): the gate is ~sigmoid(0) = 0.5 for every channel."""
    x = np.random.default_rng(4).normal(size=(2, 10, 12)).astype("float32")
    se = SEBlock(4)
    np.testing.assert_allclose(_np(se(x)) / x, 0.5, atol=1e-2)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_layers_follow_mixed_policy(policy):
    def run():
        x = np.random.default_rng(5).normal(size=(2, 12, 8)).astype("float32")
        block = InvertedResidual(16, squeeze_units=4)
        cp = CPBilinear(3)
        return block, block(x), cp(np.ones((2, 6), "float32")), cp

    block, y, z, cp = run_under_policy(policy, run)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert keras.backend.standardize_dtype(z.dtype) == compute
    assert cp.factor_0.dtype == "float32" and block.expand_bn.gamma.dtype == "float32"

"""LegNet model: exact reference parameter count (build only), config, save/load, dtype policies."""
import json

import keras
import numpy as np
import pytest

from legnet_tf import LegNetConfig, build_legnet, make_inputs
from legnet_tf.layers import InvertedResidual
from tests.conftest import require_shared_specs
from tests.helpers import assert_keras_roundtrip, random_codes, run_under_policy

REFERENCE_TRAINABLE = 1_852_846


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return make_inputs(random_codes(batch, 150, seed=seed), rng.integers(0, 2, size=batch), reverse=False)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return build_legnet(LegNetConfig.tiny())


def test_reference_parameter_count():
    model = build_legnet(LegNetConfig())
    assert _count(model.trainable_weights) == REFERENCE_TRAINABLE
    # BatchNorm moving statistics are PyTorch buffers, not parameters.
    sizes = LegNetConfig().block_sizes
    bn_channels = sizes[0] + sum(4 * s + 4 * s + p + s for p, s in zip(sizes[:-1], sizes[1:]))
    assert _count(model.non_trainable_weights) == 2 * bn_channels
    assert model.output_shape == (None, 18) and model.input_shape == (None, 150, 6)


@pytest.mark.parametrize("overrides, expected", [({"filter_per_group": 1}, 1_838_510), ({"in_channels": 5}, 1_851_054)])
def test_reference_variant_counts(overrides, expected):
    assert _count(build_legnet(LegNetConfig(**overrides)).trainable_weights) == expected


def test_config_dict_roundtrip_and_reference_config():
    config = LegNetConfig.tiny(final_ch=10)
    assert LegNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="bogus"):
        LegNetConfig.from_dict({"bogus": 1})
    ref = json.loads((require_shared_specs() / "legnet_reference_state_dict.json").read_text())["config"]
    assert LegNetConfig.from_reference(ref) == LegNetConfig()
    assert LegNetConfig().keras_bn_momentum == pytest.approx(0.9)
    with pytest.raises(ValueError):
        LegNetConfig(kernel_size=6)
    with pytest.raises(ValueError):
        LegNetConfig(block_sizes=(4, 4))  # SE bottleneck 4 // 4 = 1 leaves no bilinear outputs


def test_tiny_model_wiring(tiny_model):
    c = LegNetConfig.tiny()
    names = [layer.name for layer in tiny_model.layers]
    assert names[:2] == ["inputs", "stem"] and names[-2:] == ["mapper", "logits"]
    blocks = [layer for layer in tiny_model.layers if isinstance(layer, InvertedResidual)]
    assert [b.expanded_channels for b in blocks] == [4 * s for s in c.block_sizes[1:]]
    assert [b.squeeze_units for b in blocks] == [p // 4 for p in c.block_sizes[:-1]]
    # the resize conv reads [input, branch]: 2 x the block's input width
    assert tuple(tiny_model.get_layer("resize0").conv.kernel.shape) == (7, 2 * c.block_sizes[0], c.block_sizes[1])
    out = tiny_model(_inputs(), training=False)
    assert out.shape == (3, 18) and keras.backend.standardize_dtype(out.dtype) == "float32"


def test_training_mode_updates_batch_norm_statistics():
    model = build_legnet(LegNetConfig.tiny())
    bn = model.get_layer("stem").bn
    before = np.asarray(bn.moving_mean.numpy()).copy()
    model(_inputs(4, seed=1), training=True)
    after = np.asarray(bn.moving_mean.numpy())
    assert not np.allclose(before, after)
    eval_out = keras.ops.convert_to_numpy(model(_inputs(4, seed=1), training=False))
    np.testing.assert_array_equal(after, np.asarray(bn.moving_mean.numpy()))  # inference leaves them alone
    assert np.isfinite(eval_out).all()


def test_keras_roundtrip_safe_mode(tiny_model, tmp_path):
    assert_keras_roundtrip(tiny_model, _inputs(2), tmp_path, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_outputs_float32(policy):
    model = run_under_policy(policy, build_legnet, LegNetConfig.tiny())
    assert model.get_layer("inv_res0").compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in model.weights)
    out = model(_inputs(2), training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()

"""CRMnet model tests: exact published parameter counts (build only) and tiny-model behaviour."""
import keras
import numpy as np
import pytest

from crmnet import CRMnetConfig, build_crmnet
from crmnet.layers import PositionEncoding, TransformerBlock
from tests.helpers import (
    assert_keras_roundtrip,
    assert_layer_config_roundtrip,
    random_codes,
    run_under_policy,
)

PUBLISHED_TOTAL = 34_170_289
PUBLISHED_TRAINABLE = 34_165_681
PUBLISHED_NON_TRAINABLE = 4_608


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def _all_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


@pytest.fixture(scope="module")
def full_model():
    """The published configuration, built but never run (a CPU forward pass is slow)."""
    return build_crmnet(CRMnetConfig())


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return build_crmnet(CRMnetConfig.tiny())


def test_published_parameter_counts(full_model):
    assert full_model.count_params() == PUBLISHED_TOTAL
    assert _count(full_model.trainable_weights) == PUBLISHED_TRAINABLE
    assert _count(full_model.non_trainable_weights) == PUBLISHED_NON_TRAINABLE


def test_additive_position_mode_has_same_counts():
    model = build_crmnet(CRMnetConfig(position_mode="add_sinusoidal"))
    assert model.get_layer("position").mode == "add_sinusoidal"
    assert model.count_params() == PUBLISHED_TOTAL
    assert _count(model.trainable_weights) == PUBLISHED_TRAINABLE
    assert _count(model.non_trainable_weights) == PUBLISHED_NON_TRAINABLE


def test_full_model_structure(full_model, tmp_path):
    assert full_model.get_layer("position").mode == "multiply_sin"
    layers = _all_layers(full_model)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in layers) == 14
    blocks = [l for l in layers if isinstance(l, TransformerBlock)]
    assert [b.name for b in blocks] == [f"tf_block{i}" for i in range(1, 9)]
    assert all(b.count_params() == 3_222_144 for b in blocks)
    assert blocks[0].attention.count_params() == 3_155_200
    assert tuple(full_model.input.shape) == (None, 112)
    assert keras.backend.standardize_dtype(full_model.input.dtype) == "uint8"
    assert tuple(full_model.output.shape) == (None, 1)
    assert tuple(full_model.get_layer("head_flatten").output.shape) == (None, 112 * 32)
    assert tuple(full_model.get_layer("position").output.shape) == (None, 14, 256)


def test_weight_holding_layers_follow_published_dataflow(full_model):
    names = [l.name for l in full_model.layers if l.weights]
    expected = (
        [f"enc{i}" for i in range(1, 5)]
        + [f"tf_block{i}" for i in range(1, 9)]
        + [f"dec{i}" for i in range(1, 4)]
        + ["head_conv1", "head_se1", "head_conv2", "head_se2", "head_conv3", "head_se3"]
        + [f"head_dense{i}" for i in range(1, 5)]
        + ["expression"]
    )
    assert names == expected
    paths = [w.path for w in full_model.weights]
    assert paths[:2] == ["enc1/enc1_conv1/kernel", "enc1/enc1_conv1/bias"]
    assert paths[-2:] == ["expression/kernel", "expression/bias"]
    assert len(paths) == len(set(paths))


def _source_layer(tensor):
    return tensor._keras_history[0].name


def test_transformer_skip_wiring_generalises():
    # Published 8 blocks: x=t1(x); x=t3(x)+t2(x); x=t5(x)+t4(x); x=t7(x)+t6(x); x=t8(x).
    model = build_crmnet(CRMnetConfig.tiny(num_transformer_blocks=8))
    adds = [l for l in model.layers if isinstance(l, keras.layers.Add)]
    assert [a.name for a in adds] == ["tf_add1", "tf_add2", "tf_add3"]
    sources = [sorted(_source_layer(t) for t in a.input) for a in adds]
    assert sources == [["tf_block2", "tf_block3"], ["tf_block4", "tf_block5"], ["tf_block6", "tf_block7"]]
    feeds = {
        name: _source_layer(model.get_layer(name).input)
        for name in ("tf_block1", "tf_block2", "tf_block3", "tf_block4", "tf_block5", "tf_block8")
    }
    assert feeds == {
        "tf_block1": "position",
        "tf_block2": "tf_block1",
        "tf_block3": "tf_block1",
        "tf_block4": "tf_add1",
        "tf_block5": "tf_add1",
        "tf_block8": "tf_add3",
    }
    assert _source_layer(model.get_layer("dec1").input[0]) == "tf_block8"
    two = build_crmnet(CRMnetConfig.tiny(num_transformer_blocks=2))
    assert not [l for l in two.layers if isinstance(l, keras.layers.Add)]
    assert _source_layer(two.get_layer("tf_block2").input) == "tf_block1"


def test_decoder_uses_matching_encoder_skips(full_model):
    for dec, enc in (("dec1", "enc3"), ("dec2", "enc2"), ("dec3", "enc1")):
        assert _source_layer(full_model.get_layer(dec).input[1]) == enc


def test_tiny_model_predicts_float32_from_uint8(tiny_model):
    codes = random_codes(3, 32)
    out = tiny_model.predict(codes, verbose=0)
    assert out.shape == (3, 1) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    eager = keras.ops.convert_to_numpy(tiny_model(codes, training=False))
    np.testing.assert_allclose(out, eager, atol=1e-5)


def test_tiny_model_trains_one_step():
    model = build_crmnet(CRMnetConfig.tiny(num_transformer_blocks=2))
    # Eager: compiling the training graph costs ~30 s on 2 CPU cores.
    model.compile(optimizer="adam", loss=keras.losses.Huber(delta=1.0), run_eagerly=True)
    bn = model.get_layer("enc1").bn1
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    loss = model.train_on_batch(random_codes(8, 32), np.ones((8, 1), "float32"))
    assert np.isfinite(loss)
    assert not np.allclose(before, keras.ops.convert_to_numpy(bn.moving_mean))


def test_keras_file_roundtrip_safe_mode(tiny_model, tmp_path):
    reloaded = assert_keras_roundtrip(tiny_model, random_codes(4, 32, seed=1), tmp_path)
    assert reloaded.count_params() == tiny_model.count_params()
    assert [w.path for w in reloaded.weights] == [w.path for w in tiny_model.weights]


def test_every_custom_layer_config_roundtrips(tiny_model):
    custom = [
        l for l in _all_layers(tiny_model)
        if not type(l).__module__.startswith("keras.")
    ]
    kinds = {type(l).__name__ for l in custom}
    assert kinds == {
        "OneHotIndex", "EncoderBlock", "PositionEncoding",
        "TransformerBlock", "DecoderBlock", "SqueezeExcite",
    }
    for layer in custom:
        assert_layer_config_roundtrip(layer)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_output_is_float32(policy):
    def build_and_run():
        model = build_crmnet(CRMnetConfig.tiny(num_transformer_blocks=2))
        return model, model(random_codes(2, 32), training=False)

    model, out = run_under_policy(policy, build_and_run)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))
    compute = policy.split("_")[1]
    assert model.get_layer("enc1").compute_dtype == compute
    assert model.get_layer("tf_block1").attention.compute_dtype == compute
    assert model.get_layer("expression").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_config_dict_roundtrip_and_validation():
    config = CRMnetConfig.tiny(position_mode="add_sinusoidal")
    data = config.to_dict()
    assert isinstance(data["encoder_filters"], list)
    assert CRMnetConfig.from_dict(data) == config
    assert CRMnetConfig.from_dict({}) == CRMnetConfig()
    defaults = CRMnetConfig()
    assert defaults.position_mode == "multiply_sin"
    assert (defaults.num_heads, defaults.key_dim, defaults.ffn_dim) == (12, 256, 128)
    with pytest.raises(ValueError):
        CRMnetConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError):
        CRMnetConfig(seq_len=110)
    with pytest.raises(ValueError):
        CRMnetConfig(position_mode="learned")
    with pytest.raises(ValueError):
        CRMnetConfig(embed_dim=128)
    with pytest.raises(ValueError):
        CRMnetConfig(dense_dropouts=(0.1,))


def test_build_accepts_dict_config():
    model = build_crmnet(CRMnetConfig.tiny().to_dict())
    assert isinstance(model.get_layer("position"), PositionEncoding)

"""Unit tests of the CRMnet layers and the shared OneHotIndex (tiny shapes only)."""
import keras
import numpy as np
import pytest

from crmnet.layers import (
    DecoderBlock,
    EncoderBlock,
    PositionEncoding,
    SqueezeExcite,
    TransformerBlock,
)
from seq2exp.layers import OneHotIndex, lookup_matrix
from tests.helpers import assert_layer_config_roundtrip, run_under_policy


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------- OneHotIndex
CODES = np.array([[0, 1, 2, 3, 4]], dtype=np.uint8)  # A C G T N


def test_one_hot_crmnet_order_puts_n_first():
    out = _np(OneHotIndex(order="NACGT")(CODES))
    expected = np.array(
        [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out[0], expected)
    assert out.dtype == np.float32


def test_one_hot_legnet_order_with_quarter_n():
    out = _np(OneHotIndex(order="AGCT", n_value=0.25)(CODES))[0]
    np.testing.assert_array_equal(out[0], [1, 0, 0, 0])  # A
    np.testing.assert_array_equal(out[1], [0, 0, 1, 0])  # C
    np.testing.assert_array_equal(out[2], [0, 1, 0, 0])  # G
    np.testing.assert_array_equal(out[3], [0, 0, 0, 1])  # T
    np.testing.assert_array_equal(out[4], [0.25] * 4)  # N


def test_one_hot_all_ones_n_and_default_zero_n():
    np.testing.assert_array_equal(_np(OneHotIndex(order="ACGT", n_value=1.0)(CODES))[0, 4], [1, 1, 1, 1])
    np.testing.assert_array_equal(_np(OneHotIndex(order="ACGT")(CODES))[0, 4], [0, 0, 0, 0])


def test_one_hot_out_of_range_codes_are_n():
    codes = np.array([[5, 200, 0]], dtype=np.uint8)
    out = _np(OneHotIndex(order="NACGT")(codes))[0]
    np.testing.assert_array_equal(out[:2], [[1, 0, 0, 0, 0]] * 2)
    negative = _np(OneHotIndex(order="NACGT")(np.array([[-1, 3]], dtype=np.int32)))[0]
    np.testing.assert_array_equal(negative, [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])


def test_one_hot_table_and_validation():
    assert lookup_matrix("NACGT").shape == (5, 5)
    with pytest.raises(ValueError):
        OneHotIndex(order="ACGX")
    with pytest.raises(ValueError):
        OneHotIndex(order="AACG")


def test_one_hot_output_is_compute_dtype_and_symbolic():
    with run_under_policy("mixed_bfloat16"):
        layer = OneHotIndex(order="NACGT")
        out = layer(CODES)
        assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
        symbolic = layer(keras.Input((7,), dtype="uint8"))
        assert tuple(symbolic.shape) == (None, 7, 5)
    assert layer.count_params() == 0
    assert_layer_config_roundtrip(OneHotIndex(order="AGCT", n_value=0.25, name="oh"))


# ---------------------------------------------------------------- CRMnet layers
def test_squeeze_excite_gates_channels():
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    layer = SqueezeExcite(ratio=2, name="se")
    out = _np(layer(x))
    assert out.shape == x.shape
    assert layer.count_params() == (8 * 4 + 4) + (4 * 8 + 8)
    gate = out / x
    np.testing.assert_allclose(gate, np.broadcast_to(gate[:, :1], gate.shape), rtol=1e-4)
    assert np.all((gate > 0) & (gate < 1))
    assert_layer_config_roundtrip(layer)


def test_encoder_block_condenses_and_returns_skip():
    x = np.zeros((2, 16, 5), "float32")
    skip, down = EncoderBlock(8, kernel_size=3, name="e")(x)
    assert skip.shape == (2, 16, 8) and down.shape == (2, 8, 8)
    last = EncoderBlock(8, kernel_size=3, condense=False, name="e4")
    assert last(x).shape == (2, 16, 8)
    # conv(5->8) + SE + BN + conv(8->8) + SE + BN [+ stride-2 conv]
    base = (3 * 5 * 8 + 8) + 2 * 76 + 2 * 32 + (3 * 8 * 8 + 8)
    assert last.count_params() == base
    block = EncoderBlock(8, kernel_size=3, dropout=0.2, name="e1")
    block.build((None, 16, 5))
    assert block.count_params() == base + 3 * 8 * 8 + 8
    assert_layer_config_roundtrip(block)
    assert_layer_config_roundtrip(last)


def test_decoder_block_doubles_length_with_skip():
    block = DecoderBlock(8, kernel_size=3, name="d")
    out = block(np.zeros((2, 4, 16), "float32"), np.zeros((2, 8, 6), "float32"))
    assert out.shape == (2, 8, 8)
    up = 3 * 8 * 16 + 8
    conv1 = 3 * (8 + 6) * 8 + 8
    assert block.count_params() == up + conv1 + (3 * 8 * 8 + 8) + 2 * 76 + 2 * 32
    assert_layer_config_roundtrip(block)


def test_transformer_block_parameter_count_and_shape():
    block = TransformerBlock(num_heads=2, key_dim=4, ffn_dim=6, name="t")
    out = block(np.random.default_rng(1).normal(size=(2, 5, 8)).astype("float32"))
    assert out.shape == (2, 5, 8)
    attention = 3 * (8 * 2 * 4 + 2 * 4) + (2 * 4 * 8 + 8)
    assert block.count_params() == attention + (8 * 6 + 6) + (6 * 8 + 8) + 2 * 16
    assert_layer_config_roundtrip(block)


def test_transformer_block_attention_equals_keras_multi_head_attention():
    """`attend` (2-D matmul projections, for speed) computes what Keras' own MultiHeadAttention call does."""
    x = np.random.default_rng(3).normal(size=(3, 7, 8)).astype("float32")
    block = TransformerBlock(num_heads=3, key_dim=5, ffn_dim=6, name="t")
    block.build(x.shape)
    rng = np.random.default_rng(4)
    for weight in block.attention.weights:  # non-zero biases, so a wrong bias path shows
        weight.assign(0.3 * rng.normal(size=weight.shape).astype("float32"))
    np.testing.assert_allclose(_np(block.attend(x)), _np(block.attention(x, x)), rtol=1e-5, atol=1e-5)
    with run_under_policy("mixed_bfloat16"):
        half = TransformerBlock(num_heads=3, key_dim=5, ffn_dim=6, name="t16")
        half.build(x.shape)
        half.set_weights(block.get_weights())
        x16 = keras.ops.cast(x, "bfloat16")
        ours, theirs = half.attend(x16), half.attention(x16, x16)
    assert keras.backend.standardize_dtype(ours.dtype) == "bfloat16"
    np.testing.assert_allclose(_np(keras.ops.cast(ours, "float32")), _np(keras.ops.cast(theirs, "float32")),
                               rtol=0.05, atol=0.05)


def test_multiply_sin_matches_published_reference():
    x = np.random.default_rng(2).normal(size=(3, 14, 4)).astype("float32")
    layer = PositionEncoding(mode="multiply_sin", name="pos")
    reference = np.sin(np.arange(0, 111, 111 / 14))
    assert reference.shape == (14,)
    np.testing.assert_allclose(_np(layer(x)), x * reference[None, :, None], atol=2e-5)
    np.testing.assert_array_equal(_np(layer(x))[:, 0], 0.0)  # position 0 is zeroed
    assert layer.count_params() == 0 and not layer.weights
    assert_layer_config_roundtrip(layer)


def test_add_sinusoidal_matches_standard_encoding():
    length, channels = 14, 6
    x = np.zeros((1, length, channels), "float32")
    layer = PositionEncoding(mode="add_sinusoidal", name="pos")
    pos = np.arange(length)[:, None]
    i = np.arange(channels)[None, :]
    angles = pos / np.power(10000.0, (2 * (i // 2)) / channels)
    reference = np.where(i % 2 == 0, np.sin(angles), np.cos(angles))
    np.testing.assert_allclose(_np(layer(x))[0], reference, atol=1e-5)
    assert not layer.weights
    assert_layer_config_roundtrip(layer)
    with pytest.raises(ValueError):
        PositionEncoding(mode="learned")


def test_position_encoding_symbolic_and_bfloat16():
    with run_under_policy("mixed_bfloat16"):
        layer = PositionEncoding(mode="multiply_sin")
        out = layer(np.ones((1, 14, 2), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    symbolic = PositionEncoding(mode="add_sinusoidal")(keras.Input((None, 4)))
    assert tuple(symbolic.shape) == (None, None, 4)

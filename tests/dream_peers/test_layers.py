"""DREAM peer layers: config round trips, the maths each one promises, dtype policies."""
import keras
import numpy as np
import pytest

from dream_peers.layers import (
    ConvModule,
    GLUFeedForward,
    LabelScale,
    MacaronBlock,
    PseudoExpressionTokens,
    StrandedTokenEmbedding,
)
from tests.helpers import assert_layer_config_roundtrip, run_under_policy


@pytest.mark.parametrize("layer", [
    GLUFeedForward(hidden_dim=16, dropout=0.2, epsilon=1e-5, name="ffn"),
    ConvModule(kernel_size=7, dropout=0.3, epsilon=1e-5, name="conv"),
    MacaronBlock(num_heads=2, key_dim=4, ffn_dim=8, conv_kernel=5, dropout=0.0, attention_dropout=0.1,
                 epsilon=1e-5, attention_epsilon=1e-4, name="block"),
    StrandedTokenEmbedding(d_model=8, vocab_size=6, kernel_size=4, num_strands=2, name="embed"),
    PseudoExpressionTokens(num_tokens=3, name="pseudo"),
    LabelScale(name="scale"),
])
def test_config_roundtrip(layer):
    assert_layer_config_roundtrip(layer)


def test_glu_feed_forward_is_a_times_swish_b():
    keras.utils.set_random_seed(0)
    layer = GLUFeedForward(hidden_dim=6, dropout=0.5)
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    h = keras.ops.convert_to_numpy(layer.expand(layer.norm(x)))
    a, b = h[..., :3], h[..., 3:]
    expected = (a * b / (1.0 + np.exp(-b))) @ keras.ops.convert_to_numpy(layer.project.kernel)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 2 * 4 + 4 * 6 + 3 * 4  # LayerNorm + two bias-free projections
    with pytest.raises(ValueError, match="even"):
        GLUFeedForward(hidden_dim=7)


def test_pseudo_tokens_are_the_dense_bias_in_front():
    layer = PseudoExpressionTokens(num_tokens=3)
    x = np.random.default_rng(1).normal(size=(2, 5, 4)).astype("float32")
    layer.build(x.shape)
    layer.dense.bias.assign(np.arange(4, dtype="float32"))
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 8, 4) and layer.count_params() == 2 * 4  # Dense(4) on (.., 1) zeros
    np.testing.assert_array_equal(out[:, :3], np.broadcast_to(np.arange(4, dtype="float32"), (2, 3, 4)))
    np.testing.assert_array_equal(out[:, 3:], x)


def test_stranded_embedding_adds_position_and_strand():
    layer = StrandedTokenEmbedding(d_model=3, vocab_size=6, kernel_size=2, num_strands=2)
    tokens = np.array([[0, 1, 2, 3, 4, 5]], dtype="int32")
    layer.build(tokens.shape)
    for w in layer.kmer.weights:
        w.assign(np.zeros(w.shape, "float32"))
    layer.position.assign(np.arange(18, dtype="float32").reshape(6, 3))
    layer.strand.assign(np.array([[100.0] * 3, [200.0] * 3], "float32"))
    out = keras.ops.convert_to_numpy(layer(tokens))
    expected = np.arange(18, dtype="float32").reshape(6, 3) + np.array([100.0] * 3 * 3 + [200.0] * 3 * 3).reshape(6, 3)
    np.testing.assert_array_equal(out[0], expected)
    with pytest.raises(ValueError, match="divisible"):
        StrandedTokenEmbedding(d_model=3, num_strands=2)(np.zeros((1, 5), "int32"))


def test_label_scale_un_standardises_and_validates():
    layer = LabelScale()
    layer.build((None, 1))
    layer.set_stats(10.0, 2.0)
    out = keras.ops.convert_to_numpy(layer(np.array([[0.0], [1.5]], "float32")))
    np.testing.assert_allclose(out, [[10.0], [13.0]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.standardize(np.array([13.0]))), [1.5])
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="std > 0"):
            layer.set_stats(1.0, bad)


def test_macaron_block_residual_shape_and_mixed_policy():
    x = np.random.default_rng(2).normal(size=(2, 9, 8)).astype("float32")

    def build_and_run():
        block = MacaronBlock(num_heads=2, key_dim=4, ffn_dim=8, conv_kernel=3, dropout=0.0)
        return block, block(x, training=False)

    block, out = run_under_policy("mixed_bfloat16", build_and_run)
    assert out.shape == x.shape and keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert block.attention.compute_dtype == "bfloat16" and block.ffn1.expand.kernel.dtype == "float32"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))))

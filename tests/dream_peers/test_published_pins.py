"""The DREAM peers' published settings (/work/shared/specs/dream_peers.md), typed in here.

The parameter counts (test_models.py) do not see a LayerNorm epsilon, a dropout rate or the Macaron
block's half-step residuals, so these are checked directly: layer settings against the spec's values,
and the block's arithmetic against the spec's equations computed here from its own sub-layers.
"""
import keras
import numpy as np
import pytest

from dream_peers import CNNBiLSTMConfig, MacaronConfig, build_cnn_bilstm, build_macaron
from dream_peers.layers import MacaronBlock


def _layers(layer):
    return list(layer._flatten_layers(include_self=False, recursive=True))


def _act(layer):
    return keras.activations.serialize(layer.activation)


@pytest.fixture(scope="module")
def macaron():
    return build_macaron(MacaronConfig())


def test_macaron_block_settings(macaron):
    """FFN = LayerNorm(1e-6) -> Dense(2048, no bias) -> a*swish(b) -> Dropout -> Dense(512, no bias) -> Dropout;
    Conv = LayerNorm(1e-6) -> SeparableConv1D(512, k15, same, relu) -> Dropout; MHA(heads 8, key_dim 512);
    dropout 0.1 (the code's value)."""
    blocks = [macaron.get_layer(f"block{i}") for i in range(1, 5)]
    for block in blocks:
        for ffn in (block.ffn1, block.ffn2):
            inner = _layers(ffn)
            assert [n.epsilon for n in inner if isinstance(n, keras.layers.LayerNormalization)] == [1e-6], ffn.name
            dense = [(d.units, d.use_bias) for d in inner if isinstance(d, keras.layers.Dense)]
            assert dense == [(2048, False), (512, False)], ffn.name
            assert [d.rate for d in inner if isinstance(d, keras.layers.Dropout)] == [0.1, 0.1], ffn.name
        inner = _layers(block.conv)
        assert [n.epsilon for n in inner if isinstance(n, keras.layers.LayerNormalization)] == [1e-6]
        (conv,) = [c for c in inner if isinstance(c, keras.layers.SeparableConv1D)]
        assert (conv.filters, conv.kernel_size, conv.padding, _act(conv)) == (512, (15,), "same", "relu")
        assert [d.rate for d in inner if isinstance(d, keras.layers.Dropout)] == [0.1]
        assert (block.attention.num_heads, block.attention.key_dim) == (8, 512)
    assert macaron.get_layer("expression_dropout").rate == 0.1


def test_macaron_embedding_tokens_and_heads(macaron):
    (kmer,) = [c for c in _layers(macaron.get_layer("embedding")) if isinstance(c, keras.layers.Conv1D)]
    assert (kmer.filters, kmer.kernel_size, kmer.padding) == (512, (10,), "same")
    assert tuple(macaron.get_layer("pseudo_tokens").output.shape) == (None, 32 + 200, 512)
    assert macaron.get_layer("expression_per_token").units == 1
    assert macaron.get_layer("nucleotides").units == 6


def test_macaron_block_follows_the_published_equations():
    """x += 0.5 FFN1(x); x += Conv(x); x = LN(x); x += MHA(x, x); x += 0.5 FFN2(x) -- by hand, inference mode."""
    keras.utils.set_random_seed(0)
    block = MacaronBlock(num_heads=2, key_dim=8, ffn_dim=32, conv_kernel=5)
    x = np.random.default_rng(0).normal(size=(2, 12, 16)).astype("float32")
    got = keras.ops.convert_to_numpy(block(x, training=False))
    h = x + 0.5 * block.ffn1(x, training=False)
    h = h + block.conv(h, training=False)
    h = block.norm(h)
    h = h + block.attention(h, h, training=False)
    want = keras.ops.convert_to_numpy(h + 0.5 * block.ffn2(h, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the half steps matter here: full FFN steps would be far off
    full = keras.ops.convert_to_numpy(h + block.ffn2(h, training=False))
    assert np.abs(full - want).max() > 100 * 1e-5


def test_cnn_bilstm_settings():
    """Conv(256,k30)/Conv(256,k12)/Conv(64,k4), each BN -> ReLU; BiLSTM(8) -> Dropout(0.1) -> Flatten;
    Dense(64, relu) -> Dropout(0.2), twice; Dense(1). BatchNorm as the team's Keras code: its defaults."""
    model = build_cnn_bilstm(CNNBiLSTMConfig())
    convs = [model.get_layer(f"conv{i}") for i in range(1, 4)]
    assert [(c.filters, c.kernel_size, c.padding) for c in convs] == [(256, (30,), "same"), (256, (12,), "same"),
                                                                      (64, (4,), "same")]
    bns = [model.get_layer(f"bn{i}") for i in range(1, 4)]
    assert {(bn.momentum, bn.epsilon) for bn in bns} == {(0.99, 1e-3)}
    lstm = model.get_layer("bilstm").forward_layer
    assert lstm.units == 8 and lstm.return_sequences
    assert model.get_layer("bilstm_dropout").rate == 0.1
    assert [(model.get_layer(f"dense{i}").units, _act(model.get_layer(f"dense{i}"))) for i in (1, 2)] == [
        (64, "relu"), (64, "relu")]
    assert [model.get_layer(f"dense{i}_dropout").rate for i in (1, 2)] == [0.2, 0.2]
    assert model.get_layer("expression").units == 1

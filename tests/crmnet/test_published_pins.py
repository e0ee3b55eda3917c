"""CRMnet's published-code facts (/work/shared/specs/crmnet.md), each written out in this file.

Released weights only predict correctly when every input and every layer setting is the published
one, and a wrong one does not change the parameter count. So nothing here is read from our own config
object or lookup tables: the one-hot rows, the position multipliers and the layer settings are typed in
from the spec, and the model must agree with them.
"""
import keras
import numpy as np
import pytest

from crmnet import CRMnetConfig, build_crmnet
from crmnet.layers import TransformerBlock

# README: records store one uint8 per base, A0 C1 G2 T3 N4.
STORAGE = {"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}
# crmnet.md: input (112, 5) in the published code's channel order [other/N, A, C, G, T].
SPEC_ONE_HOT = {
    "N": [1, 0, 0, 0, 0],
    "A": [0, 1, 0, 0, 0],
    "C": [0, 0, 1, 0, 0],
    "G": [0, 0, 0, 1, 0],
    "T": [0, 0, 0, 0, 1],
}
# The same with C and G swapped: what a plausible mistake would feed the released weights.
SWAPPED_ONE_HOT = {**SPEC_ONE_HOT, "C": [0, 0, 0, 1, 0], "G": [0, 0, 1, 0, 0]}


def _codes(seqs):
    return np.array([[STORAGE[b] for b in s] for s in seqs], dtype=np.uint8)


def _one_hot(seqs, table):
    return np.array([[table[b] for b in s] for s in seqs], dtype=np.float32)


def _random_seqs(n, length, seed):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGTN"), size=length, p=[0.24, 0.24, 0.24, 0.24, 0.04])) for _ in range(n)]


def _all_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


@pytest.fixture(scope="module")
def full_model():
    """The published configuration, built (not run: a CPU forward of 34M parameters is slow)."""
    return build_crmnet(CRMnetConfig())


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    model = build_crmnet(CRMnetConfig.tiny())
    # spread-out weights and BatchNorm statistics, so that the input encoding visibly moves the output
    rng = np.random.default_rng(1)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif len(w.shape) > 1:
            fan_in = int(np.prod(w.shape[:-1]))
            w.assign((rng.normal(size=w.shape) / np.sqrt(fan_in)).astype("float32"))
    return model


def test_one_hot_layer_is_the_published_n_a_c_g_t_order(full_model):
    seqs = ["ACGTN" + "A" * 107, "NNNNT" + "GCAT" * 26 + "CCG"]
    probe = keras.Model(full_model.input, full_model.get_layer("one_hot").output)
    got = keras.ops.convert_to_numpy(probe(_codes(seqs)))
    assert got.shape == (2, 112, 5)
    np.testing.assert_array_equal(got, _one_hot(seqs, SPEC_ONE_HOT))


def test_model_on_codes_equals_the_model_fed_the_spec_one_hot(tiny_model):
    """End to end: everything after the encoding, fed the spec's one-hot, predicts what the model predicts
    from the stored codes; fed the C/G-swapped one-hot it does not (so this test can tell them apart)."""
    seqs = _random_seqs(16, 32, seed=2)
    after_one_hot = keras.Model(tiny_model.get_layer("one_hot").output, tiny_model.output)
    ours = keras.ops.convert_to_numpy(tiny_model(_codes(seqs), training=False))
    spec = keras.ops.convert_to_numpy(after_one_hot(_one_hot(seqs, SPEC_ONE_HOT), training=False))
    swapped = keras.ops.convert_to_numpy(after_one_hot(_one_hot(seqs, SWAPPED_ONE_HOT), training=False))
    scale = np.abs(ours).max()
    assert scale > 0
    assert np.abs(ours - spec).max() <= 1e-4 * scale
    assert np.abs(ours - swapped).max() >= 0.05 * scale


def test_position_step_multiplies_by_the_published_sine(full_model):
    # crmnet.md: features times sin(range(0, 111, 111/14)) on the length-14 encoder output
    sine = np.sin(np.arange(14) * 111.0 / 14.0)
    layer = full_model.get_layer("position")
    x = np.random.default_rng(0).normal(size=(2, 14, 256)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, x * sine[None, :, None], rtol=1e-5, atol=1e-6)
    assert got[:, 0].max() == 0.0  # position 0 is zeroed


def test_batch_norm_is_keras_default(full_model):
    bns = [layer for layer in _all_layers(full_model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 14
    assert {(bn.momentum, bn.epsilon) for bn in bns} == {(0.99, 1e-3)}


def test_transformer_blocks_as_published(full_model):
    blocks = [layer for layer in _all_layers(full_model) if isinstance(layer, TransformerBlock)]
    assert len(blocks) == 8
    for block in blocks:
        inner = _all_layers(block)
        norms = [x for x in inner if isinstance(x, keras.layers.LayerNormalization)]
        assert [n.epsilon for n in norms] == [1e-6, 1e-6], block.name
        (mha,) = [x for x in inner if isinstance(x, keras.layers.MultiHeadAttention)]
        assert (mha.num_heads, mha.key_dim, mha.dropout) == (12, 256, 0.0), block.name  # MHA's own dropout: 0
        inside_mha = {id(x) for x in _all_layers(mha)}
        outside = [x for x in inner if id(x) not in inside_mha]
        assert sorted(d.rate for d in outside if isinstance(d, keras.layers.Dropout)) == [0.1, 0.1], block.name
        dense = [x for x in outside if isinstance(x, keras.layers.Dense)]
        assert [(d.units, keras.activations.serialize(d.activation)) for d in dense] == [
            (128, "relu"), (256, "linear")], block.name


def test_transformer_skip_wiring_as_published(full_model):
    """x=t1(x); a=t2(x); x=t3(x)+a; b=t4(x); x=t5(x)+b; c=t6(x); x=t7(x)+c; x=t8(x)."""
    block = {i: full_model.get_layer(f"tf_block{i}") for i in range(1, 9)}

    def source(tensor):
        return tensor._keras_history[0]

    def block_input(i):
        return source(block[i].input)

    assert not isinstance(block_input(1), TransformerBlock)
    x = block[1].output  # what the next pair reads
    for first, second in [(2, 3), (4, 5), (6, 7)]:
        assert block[first].input is x and block[second].input is x  # both read the same x
        (add,) = [layer for layer in full_model.layers if isinstance(layer, keras.layers.Add)
                  and {source(t) for t in layer.input} == {block[first], block[second]}]
        x = add.output
    assert block[8].input is x
    assert source(full_model.get_layer("dec1").input[0]) is block[8]


def test_encoder_decoder_and_head_settings(full_model):
    layers = _all_layers(full_model)
    convs = [x for x in layers if type(x) is keras.layers.Conv1D]
    assert {x.kernel_size for x in convs} == {(11,)} and {x.padding for x in convs} == {"same"}
    assert {keras.activations.serialize(x.activation) for x in convs} == {"relu"}
    assert {type(x.kernel_initializer).__name__ for x in convs} == {"HeNormal"}
    assert sorted(x.strides[0] for x in convs).count(2) == 3  # E1-E3 condense, E4 does not
    ups = [x for x in layers if isinstance(x, keras.layers.Conv1DTranspose)]
    assert [(x.filters, x.kernel_size, x.strides, x.padding) for x in ups] == [(128, (11,), (2,), "same")] * 3
    assert {keras.activations.serialize(x.activation) for x in ups} == {"linear"}
    encoder_dropout = [x.rate for i in range(1, 5) for x in _all_layers(full_model.get_layer(f"enc{i}"))
                       if isinstance(x, keras.layers.Dropout)]
    assert encoder_dropout == [0.1] * 4
    head = [full_model.get_layer(f"head_conv{i}").filters for i in range(1, 4)]
    assert head == [128, 64, 32]
    dense = [full_model.get_layer(f"head_dense{i}").units for i in range(1, 5)]
    assert dense == [256, 128, 64, 32]
    assert [full_model.get_layer(f"head_act{i}").negative_slope for i in range(1, 5)] == [0.1] * 4
    assert [full_model.get_layer(f"head_drop{i}").rate for i in range(1, 5)] == [0.2, 0.2, 0.1, 0.1]
    out = full_model.get_layer("expression")
    assert out.units == 1 and keras.activations.serialize(out.activation) == "linear"


def test_squeeze_excite_halves_the_channels(full_model):
    """SE(c, ratio 2): Dense(c/2, relu) -> Dense(c, sigmoid); two per encoder and decoder block, one per head conv."""
    se = [x for x in _all_layers(full_model) if type(x).__name__ == "SqueezeExcite"]
    assert len(se) == 2 * 4 + 2 * 3 + 3
    for layer in se:
        dense = [x for x in _all_layers(layer) if isinstance(x, keras.layers.Dense)]
        channels = dense[-1].units  # the gate covers every channel of the input
        assert [(d.units, keras.activations.serialize(d.activation)) for d in dense] == [
            (channels // 2, "relu"), (channels, "sigmoid")], layer.name

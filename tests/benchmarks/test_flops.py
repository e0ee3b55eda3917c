"""benchmarks.flops against hand counts (2 FLOP per multiply-accumulate, per example)."""
import keras
import numpy as np
import pytest

from benchmarks.flops import TRAIN_STEP_FACTOR, count_flops
from legnet_tf.layers import CPBilinear, GroupedConv1D


def _count(layer_fn, shape):
    inp = keras.Input(shape)
    model = keras.Model(inp, layer_fn(inp))
    return count_flops(model, np.zeros((1, *shape), "float32")), model


def test_conv1d_same_and_strided():
    rep, _ = _count(lambda x: keras.layers.Conv1D(8, 5, padding="same")(x), (20, 3))
    assert rep.forward_per_example == 2 * 20 * 8 * 5 * 3  # positions x filters x taps x in-channels
    rep, _ = _count(lambda x: keras.layers.Conv1D(8, 5, strides=2)(x), (20, 3))
    assert rep.forward_per_example == 2 * ((20 - 5) // 2 + 1) * 8 * 5 * 3


def test_conv1d_groups_and_grouped_conv_layer():
    rep, _ = _count(lambda x: keras.layers.Conv1D(8, 3, groups=4, padding="same")(x), (10, 12))
    hand = 2 * 10 * 8 * 3 * (12 // 4)  # each output channel sees only its group's 3 input channels
    assert rep.forward_per_example == hand
    rep, _ = _count(lambda x: GroupedConv1D(8, 3, groups=4)(x), (10, 12))
    assert [c.kind for c in rep.layers] == ["GroupedConv"]
    assert rep.forward_per_example == hand


def test_dense_on_vectors_and_sequences():
    rep, _ = _count(lambda x: keras.layers.Dense(4)(x), (6,))
    assert rep.forward_per_example == 2 * 6 * 4
    rep, _ = _count(lambda x: keras.layers.Dense(4)(keras.layers.Dense(7)(x)), (5, 6))
    assert rep.forward_per_example == 2 * 5 * (6 * 7 + 7 * 4)


def test_depthwise_separable_transpose():
    rep, _ = _count(lambda x: keras.layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same")(x), (10, 4))
    assert rep.forward_per_example == 2 * 10 * 3 * 4 * 2
    rep, _ = _count(lambda x: keras.layers.SeparableConv1D(6, 3, padding="same")(x), (10, 4))
    assert rep.forward_per_example == 2 * 10 * (3 * 4 + 4 * 6)
    rep, _ = _count(lambda x: keras.layers.Conv1DTranspose(6, 3, strides=2, padding="same")(x), (10, 4))
    assert rep.forward_per_example == 2 * 10 * 3 * 6 * 4  # every input position through the whole kernel


def test_multi_head_attention():
    t, e, heads, dk = 7, 16, 2, 4
    rep, _ = _count(lambda x: keras.layers.MultiHeadAttention(heads, dk)(x, x), (t, e))
    projections = 3 * 2 * t * e * heads * dk + 2 * t * heads * dk * e  # Q, K, V and the output EinsumDense
    products = 2 * heads * t * t * (dk + dk)  # QK^T and AV
    assert rep.forward_per_example == projections + products
    assert rep.by_kind() == {"EinsumDense": projections, "Attention (QK, AV)": products}


def test_lstm_and_bidirectional():
    t, c, u = 6, 3, 5
    per_direction = 2 * t * (c * 4 * u + u * 4 * u)  # input and recurrent kernels, 4 gates, every step
    rep, _ = _count(lambda x: keras.layers.LSTM(u)(x), (t, c))
    assert rep.forward_per_example == per_direction
    rep, _ = _count(lambda x: keras.layers.Bidirectional(keras.layers.LSTM(u, return_sequences=True))(x), (t, c))
    assert rep.forward_per_example == 2 * per_direction
    assert rep.uncounted == []  # the LSTM cells' work is in their layers' count


def test_cp_bilinear_and_uncounted_custom_layers():
    rep, _ = _count(lambda x: CPBilinear(3, rank=4)(x), (5,))
    assert rep.forward_per_example == 2 * (5 * 4 + 5 * 4 + 4 * 3)  # x.A, x.B, then (R,) through C

    class OwnMatmul(keras.layers.Layer):  # a matmul the counter cannot know about
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2))

        def call(self, x):
            return keras.ops.matmul(x, self.w)

    rep, _ = _count(lambda x: OwnMatmul()(keras.layers.LayerNormalization()(x)), (5,))
    assert rep.forward_per_example == 0
    assert rep.uncounted == ["OwnMatmul"]  # reported, so the under-count is visible; LayerNorm is not matmul work


def test_train_step_convention_and_layers_restored():
    rep, model = _count(lambda x: keras.layers.Dense(3)(keras.layers.Conv1D(4, 3)(x)), (9, 2))
    assert rep.train_per_example == TRAIN_STEP_FACTOR * rep.forward_per_example
    assert rep.train_per_step(32) == 32 * TRAIN_STEP_FACTOR * rep.forward_per_example
    # leaf outputs per example: conv (7, 4) + dense (7, 3)
    assert rep.activation_elements == 7 * 4 + 7 * 3
    assert all("call" not in vars(layer) for layer in model.layers)  # hooks removed
    assert model(np.ones((2, 9, 2), "float32")).shape == (2, 7, 3)


@pytest.mark.parametrize("name, expected_fwd_gflop", [("crmnet", 1.30), ("legnet", 0.47)])
def test_paper_models_match_the_specs_figures(name, expected_fwd_gflop):
    """/work/shared/specs: CRMnet about 1.30 GFLOP forward per sequence, LegNet about 0.47."""
    from benchmarks.flops import model_flops
    from benchmarks.step_engines import synthetic_records
    from data_prep.layouts import get_layout
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec(name)
    model = spec.build(spec.default_config())
    batch = {k: v[0] for k, v in synthetic_records(get_layout(spec.layout), 1, 1, 0).items()}
    rep = model_flops(spec, model, batch)
    assert rep.forward_per_example / 1e9 == pytest.approx(expected_fwd_gflop, rel=0.02)

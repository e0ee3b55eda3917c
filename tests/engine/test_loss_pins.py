"""Pins on each registered model's training loss AS THE REGISTRY BUILDS IT (defaults included).

The loss tests elsewhere pass every parameter explicitly, so a changed default (Huber's delta, LegNet's bins or
sigma, the CNN-BiLSTM's exact length) would pass them; these go through `get_model_spec(name)` and hand-computed
numbers, so changing a default breaks them.
"""
import math

import numpy as np

from seq2exp.engine.registry import get_model_spec


def _np(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def test_crmnet_loss_is_huber_with_delta_one():
    spec = get_model_spec("crmnet")
    assert spec.compute_loss is None  # the training step uses spec.loss(spec.targets(batch), outputs)
    batch = {"label": np.array([0.0, 0.0, 0.0, 0.0], np.float32)}
    pred = np.array([[3.0], [-3.0], [0.5], [1.0]], np.float32)
    got = _np(spec.loss(spec.targets(batch), pred))
    # |r| = 3 > delta 1: 0.5 * 1 + 1 * (3 - 1) = 2.5; |r| = 0.5: 0.5 * 0.25; |r| = 1: the joint, 0.5
    np.testing.assert_allclose(got, [2.5, 2.5, 0.125, 0.5], rtol=1e-6)


def test_legnet_targets_and_loss_use_18_bins_and_sigma_half():
    spec = get_model_spec("legnet")
    assert spec.compute_loss is None
    targets = _np(spec.targets({"label": np.array([2.0, 0.0], np.float32)}))
    assert targets.shape == (2, 18)
    # rho ~ Normal(2 + 0.5, 0.5): class 2 is [2, 3) = Phi(1) - Phi(-1)
    np.testing.assert_allclose(targets[0, 2], math.erf(1 / math.sqrt(2)), rtol=1e-5)
    # class 0 absorbs the lower tail: P(rho < 1) for rho ~ Normal(0.5, 0.5) = Phi(1)
    np.testing.assert_allclose(targets[1, 0], 0.5 * (1 + math.erf(1 / math.sqrt(2))), rtol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    # uniform logits: KL(t || uniform) = log(18) - H(t)
    got = _np(spec.loss(targets, np.zeros((2, 18), np.float32)))
    entropy = -np.sum(np.where(targets > 0, targets * np.log(np.where(targets > 0, targets, 1)), 0), axis=1)
    np.testing.assert_allclose(got, math.log(18) - entropy, rtol=1e-5)


class _Scaled:
    """Just the `label_scale` layer the DREAM peers' losses read (mean 1, std 2)."""

    def __init__(self):
        from dream_peers.layers.label_scale import LabelScale

        self.scale = LabelScale(name="label_scale")
        self.scale.build((None,))
        self.scale.set_stats(1.0, 2.0)

    def get_layer(self, name):
        assert name == "label_scale"
        return self.scale


def test_cnn_bilstm_loss_is_standardised_mse_on_exactly_110_nt():
    from data_prep import alphabet

    spec = get_model_spec("cnn_bilstm")
    seq = np.full((3, 112), alphabet.N, np.uint8)
    seq[0, :110] = 0  # 110 nt: weighs 1
    seq[1, :109] = 0  # 109 nt: weighs 0 (the reference drops it)
    seq[2, :111] = 0  # 111 nt: weighs 0
    batch = {"seq": seq, "label": np.array([1.0, 1.0, 1.0], np.float32)}
    got = _np(spec.compute_loss(_Scaled(), batch, None, np.array([[5.0], [5.0], [5.0]], np.float32)))
    # ((1 - 1) / 2 - (5 - 1) / 2) ** 2 = 4
    np.testing.assert_allclose(got, [4.0, 0.0, 0.0], rtol=1e-6)

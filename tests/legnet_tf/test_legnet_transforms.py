"""LegNet input transform by hand, the training orientation hash, and the registry entry."""
import keras
import numpy as np
import pytest
from keras import ops

from legnet_tf import LegNetConfig
from legnet_tf.losses import kl_soft_label, soft_argmax_score, soft_labels
from legnet_tf.transforms import (
    CHANNELS,
    make_inputs,
    orientation_bits,
    prediction_inputs,
    reverse_complement_codes,
    training_inputs,
)
from seq2exp.engine.registry import get_model_spec
from tests.helpers import random_codes


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


A, G, C, T = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]
N = [0.25] * 4
SEQ = np.array([[0, 1, 2, 3, 4, 0]], dtype=np.uint8)  # A C G T N A


def test_channel_order_names():
    assert CHANNELS == ("A", "G", "C", "T", "is_reverse", "is_singleton")


def test_forward_one_hot_by_hand():
    out = _np(make_inputs(SEQ, np.array([1], np.uint8), reverse=False))
    assert out.shape == (1, 6, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :, :4], [A, C, G, T, N, A])
    np.testing.assert_array_equal(out[0, :, 4], 0)  # is_reverse
    np.testing.assert_array_equal(out[0, :, 5], 1)  # is_singleton


def test_reverse_complement_by_hand():
    # reverse complement of ACGTNA is T N A C G T
    np.testing.assert_array_equal(_np(reverse_complement_codes(SEQ)), [[3, 4, 0, 1, 2, 3]])
    out = _np(make_inputs(SEQ, np.array([0], np.uint8), reverse=True))
    np.testing.assert_array_equal(out[0, :, :4], [T, N, A, C, G, T])
    np.testing.assert_array_equal(out[0, :, 4], 1)
    np.testing.assert_array_equal(out[0, :, 5], 0)


def test_per_example_reverse_and_out_of_range_codes():
    seqs = np.array([[0, 1, 2, 9], [0, 1, 2, 3]], dtype=np.uint8)  # 9 counts as N
    out = _np(make_inputs(seqs, np.array([0, 1]), reverse=np.array([True, False])))
    np.testing.assert_array_equal(out[0, :, :4], [N, C, G, T])  # rc of A C G N = N C G T
    np.testing.assert_array_equal(out[1, :, :4], [A, C, G, T])
    np.testing.assert_array_equal(out[:, 0, 4], [1, 0])
    np.testing.assert_array_equal(out[:, 0, 5], [0, 1])


def test_orientation_bits_are_balanced_and_change_with_the_batch():
    codes = random_codes(4096, 150, seed=0)
    bits = _np(orientation_bits(codes))
    assert bits.dtype == bool and abs(bits.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(bits, _np(orientation_bits(codes)))  # deterministic
    # the same sequences in other batches (as after a reshuffle) get fresh orientations
    flips = []
    for seed in range(8):
        batch = np.concatenate([codes[:16], random_codes(48, 150, seed=100 + seed)])
        flips.append(_np(orientation_bits(batch))[:16])
    per_seq = np.mean(flips, axis=0)
    assert 0.2 < per_seq.mean() < 0.8 and ((per_seq > 0) & (per_seq < 1)).mean() > 0.7


def test_training_inputs_use_bits_and_flags():
    batch = {"seq": random_codes(32, 150, seed=1), "is_singleton": np.arange(32, dtype=np.uint8) % 2,
             "label": np.linspace(0, 17, 32).astype("float32")}
    out = _np(training_inputs(batch))
    bits = _np(orientation_bits(batch["seq"]))
    assert 0 < bits.sum() < 32
    np.testing.assert_array_equal(out[:, 0, 4], bits.astype("float32"))
    np.testing.assert_array_equal(out[:, 0, 5], batch["is_singleton"])
    expected = np.where(bits[:, None, None], _np(make_inputs(batch["seq"], batch["is_singleton"], True)),
                        _np(make_inputs(batch["seq"], batch["is_singleton"], False)))
    np.testing.assert_array_equal(out, expected)


def test_registry_entry():
    spec = get_model_spec("legnet")
    assert spec.layout == "legnet" and spec.loss is kl_soft_label
    assert spec.optimizer == {"name": "adamw", "weight_decay": 0.01}
    assert spec.schedule["name"] == "one_cycle" and spec.schedule["max_lr"] == 0.005
    assert LegNetConfig.from_dict(spec.default_config()) == LegNetConfig()
    assert set(spec.presets) >= {"tiny", "small"}
    with pytest.raises(ValueError, match="6 channels"):
        spec.build({**spec.presets["tiny"](), "in_channels": 5})

    keras.utils.set_random_seed(0)
    model = spec.build(spec.presets["tiny"]())
    batch = {"seq": random_codes(4, 150, seed=2), "is_singleton": np.array([1, 0, 1, 0], np.uint8),
             "label": np.array([0.0, 3.5, 11.0, 17.0], np.float32)}
    train_in = _np(spec.inputs(batch, True))
    np.testing.assert_array_equal(train_in[:, 0, 5], batch["is_singleton"])
    eval_in = _np(spec.inputs(batch, False))
    np.testing.assert_array_equal(eval_in[..., 4:], 0)  # forward, is_singleton = 0
    np.testing.assert_allclose(_np(spec.targets(batch)), _np(soft_labels(batch["label"])))

    pred = _np(spec.predict(model, batch, spec.inputs))
    fwd = _np(soft_argmax_score(model(prediction_inputs(batch), training=False)))
    rev = _np(soft_argmax_score(model(prediction_inputs(batch, reverse=True), training=False)))
    assert pred.shape == (4,) and pred.dtype == np.float32
    np.testing.assert_allclose(pred, (fwd + rev) / 2, rtol=1e-5, atol=1e-5)


def test_registry_optimizer_settings_are_accepted():
    from seq2exp.engine import optim  # our own module: never skipped

    spec = get_model_spec("legnet")
    opt = optim.build_optimizer(spec.optimizer, spec.schedule, steps_per_epoch=10, epochs=2)
    assert isinstance(opt, keras.optimizers.AdamW)
    assert optim.current_lr(opt) == pytest.approx(0.005 / 25.0, rel=1e-4)

"""The DREAM peers' training recipes: losses, the inverse-square-root schedule, Adam and clipping."""
import keras
import numpy as np
import pytest

from dream_peers.losses import cnn_bilstm_loss, macaron_loss
from dream_peers.transforms import MASK_TOKEN, macaron_inputs, macaron_tokens, one_hot_110
from seq2exp.engine.optim import build_optimizer, build_schedule
from seq2exp.engine.registry import get_model_spec
from tests.helpers import random_codes


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _tiny(name, mean=5.0, std=2.0):
    spec = get_model_spec(name)
    keras.utils.set_random_seed(0)
    model = spec.build(spec.presets["tiny"]())
    spec.initialize(model, {"mean": mean, "std": std})
    return spec, model


def test_cnn_bilstm_loss_is_standardised_mse_on_110_nt_only():
    _, model = _tiny("cnn_bilstm")
    seq = random_codes(4, 112, with_n=False)
    seq[1, 110:] = 4  # exactly 110 nt
    seq[2, 109:] = 4  # 109 nt
    seq[0, 110:] = 4
    batch = {"seq": seq, "label": np.array([5.0, 9.0, 1.0, 3.0], "float32")}
    out = model(one_hot_110(seq), training=False)
    loss = _np(cnn_bilstm_loss(model, batch, None, out))
    pred = _np(out)[:, 0]
    expected = ((batch["label"] - pred) / 2.0) ** 2 * np.array([1, 1, 0, 0])  # 112 nt and 109 nt dropped
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_macaron_loss_adds_masked_cross_entropy_over_count_plus_one():
    _, model = _tiny("macaron", mean=4.0, std=0.5)
    batch = {"seq": random_codes(8, 112, seed=3), "label": np.linspace(0, 10, 8).astype("float32")}
    inputs = _np(macaron_inputs(batch, training=True))
    out = model(inputs, training=False)
    per_example = _np(macaron_loss(model, batch, inputs, out))
    pred = _np(out["expression"])[:, 0]
    logits = _np(out["nucleotides"]).astype("float64")
    true = _np(macaron_tokens(batch["seq"]))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, true[..., None], axis=-1)[..., 0]
    masked = inputs == MASK_TOKEN
    assert masked.sum() > 0
    mse = ((batch["label"] - pred) / 0.5) ** 2
    # the engine's reduction: sum over the batch / batch size
    total = per_example.sum() / 8
    np.testing.assert_allclose(total, mse.mean() + (ce * masked).sum() / (masked.sum() + 1), rtol=1e-4)
    unmasked = _np(macaron_loss(model, batch, _np(macaron_inputs(batch, False)), out))
    np.testing.assert_allclose(unmasked, mse, rtol=1e-4)  # nothing masked: the MSE alone


@pytest.mark.parametrize("step", [1, 10, 100, 12_499, 12_500, 12_501, 50_000])
def test_macaron_schedule_formula(step):
    spec = get_model_spec("macaron")
    schedule = build_schedule(spec.schedule, steps_per_epoch=100, epochs=10)
    expected = 512 ** -0.5 * min(step ** -0.5, step * 12_500 ** -1.5)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    assert float(schedule(12_500)) == pytest.approx(max(float(schedule(s)) for s in (12_000, 12_500, 13_000)))


def test_recipes_optimizers_and_clipping():
    cnn = build_optimizer(get_model_spec("cnn_bilstm").optimizer, get_model_spec("cnn_bilstm").schedule, 10, 1)
    assert isinstance(cnn, keras.optimizers.Adam) and float(cnn.learning_rate) == pytest.approx(0.003)
    mac = build_optimizer(get_model_spec("macaron").optimizer, get_model_spec("macaron").schedule, 10, 1)
    assert isinstance(mac, keras.optimizers.Adam)
    assert (mac.beta_1, mac.beta_2, mac.epsilon) == (0.9, 0.98, 1e-9)
    assert mac.global_clipnorm == 1.0 and mac.clip_value_first == 0.5
    big = [np.full((4, 4), 3.0, "float32"), np.array([0.1, -7.0], "float32")]
    clipped = [_np(g) for g in mac._clip_gradients([keras.ops.convert_to_tensor(g) for g in big])]
    # value first: 16 x 0.5, 0.1, -0.5 -> norm sqrt(4.26) > 1 -> scaled to norm 1
    value = [np.clip(g, -0.5, 0.5) for g in big]
    norm = np.sqrt(sum((v ** 2).sum() for v in value))
    for c, v in zip(clipped, value):
        np.testing.assert_allclose(c, v / norm, rtol=1e-5)
    small = [np.array([0.2, -0.3], "float32")]
    np.testing.assert_allclose(_np(mac._clip_gradients([keras.ops.convert_to_tensor(small[0])])[0]), small[0])
    with pytest.raises(ValueError, match="clipvalue must be > 0"):
        build_optimizer({"name": "adam", "clipvalue": -1.0, "clipnorm": 1.0}, None, 1, 1)

"""Schedules vs hand-written numpy formulas, and their serialisation round trips."""
import math

import keras
import numpy as np
import pytest

from seq2exp.engine.schedules import (
    InverseSqrtWarmup,
    OneCycleCosine,
    warmup_cosine,
)


def _values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def _np_warmup_cosine(step, lo, peak, final, warm, decay):
    if step < warm:
        return lo + (peak - lo) * step / warm
    t = min((step - warm) / decay, 1.0)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * t))


def _np_one_cycle(step, max_lr, total, pct=0.3, div=25.0, final_div=1e4):
    init = max_lr / div
    low = init / final_div
    up_end = pct * total - 1
    last = total - 1

    def cos(a, b, t):
        return b + (a - b) / 2 * (math.cos(math.pi * t) + 1)

    if step <= up_end:
        return cos(init, max_lr, step / up_end)
    return cos(max_lr, low, (step - up_end) / (last - up_end))


def _warmup_cosine_steps(base, peak, final, warm, decay):
    """`warmup_cosine` with one step per epoch, so its epochs are steps."""
    return warmup_cosine(1, warm + decay, scale_with_replicas=False, warmup_epochs=warm, base_lr=base, peak_lr=peak,
                         final_lr=final)


def test_warmup_cosine_is_keras_cosine_decay_and_matches_the_formula():
    """The hand-written WarmupCosine it replaced computed exactly `_np_warmup_cosine`."""
    s = _warmup_cosine_steps(1e-4, 1e-3, 2e-5, warm=100, decay=400)
    assert type(s) is keras.optimizers.schedules.CosineDecay
    steps = [0, 1, 50, 99, 100, 101, 300, 499, 500, 501, 10_000]
    want = [_np_warmup_cosine(t, 1e-4, 1e-3, 2e-5, 100, 400) for t in steps]
    np.testing.assert_allclose(_values(s, steps), want, rtol=1e-5)
    np.testing.assert_allclose(_values(s, [0, 100, 500, 10**6]), [1e-4, 1e-3, 2e-5, 2e-5], rtol=1e-5)


def test_warmup_cosine_monotone_parts():
    s = _warmup_cosine_steps(1e-4, 1e-3, 1e-4, warm=50, decay=200)
    v = _values(s, range(0, 300))
    assert np.all(np.diff(v[:51]) > 0)
    assert np.all(np.diff(v[50:251]) <= 1e-12)
    np.testing.assert_allclose(v[250:], 1e-4, rtol=1e-5)


def test_warmup_cosine_without_warmup_starts_at_the_peak():
    s = _warmup_cosine_steps(1e-4, 1e-3, 1e-5, warm=0, decay=10)
    np.testing.assert_allclose(_values(s, [0, 10, 11]), [1e-3, 1e-5, 1e-5], rtol=1e-5)


def test_warmup_cosine_accepts_int_tensor_step():
    s = _warmup_cosine_steps(1e-4, 1e-3, 1e-4, 10, 10)
    step = keras.ops.convert_to_tensor(np.int64(5))
    assert math.isclose(float(s(step)), 5.5e-4, rel_tol=1e-5)


def test_crmnet_schedule_paper_values():
    s = warmup_cosine(steps_per_epoch=20, total_epochs=50, replicas=8)
    assert s.warmup_steps == 200 and s.decay_steps == 800
    np.testing.assert_allclose(_values(s, [0, 200, 1000, 5000]), [8e-4, 8e-3, 8e-4, 8e-4], rtol=1e-5)
    unscaled = warmup_cosine(20, 50, replicas=8, scale_with_replicas=False)
    assert unscaled.warmup_target == pytest.approx(1e-3)
    # a run no longer than its warm-up ends while still warming up
    short = warmup_cosine(20, 5, warmup_epochs=10)
    np.testing.assert_allclose(_values(short, [0, 99]), [1e-4, 1e-4 + 9e-4 * 99 / 200], rtol=1e-5)


def test_one_cycle_matches_torch_semantics():
    max_lr, total = 0.005, 1000
    s = OneCycleCosine(max_lr, total, pct_start=0.3, div_factor=25.0)
    up_end = 0.3 * total - 1
    steps = [0, 1, 150, int(up_end), int(up_end) + 1, 650, total - 2, total - 1]
    want = [_np_one_cycle(t, max_lr, total) for t in steps]
    # float32 maths: absolute error ~1e-11 where the rate is ~1e-8.
    np.testing.assert_allclose(_values(s, steps), want, rtol=1e-4, atol=1e-10)
    # Landmarks: starts at max/div, peaks at max, ends at max/div/final_div.
    assert _values(s, [0])[0] == pytest.approx(max_lr / 25, rel=1e-5)
    assert _values(s, [int(up_end)])[0] == pytest.approx(max_lr, rel=1e-5)
    assert _values(s, [total - 1])[0] == pytest.approx(max_lr / 25 / 1e4, rel=1e-3)
    # Past the end it stays at the minimum instead of re-warming.
    assert _values(s, [total + 50])[0] == pytest.approx(max_lr / 25 / 1e4, rel=1e-3)


def test_one_cycle_fractional_phase_boundary_and_monotone():
    total = 333  # pct_start * total - 1 = 98.9, not an integer
    s = OneCycleCosine(0.01, total)
    steps = np.arange(total)
    v = _values(s, steps)
    want = [_np_one_cycle(t, 0.01, total) for t in steps]
    np.testing.assert_allclose(v, want, rtol=1e-4, atol=1e-9)
    peak = int(np.argmax(v))
    assert np.all(np.diff(v[: peak + 1]) > 0)
    assert np.all(np.diff(v[peak:]) < 0)


def test_one_cycle_rejects_bad_args():
    with pytest.raises(ValueError):
        OneCycleCosine(0.01, 1)
    with pytest.raises(ValueError):
        OneCycleCosine(0.01, 100, pct_start=1.5)


def test_inverse_sqrt_warmup():
    s = InverseSqrtWarmup(d_model=512, warmup_steps=100)
    steps = [0, 1, 50, 100, 101, 400, 10_000]

    def ref(t):
        t = max(t, 1)
        return 512 ** -0.5 * min(t ** -0.5, t * 100 ** -1.5)

    np.testing.assert_allclose(_values(s, steps), [ref(t) for t in steps], rtol=1e-5)
    v = _values(s, range(1, 300))
    assert np.all(np.diff(v[:99]) > 0) and np.all(np.diff(v[100:]) < 0)


SCHEDULES = [
    warmup_cosine(1, 100, warmup_epochs=30),
    OneCycleCosine(0.005, 500),
    InverseSqrtWarmup(256, 40),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_config_round_trips(schedule):
    steps = [0, 10, 35, 60, 499]
    clone = type(schedule).from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()
    np.testing.assert_allclose(_values(clone, steps), _values(schedule, steps))

    blob = keras.saving.serialize_keras_object(schedule)
    assert ("seq2exp" in str(blob)) == (type(schedule).__module__ == "seq2exp.engine.schedules")
    restored = keras.saving.deserialize_keras_object(blob, safe_mode=True)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_model_with_scheduled_adam_reloads_safely(schedule, tmp_path):
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule), loss="mse")
    x = np.ones((8, 3), np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0)  # builds the optimizer: 2 steps
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    lr = loaded.optimizer._learning_rate
    assert type(lr) is type(schedule)
    assert lr.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 2
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule(2)), rel=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_symbolic_int64_step_in_tf_function(schedule):
    import tensorflow as tf

    step = tf.Variable(0, dtype=tf.int64)
    fn = tf.function(lambda: schedule(step))
    for t in (0, 7, 45):
        step.assign(t)
        assert float(fn()) == pytest.approx(float(schedule(t)), rel=1e-6)

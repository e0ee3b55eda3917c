"""Per-example losses vs numpy/scipy references."""
import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats
from scipy.special import log_softmax, softmax

from legnet_tf.losses import kl_soft_label, soft_argmax_score, soft_labels
from seq2exp.engine.losses import get_loss, huber, mse


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _np_huber(y, p, delta):
    err = np.abs(y - p)
    return np.where(err <= delta, 0.5 * err ** 2, delta * (err - 0.5 * delta))


@pytest.mark.parametrize("delta", [1.0, 0.3])
def test_huber_matches_piecewise(delta):
    rng = np.random.default_rng(0)
    y = rng.normal(scale=2, size=64).astype(np.float32)
    p = rng.normal(scale=2, size=64).astype(np.float32)
    got = _np(huber(y, p, delta=delta))
    assert got.shape == (64,)
    np.testing.assert_allclose(got, _np_huber(y, p, delta), rtol=1e-5, atol=1e-7)


def test_column_targets_do_not_broadcast_to_matrix():
    y = np.arange(5, dtype=np.float32)
    p = y[:, None] + 2.0
    assert _np(huber(y, p)).shape == (5,)
    np.testing.assert_allclose(_np(mse(y[:, None], p)), np.full(5, 4.0))
    with pytest.raises(ValueError):
        mse(np.zeros((5, 3)), np.zeros(5))


def test_multi_output_mean_over_outputs_and_fp16():
    y = np.zeros((4, 3), np.float32)
    p = np.tile(np.array([1.0, 2.0, 3.0], np.float32), (4, 1))
    np.testing.assert_allclose(_np(mse(y, p)), np.full(4, 14 / 3), rtol=1e-6)
    out = mse(y, p.astype(np.float16))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize("e", [0.0, 0.25, 3.0, 7.6, 16.7, 17.0])
def test_soft_labels_match_scipy(e):
    got = _np(soft_labels(np.array([e], np.float32)))[0]
    rho = stats.norm(loc=e + 0.5, scale=0.5)
    want = np.empty(18)
    want[0] = rho.cdf(1)
    for i in range(1, 17):
        want[i] = rho.cdf(i + 1) - rho.cdf(i)
    want[17] = rho.sf(17)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert got.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.all(got >= 0)


def test_soft_labels_batch_shape_and_peak():
    e = np.array([[0.0], [4.2], [9.0], [17.0]], np.float32)  # (b, 1) like a dataset label
    probs = _np(soft_labels(e))
    assert probs.shape == (4, 18)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=1), [0, 4, 9, 17])
    assert _np(soft_labels(np.array([2.0]), n_bins=5)).shape == (1, 5)


def test_kl_zero_at_target_positive_elsewhere_and_matches_numpy():
    target = _np(soft_labels(np.array([0.0, 5.3, 12.0, 17.0], np.float32))).astype(np.float64)
    target /= target.sum(axis=1, keepdims=True)  # float32 rows sum to 1 only within ~3e-8
    # Exact zeros appear in far tails: log(target) = -inf still means softmax = target.
    logits_exact = np.log(np.maximum(target, 1e-300))
    np.testing.assert_allclose(_np(kl_soft_label(target, logits_exact)), 0.0, atol=1e-9)

    rng = np.random.default_rng(3)
    logits = rng.normal(size=target.shape) * 3
    got = _np(kl_soft_label(target, logits))
    t = target
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * (np.log(t) - log_softmax(logits, axis=-1)), 0.0)
    np.testing.assert_allclose(got, terms.sum(-1), rtol=1e-6)
    assert np.all(got > 0)


def test_kl_float32_gradient_finite_with_zero_targets():
    import tensorflow as tf

    target = tf.constant([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    logits = tf.Variable([[50.0, -50.0, 0.0], [0.0, 1.0, 2.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(kl_soft_label(target, logits))
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.isfinite(loss.numpy())
    # d KL / d logits = softmax(logits) - target
    np.testing.assert_allclose(grad, softmax(logits.numpy(), -1) - target.numpy(), atol=1e-6)


def test_soft_argmax_score():
    for k in (0, 5, 17):
        logits = np.full((1, 18), -30.0, np.float32)
        logits[0, k] = 30.0
        assert _np(soft_argmax_score(logits))[0] == pytest.approx(k, abs=1e-4)
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 18))
    np.testing.assert_allclose(
        _np(soft_argmax_score(logits)), softmax(logits, -1) @ np.arange(18), rtol=1e-6
    )


def test_get_loss_registry():
    assert get_loss("huber") is huber and get_loss("MSE") is mse
    from seq2exp.engine.registry import get_model_spec

    assert get_model_spec("legnet").loss is kl_soft_label  # model-specific losses come with their ModelSpec
    y, p = np.zeros(3, np.float32), np.full(3, 2.0, np.float32)
    np.testing.assert_allclose(_np(get_loss("huber", delta=0.5)(y, p)), _np_huber(y, p, 0.5))
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge")


def test_losses_trace_with_unknown_batch_size():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 1]), tf.TensorSpec([None, 18])])
    def step(y, logits):
        return huber(y, logits[:, :1]), kl_soft_label(soft_labels(y), logits), soft_argmax_score(logits)

    y = np.array([[1.5], [16.9], [0.0]], np.float32)
    logits = np.random.default_rng(5).normal(size=(3, 18)).astype(np.float32)
    h, kl, score = step(y, logits)
    assert h.shape == kl.shape == score.shape == (3,)
    np.testing.assert_allclose(h.numpy(), _np(huber(y, logits[:, :1])), rtol=1e-6)

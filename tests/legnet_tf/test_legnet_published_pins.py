"""LegNet against the PyTorch reference built with the PUBLISHED hyper-parameters, typed in from
/work/shared/specs/legnet.md -- never taken from `LegNetConfig`, so a wrong default in our config (a
BatchNorm epsilon of 1e-3, a momentum of 0.01, ...) cannot hide by changing both sides at once.

The reference (``benchmarks/legnet_torch_reference.py``, written from the spec) gets every value
explicitly; its BatchNorm modules are checked through PyTorch's own attributes; our converter infers the
architecture from the state_dict's shapes and takes everything else from its defaults. BatchNorm running
variances are drawn small (0.002-0.02), where an epsilon of 1e-3 instead of 1e-5 changes each
normalisation by up to 20%.
"""
import importlib
import json

import keras
import numpy as np
import pytest

from legnet_tf import build_legnet, make_inputs
from legnet_tf.convert import convert_state_dict, to_state_dict
from tests.conftest import require_module, require_shared_specs
from tests.helpers import random_codes

torch = require_module("torch", "the LegNet PyTorch reference needs it (.ci/run installs the local CPU wheel)")
build_reference = importlib.import_module("benchmarks.legnet_torch_reference").build_reference  # imports torch

# legnet.md, written out: the paper configuration and its BatchNorm settings (PyTorch convention).
PUBLISHED = {
    "seqsize": 150,
    "in_channels": 6,
    "block_sizes": [256, 128, 128, 64, 64, 64, 64],
    "kernel_size": 7,
    "resize_factor": 4,
    "filter_per_group": 2,
    "se_reduction": 4,
    "final_ch": 18,
    "bn_momentum": 0.1,
    "bn_epsilon": 1e-5,
}
PUBLISHED_PARAMETERS = 1_852_846
N_BATCH_NORMS = 1 + 6 * 4  # stem, then per stage: 3 in the inverted residual block + 1 in the resize block
KERAS_MOMENTUM = 0.9  # PyTorch's 0.1 (weight of the new batch statistic) is Keras' 0.9 (weight of the old)


def _randomise(model, seed):
    """Spread-out weights and small BatchNorm running variances (so epsilon matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                fan_in = p.shape[1] if "factor" in name else int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if "weights" in name else 0.0))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                var = torch.rand(module.running_var.shape, generator=g) * 0.018 + 0.002
                module.running_var.copy_(var)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.05)
                # gamma ~ sqrt(var) keeps activations O(1) through 25 BatchNorms; the epsilon still counts:
                # sqrt(var / (var + eps)) is 0.998-1.000 at 1e-5 but 0.82-0.98 at 1e-3
                module.weight.mul_(var.sqrt())
    return model


def _inputs(batch, seed):
    rng = np.random.default_rng(seed)
    x = make_inputs(random_codes(batch, 150, seed=seed), rng.integers(0, 2, size=batch),
                    rng.integers(0, 2, size=batch).astype(bool))
    return np.asarray(keras.ops.convert_to_numpy(x))


def _torch_forward(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 2, 1))))).numpy()


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def reference():
    return _randomise(build_reference(dict(PUBLISHED), seed=0), seed=1)


def test_reference_is_the_published_model(reference):
    bns = [m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == N_BATCH_NORMS
    assert {(m.momentum, m.eps) for m in bns} == {(0.1, 1e-5)}
    assert sum(p.numel() for p in reference.parameters()) == PUBLISHED_PARAMETERS
    published = json.loads((require_shared_specs() / "legnet_reference_state_dict.json").read_text())
    assert {k: list(v.shape) for k, v in reference.state_dict().items()} == published["state_dict"]
    assert published["total_params"] == PUBLISHED_PARAMETERS and published["config"]["bn_momentum"] == 0.1


def test_default_keras_legnet_has_the_published_batch_norm():
    model = build_legnet()  # our defaults must BE the paper's
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == \
        PUBLISHED_PARAMETERS
    bns = [x for x in model._flatten_layers(include_self=False, recursive=True)
           if isinstance(x, keras.layers.BatchNormalization)]
    assert len(bns) == N_BATCH_NORMS
    assert {(round(bn.momentum, 12), bn.epsilon) for bn in bns} == {(KERAS_MOMENTUM, 1e-5)}


def test_converted_published_model_matches_the_reference_in_inference(reference):
    reference.eval()
    model = convert_state_dict(reference.state_dict())  # architecture from the shapes, the rest from defaults
    x = _inputs(6, seed=2)
    ref = _torch_forward(reference, x)
    ours = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.abs(ref).max() > 0.1 and np.ptp(_log_softmax(ref), axis=-1).min() > 0.05
    np.testing.assert_allclose(_log_softmax(ours), _log_softmax(ref), atol=2e-5, rtol=0)  # eps 1e-3: 4e-3 off


def test_converted_published_model_trains_batch_norm_like_the_reference(reference):
    """Training mode: batch statistics, and running statistics moved 10% towards them (momentum 0.1).

    PyTorch puts the unbiased batch variance into running_var, Keras the biased one: over
    batch x length = 4 x 150 positions they differ by 600/599, 0.17% of the batch variance.
    """
    reference.eval()
    model = convert_state_dict(reference.state_dict())
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    x = _inputs(4, seed=3)
    reference.train()
    try:
        ref = _torch_forward(reference, x)
        after = {k: v.clone() for k, v in reference.state_dict().items()}
    finally:
        reference.load_state_dict(before)
        reference.eval()
    ours = keras.ops.convert_to_numpy(model(x, training=True))
    np.testing.assert_allclose(_log_softmax(ours), _log_softmax(ref), atol=1e-3, rtol=0)
    back = to_state_dict(model)
    moved = 0
    for key, value in after.items():
        if key.endswith("running_mean"):
            np.testing.assert_allclose(back[key], value.numpy(), atol=1e-5, rtol=1e-3, err_msg=key)
            moved += not np.allclose(value.numpy(), before[key].numpy())
        elif key.endswith("running_var"):
            np.testing.assert_allclose(back[key], value.numpy(), rtol=3e-3, atol=1e-6, err_msg=key)
    assert moved == N_BATCH_NORMS

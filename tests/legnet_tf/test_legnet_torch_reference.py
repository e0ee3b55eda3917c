"""Converted weights against the PyTorch reference LegNet written from the spec (needs torch; required in CI).

The reference model lives in ``benchmarks/legnet_torch_reference.py`` (the step benchmark times it
too). Its modules carry the reference's names (``seqextractor.inv_res_blc0.6.fc.3.mod.trl...``),
so its ``state_dict`` must equal the published key list, and ``load_state_dict(strict=True)``
proves the converter's random test inputs are realistic. Its CP bilinear builds the full
m x m x out tensor, an independent path from our factored CPBilinear.
"""
import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from legnet_tf import LegNetConfig, make_inputs
from legnet_tf.convert import convert_state_dict, load_pth, main, to_state_dict
from tests.conftest import require_module, require_shared_specs
from tests.helpers import random_codes

torch = require_module("torch", "the PyTorch reference needs it (.ci/run installs the local CPU wheel)")
nn = torch.nn
torch.set_num_threads(2)

try:
    from benchmarks.legnet_torch_reference import build_reference
except ImportError:  # the repository root is not on sys.path (benchmarks/ is not an installed package)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.legnet_torch_reference import build_reference

TINY = LegNetConfig.tiny()


# legnet.md: BatchNorm momentum 0.1 (PyTorch convention), eps 1e-5 -- typed in, not read from LegNetConfig
PUBLISHED_BN = {"bn_momentum": 0.1, "bn_epsilon": 1e-5}


def TorchLegNet(config):
    """The reference model (``benchmarks.legnet_torch_reference``) with ``config``'s sizes and the published
    BatchNorm settings (so a wrong default in our config shows up as a mismatch, not on both sides)."""
    return build_reference({**config.to_dict(), **PUBLISHED_BN})


def _randomise(model, seed):
    """O(1) weights and non-trivial BatchNorm statistics (fresh BN is the identity: it would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                fan_in = p.shape[1] if "factor" in name else int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if "weights" in name else 0.0))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.5)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) * 2.7 + 0.3)
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
    return np.asarray(torch.log_softmax(torch.from_numpy(np.asarray(x, np.float64)), dim=-1))


def test_torch_reference_has_published_keys_and_count():
    model = TorchLegNet(LegNetConfig())
    assert sum(p.numel() for p in model.parameters()) == 1_852_846
    published = json.loads((require_shared_specs() / "legnet_reference_state_dict.json").read_text())["state_dict"]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == published


def test_converted_model_matches_pytorch_in_inference():
    torch_model = _randomise(TorchLegNet(TINY), seed=0).eval()
    keras_model = convert_state_dict(torch_model.state_dict())  # torch tensors, config from the shapes
    x = _inputs(8, seed=1)
    ours = keras.ops.convert_to_numpy(keras_model(x, training=False))
    ref = _torch_forward(torch_model, x)
    assert np.abs(ref).max() > 0.1
    assert np.abs(_log_softmax(ours) - _log_softmax(ref)).max() < 1e-4
    back = to_state_dict(keras_model)
    for key, value in torch_model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)


def test_training_step_batch_norm_semantics_match_pytorch():
    """Training mode normalises with batch statistics and moves the running ones by 0.1 (Keras 0.9).

    PyTorch feeds the UNBIASED batch variance into running_var, Keras the biased one: over
    n = batch x length = 600 positions they differ by n / (n - 1), ~0.02% of running_var here.
    """
    torch_model = _randomise(TorchLegNet(TINY), seed=2).train()
    keras_model = convert_state_dict(torch_model.state_dict())
    x = _inputs(4, seed=3)
    ours = keras.ops.convert_to_numpy(keras_model(x, training=True))
    ref = _torch_forward(torch_model, x)
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-3)
    back = to_state_dict(keras_model)
    for key, value in torch_model.state_dict().items():
        if key.endswith("running_mean"):
            np.testing.assert_allclose(back[key], value.numpy(), atol=1e-5, rtol=1e-4, err_msg=key)
        elif key.endswith("running_var"):
            np.testing.assert_allclose(back[key], value.numpy(), rtol=2e-3, err_msg=key)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_load_pth_wrappers_and_cli(tmp_path, wrapper, capsys):
    torch_model = _randomise(TorchLegNet(TINY), seed=4).eval()
    state = torch_model.state_dict()
    path = tmp_path / "legnet.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    loaded = load_pth(path)
    assert loaded.keys() == state.keys()
    out = tmp_path / "legnet.keras"
    assert main([str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    reloaded = keras.saving.load_model(out, safe_mode=True)
    x = _inputs(2, seed=5)
    diff = _log_softmax(keras.ops.convert_to_numpy(reloaded(x, training=False))) - _log_softmax(
        _torch_forward(torch_model, x))
    assert np.abs(diff).max() < 1e-4

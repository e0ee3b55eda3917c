"""Converted weights against a small PyTorch LegNet written here from the spec (skipped without torch).

The PyTorch modules carry the reference's names (``seqextractor.inv_res_blc0.6.fc.3.mod.trl...``),
so its ``state_dict`` must equal the published key list, and ``load_state_dict(strict=True)``
proves the converter's random test inputs are realistic. The CP bilinear here builds the full
m x m x out tensor, an independent path from our factored CPBilinear.
"""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from legnet_tf import LegNetConfig, make_inputs
from legnet_tf.convert import convert_state_dict, load_pth, main, to_state_dict
from legnet_tf.layers import cp_rank

try:
    from tests.helpers import random_codes
except ImportError:  # tests/ is not a package: conftest puts it on sys.path
    from helpers import random_codes

torch = pytest.importorskip("torch")
nn = torch.nn
torch.set_num_threads(2)

REFERENCE_JSON = Path(__file__).resolve().parents[3] / "shared" / "specs" / "legnet_reference_state_dict.json"
TINY = LegNetConfig.tiny()


class _CPWeight(nn.Module):
    def __init__(self, m, out, rank):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(rank))
        self.factors = nn.ParameterDict({f"factor_{i}": nn.Parameter(torch.randn(n, rank) * 0.03)
                                         for i, n in enumerate((m, m, out))})

    def full(self):
        f = self.factors
        return torch.einsum("r,ir,jr,or->ijo", self.weights, f["factor_0"], f["factor_1"], f["factor_2"])


class _TRL(nn.Module):
    def __init__(self, m, out):
        super().__init__()
        self.weight = _CPWeight(m, out, cp_rank(m, out))
        self.bias = nn.Parameter(torch.empty(out).uniform_(-1, 1))

    def forward(self, z):
        return torch.einsum("bi,bj,ijo->bo", z, z, self.weight.full()) + self.bias


class _Concater(nn.Module):
    def __init__(self, m, out):
        super().__init__()
        self.mod = nn.Module()
        self.mod.trl = _TRL(m, out)

    def forward(self, z):
        return torch.cat([z, self.mod.trl(z)], dim=-1)


class _SE(nn.Module):
    def __init__(self, channels, m):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, m), nn.SiLU(), nn.Linear(m, m), _Concater(m, m // 2),
                                nn.SiLU(), nn.Linear(m + m // 2, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean(dim=2))[:, :, None]


def _conv_bn(cin, cout, k, groups=1):
    return [nn.Conv1d(cin, cout, k, padding="same", groups=groups, bias=False),
            nn.BatchNorm1d(cout, momentum=0.1, eps=1e-5), nn.SiLU()]


class TorchLegNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n = len(c.block_sizes) - 1
        blocks = {"blc0": nn.Sequential(*_conv_bn(c.in_channels, c.block_sizes[0], c.kernel_size))}
        for i, (prev, size) in enumerate(zip(c.block_sizes[:-1], c.block_sizes[1:])):
            wide = size * c.resize_factor
            blocks[f"inv_res_blc{i}"] = nn.Sequential(
                *_conv_bn(prev, wide, 1), *_conv_bn(wide, wide, c.kernel_size, wide // c.filter_per_group),
                _SE(wide, int(prev // c.se_reduction)), *_conv_bn(wide, prev, 1))
            blocks[f"resize_blc{i}"] = nn.Sequential(*_conv_bn(2 * prev, size, c.kernel_size))
        self.seqextractor = nn.ModuleDict(blocks)
        self.mapper = nn.Sequential(nn.Conv1d(c.block_sizes[-1], c.final_ch, 1), nn.SiLU())
        self.register_buffer("bins", torch.arange(c.final_ch))

    def forward(self, x):  # (b, 6, L)
        x = self.seqextractor["blc0"](x)
        for i in range(self.n):
            x = torch.cat([x, self.seqextractor[f"inv_res_blc{i}"](x)], dim=1)
            x = self.seqextractor[f"resize_blc{i}"](x)
        return self.mapper(x).mean(dim=2)


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
    if REFERENCE_JSON.is_file():
        published = json.loads(REFERENCE_JSON.read_text())["state_dict"]
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

"""A small PyTorch LegNet written from ``/work/shared/specs/legnet.md`` (no code from elsewhere).

It is the independent side of two checks:

* ``tests/legnet_tf/test_legnet_torch_reference.py`` loads its ``state_dict`` into the Keras
  model through ``legnet_tf.convert``. The modules carry the reference's names
  (``seqextractor.inv_res_blc0.6.fc.3.mod.trl.weight.factors.factor_0``, ...), so the
  ``state_dict`` keys and shapes equal ``legnet_reference_state_dict.json`` (paper config:
  1,852,846 parameters, 219 entries).
* ``benchmarks/legnet_step.py`` times its training step (``train_step``) beside the Keras one.

The CP bilinear layer here materialises the full ``m x m x out`` weight from its CP factors
and contracts it with the outer product ``z z^T`` (as the reference's tensor regression layer
does), a different computation path from ``legnet_tf``'s factored ``CPBilinear``.

Input is channels-first ``(batch, in_channels, seqsize)`` = ``[A, G, C, T, is_reverse,
is_singleton]`` along axis 1; the output is ``(batch, final_ch)`` logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PAPER_CONFIG",
    "normalize_config",
    "cp_rank",
    "ReferenceLegNet",
    "init_reference_",
    "build_reference",
    "kl_soft_label_loss",
    "build_optimizer",
    "train_step",
    "count_parameters",
]

#: The paper's configuration in this module's own (``legnet_tf.LegNetConfig``-style) keys.
PAPER_CONFIG = {
    "seq_len": 150,
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

# The reference code's own names for some of them.
_REFERENCE_ALIASES = {"ks": "kernel_size", "seqsize": "seq_len"}


def normalize_config(config: dict | None = None) -> dict:
    """Full config dict from a partial one; ``None`` gives the paper config.

    Takes ``legnet_tf.LegNetConfig.to_dict()`` keys or the reference's own (``ks``,
    ``use_single_channel``: True = 6 input channels, False = 5). Unknown keys are an error.
    """
    values = dict(PAPER_CONFIG)
    for key, value in dict(config or {}).items():
        if key == "use_single_channel":
            values["in_channels"] = 6 if value else 5
            continue
        key = _REFERENCE_ALIASES.get(key, key)
        if key not in PAPER_CONFIG:
            raise ValueError(f"unknown LegNet config key {key!r}; known: {sorted(PAPER_CONFIG)} "
                             f"(or the reference's {sorted(_REFERENCE_ALIASES)} / use_single_channel)")
        values[key] = value
    values["block_sizes"] = [int(b) for b in values["block_sizes"]]
    if len(values["block_sizes"]) < 2:
        raise ValueError(f"block_sizes needs at least 2 entries; got {values['block_sizes']}")
    if values["kernel_size"] % 2 == 0:
        raise ValueError(f"kernel_size must be odd; got {values['kernel_size']}")
    return values


def cp_rank(in_features: int, out_features: int, ratio: float = 0.5) -> int:
    """CP rank whose factors hold ``ratio`` x the full ``m x m x out`` tensor's entries.

    ``R = round(ratio * m*m*out / (m + m + out))``: m=64 -> 410, 32 -> 102, 16 -> 26 (spec).
    """
    m, o = int(in_features), int(out_features)
    return max(1, int(round(m * m * o * float(ratio) / (m + m + o))))


class CPWeight(nn.Module):
    """CP-factorised ``(m, m, out)`` tensor: ``weights`` (R,) and ``factors.factor_{0,1,2}``."""

    def __init__(self, m: int, out: int, rank: int):
        super().__init__()
        self.rank = rank
        self.weights = nn.Parameter(torch.ones(rank))
        self.factors = nn.ParameterDict(
            {f"factor_{i}": nn.Parameter(torch.empty(n, rank)) for i, n in enumerate((m, m, out))})

    def full(self) -> torch.Tensor:
        f = self.factors
        return torch.einsum("r,ir,jr,or->ijo", self.weights, f["factor_0"], f["factor_1"], f["factor_2"])


class TRL(nn.Module):
    """Tensor regression on the outer product: ``y_o = bias_o + sum_ij z_i z_j W_ijo``."""

    def __init__(self, m: int, out: int):
        super().__init__()
        self.weight = CPWeight(m, out, cp_rank(m, out))
        self.bias = nn.Parameter(torch.empty(out))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,bj,ijo->bo", z, z, self.weight.full()) + self.bias


class Concater(nn.Module):
    """``concat(z, trl(z))`` along features; the ``mod.trl`` nesting gives the reference's key names."""

    def __init__(self, m: int, out: int):
        super().__init__()
        self.mod = nn.Module()
        self.mod.trl = TRL(m, out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.mod.trl(z)], dim=-1)


class SEBlock(nn.Module):
    """Squeeze-excitation with the bilinear branch: ``x * sigmoid(fc(mean_L x))``."""

    def __init__(self, channels: int, m: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, m), nn.SiLU(), nn.Linear(m, m), Concater(m, m // 2),
            nn.SiLU(), nn.Linear(m + m // 2, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=2))[:, :, None]


def _conv_bn_silu(cin: int, cout: int, k: int, momentum: float, eps: float, groups: int = 1) -> list:
    return [nn.Conv1d(cin, cout, k, padding="same", groups=groups, bias=False),
            nn.BatchNorm1d(cout, momentum=momentum, eps=eps), nn.SiLU()]


class ReferenceLegNet(nn.Module):
    """LegNet with the reference module tree: ``seqextractor.{blc0, inv_res_blc{i}, resize_blc{i}}``,
    ``mapper`` and the ``bins`` buffer (0..final_ch-1)."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        c = self.config = normalize_config(config)
        ks, mom, eps = c["kernel_size"], c["bn_momentum"], c["bn_epsilon"]
        sizes = c["block_sizes"]
        self.n_stages = len(sizes) - 1
        blocks = {"blc0": nn.Sequential(*_conv_bn_silu(c["in_channels"], sizes[0], ks, mom, eps))}
        for i, (prev, size) in enumerate(zip(sizes[:-1], sizes[1:])):
            wide = size * c["resize_factor"]
            if wide % c["filter_per_group"]:
                raise ValueError(f"{wide} channels are not a multiple of filter_per_group {c['filter_per_group']}")
            blocks[f"inv_res_blc{i}"] = nn.Sequential(
                *_conv_bn_silu(prev, wide, 1, mom, eps),
                *_conv_bn_silu(wide, wide, ks, mom, eps, groups=wide // c["filter_per_group"]),
                SEBlock(wide, int(prev // c["se_reduction"])),
                *_conv_bn_silu(wide, prev, 1, mom, eps))
            blocks[f"resize_blc{i}"] = nn.Sequential(*_conv_bn_silu(2 * prev, size, ks, mom, eps))
        self.seqextractor = nn.ModuleDict(blocks)
        self.mapper = nn.Sequential(nn.Conv1d(sizes[-1], c["final_ch"], 1), nn.SiLU())
        self.register_buffer("bins", torch.arange(c["final_ch"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_channels, seqsize)`` -> ``(batch, final_ch)`` logits."""
        x = self.seqextractor["blc0"](x)
        for i in range(self.n_stages):
            x = torch.cat([x, self.seqextractor[f"inv_res_blc{i}"](x)], dim=1)
            x = self.seqextractor[f"resize_blc{i}"](x)
        return self.mapper(x).mean(dim=2)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft-argmax expression score ``sum_i i * softmax_i``."""
        return (torch.softmax(logits, dim=-1) * self.bins.to(logits.dtype)).sum(dim=-1)


@torch.no_grad()
def init_reference_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """The spec's initialisation, in place.

    Conv1d weight ~ N(0, sqrt(2 / (k * out_channels))), bias 0; BatchNorm 1 / 0;
    Linear weight ~ N(0, 0.001), bias 0; CP weights 1, each CP factor ~
    N(0, (0.00075 / sqrt(R)) ** (1/3)), TRL bias ~ U(-1, 1). (Second arguments are std devs.)
    """
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            k, out = module.kernel_size[0], module.out_channels
            module.weight.normal_(0.0, math.sqrt(2.0 / (k * out)), generator=generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm1d):
            module.reset_running_stats()
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.001, generator=generator)
            module.bias.zero_()
        elif isinstance(module, CPWeight):
            module.weights.fill_(1.0)
            std = (0.00075 / math.sqrt(module.rank)) ** (1.0 / 3.0)
            for factor in module.factors.values():
                factor.normal_(0.0, std, generator=generator)
        elif isinstance(module, TRL):
            module.bias.uniform_(-1.0, 1.0, generator=generator)
    return model


def build_reference(config_dict: dict | None = None, seed: int | None = 0) -> nn.Module:
    """The reference LegNet (float32, train mode) with the spec's init; ``None`` = paper config.

    ``seed`` seeds a private generator for the init (``None``: torch's global RNG).
    """
    model = ReferenceLegNet(config_dict)
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    return init_reference_(model, generator)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def kl_soft_label_loss(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(target || softmax(logits)); 0 * log 0 counts as 0."""
    return F.kl_div(torch.log_softmax(logits.float(), dim=-1), target_probs.float(), reduction="batchmean")


def build_optimizer(model: nn.Module, lr: float = 0.005 / 25.0, weight_decay: float = 0.01,
                    **kwargs) -> torch.optim.Optimizer:
    """AdamW(weight_decay=0.01) over every parameter (default lr: the one-cycle start, max_lr / 25)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, **kwargs)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               target_probs: torch.Tensor) -> float:
    """One update: forward (train-mode BatchNorm), soft-label KL, backward, ``opt.step()``.

    ``x``: ``(batch, in_channels, seqsize)``; ``target_probs``: ``(batch, final_ch)``.
    Returns the loss as a Python float (which also waits for the step to finish).
    """
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = kl_soft_label_loss(model(x), target_probs)
    loss.backward()
    opt.step()
    return float(loss.detach())

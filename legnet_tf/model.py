"""LegNet (Penzar et al. 2023): a fully convolutional EfficientNet-like model of promoter activity.

``build_legnet(LegNetConfig())`` reproduces the reference architecture (1,852,846
trainable parameters) from the 6-channel input ``(batch, 150, 6)`` =
[A, G, C, T, is_reverse, is_singleton] (see ``legnet_tf.transforms``) to 18
float32 logits over expression bins.
"""
import dataclasses

import keras

from legnet_tf.layers import InvertedResidual, ResizeBlock
from legnet_tf.layers import _initializers as _init
from seq2exp.layers.config import DictConfig


@dataclasses.dataclass
class LegNetConfig(DictConfig):
    """Hyper-parameters of LegNet; the defaults are the paper's configuration.

    ``bn_momentum`` uses the PyTorch convention of the reference code (weight
    of the NEW batch statistic, 0.1); the Keras layers get ``1 - bn_momentum``.
    ``se_reduction`` sets each SE bottleneck to ``int(prev // se_reduction)``
    where ``prev`` is the block's input width.
    """

    seq_len: int = 150
    in_channels: int = 6
    block_sizes: tuple[int, ...] = (256, 128, 128, 64, 64, 64, 64)
    kernel_size: int = 7
    resize_factor: int = 4
    filter_per_group: int = 2
    se_reduction: float = 4
    final_ch: int = 18
    bn_momentum: float = 0.1
    bn_epsilon: float = 1e-5

    def __post_init__(self):
        self.block_sizes = tuple(int(b) for b in self.block_sizes)
        self.validate()

    def validate(self):
        if len(self.block_sizes) < 2:
            raise ValueError(f"block_sizes needs at least 2 entries; got {self.block_sizes}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (symmetric 'same' padding); got {self.kernel_size}")
        if not 0.0 <= self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum (PyTorch convention) must be in [0, 1]; got {self.bn_momentum}")
        for prev, size in zip(self.block_sizes[:-1], self.block_sizes[1:]):
            if (size * self.resize_factor) % self.filter_per_group:
                raise ValueError(f"{size} * resize_factor {self.resize_factor} is not a multiple of "
                                 f"filter_per_group {self.filter_per_group}")
            if self.squeeze_units(prev) < 2:
                raise ValueError(f"block size {prev} // se_reduction {self.se_reduction} < 2: "
                                 "the SE bilinear branch would be empty")

    def squeeze_units(self, prev):
        """SE bottleneck width of the stage whose input has ``prev`` channels."""
        return int(prev // self.se_reduction)

    @property
    def keras_bn_momentum(self):
        return 1.0 - self.bn_momentum

    @classmethod
    def from_reference(cls, ref):
        """From the reference code's config dict (``ks``, ``use_single_channel``, ...)."""
        ref = dict(ref)
        values = {
            "seq_len": ref.pop("seqsize", 150),
            "in_channels": 6 if ref.pop("use_single_channel", True) else 5,
            "kernel_size": ref.pop("ks", 7),
        }
        for key in ("block_sizes", "resize_factor", "filter_per_group", "se_reduction", "final_ch",
                    "bn_momentum"):
            if key in ref:
                values[key] = ref.pop(key)
        if ref:
            raise ValueError(f"unknown reference config keys: {sorted(ref)}")
        return cls(**values)

    @classmethod
    def tiny(cls, **overrides):
        """A 12,306-parameter variant with the same wiring (and length 150), for fast tests."""
        values = dict(block_sizes=(16, 16, 8), kernel_size=7)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def small(cls, **overrides):
        """About 1/7 of the paper's parameters (275,838), same depth: for CPU demos."""
        values = dict(block_sizes=(64, 64, 32, 32, 32, 32, 32))
        values.update(overrides)
        return cls(**values)


def as_config(config):
    """``None`` -> paper config; dict -> ``LegNetConfig`` (validated)."""
    return LegNetConfig.coerce(config)


def build_legnet(config=None, dtype=None):
    """Builds LegNet as a functional ``keras.Model``.

    Args:
        config: a ``LegNetConfig`` (or its dict); defaults to the paper's.
        dtype: dtype policy of every layer but the output (``None`` = global
            policy). The output pooling is float32, so losses see float32
            logits under mixed precision.

    Returns:
        A model from ``(batch, seq_len, in_channels)`` float inputs to
        ``(batch, final_ch)`` float32 logits named ``"logits"``. Layer names:
        ``stem``, ``inv_res{i}``, ``concat{i}``, ``resize{i}``, ``mapper``.
    """
    c = as_config(config)
    momentum, eps = c.keras_bn_momentum, c.bn_epsilon
    inputs = keras.Input((c.seq_len, c.in_channels), name="inputs")
    x = ResizeBlock(c.block_sizes[0], c.kernel_size, momentum, eps, dtype=dtype, name="stem")(inputs)
    for i, (prev, size) in enumerate(zip(c.block_sizes[:-1], c.block_sizes[1:])):
        branch = InvertedResidual(
            size * c.resize_factor, kernel_size=c.kernel_size, filters_per_group=c.filter_per_group,
            squeeze_units=c.squeeze_units(prev), batch_norm_momentum=momentum, batch_norm_epsilon=eps,
            dtype=dtype, name=f"inv_res{i}")(x)
        # [input, branch]: the reference order; the resize kernel's input axis depends on it.
        x = keras.layers.Concatenate(axis=-1, dtype=dtype, name=f"concat{i}")([x, branch])
        x = ResizeBlock(size, c.kernel_size, momentum, eps, dtype=dtype, name=f"resize{i}")(x)
    x = keras.layers.Conv1D(c.final_ch, 1, activation="silu", kernel_initializer=_init.conv_kernel(),
                            dtype=dtype, name="mapper")(x)
    logits = keras.layers.GlobalAveragePooling1D(dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="legnet")

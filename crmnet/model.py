"""CRMnet: U-Net of SE-gated convolutions with a transformer bottleneck.

``build_crmnet(CRMnetConfig())`` reproduces the published architecture
(34,170,289 parameters) from uint8 base codes to one float32 expression value.
"""
import dataclasses

import keras

from crmnet.layers import (
    POSITION_MODES,
    DecoderBlock,
    EncoderBlock,
    PositionEncoding,
    SqueezeExcite,
    TransformerBlock,
)
from seq2exp.layers import OneHotIndex
from seq2exp.layers.config import DictConfig

# The published input channel order: StringLookup(A, C, G, T) puts OOV first.
CRMNET_ONE_HOT_ORDER = "NACGT"


@dataclasses.dataclass
class CRMnetConfig(DictConfig):
    """Hyper-parameters of CRMnet; the defaults are the published configuration.

    ``position_mode`` defaults to ``"multiply_sin"``, the published code's
    multiplicative sine, because that is what the released weights were trained
    with, so converted weights predict as the original; ``"add_sinusoidal"``
    follows the paper text (same parameter count).

    The encoder condenses (stride 2) in every block but the last, and one
    decoder block per condensing encoder block restores the length, so
    ``seq_len`` must be divisible by ``2 ** (len(encoder_filters) - 1)``.
    Transformer blocks are wired as in the published code: the first alone,
    then pairs applied to the same input whose outputs are added, and a last
    single block if one remains (8 blocks: t1, t2+t3, t4+t5, t6+t7, t8).
    """

    seq_len: int = 112
    encoder_filters: tuple[int, ...] = (128, 128, 256, 256)
    kernel_size: int = 11
    se_ratio: int = 2
    encoder_dropout: float = 0.1
    num_transformer_blocks: int = 8
    num_heads: int = 12
    key_dim: int = 256
    embed_dim: int = 256
    ffn_dim: int = 128
    transformer_dropout: float = 0.1
    decoder_filters: int = 128
    head_conv_filters: tuple[int, ...] = (128, 64, 32)
    dense_units: tuple[int, ...] = (256, 128, 64, 32)
    dense_dropouts: tuple[float, ...] = (0.2, 0.2, 0.1, 0.1)
    leaky_relu_slope: float = 0.1
    position_mode: str = "multiply_sin"
    position_span: float = 111.0
    layer_norm_epsilon: float = 1e-6
    batch_norm_momentum: float = 0.99
    batch_norm_epsilon: float = 1e-3

    def __post_init__(self):
        for name in ("encoder_filters", "head_conv_filters", "dense_units", "dense_dropouts"):
            setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self):
        if self.position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}; got {self.position_mode!r}")
        if not self.encoder_filters:
            raise ValueError("encoder_filters must not be empty")
        factor = 2 ** (len(self.encoder_filters) - 1)
        if self.seq_len % factor:
            raise ValueError(f"seq_len {self.seq_len} must be divisible by {factor}")
        if self.embed_dim != self.encoder_filters[-1]:
            raise ValueError(
                f"embed_dim {self.embed_dim} must equal the last encoder_filters "
                f"{self.encoder_filters[-1]} (the transformer has no input projection)"
            )
        if len(self.dense_units) != len(self.dense_dropouts):
            raise ValueError("dense_units and dense_dropouts must have the same length")
        if self.num_transformer_blocks < 0:
            raise ValueError("num_transformer_blocks must be >= 0")

    @classmethod
    def tiny(cls, **overrides):
        """A few-thousand-parameter variant with the same wiring, for fast tests."""
        values = dict(
            seq_len=32,
            encoder_filters=(8, 8, 16, 16),
            kernel_size=5,
            num_transformer_blocks=4,
            num_heads=2,
            key_dim=8,
            embed_dim=16,
            ffn_dim=16,
            decoder_filters=8,
            head_conv_filters=(8, 8, 4),
            dense_units=(16, 8),
            dense_dropouts=(0.2, 0.1),
        )
        values.update(overrides)
        return cls(**values)


def _transformer_stack(x, config, dtype):
    """Applies the blocks with the published skip wiring; creation = call order."""
    count = config.num_transformer_blocks

    def block(index, inputs):
        return TransformerBlock(
            num_heads=config.num_heads,
            key_dim=config.key_dim,
            ffn_dim=config.ffn_dim,
            dropout=config.transformer_dropout,
            layer_norm_epsilon=config.layer_norm_epsilon,
            dtype=dtype,
            name=f"tf_block{index}",
        )(inputs)

    if count == 0:
        return x
    x = block(1, x)
    index, pair = 2, 1
    while count - index + 1 >= 2:
        side = block(index, x)
        x = block(index + 1, x)
        # [side, x] (not [x, side]) keeps model.layers/model.weights in
        # block-number order, which the checkpoint converter relies on.
        x = keras.layers.Add(dtype=dtype, name=f"tf_add{pair}")([side, x])
        index, pair = index + 2, pair + 1
    if index <= count:
        x = block(index, x)
    return x


def build_crmnet(config=None, dtype=None):
    """Builds CRMnet as a functional ``keras.Model``.

    Args:
        config: a ``CRMnetConfig`` (or its dict); defaults to the published one.
        dtype: dtype policy of every layer but the output (``None`` = the
            global policy). The output Dense is always float32 so losses and
            metrics stay accurate under mixed precision.

    Returns:
        A model mapping uint8 base codes ``(batch, seq_len)`` (A=0, C=1, G=2,
        T=3, N=4) to ``(batch, 1)`` float32 predictions named ``"expression"``.
    """
    c = CRMnetConfig.coerce(config)
    seq = keras.Input((c.seq_len,), dtype="uint8", name="inputs")
    x = OneHotIndex(order=CRMNET_ONE_HOT_ORDER, dtype=dtype, name="one_hot")(seq)

    skips = []
    for index, filters in enumerate(c.encoder_filters, start=1):
        condense = index < len(c.encoder_filters)
        out = EncoderBlock(
            filters,
            kernel_size=c.kernel_size,
            se_ratio=c.se_ratio,
            dropout=c.encoder_dropout,
            condense=condense,
            batch_norm_momentum=c.batch_norm_momentum,
            batch_norm_epsilon=c.batch_norm_epsilon,
            dtype=dtype,
            name=f"enc{index}",
        )(x)
        if condense:
            skip, x = out
            skips.append(skip)
        else:
            x = out

    x = PositionEncoding(mode=c.position_mode, span=c.position_span, dtype=dtype, name="position")(x)
    x = _transformer_stack(x, c, dtype)

    for index, skip in enumerate(reversed(skips), start=1):
        x = DecoderBlock(
            c.decoder_filters,
            kernel_size=c.kernel_size,
            se_ratio=c.se_ratio,
            batch_norm_momentum=c.batch_norm_momentum,
            batch_norm_epsilon=c.batch_norm_epsilon,
            dtype=dtype,
            name=f"dec{index}",
        )(x, skip)

    for index, filters in enumerate(c.head_conv_filters, start=1):
        x = keras.layers.Conv1D(
            filters,
            c.kernel_size,
            padding="same",
            activation="relu",
            kernel_initializer="he_normal",
            dtype=dtype,
            name=f"head_conv{index}",
        )(x)
        x = SqueezeExcite(c.se_ratio, dtype=dtype, name=f"head_se{index}")(x)
    x = keras.layers.Flatten(dtype=dtype, name="head_flatten")(x)
    for index, (units, rate) in enumerate(zip(c.dense_units, c.dense_dropouts), start=1):
        x = keras.layers.Dense(units, dtype=dtype, name=f"head_dense{index}")(x)
        x = keras.layers.LeakyReLU(negative_slope=c.leaky_relu_slope, dtype=dtype, name=f"head_act{index}")(x)
        x = keras.layers.Dropout(rate, dtype=dtype, name=f"head_drop{index}")(x)
    output = keras.layers.Dense(1, dtype="float32", name="expression")(x)
    return keras.Model(seq, output, name="crmnet")

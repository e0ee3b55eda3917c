"""Macaron-like transformer ("Unlock_DNA", DREAM 2022) with pseudo-expression tokens.

``build_macaron(MacaronConfig())`` is the published network: 47,425,543 parameters.
Input: ``(batch, 200)`` int tokens = the trimmed, centre-padded 100 nt forward strand and
its reverse complement (A0 C1 G2 T3 N4, M5 = masked; see ``dream_peers.transforms``).
Outputs: ``{"expression": (batch, 1), "nucleotides": (batch, 200, 6) logits}``; the
nucleotide head reconstructs masked tokens during training (an auxiliary loss).
"""
import dataclasses

import keras

from dream_peers.layers import LabelScale, MacaronBlock, PseudoExpressionTokens, StrandedTokenEmbedding
from seq2exp.layers.config import DictConfig


@dataclasses.dataclass
class MacaronConfig(DictConfig):
    """Hyper-parameters; the defaults are the published model (dropout 0.1 as in its code)."""

    seq_len: int = 200
    vocab_size: int = 6
    kmer_size: int = 10
    d_model: int = 512
    num_blocks: int = 4
    num_heads: int = 8
    key_dim: int = 512
    ffn_dim: int = 2048
    conv_kernel: int = 15
    num_pseudo_tokens: int = 32
    dropout: float = 0.1
    attention_dropout: float = 0.0
    epsilon: float = 1e-6
    attention_epsilon: float = 1e-3
    #: append ``LabelScale`` to the expression output (the registry's choice; see dream_peers.cnn_bilstm)
    label_scale: bool = False

    def __post_init__(self):
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even (forward + reverse complement halves); got {self.seq_len}")
        if self.ffn_dim % 2:
            raise ValueError(f"ffn_dim must be even (it is split into value and gate); got {self.ffn_dim}")
        if min(self.d_model, self.num_blocks + 1, self.num_heads, self.key_dim, self.num_pseudo_tokens) < 1:
            raise ValueError("d_model, num_heads, key_dim, num_pseudo_tokens must be >= 1 and num_blocks >= 0")

    @classmethod
    def tiny(cls):
        """A few-ten-thousand-parameter variant with the same wiring, for tests."""
        return cls(d_model=32, num_blocks=1, num_heads=2, key_dim=16, ffn_dim=64, num_pseudo_tokens=4)

    @classmethod
    def small(cls):
        """About 1/40 of the published parameters, for CPU runs."""
        return cls(d_model=128, num_blocks=4, num_heads=4, key_dim=32, ffn_dim=512, num_pseudo_tokens=32)


def build_macaron(config=None, dtype=None) -> keras.Model:
    """The network from ``(batch, seq_len)`` tokens to expression and nucleotide logits (float32).

    ``config``: a ``MacaronConfig`` or its dict (defaults: the published model); ``dtype``: policy of
    every layer but the float32 outputs (None = the global policy). ``label_scale=True`` appends
    ``LabelScale`` (2 non-trainable weights) to the expression output (expression units from
    standardised training); the registry builds it that way.
    """
    c = MacaronConfig.coerce(config)
    tokens = keras.Input((c.seq_len,), dtype="int32", name="inputs")
    x = StrandedTokenEmbedding(c.d_model, c.vocab_size, c.kmer_size, dtype=dtype, name="embedding")(tokens)
    x = PseudoExpressionTokens(c.num_pseudo_tokens, dtype=dtype, name="pseudo_tokens")(x)
    for i in range(1, c.num_blocks + 1):
        x = MacaronBlock(c.num_heads, c.key_dim, c.ffn_dim, c.conv_kernel, c.dropout, c.attention_dropout,
                         c.epsilon, c.attention_epsilon, dtype=dtype, name=f"block{i}")(x)
    pseudo = keras.layers.Cropping1D((0, c.seq_len), dtype=dtype, name="pseudo_readout")(x)
    e = keras.layers.Dropout(c.dropout, dtype=dtype, name="expression_dropout")(pseudo)
    e = keras.layers.Dense(1, dtype="float32", name="expression_per_token")(e)
    e = keras.layers.GlobalAveragePooling1D(dtype="float32", name="expression")(e)
    if c.label_scale:
        e = LabelScale(name="label_scale")(e)
    sequence = keras.layers.Cropping1D((c.num_pseudo_tokens, 0), dtype=dtype, name="sequence_readout")(x)
    logits = keras.layers.Dense(c.vocab_size, dtype="float32", name="nucleotides")(sequence)
    return keras.Model(tokens, {"expression": e, "nucleotides": logits}, name="macaron")

"""CRMnet building blocks (Keras 3, backend-agnostic)."""
from crmnet.layers.decoder_block import DecoderBlock
from crmnet.layers.encoder_block import EncoderBlock
from crmnet.layers.position import POSITION_MODES, PositionEncoding
from crmnet.layers.squeeze_excite import SqueezeExcite
from crmnet.layers.transformer_block import TransformerBlock

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "POSITION_MODES",
    "PositionEncoding",
    "SqueezeExcite",
    "TransformerBlock",
]

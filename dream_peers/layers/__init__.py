"""Building blocks of the DREAM 2022 peer models (Keras 3, backend-agnostic)."""
from dream_peers.layers.conv_module import ConvModule
from dream_peers.layers.glu_feed_forward import GLUFeedForward
from dream_peers.layers.label_scale import LabelScale
from dream_peers.layers.macaron_block import MacaronBlock
from dream_peers.layers.pseudo_expression_tokens import PseudoExpressionTokens
from dream_peers.layers.stranded_token_embedding import StrandedTokenEmbedding

__all__ = ["ConvModule", "GLUFeedForward", "LabelScale", "MacaronBlock", "PseudoExpressionTokens",
           "StrandedTokenEmbedding"]

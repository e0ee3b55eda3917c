"""LegNet building blocks (Keras 3, backend-agnostic)."""
from legnet_tf.layers.cp_bilinear import CPBilinear, cp_rank
from legnet_tf.layers.grouped_conv import GroupedConv1D
from legnet_tf.layers.inverted_residual import InvertedResidual
from legnet_tf.layers.resize_block import ResizeBlock
from legnet_tf.layers.se_block import SEBlock

__all__ = ["CPBilinear", "GroupedConv1D", "InvertedResidual", "ResizeBlock", "SEBlock", "cp_rank"]

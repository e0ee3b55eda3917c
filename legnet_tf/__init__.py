"""LegNet (Penzar et al. 2023) in Keras 3: architecture, input transforms and PyTorch weight conversion."""
from legnet_tf.model import LegNetConfig, build_legnet
from legnet_tf.transforms import make_inputs

__all__ = ["LegNetConfig", "build_legnet", "make_inputs"]

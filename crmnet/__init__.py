"""CRMnet (Ding et al.) in Keras 3: architecture, configuration and layers."""
from crmnet.model import CRMnetConfig, build_crmnet

__all__ = ["CRMnetConfig", "build_crmnet"]

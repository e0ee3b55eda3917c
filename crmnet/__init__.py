"""CRMnet (Ding et al.) in Keras 3: architecture, configuration and layers."""
__all__ = ["CRMnetConfig", "build_crmnet"]


def __getattr__(name):  # lazy, so `python -m crmnet.train` checks its flags before Keras/TensorFlow start
    if name in __all__:
        from crmnet import model

        return getattr(model, name)
    raise AttributeError(f"module 'crmnet' has no attribute {name!r}")

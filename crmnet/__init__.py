"""CRMnet (Ding et al.) in Keras 3: architecture, configuration and layers.

The model module is imported lazily, so `python -m crmnet.train` checks its flags before Keras and
TensorFlow start; where Keras is already imported, importing `crmnet` registers the layers at once,
so `keras.saving.load_model` finds them.
"""
import sys

__all__ = ["CRMnetConfig", "build_crmnet", "load_model"]


def __getattr__(name):
    if name in ("CRMnetConfig", "build_crmnet"):
        from crmnet import model

        return getattr(model, name)
    raise AttributeError(f"module 'crmnet' has no attribute {name!r}")


def load_model(path, compile=False):
    """Loads a CRMnet ``.keras`` file (a training run's model, a converted one) with ``safe_mode=True``.

    ``compile=False`` (default) is enough to predict; ``True`` also restores a training run's
    loss and optimizer settings.
    """
    import keras

    import crmnet.model  # noqa: F401  (registers the layers)

    return keras.saving.load_model(path, compile=compile, safe_mode=True)


if "keras" in sys.modules:
    import crmnet.model  # noqa: F401,E402

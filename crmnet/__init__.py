"""CRMnet (Ding et al.) in Keras 3: architecture, configuration and layers."""
from crmnet.model import CRMnetConfig, build_crmnet

__all__ = ["CRMnetConfig", "build_crmnet", "load_model"]


def load_model(path, compile=False):
    """Loads a CRMnet ``.keras`` file (a training run's model, a converted one) with ``safe_mode=True``.

    Importing ``crmnet`` registers its layers with Keras, so ``keras.saving.load_model(path)`` also
    works after ``import crmnet``; this is the same call with safe mode spelled out.
    ``compile=False`` (default) is enough to predict; ``True`` also restores a training run's
    loss and optimizer settings.
    """
    import keras

    return keras.saving.load_model(path, compile=compile, safe_mode=True)

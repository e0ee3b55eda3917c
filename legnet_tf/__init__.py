"""LegNet (Penzar et al. 2023) in Keras 3: architecture, input transforms and PyTorch weight conversion."""
from legnet_tf.model import LegNetConfig, build_legnet
from legnet_tf.transforms import make_inputs

__all__ = ["LegNetConfig", "build_legnet", "load_model", "make_inputs"]


def load_model(path, compile=False):
    """Loads a LegNet ``.keras`` file (a training run's model, a converted one) with ``safe_mode=True``.

    Importing ``legnet_tf`` registers its layers with Keras, so ``keras.saving.load_model(path)`` also
    works after ``import legnet_tf``; this is the same call with safe mode spelled out.
    ``compile=False`` (default) is enough to predict; ``True`` also restores a training run's
    loss and optimizer settings.
    """
    import keras

    return keras.saving.load_model(path, compile=compile, safe_mode=True)

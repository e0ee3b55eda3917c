"""LegNet (Penzar et al. 2023) in Keras 3: architecture, input transforms and PyTorch weight conversion.

The model module is imported lazily, so `python -m legnet_tf.train` checks its flags before Keras and
TensorFlow start; where Keras is already imported, importing `legnet_tf` registers the layers at once,
so `keras.saving.load_model` finds them.
"""
import sys

__all__ = ["LegNetConfig", "build_legnet", "load_model", "make_inputs"]


def __getattr__(name):
    if name in ("LegNetConfig", "build_legnet"):
        from legnet_tf import model

        return getattr(model, name)
    if name == "make_inputs":
        from legnet_tf.transforms import make_inputs

        return make_inputs
    raise AttributeError(f"module 'legnet_tf' has no attribute {name!r}")


def load_model(path, compile=False):
    """Loads a LegNet ``.keras`` file (a training run's model, a converted one) with ``safe_mode=True``.

    ``compile=False`` (default) is enough to predict; ``True`` also restores a training run's
    loss and optimizer settings.
    """
    import keras

    import legnet_tf.model  # noqa: F401  (registers the layers)

    return keras.saving.load_model(path, compile=compile, safe_mode=True)


if "keras" in sys.modules:
    import legnet_tf.model  # noqa: F401,E402

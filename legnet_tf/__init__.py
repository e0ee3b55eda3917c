"""LegNet (Penzar et al. 2023) in Keras 3: architecture, input transforms and PyTorch weight conversion."""
__all__ = ["LegNetConfig", "build_legnet", "make_inputs"]


def __getattr__(name):  # lazy, so `python -m legnet_tf.train` checks its flags before Keras/TensorFlow start
    if name in ("LegNetConfig", "build_legnet"):
        from legnet_tf import model

        return getattr(model, name)
    if name == "make_inputs":
        from legnet_tf.transforms import make_inputs

        return make_inputs
    raise AttributeError(f"module 'legnet_tf' has no attribute {name!r}")

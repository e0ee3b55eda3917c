"""Private helpers for the CRMnet layers."""
import keras


def clone_initializer(initializer):
    """A fresh copy, so sublayers never share one (seeded) initializer object."""
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())

"""Expression units out of a network trained on standardised targets."""
import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dream_peers")
class LabelScale(keras.layers.Layer):
    """``y = x * std + mean`` with non-trainable ``mean``/``std`` of the training labels.

    Both DREAM peers regress standardised expression. Keeping the statistics inside the
    model (set once by ``set_stats`` before training, then saved in checkpoints and the
    ``.keras`` file) means every evaluation and prediction path gets expression units
    without knowing which data the model was trained on. Computes in float32 whatever
    the dtype policy, because it is an output layer.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.mean = self.add_weight(name="mean", shape=(), initializer="zeros", trainable=False,
                                    dtype="float32")
        self.std = self.add_weight(name="std", shape=(), initializer="ones", trainable=False, dtype="float32")
        self.built = True

    def set_stats(self, mean, std):
        """Training label mean and standard deviation (std must be finite and > 0)."""
        mean, std = float(mean), float(std)
        if not (math.isfinite(mean) and math.isfinite(std)) or std <= 0.0:
            raise ValueError(f"{self.name}: label mean/std must be finite with std > 0; got mean={mean}, std={std}")
        self.mean.assign(mean)
        self.std.assign(std)

    def standardize(self, y):
        """Expression units -> the standardised scale the network is trained on."""
        return (ops.cast(y, "float32") - self.mean) / self.std

    def call(self, inputs):
        return ops.cast(inputs, "float32") * self.std + self.mean

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

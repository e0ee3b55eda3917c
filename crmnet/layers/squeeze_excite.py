"""Squeeze-and-excitation channel gating."""
import keras
from keras import ops

from crmnet.layers._utils import clone_initializer


@keras.saving.register_keras_serializable(package="crmnet")
class SqueezeExcite(keras.layers.Layer):
    """Rescales each channel by a gate computed from the whole sequence.

    A convolution sees only its kernel window; the gate lets sequence-wide
    context (e.g. GC content, overall motif load) re-weight the channels.
    Average pool over length -> Dense(channels / ratio, relu) ->
    Dense(channels, sigmoid) -> multiply the input.

    Args:
        ratio: channel reduction of the bottleneck (CRMnet uses 2).
        kernel_initializer: initializer of both Dense kernels.
    """

    def __init__(self, ratio=2, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if int(ratio) < 1:
            raise ValueError(f"`ratio` must be >= 1; got {ratio}")
        self.ratio = int(ratio)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("SqueezeExcite needs a known channel dimension.")
        pooled_shape = (input_shape[0], 1, channels)
        self.reduce = keras.layers.Dense(
            max(1, channels // self.ratio),
            activation="relu",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_reduce",
        )
        self.reduce.build(pooled_shape)
        self.expand = keras.layers.Dense(
            channels,
            activation="sigmoid",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_expand",
        )
        self.expand.build(pooled_shape[:-1] + (self.reduce.units,))
        self.built = True

    def call(self, inputs):
        gate = ops.mean(inputs, axis=1, keepdims=True)
        gate = self.expand(self.reduce(gate))
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config

"""Conv -> BatchNorm -> SiLU: LegNet's stem and its channel-resizing blocks."""
import keras

from legnet_tf.layers import _initializers as _init


@keras.saving.register_keras_serializable(package="legnet_tf")
class ResizeBlock(keras.layers.Layer):
    """``Conv1D(filters, kernel_size, "same", no bias) -> BatchNorm -> SiLU``.

    One layer serves as the stem (6 one-hot/flag channels -> first width) and as
    the block after each inverted residual (``2 * prev`` concatenated channels ->
    the next width). The conv has no bias because BatchNorm's beta replaces it.

    Args:
        filters: output channels.
        kernel_size: odd length of the "same"-padded kernel (reference: 7), so the
            padding is symmetric, as PyTorch's ``padding="same"``.
        batch_norm_momentum: Keras convention (PyTorch's 0.1 is Keras' 0.9).
        batch_norm_epsilon: reference 1e-5 (Keras' default is 1e-3).
    """

    def __init__(self, filters, kernel_size=7, batch_norm_momentum=0.9, batch_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.conv = keras.layers.Conv1D(
            self.filters, self.kernel_size, padding="same", use_bias=False,
            kernel_initializer=_init.conv_kernel(), dtype=self.dtype_policy, name="conv")
        self.bn = keras.layers.BatchNormalization(
            momentum=self.batch_norm_momentum, epsilon=self.batch_norm_epsilon,
            dtype=self.dtype_policy, name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return keras.ops.silu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        })
        return config

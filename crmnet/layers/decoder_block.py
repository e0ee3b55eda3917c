"""CRMnet decoder block (the U-Net expanding path)."""
import keras

from crmnet.layers._utils import batch_norm, clone_initializer, relu_conv
from crmnet.layers.squeeze_excite import SqueezeExcite


@keras.saving.register_keras_serializable(package="crmnet")
class DecoderBlock(keras.layers.Layer):
    """Doubles the length and fuses the encoder skip of that resolution.

    Conv1DTranspose(stride 2, linear) -> concat(skip) -> conv -> SE ->
    BatchNorm -> conv -> SE -> BatchNorm. The skip restores the base-level
    detail that the condensing convolutions and the transformer blur.

    Args:
        filters: channels of the transposed and regular convolutions.
        kernel_size: convolution width (CRMnet: 11).
        se_ratio: squeeze-and-excitation reduction.
        batch_norm_momentum, batch_norm_epsilon: BatchNormalization settings.
        kernel_initializer: initializer of the convolution kernels.

    Call arguments:
        inputs: features at half the skip's length.
        skip: the encoder skip tensor.
    """

    def __init__(
        self,
        filters,
        kernel_size=11,
        se_ratio=2,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.se_ratio = int(se_ratio)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        self.up = keras.layers.Conv1DTranspose(
            self.filters,
            self.kernel_size,
            strides=2,
            padding="same",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_up",
        )
        self.concat = keras.layers.Concatenate(
            axis=-1, dtype=self.dtype_policy, name=f"{self.name}_concat"
        )
        self.conv1 = relu_conv(self, "conv1")
        self.se1 = SqueezeExcite(self.se_ratio, dtype=self.dtype_policy, name=f"{self.name}_se1")
        self.bn1 = batch_norm(self, "bn1")
        self.conv2 = relu_conv(self, "conv2")
        self.se2 = SqueezeExcite(self.se_ratio, dtype=self.dtype_policy, name=f"{self.name}_se2")
        self.bn2 = batch_norm(self, "bn2")

    def build(self, inputs_shape, skip_shape):
        self.up.build(tuple(inputs_shape))
        up_shape = self.up.compute_output_shape(tuple(inputs_shape))
        self.concat.build([up_shape, tuple(skip_shape)])
        shape = self.concat.compute_output_shape([up_shape, tuple(skip_shape)])
        for layer in (self.conv1, self.se1, self.bn1, self.conv2, self.se2, self.bn2):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, inputs, skip, training=None):
        x = self.concat([self.up(inputs), skip])
        x = self.bn1(self.se1(self.conv1(x)), training=training)
        return self.bn2(self.se2(self.conv2(x)), training=training)

    def compute_output_shape(self, inputs_shape, skip_shape):
        length = skip_shape[1]
        return (inputs_shape[0], length, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "se_ratio": self.se_ratio,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config

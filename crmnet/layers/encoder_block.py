"""CRMnet encoder block (the U-Net contracting path)."""
import keras

from crmnet.layers._utils import batch_norm, relu_conv
from crmnet.layers.squeeze_excite import SqueezeExcite


@keras.saving.register_keras_serializable(package="crmnet")
class EncoderBlock(keras.layers.Layer):
    """Two SE-gated convolutions, optionally followed by a stride-2 condensing conv.

    conv -> SE -> BatchNorm -> conv -> SE -> BatchNorm -> Dropout = skip;
    with ``condense`` the block also returns ``conv(stride 2)(skip)``, which
    halves the length for the next block, while ``skip`` goes to the decoder.

    Args:
        filters: channels of every convolution.
        kernel_size: convolution width (CRMnet: 11).
        se_ratio: squeeze-and-excitation reduction.
        dropout: rate of the dropout that ends the skip path.
        condense: add the stride-2 convolution and return ``(skip, condensed)``;
            otherwise return ``skip`` only.
        batch_norm_momentum, batch_norm_epsilon: BatchNormalization settings.
        kernel_initializer: initializer of the convolution kernels.
    """

    def __init__(
        self,
        filters,
        kernel_size=11,
        se_ratio=2,
        dropout=0.1,
        condense=True,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.se_ratio = int(se_ratio)
        self.dropout = float(dropout)
        self.condense = bool(condense)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        # Creation order = call order, so weights enumerate in dataflow order.
        self.conv1 = relu_conv(self, "conv1")
        self.se1 = SqueezeExcite(self.se_ratio, dtype=self.dtype_policy, name=f"{self.name}_se1")
        self.bn1 = batch_norm(self, "bn1")
        self.conv2 = relu_conv(self, "conv2")
        self.se2 = SqueezeExcite(self.se_ratio, dtype=self.dtype_policy, name=f"{self.name}_se2")
        self.bn2 = batch_norm(self, "bn2")
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{self.name}_dropout"
        )
        self.down = relu_conv(self, "down", strides=2) if self.condense else None

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv1.build(shape)
        shape = self.conv1.compute_output_shape(shape)
        for layer in (self.se1, self.bn1, self.conv2, self.se2, self.bn2):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.down is not None:
            self.down.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.bn1(self.se1(self.conv1(inputs)), training=training)
        x = self.bn2(self.se2(self.conv2(x)), training=training)
        skip = self.dropout_layer(x, training=training)
        if self.down is None:
            return skip
        return skip, self.down(skip)

    def compute_output_shape(self, input_shape):
        skip_shape = self.conv1.compute_output_shape(tuple(input_shape))
        if self.down is None:
            return skip_shape
        return skip_shape, self.down.compute_output_shape(skip_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "se_ratio": self.se_ratio,
                "dropout": self.dropout,
                "condense": self.condense,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config

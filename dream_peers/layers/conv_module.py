"""The Macaron block's convolution module (local context between attention layers)."""
import keras


@keras.saving.register_keras_serializable(package="dream_peers")
class ConvModule(keras.layers.Layer):
    """LayerNorm -> SeparableConv1D(d, kernel, same, relu) -> Dropout (the block adds the residual).

    A depthwise-separable convolution gives each token a k-nt neighbourhood for
    ``k * d + d * d`` weights instead of ``k * d * d``.

    Args:
        kernel_size: convolution width (published: 15).
        dropout: rate of the output dropout.
        epsilon: LayerNormalization epsilon.
    """

    def __init__(self, kernel_size=15, dropout=0.1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: ConvModule needs a known channel dimension")
        policy = self.dtype_policy
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy, name=f"{self.name}_norm")
        self.norm.build(input_shape)
        self.conv = keras.layers.SeparableConv1D(input_shape[-1], self.kernel_size, padding="same",
                                                 activation="relu", dtype=policy, name=f"{self.name}_separable_conv")
        self.conv.build(input_shape)
        self.out_dropout = keras.layers.Dropout(self.dropout, dtype=policy, name=f"{self.name}_dropout")
        self.built = True

    def call(self, inputs, training=None):
        return self.out_dropout(self.conv(self.norm(inputs)), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "dropout": self.dropout, "epsilon": self.epsilon})
        return config

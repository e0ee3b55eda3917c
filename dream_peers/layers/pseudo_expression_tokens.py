"""Learned "pseudo-expression" tokens prepended to the sequence tokens."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dream_peers")
class PseudoExpressionTokens(keras.layers.Layer):
    """``(batch, L, d)`` -> ``(batch, num_tokens + L, d)`` with ``num_tokens`` learned tokens in front.

    As published, the tokens are one ``Dense(d)`` applied to zeros of shape
    ``(batch, num_tokens, 1)``: the output is the Dense's bias, so all tokens start as the
    same learned vector (the kernel receives no gradient but is a parameter, which is why the
    published count has ``2 d`` weights here). They become distinct tokens through the
    blocks' convolutions, which see different neighbours at each slot. The expression head
    reads them out.

    Args:
        num_tokens: how many tokens to prepend (published: 32).
    """

    def __init__(self, num_tokens=32, **kwargs):
        super().__init__(**kwargs)
        if int(num_tokens) < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.num_tokens = int(num_tokens)

    def build(self, input_shape):
        d = tuple(input_shape)[-1]
        if d is None:
            raise ValueError(f"{self.name}: PseudoExpressionTokens needs a known channel dimension")
        self.dense = keras.layers.Dense(d, dtype=self.dtype_policy, name=f"{self.name}_dense")
        self.dense.build((None, self.num_tokens, 1))
        self.built = True

    def call(self, inputs):
        zeros = ops.zeros((ops.shape(inputs)[0], self.num_tokens, 1), dtype=self.compute_dtype)
        return ops.concatenate([ops.cast(self.dense(zeros), inputs.dtype), inputs], axis=1)

    def compute_output_shape(self, input_shape):
        b, length, d = tuple(input_shape)
        return (b, None if length is None else length + self.num_tokens, d)

    def get_config(self):
        config = super().get_config()
        config.update({"num_tokens": self.num_tokens})
        return config

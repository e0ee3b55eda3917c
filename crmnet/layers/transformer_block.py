"""Post-norm transformer encoder block used in CRMnet's bottleneck."""
import math

import keras
from keras import ops

from crmnet.layers._utils import clone_initializer


@keras.saving.register_keras_serializable(package="crmnet")
class TransformerBlock(keras.layers.Layer):
    """Self-attention over the condensed sequence, then a position-wise FFN.

    MultiHeadAttention -> Dropout -> LayerNorm(x + attn) -> Dense(ffn, relu)
    -> Dense(embed) -> Dropout -> LayerNorm(h + ffn). Post-norm as published.
    The embedding size is the input's channel count (no projection), so the
    block fits whatever the encoder produces.

    The attention's weights live in a Keras ``MultiHeadAttention`` (its
    names, saving and the Keras-2 converter's mapping), but ``call`` computes
    it itself: every projection as ONE 2-D matmul over ``batch x length``
    rows. Keras' own call on TensorFlow runs them as broadcast batch matmuls,
    whose kernel gradient materialises a ``(batch, C, heads * key_dim)``
    tensor and sums it over the batch -- ~40% slower CRMnet steps than the
    published Keras-2 code. Same maths (MultiHeadAttention's dropout is 0).

    Args:
        num_heads: attention heads (CRMnet: 12).
        key_dim: size of each head's query/key/value (CRMnet: 256, larger
            than the embedding: the published model is over-parameterised here).
        ffn_dim: hidden units of the feed-forward network (CRMnet: 128).
        dropout: rate of both residual-branch dropouts.
        layer_norm_epsilon: LayerNormalization epsilon (CRMnet: 1e-6).
        kernel_initializer: initializer of the attention and FFN kernels.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        ffn_dim,
        dropout=0.1,
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.ffn_dim = int(ffn_dim)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        inputs_shape = tuple(inputs_shape)
        embed_dim = inputs_shape[-1]
        if embed_dim is None:
            raise ValueError("TransformerBlock needs a known channel dimension.")
        # Sublayers are created here (the FFN output size is the input's
        # channel count) and in call order, so weights enumerate in dataflow order.
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_attention",
        )
        self.attention.build(inputs_shape, inputs_shape)
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{self.name}_attention_dropout"
        )
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=f"{self.name}_norm1"
        )
        self.norm1.build(inputs_shape)
        self.ffn_dense1 = keras.layers.Dense(
            self.ffn_dim,
            activation="relu",
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_ffn1",
        )
        self.ffn_dense1.build(inputs_shape)
        self.ffn_dense2 = keras.layers.Dense(
            embed_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name=f"{self.name}_ffn2",
        )
        self.ffn_dense2.build(inputs_shape[:-1] + (self.ffn_dim,))
        self.ffn_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{self.name}_ffn_dropout"
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=f"{self.name}_norm2"
        )
        self.norm2.build(inputs_shape)
        self.built = True

    def attend(self, inputs):
        """``self.attention(inputs, inputs)`` from its weights, with 2-D matmul projections."""
        mha, channels = self.attention, inputs.shape[-1]
        length = ops.shape(inputs)[1]
        rows = ops.reshape(inputs, (-1, channels))

        def project(dense, heads_dim):
            kernel = ops.cast(ops.reshape(dense.kernel, (channels, heads_dim)), rows.dtype)
            out = ops.matmul(rows, kernel) + ops.cast(ops.reshape(dense.bias, (heads_dim,)), rows.dtype)
            # (batch, length, heads, dim) -> (batch, heads, length, dim)
            return ops.transpose(ops.reshape(out, (-1, length, mha.num_heads, heads_dim // mha.num_heads)),
                                 (0, 2, 1, 3))

        query = project(mha.query_dense, mha.num_heads * mha.key_dim)
        key = project(mha.key_dense, mha.num_heads * mha.key_dim)
        value = project(mha.value_dense, mha.num_heads * mha.value_dim)
        # Keras' TensorFlow attention: float32 logits and softmax, whatever the compute dtype
        logits = ops.cast(ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))), "float32")
        probs = ops.softmax(logits * (1.0 / math.sqrt(float(mha.key_dim))), axis=-1)
        context = ops.matmul(ops.cast(probs, value.dtype), value)  # (batch, heads, length, value_dim)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, mha.num_heads * mha.value_dim))
        kernel = ops.cast(ops.reshape(mha.output_dense.kernel, (mha.num_heads * mha.value_dim, channels)),
                          context.dtype)
        out = ops.matmul(context, kernel) + ops.cast(mha.output_dense.bias, context.dtype)
        return ops.reshape(out, (-1, length, channels))

    def call(self, inputs, training=None):
        attn = self.attend(inputs)
        attn = self.attention_dropout(attn, training=training)
        x = self.norm1(inputs + attn)
        ffn = self.ffn_dense2(self.ffn_dense1(x))
        ffn = self.ffn_dropout(ffn, training=training)
        return self.norm2(x + ffn)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "ffn_dim": self.ffn_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config

"""One block of the Macaron-like transformer: FFN half-step, convolution, attention, FFN half-step."""
import keras

from dream_peers.layers.conv_module import ConvModule
from dream_peers.layers.glu_feed_forward import GLUFeedForward


@keras.saving.register_keras_serializable(package="dream_peers")
class MacaronBlock(keras.layers.Layer):
    """``x += 0.5 FFN1(x); x += Conv(x); x = LN(x); x += MHA(x, x); x += 0.5 FFN2(x)``.

    The two half-weighted feed-forward modules sandwich the mixing layers (the "Macaron"
    layout), as in the Unlock_DNA DREAM 2022 model. Note the plain LayerNorm before the
    attention replaces x (it is not a pre-norm branch).

    Args:
        num_heads, key_dim: attention heads and per-head size (published: 8, 512).
        ffn_dim: hidden width of each GLU feed-forward module before the gate split (2048).
        conv_kernel: width of the separable convolution (15).
        dropout: rate in the FFN and convolution modules.
        attention_dropout: dropout on the attention weights.
        epsilon: LayerNorm epsilon inside the FFN/conv modules (1e-6).
        attention_epsilon: epsilon of the LayerNorm before attention (Keras' default; the spec gives none).
    """

    def __init__(self, num_heads=8, key_dim=512, ffn_dim=2048, conv_kernel=15, dropout=0.1,
                 attention_dropout=0.0, epsilon=1e-6, attention_epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.ffn_dim = int(ffn_dim)
        self.conv_kernel = int(conv_kernel)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.epsilon = float(epsilon)
        self.attention_epsilon = float(attention_epsilon)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: MacaronBlock needs a known channel dimension")
        policy, name = self.dtype_policy, self.name
        # created in call order, so model.weights enumerate in dataflow order
        self.ffn1 = GLUFeedForward(self.ffn_dim, self.dropout, self.epsilon, dtype=policy, name=f"{name}_ffn1")
        self.ffn1.build(input_shape)
        self.conv = ConvModule(self.conv_kernel, self.dropout, self.epsilon, dtype=policy, name=f"{name}_conv")
        self.conv.build(input_shape)
        self.norm = keras.layers.LayerNormalization(epsilon=self.attention_epsilon, dtype=policy, name=f"{name}_norm")
        self.norm.build(input_shape)
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, self.key_dim, dropout=self.attention_dropout,
                                                         dtype=policy, name=f"{name}_attention")
        self.attention.build(input_shape, input_shape)
        self.ffn2 = GLUFeedForward(self.ffn_dim, self.dropout, self.epsilon, dtype=policy, name=f"{name}_ffn2")
        self.ffn2.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs + 0.5 * self.ffn1(inputs, training=training)
        x = x + self.conv(x, training=training)
        x = self.norm(x)
        x = x + self.attention(x, x, training=training)
        return x + 0.5 * self.ffn2(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "key_dim": self.key_dim, "ffn_dim": self.ffn_dim,
                       "conv_kernel": self.conv_kernel, "dropout": self.dropout,
                       "attention_dropout": self.attention_dropout, "epsilon": self.epsilon,
                       "attention_epsilon": self.attention_epsilon})
        return config

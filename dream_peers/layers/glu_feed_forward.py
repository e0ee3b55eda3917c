"""The Macaron block's gated feed-forward module."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dream_peers")
class GLUFeedForward(keras.layers.Layer):
    """LayerNorm -> Dense(hidden, no bias) -> split a|b -> a * swish(b) -> Dropout -> Dense(d, no bias) -> Dropout.

    The gate halves the hidden width (2048 -> 1024 in the published model), so the two
    projections hold ``d * hidden + hidden / 2 * d`` weights. No residual here: the
    Macaron block adds it with the 0.5 factor.

    Args:
        hidden_dim: width of the first projection (must be even).
        dropout: rate of both dropouts.
        epsilon: LayerNormalization epsilon.
    """

    def __init__(self, hidden_dim=2048, dropout=0.1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(hidden_dim) < 2 or int(hidden_dim) % 2:
            raise ValueError(f"GLUFeedForward hidden_dim must be even and >= 2, got {hidden_dim}")
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        d = input_shape[-1]
        if d is None:
            raise ValueError(f"{self.name}: GLUFeedForward needs a known channel dimension")
        policy = self.dtype_policy
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy, name=f"{self.name}_norm")
        self.norm.build(input_shape)
        self.expand = keras.layers.Dense(self.hidden_dim, use_bias=False, dtype=policy, name=f"{self.name}_expand")
        self.expand.build(input_shape)
        self.inner_dropout = keras.layers.Dropout(self.dropout, dtype=policy, name=f"{self.name}_inner_dropout")
        self.project = keras.layers.Dense(d, use_bias=False, dtype=policy, name=f"{self.name}_project")
        self.project.build(input_shape[:-1] + (self.hidden_dim // 2,))
        self.out_dropout = keras.layers.Dropout(self.dropout, dtype=policy, name=f"{self.name}_out_dropout")
        self.built = True

    def call(self, inputs, training=None):
        a, b = ops.split(self.expand(self.norm(inputs)), 2, axis=-1)
        x = self.inner_dropout(a * ops.silu(b), training=training)
        return self.out_dropout(self.project(x), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_dim": self.hidden_dim, "dropout": self.dropout, "epsilon": self.epsilon})
        return config

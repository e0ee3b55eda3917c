"""Token embedding of the Macaron transformer: k-mer convolution + position + strand."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dream_peers")
class StrandedTokenEmbedding(keras.layers.Layer):
    """``(batch, L)`` int tokens -> ``Conv1D(one_hot(tokens)) + position[L] + strand[s]``, ``(batch, L, d)``.

    A same-padded Conv1D of width ``kernel_size`` on the one-hot tokens is the published
    patch-extract + Dense k-mer embedding written as one op. The input holds the forward
    strand then its reverse complement (``num_strands`` equal halves), so every token also
    gets a learned strand vector: 0 for the first half, 1 for the second.

    Args:
        d_model: embedding width (published: 512).
        vocab_size: token classes (A C G T N + mask M = 6).
        kernel_size: k-mer width (10).
        num_strands: equal parts of the sequence axis that get their own strand vector (2).
    """

    def __init__(self, d_model=512, vocab_size=6, kernel_size=10, num_strands=2, **kwargs):
        super().__init__(**kwargs)
        self.d_model = int(d_model)
        self.vocab_size = int(vocab_size)
        self.kernel_size = int(kernel_size)
        self.num_strands = int(num_strands)

    def build(self, input_shape):
        length = tuple(input_shape)[1]
        if length is None or length % self.num_strands:
            raise ValueError(f"{self.name}: the token axis must have a static length divisible by "
                             f"num_strands={self.num_strands}; got input shape {tuple(input_shape)}")
        self.kmer = keras.layers.Conv1D(self.d_model, self.kernel_size, padding="same", dtype=self.dtype_policy,
                                        name=f"{self.name}_kmer")
        self.kmer.build((None, length, self.vocab_size))
        self.position = self.add_weight(name="position", shape=(length, self.d_model),
                                        initializer=keras.initializers.RandomUniform(-0.05, 0.05))
        self.strand = self.add_weight(name="strand", shape=(self.num_strands, self.d_model),
                                      initializer=keras.initializers.RandomUniform(-0.05, 0.05))
        self._strand_index = [i * self.num_strands // length for i in range(length)]
        self.built = True

    def call(self, tokens):
        return self.embed_one_hot(ops.one_hot(ops.cast(tokens, "int32"), self.vocab_size, dtype=self.compute_dtype))

    def embed_one_hot(self, one_hot):
        """The embedding of ``(batch, L, vocab_size)`` one-hot tokens (differentiable in them: saliency)."""
        strand = ops.take(ops.cast(self.strand, self.compute_dtype), self._strand_index, axis=0)
        return self.kmer(ops.cast(one_hot, self.compute_dtype)) + ops.cast(self.position, self.compute_dtype) + strand

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:2] + (self.d_model,)

    def get_config(self):
        config = super().get_config()
        config.update({"d_model": self.d_model, "vocab_size": self.vocab_size, "kernel_size": self.kernel_size,
                       "num_strands": self.num_strands})
        return config

"""LegNet's squeeze-and-excitation gate, with a bilinear branch in the bottleneck."""
import keras
from keras import ops

from legnet_tf.layers import _initializers as _init
from legnet_tf.layers.cp_bilinear import CPBilinear


@keras.saving.register_keras_serializable(package="legnet_tf")
class SEBlock(keras.layers.Layer):
    """Rescales each channel by a gate computed from the whole sequence.

    ``z = Dense(m)(mean over length) -> SiLU -> Dense(m)``; then
    ``concat(z, CPBilinear(m // 2)(z)) -> SiLU -> Dense(channels) -> sigmoid``,
    and the input is multiplied by the gate. A plain SE gate is a sum of
    per-channel effects; the bilinear half adds products of pairs of pooled
    features (e.g. "motif X present AND motif Y present") at a low CP rank.

    Args:
        squeeze_units: bottleneck width ``m`` (reference: block input channels // 4).
        bilinear_rank: CP rank of the bilinear branch, ``"auto"`` = half the
            parameters of the full ``m x m x m//2`` tensor.
    """

    def __init__(self, squeeze_units, bilinear_rank="auto", **kwargs):
        super().__init__(**kwargs)
        self.squeeze_units = int(squeeze_units)
        if self.squeeze_units < 2:
            raise ValueError(f"`squeeze_units` must be >= 2 (the bilinear branch has m // 2 outputs); "
                             f"got {squeeze_units}")
        self.bilinear_rank = bilinear_rank
        self.squeeze = keras.layers.Dense(self.squeeze_units, kernel_initializer=_init.dense_kernel(),
                                          dtype=self.dtype_policy, name="squeeze")
        self.mix = keras.layers.Dense(self.squeeze_units, kernel_initializer=_init.dense_kernel(),
                                      dtype=self.dtype_policy, name="mix")
        self.bilinear = CPBilinear(self.squeeze_units // 2, rank=bilinear_rank, dtype=self.dtype_policy,
                                   name="bilinear")
        self.excite = None  # needs the channel count: created in build

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("SEBlock needs a known channel dimension.")
        batch = input_shape[0]
        self.squeeze.build((batch, channels))
        self.mix.build((batch, self.squeeze_units))
        self.bilinear.build((batch, self.squeeze_units))
        self.excite = keras.layers.Dense(channels, kernel_initializer=_init.dense_kernel(),
                                         dtype=self.dtype_policy, name="excite")
        self.excite.build((batch, self.squeeze_units + self.bilinear.out_features))

    def call(self, inputs):
        z = self.mix(ops.silu(self.squeeze(ops.mean(inputs, axis=1))))
        z = ops.silu(ops.concatenate([z, self.bilinear(z)], axis=-1))
        gate = ops.sigmoid(self.excite(z))
        return inputs * ops.expand_dims(gate, 1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"squeeze_units": self.squeeze_units, "bilinear_rank": self.bilinear_rank})
        return config

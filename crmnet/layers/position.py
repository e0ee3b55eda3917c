"""Position information for CRMnet's transformer (no trainable weights)."""
import keras
from keras import ops

POSITION_MODES = ("multiply_sin", "add_sinusoidal")


@keras.saving.register_keras_serializable(package="crmnet")
class PositionEncoding(keras.layers.Layer):
    """Injects position into the condensed sequence before the transformer.

    Two modes, because the published code and paper disagree:

    - ``"multiply_sin"`` (published code, what the released weights were
      trained with): scales position ``i`` of every channel by
      ``sin(i * span / L)``, ``L`` = current length; for ``L = 14`` and
      ``span = 111`` these are exactly ``sin(arange(0, 111, 111 / 14))``.
      Position 0 is zeroed. (``i * span / L`` always yields ``L`` values,
      unlike a float ``arange``, which gives ``L + 1`` for some ``L``.)
    - ``"add_sinusoidal"`` (paper text): adds the standard sin/cos encoding,
      ``d_model`` = channel count, even channels sin, odd channels cos.

    Args:
        mode: one of ``"multiply_sin"``, ``"add_sinusoidal"``.
        span: the published ``111`` of the multiplicative mode.
        max_wavelength: base of the additive encoding's wavelengths.
    """

    def __init__(self, mode="multiply_sin", span=111.0, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in POSITION_MODES:
            raise ValueError(f"`mode` must be one of {POSITION_MODES}; got {mode!r}")
        self.mode = mode
        self.span = float(span)
        self.max_wavelength = float(max_wavelength)

    def encoding(self, length, channels):
        """The float32 table this layer multiplies by (L, 1) or adds (L, C)."""
        positions = ops.cast(ops.arange(length), "float32")
        if self.mode == "multiply_sin":
            step = self.span / ops.cast(length, "float32")
            return ops.expand_dims(ops.sin(positions * step), -1)
        index = ops.cast(ops.arange(channels), "float32")
        pair = ops.floor(index / 2.0) * 2.0
        rates = ops.power(self.max_wavelength, -pair / ops.cast(channels, "float32"))
        angles = ops.expand_dims(positions, -1) * ops.expand_dims(rates, 0)
        is_even = ops.equal(ops.mod(ops.arange(channels), 2), 0)
        return ops.where(is_even, ops.sin(angles), ops.cos(angles))

    def call(self, inputs):
        shape = ops.shape(inputs)
        table = ops.cast(self.encoding(shape[1], shape[2]), self.compute_dtype)
        if self.mode == "multiply_sin":
            return inputs * table
        return inputs + table

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"mode": self.mode, "span": self.span, "max_wavelength": self.max_wavelength}
        )
        return config

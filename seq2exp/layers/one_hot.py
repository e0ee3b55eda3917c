"""One-hot encoding of stored base indices, inside the model."""
import keras
import numpy as np
from keras import ops

from data_prep.alphabet import COMPLEMENT

# The package stores bases as uint8 codes in this order; anything >= 4 is N.
STORAGE_ALPHABET = "ACGTN"


def lookup_matrix(order, n_value=0.0):
    """The (5, len(order)) float32 table that maps a storage code to its encoding.

    Row ``i`` encodes ``STORAGE_ALPHABET[i]``. A base missing from ``order``
    encodes as zeros; N sets its own channel (if ``order`` has one) and
    ``n_value`` in every base channel.
    """
    order = order.upper()
    if not order or set(order) - set(STORAGE_ALPHABET):
        raise ValueError(f"`order` must use letters of {STORAGE_ALPHABET!r}; got {order!r}")
    if len(set(order)) != len(order):
        raise ValueError(f"`order` has repeated letters: {order!r}")
    table = np.zeros((len(STORAGE_ALPHABET), len(order)), dtype="float32")
    for row, letter in enumerate(STORAGE_ALPHABET[:4]):
        if letter in order:
            table[row, order.index(letter)] = 1.0
    for col, letter in enumerate(order):
        table[4, col] = 1.0 if letter == "N" else n_value
    return table


def reverse_complement(codes):
    """``(batch, length)`` base codes -> their reverse complement, inside the step (``keras.ops``).

    The complement is ``data_prep.alphabet.COMPLEMENT`` (A<->T, C<->G, N stays); codes outside
    0..4 (e.g. a mask token) are kept as they are. The host-side numpy twin is
    ``data_prep.alphabet.reverse_complement``.
    """
    codes = ops.cast(codes, "int32")
    known = ops.logical_and(ops.greater_equal(codes, 0), ops.less(codes, len(COMPLEMENT)))
    table = ops.convert_to_tensor(COMPLEMENT.astype("int32"))
    complement = ops.take(table, ops.clip(codes, 0, len(COMPLEMENT) - 1), axis=0)
    return ops.flip(ops.where(known, complement, codes), axis=1)


@keras.saving.register_keras_serializable(package="seq2exp")
class OneHotIndex(keras.layers.Layer):
    """Turns uint8 base codes (A=0, C=1, G=2, T=3, N=4) into one-hot channels.

    Sequences travel to the accelerator as 1 byte per base rather than a float
    one-hot (20x smaller host->device traffic and storage); the encoding is a
    gather from a tiny constant table, so each model can choose the channel
    order and N convention its published weights were trained with.

    Args:
        order: channel order, letters from "ACGTN", e.g. "NACGT" (CRMnet:
            channel 0 = N/other), "AGCT" (LegNet), "ACGT".
        n_value: value of every base channel for an N (0.25 for a uniform
            prior, 1.0 for all-ones, 0.0 for all-zeros).

    Codes outside 0..4 are treated as N.
    """

    def __init__(self, order="ACGT", n_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.order = str(order).upper()
        self.n_value = float(n_value)
        self._table = lookup_matrix(self.order, self.n_value)
        self.supports_masking = False

    @property
    def channels(self):
        return len(self.order)

    def call(self, inputs):
        codes = ops.cast(inputs, "int32")
        valid = ops.logical_and(ops.greater_equal(codes, 0), ops.less(codes, 5))
        codes = ops.where(valid, codes, ops.full_like(codes, 4))
        table = ops.convert_to_tensor(self._table, dtype=self.compute_dtype)
        return ops.take(table, codes, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"order": self.order, "n_value": self.n_value})
        return config

"""uint8 records -> LegNet's 6-channel input, with keras.ops only (runs inside the replicated step).

Channels, in the reference order (released weights depend on it):
``[A, G, C, T, is_reverse, is_singleton]``; N is 0.25 in each base channel.
Stored codes are A0 C1 G2 T3 N4 (``seq2exp.layers.one_hot``); the one-hot is a
gather from a (5, 4) table, so only one byte per base crosses to the device.

Training augmentation (``orientation_bits``): every example of a training batch
is used in a pseudo-random orientation (forward or reverse complement, flag
set to match), so over the epochs each sequence is seen both ways, as with the
reference's doubled (forward + reverse-complement) training set. We do not
double the batch: ``spec.targets(batch)`` must keep the batch's length, the
step cost and the loss scale stay those of the configured batch, and a batch
never holds both strands of one sequence (which would bias BatchNorm statistics).

The orientation is a stateless hash of the batch's codes, not a random op:
batches are reshuffled every epoch, so a sequence's orientation changes from
epoch to epoch, yet there is no RNG variable to create inside ``strategy.run``
or mirror across replicas, it traces under XLA and JAX, and a resumed run
(same data order) makes the same choices as an uninterrupted one.
"""
import numpy as np
from keras import ops

from seq2exp.layers.one_hot import lookup_matrix, reverse_complement

BASE_ORDER = "AGCT"
N_VALUE = 0.25
N_CODE = 4
CHANNELS = ("A", "G", "C", "T", "is_reverse", "is_singleton")

_PRIME = 32749  # < 2**15: every product below stays inside int32
_POSITION_WEIGHTS = np.random.default_rng(20230517).integers(1, _PRIME, size=4096).astype("int32")


def _codes(seq_codes):
    """int32 codes with anything outside 0..4 mapped to N."""
    codes = ops.cast(seq_codes, "int32")
    valid = ops.logical_and(ops.greater_equal(codes, 0), ops.less(codes, N_CODE + 1))
    return ops.where(valid, codes, ops.full_like(codes, N_CODE))


def reverse_complement_codes(seq_codes):
    """Reverse complement of ``(batch, length)`` codes (anything outside 0..4 counts as N)."""
    return reverse_complement(_codes(seq_codes))


def orientation_bits(seq_codes):
    """Pseudo-random ``(batch,)`` bool: True = use the reverse complement (see module docstring).

    Depends on the example's own codes and on the whole batch's, so it is
    decorrelated within a batch and changes when the batch composition changes.
    """
    codes = _codes(seq_codes)
    length = codes.shape[1]
    if length is None or length > len(_POSITION_WEIGHTS):
        raise ValueError(f"orientation_bits needs a static length <= {len(_POSITION_WEIGHTS)}; got {length}")
    weights = ops.convert_to_tensor(_POSITION_WEIGHTS[:length], dtype="int32")
    own = ops.mod(ops.sum(codes * weights, axis=1), _PRIME)  # < 2**15
    batch = ops.mod(ops.sum(own), _PRIME)
    mixed = ops.mod(own * 7919 + batch * 4099 + 12345, _PRIME)
    mixed = ops.mod(mixed * mixed + 1013, _PRIME)  # quadratic round: spreads nearby sums
    return ops.equal(ops.mod(mixed, 2), 1)


def make_inputs(seq_codes, is_singleton, reverse=False, dtype="float32"):
    """``(batch, length)`` codes -> ``(batch, length, 6)`` model input.

    Args:
        seq_codes: uint8/int codes A0 C1 G2 T3 N4 (others count as N).
        is_singleton: ``(batch,)`` 0/1 (or bool); 0 at prediction time.
        reverse: ``False``/``True`` for the whole batch, or a ``(batch,)`` bool
            tensor choosing the reverse complement per example.
        dtype: dtype of the result.
    """
    codes = _codes(seq_codes)
    batch, length = ops.shape(codes)[0], ops.shape(codes)[1]
    if isinstance(reverse, (bool, np.bool_)):
        flag = ops.full((batch,), 1.0 if reverse else 0.0, dtype=dtype)
        if reverse:
            codes = reverse_complement_codes(codes)
    else:
        rev = ops.cast(ops.reshape(reverse, (-1,)), "bool")
        codes = ops.where(ops.expand_dims(rev, 1), reverse_complement_codes(codes), codes)
        flag = ops.cast(rev, dtype)
    table = ops.convert_to_tensor(lookup_matrix(BASE_ORDER, N_VALUE), dtype=dtype)
    one_hot = ops.take(table, codes, axis=0)  # (batch, length, 4)
    singleton = ops.cast(ops.reshape(is_singleton, (-1,)), dtype)

    def channel(values):  # (batch,) -> (batch, length, 1)
        return ops.broadcast_to(ops.reshape(values, (-1, 1, 1)), (batch, length, 1))

    return ops.concatenate([one_hot, channel(flag), channel(singleton)], axis=-1)


def training_inputs(batch):
    """A training batch in pseudo-random per-example orientations, with its is_singleton flags."""
    return make_inputs(batch["seq"], batch["is_singleton"], reverse=orientation_bits(batch["seq"]))


def prediction_inputs(batch, reverse=False):
    """Forward (or reverse-complement) inputs with is_singleton = 0, the test-time convention."""
    seq = batch["seq"]
    return make_inputs(seq, ops.zeros((ops.shape(seq)[0],), dtype="float32"), reverse=reverse)

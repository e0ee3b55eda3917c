"""uint8 ``crmnet``-layout records -> each DREAM peer's own input, with keras.ops only.

The records are the shared 112 nt ``crmnet`` layout (A0 C1 G2 T3 N4; the sequence as
given from position 0, N-padded at the 3' end, longer ones cut at 112). The transforms run
inside the replicated training step, so only one byte per base crosses to the device and
no preprocessing variant needs its own file format.

* CNN-BiLSTM: the first 110 positions, one-hot A C G T with N = [1, 1, 1, 1].
* Macaron: drop the constant 17 nt 5' and 13 nt 3' adapters, centre the rest in 100
  tokens with N on both sides (the extra N on the right), append the reverse complement:
  200 tokens. Training masks about 5% of the non-N tokens with M = 5.

A sequence's length is read from the record as 1 + the position of its last non-N code;
a real sequence ending in N therefore looks shorter (rare; the layout keeps no length).

The mask is a stateless hash of the batch's codes, each example's row and its positions
instead of a random op: there is no RNG state to create inside ``strategy.run`` or mirror
across replicas, it traces under XLA and JAX, a resumed run makes the same choices, and
batches are reshuffled every epoch, so a sequence's masked positions change between epochs.
"""
import numpy as np
from keras import ops

from seq2exp.layers.one_hot import lookup_matrix, reverse_complement

N_CODE = 4
MASK_TOKEN = 5
ADAPTER_5_LEN = 17
ADAPTER_3_LEN = 13
CNN_LENGTH = 110
STRAND_TOKENS = 100
MASK_RATE = 0.05

_PRIME = 32749  # < 2**15: every product below stays inside int32
_rng = np.random.default_rng(2022)
_POSITION_WEIGHTS = _rng.integers(1, _PRIME, size=4096).astype("int32")
_POSITION_SALT = _rng.integers(0, _PRIME, size=(2, 4096)).astype("int32")


def codes_int(seq):
    """int32 codes with anything outside 0..4 mapped to N."""
    codes = ops.cast(seq, "int32")
    valid = ops.logical_and(ops.greater_equal(codes, 0), ops.less_equal(codes, N_CODE))
    return ops.where(valid, codes, ops.full_like(codes, N_CODE))


def sequence_lengths(seq):
    """``(batch,)`` int32: 1 + the last non-N position (0 for an all-N row)."""
    codes = codes_int(seq)
    positions = ops.arange(1, codes.shape[1] + 1, dtype="int32")
    return ops.max(ops.where(ops.less(codes, N_CODE), positions[None, :], 0), axis=1)


def _static_length(seq, needed, what):
    length = seq.shape[1]
    if length is None or length < needed:
        raise ValueError(f"{what} needs records of at least {needed} nt (the 112 nt 'crmnet' layout); "
                         f"got sequences of shape {tuple(seq.shape)}")


def one_hot_110(seq, length=CNN_LENGTH, dtype="float32"):
    """CNN-BiLSTM input ``(batch, length, 4)``: the first ``length`` codes, A C G T one-hot, N = [1, 1, 1, 1]."""
    _static_length(seq, length, "the CNN-BiLSTM transform")
    table = ops.convert_to_tensor(lookup_matrix("ACGT", n_value=1.0), dtype=dtype)
    return ops.take(table, codes_int(seq)[:, :length], axis=0)


def exact_length_weight(seq, length=CNN_LENGTH):
    """``(batch,)`` float32: 1 where the sequence is exactly ``length`` nt, else 0 (the CNN-BiLSTM drops others)."""
    return ops.cast(ops.equal(sequence_lengths(seq), length), "float32")


def reverse_complement_tokens(tokens):
    """Flip the position axis and swap A<->T, C<->G; N (and M) stay."""
    return reverse_complement(tokens)


def macaron_tokens(seq, trim_5=ADAPTER_5_LEN, trim_3=ADAPTER_3_LEN, width=STRAND_TOKENS):
    """``(batch, 2 * width)`` int32: trimmed, centre-padded forward strand + its reverse complement.

    The part left after trimming is centred in ``width`` tokens (``(width - n) // 2`` N
    on the left, the rest on the right). Parts longer than ``width`` are cut at the 3' end
    (the reference drops them; the 112 nt layout never holds one for width 100).
    """
    _static_length(seq, trim_5 + 1, "the Macaron transform")
    codes = codes_int(seq)
    source, inside = token_sources(codes, trim_5, trim_3, width)
    forward = ops.where(inside, ops.take_along_axis(codes, source, axis=1), N_CODE)
    return ops.concatenate([forward, reverse_complement_tokens(forward)], axis=1)


def token_sources(codes, trim_5=ADAPTER_5_LEN, trim_3=ADAPTER_3_LEN, width=STRAND_TOKENS):
    """``(batch, width)`` int32 record position of each forward-strand token, and whether it has one (else N)."""
    core = ops.clip(sequence_lengths(codes) - trim_5 - trim_3, 0, width)
    left = (width - core) // 2
    offset = ops.arange(width, dtype="int32")[None, :] - left[:, None]  # index into the trimmed part
    inside = ops.logical_and(ops.greater_equal(offset, 0), ops.less(offset, core[:, None]))
    return ops.clip(offset + trim_5, 0, codes.shape[1] - 1), inside


def hash_uniform(tokens):
    """Stateless pseudo-random ``(batch, L)`` float32 in [0, 1) from the tokens, the rows and the positions.

    Each example's own code hash, its row in the batch (so duplicate sequences get
    different draws) and the whole batch's hash are mixed with per-position salts in
    two quadratic rounds modulo a prime below 2**15, so int32 never overflows.
    """
    tokens = ops.cast(tokens, "int32")
    length = tokens.shape[1]
    if length is None or length > len(_POSITION_WEIGHTS):
        raise ValueError(f"hash_uniform needs a static length <= {len(_POSITION_WEIGHTS)}; got {length}")
    p = _PRIME
    weights = ops.convert_to_tensor(_POSITION_WEIGHTS[:length], dtype="int32")
    salt1 = ops.convert_to_tensor(_POSITION_SALT[0, :length], dtype="int32")[None, :]
    salt2 = ops.convert_to_tensor(_POSITION_SALT[1, :length], dtype="int32")[None, :]
    own = ops.mod(ops.sum(ops.mod(tokens * weights, p), axis=1), p)  # (b,) < 2**15
    batch = ops.mod(ops.sum(own), p)
    row = ops.mod(ops.arange(ops.shape(tokens)[0], dtype="int32") * 2551, p)
    example = ops.mod(ops.mod(own * 7919, p) + row + ops.mod(batch * 4099, p), p)[:, None]
    h = ops.mod(example + salt1, p)
    h = ops.mod(h * h + 12345, p)
    h = ops.mod(ops.mod(h * 30011, p) + salt2, p)
    h = ops.mod(h * h + 1013, p)
    return ops.cast(h, "float32") / float(p)


def mask_tokens(tokens, rate=MASK_RATE):
    """Replace each non-N token by ``MASK_TOKEN`` with probability ``rate``; returns (tokens, mask bool)."""
    tokens = ops.cast(tokens, "int32")
    mask = ops.logical_and(ops.less(tokens, N_CODE), ops.less(hash_uniform(tokens), rate))
    return ops.where(mask, MASK_TOKEN, tokens), mask


def cnn_bilstm_inputs(batch, training=False):
    """Registry transform: ``batch["seq"]`` -> ``(batch, 110, 4)`` one-hot (no augmentation)."""
    return one_hot_110(batch["seq"])


def macaron_inputs(batch, training=False, rate=MASK_RATE):
    """Registry transform: 200 tokens, with about ``rate`` of the non-N ones masked when training."""
    tokens = macaron_tokens(batch["seq"])
    return mask_tokens(tokens, rate)[0] if training else tokens

"""Preprocessing of the shared 112 nt records for the DREAM peers, and the token masking."""
import keras
import numpy as np
import pytest

from data_prep import alphabet
from data_prep.layouts import ADAPTER_3, ADAPTER_5, get_layout
from dream_peers.transforms import (
    MASK_TOKEN,
    exact_length_weight,
    hash_uniform,
    macaron_inputs,
    macaron_tokens,
    mask_tokens,
    one_hot_110,
    sequence_lengths,
)
from tests.helpers import random_codes

LAYOUT = get_layout("crmnet")


def _records(seqs):
    return np.stack([LAYOUT.apply_one(s) for s in seqs])


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_one_hot_110_with_all_ones_n():
    rec = _records(["ACGTN" * 22 + "AC", "ACG"])  # 112 nt (cut to 110) and a short one (N-padded)
    x = _np(one_hot_110(rec))
    assert x.shape == (2, 110, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :5], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(x[1, 3:], np.ones((107, 4)))
    with pytest.raises(ValueError, match="at least 110"):
        one_hot_110(np.zeros((1, 100), np.uint8))


def test_lengths_and_exact_length_weight():
    seqs = ["A" * 110, "NNN" + "C" * 107, "G" * 109, "T" * 111, "A" * 150, "N" * 20]
    rec = _records(seqs)
    np.testing.assert_array_equal(_np(sequence_lengths(rec)), [110, 110, 109, 111, 112, 0])
    np.testing.assert_array_equal(_np(exact_length_weight(rec)), [1, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("variable", [80, 81, 57, 0])
def test_macaron_tokens_trim_centre_pad_and_reverse_complement(variable):
    rng = np.random.default_rng(variable)
    core = "".join(rng.choice(list("ACGT"), variable))
    tokens = _np(macaron_tokens(_records([ADAPTER_5 + core + ADAPTER_3])))
    assert tokens.shape == (1, 200)
    left = (100 - variable) // 2
    forward = "N" * left + core + "N" * (100 - variable - left)  # the extra N on the right
    assert alphabet.decode(tokens[0, :100]) == forward
    assert alphabet.decode(tokens[0, 100:]) == alphabet.decode(alphabet.reverse_complement(alphabet.encode(forward)))


def test_masking_rate_only_non_n_and_mask_token():
    codes = random_codes(3000, 112, seed=5)  # 20% N anywhere in the sequence
    tokens = _np(macaron_tokens(codes))
    masked, mask = (_np(t) for t in mask_tokens(tokens))
    non_n = tokens < 4
    assert not np.any(mask & ~non_n)  # N is never masked
    np.testing.assert_array_equal(masked[mask], MASK_TOKEN)
    np.testing.assert_array_equal(masked[~mask], tokens[~mask])
    assert 0.045 < mask.sum() / non_n.sum() < 0.055
    for base in range(4):  # no base is favoured
        assert 0.04 < mask[tokens == base].mean() < 0.06
    per_position = mask.sum(0) / np.maximum(non_n.sum(0), 1)
    well_sampled = non_n.sum(0) > 1500
    assert well_sampled.sum() > 150 and 0.03 < per_position[well_sampled].min() and per_position.max() < 0.075
    assert _np(mask_tokens(tokens, rate=0.0)[1]).sum() == 0


def test_masking_is_deterministic_per_batch_but_varies():
    codes = np.repeat(random_codes(1, 112, seed=1, with_n=False), 32, axis=0)  # duplicate sequences
    tokens = _np(macaron_tokens(codes))
    a, b = _np(mask_tokens(tokens)[1]), _np(mask_tokens(tokens)[1])
    np.testing.assert_array_equal(a, b)  # a pure function of the batch (resumable, replica-safe)
    assert len({row.tobytes() for row in a}) == 32  # duplicates in a batch get different masks
    reshuffled = tokens.copy()  # the same sequence in a batch of other company (the next epoch's shuffle)
    reshuffled[-1] = _np(macaron_tokens(random_codes(1, 112, seed=9, with_n=False)))[0]
    assert not np.array_equal(_np(mask_tokens(reshuffled)[1])[0], a[0])
    u = _np(hash_uniform(tokens))
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02


def test_macaron_inputs_mask_only_when_training():
    batch = {"seq": random_codes(64, 112, seed=2)}
    plain, trained = _np(macaron_inputs(batch, False)), _np(macaron_inputs(batch, True))
    np.testing.assert_array_equal(plain, _np(macaron_tokens(batch["seq"])))
    assert not np.any(plain == MASK_TOKEN) and np.any(trained == MASK_TOKEN)
    np.testing.assert_array_equal(trained[trained != MASK_TOKEN], plain[trained != MASK_TOKEN])

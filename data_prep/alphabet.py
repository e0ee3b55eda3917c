"""One byte per base: the storage code shared by every layout, reader and model.

A=0 C=1 G=2 T=3 N=4. Any IUPAC ambiguity code becomes N, lower case is accepted, and every
other byte is invalid (code 255) so that parsers can reject the record instead of guessing.
Models turn these indices into one-hot / reverse complement / extra channels themselves, on the
accelerator, so nothing float ever lands on disk.
"""
from __future__ import annotations

import numpy as np

BASES = "ACGTN"
A, C, G, T, N = range(5)
INVALID = 255
IUPAC_AMBIGUOUS = "NRYSWKMBDHV"

#: byte -> code lookup table (256 entries)
ENCODE = np.full(256, INVALID, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    ENCODE[ord(_base)] = ENCODE[ord(_base.lower())] = _code
for _base in IUPAC_AMBIGUOUS:
    ENCODE[ord(_base)] = ENCODE[ord(_base.lower())] = N

#: code -> ASCII byte (index 255 maps to '?', never produced for written records)
DECODE = np.frombuffer(b"ACGTN" + b"?" * 251, dtype=np.uint8)

#: code -> code of the complementary base (N stays N)
COMPLEMENT = np.array([T, G, C, A, N], dtype=np.uint8)


def encode(seq: str | bytes) -> np.ndarray:
    """Index-code one sequence; invalid characters come back as 255."""
    raw = seq.encode("ascii", "replace") if isinstance(seq, str) else seq
    return ENCODE[np.frombuffer(raw, dtype=np.uint8)]


def decode(codes: np.ndarray) -> str:
    """Codes back to an upper-case string (the inverse of `encode` for A/C/G/T/N)."""
    return DECODE[np.asarray(codes, dtype=np.uint8)].tobytes().decode("ascii")


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement along the last axis of an index-coded array."""
    return COMPLEMENT[np.asarray(codes)[..., ::-1]]


def first_invalid(seq: str | bytes) -> int:
    """Position of the first invalid character, or -1 when the sequence is clean."""
    bad = np.flatnonzero(encode(seq) == INVALID)
    return int(bad[0]) if bad.size else -1

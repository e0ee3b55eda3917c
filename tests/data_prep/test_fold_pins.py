"""The published fold rule, pinned independently: fold = mmh3.hash(SEQUENCE, seed, signed=False) % 10.

LegNet's reference hashes the sequence as it is written upper-case, and the README promises that lower
case is accepted; so a mixed-case line must land in the fold of its upper-cased sequence (and two lines
differing only in case in the same fold). The expected folds come from the `mmh3` package on the
upper-cased raw sequence (before any layout trims, pads or cuts it), never from our own hashing code.
"""
import mmh3
import numpy as np
import pytest

from tests.data_prep.util import decode_all, run_build


def _mixed_case_sequences(n=400, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(20, 160))  # short, typical and longer than the crmnet layout (112)
        seq = "".join(rng.choice(list("ACGTN"), size=length))
        lower = rng.random(length) < (0.0 if i % 4 == 0 else 1.0 if i % 4 == 1 else 0.5)
        out.append("".join(c.lower() if low else c for c, low in zip(seq, lower)))
    return out


def _folds_by_label(folder):
    return {int(r["label"]): r["fold"] for rows in decode_all(folder).values() for r in rows}


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
@pytest.mark.parametrize("seed", [0, 12345])
def test_mixed_case_folds_equal_mmh3_of_the_upper_cased_sequence(tmp_path, fmt, seed):
    seqs = _mixed_case_sequences()
    src = tmp_path / f"x.{fmt}"
    sep = "\t" if fmt == "tsv" else ","
    # quoted CSV takes the csv-module path, plain TSV the vectorised one: both must hash the same
    src.write_text("".join(f'"{s}"{sep}{i}\n' if fmt == "csv" else f"{s}{sep}{i}\n" for i, s in enumerate(seqs)))
    run_build([src], tmp_path / "out", "--workers", "1", "--hash-seed", seed, "--layout", "crmnet")
    got = _folds_by_label(tmp_path / "out")
    assert len(got) == len(seqs)
    expected = {i: mmh3.hash(s.upper(), seed, signed=False) % 10 for i, s in enumerate(seqs)}
    assert got == expected
    # the lower-case lines would mostly land elsewhere if they were hashed as written
    as_written = {i: mmh3.hash(s, seed, signed=False) % 10 for i, s in enumerate(seqs)}
    assert sum(as_written[i] != expected[i] for i in expected) > len(seqs) // 2


def test_case_variants_of_one_sequence_share_a_fold(tmp_path):
    base = "ACGTTGCAAGGCTTAACCGGTTAAGGCCTTACGATCGATCGTAGCTAGCTAGGATCC"
    variants = [base, base.lower(), base[:20].lower() + base[20:], "".join(
        c.lower() if i % 2 else c for i, c in enumerate(base))]
    src = tmp_path / "x.tsv"
    src.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(variants)))
    run_build([src], tmp_path / "out", "--workers", "1", "--layout", "legnet")
    got = _folds_by_label(tmp_path / "out")
    assert set(got.values()) == {mmh3.hash(base, 0, signed=False) % 10}


def test_fasta_folds_follow_the_upper_cased_sequence(tmp_path):
    seqs = _mixed_case_sequences(60, seed=1)
    fa = tmp_path / "x.fa"
    # FASTA sequences wrapped over several lines: the hash is of the joined sequence
    fa.write_text("".join(f">s{i}\n{s[:30]}\n{s[30:]}\n" for i, s in enumerate(seqs)))
    run_build([fa], tmp_path / "out", "--workers", "1", "--split", "none")
    rows = decode_all(tmp_path / "out")["all"]
    assert {r["id"]: r["fold"] for r in rows} == {
        f"s{i}": mmh3.hash(s.upper(), 0, signed=False) % 10 for i, s in enumerate(seqs)}

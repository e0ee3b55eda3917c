"""The two published input layouts, pinned to values typed in from the specs (not our layout constants).

legnet.md: drop the 17 nt 5' adapter, prepend the 150 nt of pTpA plasmid upstream of the insert (given
there letter by letter), keep the last 150 nt. crmnet.md: pad with N at the END to 112, cut longer
sequences at the end. A single wrong letter of the flank changes every LegNet input without changing
any length, so the flank is compared letter by letter.
"""
import numpy as np

from tests.conftest import require_shared_specs
from tests.data_prep.util import decode_all, run_build

# legnet.md, "Those 150 nt are:"
PTPA_FLANK = ("AGTCCACTATTAAAGAACGTGGACTCCAACGTCAAAGGGCGAAAAACCGTCTATCAGGGCGATGGCCCACTACGTGAACCATCACCCTAATCAAG"
              "TGCTAGCAGGAATGATGCAAAAGGTTCCCGATTCGAACTGCATTTTTTTCACATC")
ADAPTER_5 = "TGCATTTTTTTCACATC"  # the 17 nt the legnet layout drops


def _sequences(seed=0):
    rng = np.random.default_rng(seed)
    # typical 80 nt inserts between the adapters, short and long ones, one exactly 150 + 17
    lengths = [17 + 80 + 13, 18, 40, 150 + 17, 200, 111, 112, 113, 1, 7]
    return ["".join(rng.choice(list("ACGT"), size=n)) for n in lengths]


def test_flank_typed_here_is_the_one_in_the_spec():
    spec = (require_shared_specs() / "legnet.md").read_text()
    assert PTPA_FLANK in spec.replace("\n", "")
    assert len(PTPA_FLANK) == 150 and PTPA_FLANK.endswith(ADAPTER_5)


def test_legnet_layout_is_the_plasmid_flank_then_the_sequence_after_its_adapter(tmp_path):
    seqs = [s for s in _sequences() if len(s) > 17]  # shorter ones are rejected (test_rejections.py)
    src = tmp_path / "x.tsv"
    src.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(seqs)))
    run_build([src], tmp_path / "out", "--layout", "legnet", "--split", "none", "--workers", "1")
    got = {int(r["label"]): r["seq"] for r in decode_all(tmp_path / "out")["all"]}
    assert got == {i: (PTPA_FLANK + s[17:])[-150:] for i, s in enumerate(seqs)}


def test_crmnet_layout_pads_and_cuts_at_the_3_prime_end(tmp_path):
    seqs = _sequences(1)
    src = tmp_path / "x.tsv"
    src.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(seqs)))
    run_build([src], tmp_path / "out", "--layout", "crmnet", "--split", "none", "--workers", "1")
    got = {int(r["label"]): r["seq"] for r in decode_all(tmp_path / "out")["all"]}
    assert got == {i: s[:112] + "N" * (112 - len(s[:112])) for i, s in enumerate(seqs)}

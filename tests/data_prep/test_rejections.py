"""Every rejection reason the data guide (docs/guide/data.md) lists, each checked for its reason code AND input line.

Each bad line sits between good ones, so a test also shows that one bad line never costs the others
(the build goes on, `records_in = written + rejected`) and that `--strict` names `file:line: reason`.
"""
from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from data_prep.build import BuildError
from data_prep.layouts import get_layout
from data_prep.parse import REASONS, TableSpec, parse_lines
from tests.data_prep.util import decode_all, run_build

GOOD = "ACGTACGTACGTACGTACGTACGTACGTACGT"  # 32 nt: long enough for every layout
README_REASONS = ("wrong_column_count", "non_numeric_expression", "non_finite_expression", "empty_sequence",
                  "invalid_character", "empty_line", "csv_quoting", "too_short_for_layout",
                  "sequence_before_header", "truncated_input", "label_out_of_float32_range")


def rejected_rows(out) -> list[dict]:
    """rejected.tsv as dicts (file, line, reason, detail, text)."""
    lines = (out / "rejected.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["file", "line", "reason", "detail", "text"]
    return [dict(zip(header, row.split("\t"))) for row in lines[1:]]


def build_and_check(tmp_path, name: str, text: str | bytes, expected: dict[int, str], *extra) -> list[dict]:
    """Build `text` as file `name`; the rejections must be exactly `expected` ({line: reason})."""
    src = tmp_path / name
    src.write_bytes(text if isinstance(text, bytes) else text.encode())
    m = run_build([src], tmp_path / "out", "--workers", "1", "--split", "none", *extra)
    rows = rejected_rows(tmp_path / "out")
    assert {int(r["line"]): r["reason"] for r in rows} == expected
    assert all(r["file"] == str(src) for r in rows)
    c = m["counts"]
    assert c["rejected"] == len(expected) and c["records_in"] == c["written"] + c["rejected"]
    assert c["rejected_by_reason"] == {r: list(expected.values()).count(r) for r in set(expected.values())}
    with pytest.raises(BuildError, match=f"^{src}:{min(expected)}: {expected[min(expected)]}: "):
        run_build([src], tmp_path / "strict", "--workers", "1", "--split", "none", "--strict", *extra)
    return rows


def test_the_data_guide_lists_exactly_the_parser_reasons():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide" / "data.md").read_text()
    listed = re.search(r"listed in `rejected.tsv` with its reason: (.*?)\. The manifest", guide, re.DOTALL)
    assert listed, "docs/guide/data.md no longer lists the rejection reasons where this test looks"
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == sorted(README_REASONS) == sorted(REASONS)


# (bad line, reason); each goes on line 2 of a TSV between two good lines
TSV_CASES = [
    (f"{GOOD}\t1.5\textra", "wrong_column_count"),
    (f"{GOOD}", "wrong_column_count"),
    (f"{GOOD}\tabc", "non_numeric_expression"),
    (f"{GOOD}\t", "non_numeric_expression"),
    (f"{GOOD}\t1.5.2", "non_numeric_expression"),
    (f"{GOOD}\tnan", "non_finite_expression"),
    (f"{GOOD}\tinf", "non_finite_expression"),
    (f"{GOOD}\t-Infinity", "non_finite_expression"),
    (f"{GOOD}\t1e999", "non_finite_expression"),
    ("\t3", "empty_sequence"),
    (f"{GOOD[:5]}U{GOOD[6:]}\t3", "invalid_character"),
    (f"{GOOD[:5]} {GOOD[6:]}\t3", "invalid_character"),
    ("", "empty_line"),
    ("\r", "empty_line"),
]


@pytest.mark.parametrize("layout", ["crmnet", "legnet"])
@pytest.mark.parametrize("bad,reason", TSV_CASES, ids=[f"{r}-{i}" for i, (_, r) in enumerate(TSV_CASES)])
def test_tsv_line_is_rejected_with_its_reason_and_line(tmp_path, bad, reason, layout):
    rows = build_and_check(tmp_path, "x.tsv", f"{GOOD}\t1\n{bad}\n{GOOD}\t2\n", {2: reason}, "--layout", layout)
    assert rows[0]["text"] == bad.rstrip("\r").replace("\t", "\\t")  # a CRLF line's CR is not part of its text
    assert [r["label"] for r in decode_all(tmp_path / "out")["all"]] == [1.0, 2.0]


def test_invalid_character_detail_names_character_and_position(tmp_path):
    rows = build_and_check(tmp_path, "x.tsv", f"{GOOD}\t1\n{GOOD[:9]}*{GOOD[10:]}\t3\n", {2: "invalid_character"})
    assert "'*' at position 10" in rows[0]["detail"]


def test_csv_quoting(tmp_path):
    text = f'name,sequence,expression\n"a, b",{GOOD},1\n"d,{GOOD},3\n"c",{GOOD},"2.5"\n'
    rows = build_and_check(tmp_path, "q.csv", text, {3: "csv_quoting"})
    assert rows[0]["text"] == f'"d,{GOOD},3'
    assert [r["label"] for r in decode_all(tmp_path / "out")["all"]] == [1.0, 2.5]


def test_csv_line_reasons_keep_their_line_numbers(tmp_path):
    # quoted CSV goes through the csv module, then the same checks: reasons and lines must survive that
    text = (f'name,sequence,expression\n"a",{GOOD},1\n"b",{GOOD}\n"c",{GOOD},"x"\n"d,{GOOD},3\n'
            f'"e",AC*T,1\n"f",,1\n\n"g",{GOOD},"nan"\n"h",{GOOD[:10]},2\n')
    build_and_check(tmp_path, "q.csv", text, {3: "wrong_column_count", 4: "non_numeric_expression", 5: "csv_quoting",
                                              6: "invalid_character", 7: "empty_sequence", 8: "empty_line",
                                              9: "non_finite_expression", 10: "too_short_for_layout"},
                    "--layout", "legnet")


@pytest.mark.parametrize("n", [1, 2, 5, 16, 17])
def test_too_short_for_the_legnet_layout(tmp_path, n):
    """LegNet drops a 17 nt 5' adapter, so 1-17 nt cannot be laid out; each such line is rejected, never a crash."""
    short = "ACGT" * 5
    rows = build_and_check(tmp_path, "x.tsv", f"{GOOD}\t1\n{short[:n]}\t2.5\n{GOOD}\t3\n", {2: "too_short_for_layout"},
                           "--layout", "legnet")
    assert f"sequence of {n} nt is too short for the legnet layout (needs at least 18)" == rows[0]["detail"]


def test_many_short_sequences_anywhere_in_a_chunk(tmp_path):
    lines = [f"{'ACGT' * 8}"[:n] + f"\t{n}" for n in [18, 1, 30, 16, 3, 17, 25, 2]] + [f"{GOOD}\t0"]
    expected = {i + 1: "too_short_for_layout" for i, n in enumerate([18, 1, 30, 16, 3, 17, 25, 2]) if n < 18}
    build_and_check(tmp_path, "x.tsv", "\n".join(lines) + "\n", expected, "--layout", "legnet")
    assert sorted(r["label"] for r in decode_all(tmp_path / "out")["all"]) == [0, 18, 25, 30]


def test_short_sequence_with_a_bad_character_is_invalid_not_short(tmp_path):
    rows = build_and_check(tmp_path, "x.tsv", f"{GOOD}\t1\nACXGT\t2\n", {2: "invalid_character"}, "--layout", "legnet")
    assert "'X' at position 3" in rows[0]["detail"]


def test_crmnet_layout_keeps_short_sequences(tmp_path):
    build_and_check(tmp_path, "x.tsv", "A\t1\nACGT\t2\n\t3\n", {3: "empty_sequence"}, "--layout", "crmnet")
    assert [r["seq"] for r in decode_all(tmp_path / "out")["all"]] == ["A" + "N" * 111, "ACGT" + "N" * 108]


def test_parse_lines_short_sequence_before_junk_bytes():
    """The crash path directly: a short legnet sequence followed in the chunk by non-ACGT bytes."""
    data = b"ACG\t1.0\n" + GOOD.encode() + b"\t2.0\nA\t-3e5\n"
    parsed = parse_lines(data, np.arange(1, 4), TableSpec(), get_layout("legnet"), 0)
    assert [(r.line, r.reason) for r in parsed.rejections] == [(1, "too_short_for_layout"), (3, "too_short_for_layout")]
    assert parsed.line.tolist() == [2] and parsed.label.tolist() == [2.0]


def test_sequence_before_header(tmp_path):
    text = f"junk\n\n>one\n{GOOD}\nstray\n>two\n{GOOD}\n"
    rows = build_and_check(tmp_path, "x.fa", text, {1: "sequence_before_header"})
    assert rows[0]["text"] == "junk"
    assert [r["id"] for r in decode_all(tmp_path / "out")["all"]] == ["one", "two"]


def test_fasta_record_reasons(tmp_path):
    text = f">one\n{GOOD}\n>empty\n>bad\nAC\nG-T\n>short\nACGT\n>ok\n{GOOD}\n"
    build_and_check(tmp_path, "x.fa", text,
                    {3: "empty_sequence", 4: "invalid_character", 7: "too_short_for_layout"}, "--layout", "legnet")


def test_truncated_input_is_rejected_at_the_cut_line(tmp_path):
    body = "".join(f"{GOOD}\t{i}\n" for i in range(3000)).encode()
    gz = gzip.compress(body)
    for cut in range(len(gz) // 2, len(gz)):  # a cut that leaves half a line decompressed
        recovered = zlib.decompressobj(wbits=31).decompress(gz[:cut])
        if recovered and not recovered.endswith(b"\n"):
            break
    n_whole = recovered.count(b"\n")
    partial = recovered[recovered.rfind(b"\n") + 1:].decode()
    rows = build_and_check(tmp_path, "cut.tsv.gz", gz[:cut], {n_whole + 1: "truncated_input"}, "--skip-bad-files")
    assert rows[0]["text"] == partial.replace("\t", "\\t")
    assert "truncated gzip" in rows[0]["detail"]
    assert len(decode_all(tmp_path / "out")["all"]) == n_whole

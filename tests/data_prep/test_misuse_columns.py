"""Issue 17, case 2: a file whose columns cannot be resolved, or whose every record is rejected, fails the
whole build (unless --skip-bad-files); public MPRA table layouts resolve to the right columns or are
refused with the column list; every summary says which columns were used and how."""
import gzip
import json

import pytest

from data_prep.build import BuildError, main
from data_prep.sources import resolve_columns
from tests.data_prep.util import decode_all, run_build

SEQS = ["ACGTACGTACGTAAAC", "TTGACCATGCAAGTCA", "GGGCATCATCGATTTA", "CATTACGGACTTGACC"]
GOOD_TSV = "".join(f"{s}\t{i + 0.5}\n" for i, s in enumerate(SEQS))


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _labels(folder):
    return sorted(r["label"] for r in decode_all(folder)["all"])


# (header line, data line template {s}=sequence {v}=value, delimiter, expected sequence column, expression column)
PUBLIC_LAYOUTS = [
    (",sequence,Measured Expression,Predicted Expression", "{i},{s},{v},9.5", "sequence", "Measured Expression"),
    (",oligo,activity", "{i},{s},{v}", "oligo", "activity"),  # pandas to_csv index + other names
    ("Unnamed: 0,element,log2FC", "{i},{s},{v}", "element", "log2FC"),
    ("name\tsequence\treplicate1\treplicate2\tmean", "n{i}\t{s}\t7\t8\t{v}", "sequence", "mean"),
    ("IDs,sequence,K562_log2FC,K562_lfcSE", "id{i},{s},{v},0.1", "sequence", "K562_log2FC"),
    ("oligo_id,oligo_sequence,log2FoldChange,padj", "o{i},{s},{v},0.01", "oligo_sequence", "log2FoldChange"),
    ("Sequence\tExpression", "{s}\t{v}", "Sequence", "Expression"),
    ("\ufeffsequence,expression", "{s},{v}", "sequence", "expression"),  # UTF-8 BOM (Excel)
    ("id\t230nt sequence (15nt 5' adaptor - 200nt element - 15nt 3' adaptor)\tmean", "x{i}\t{s}\t{v}",
     "230nt sequence (15nt 5' adaptor - 200nt element - 15nt 3' adaptor)", "mean"),
    ("utr,rl", "{s},{v}", "utr", "rl"),
]


@pytest.mark.parametrize("header,row,seq_name,expr_name", PUBLIC_LAYOUTS)
def test_public_mpra_layouts_resolve_to_the_measured_column(tmp_path, header, row, seq_name, expr_name):
    ext = ".csv" if "," in row else ".tsv"
    src = _write(tmp_path / f"t{ext}", header + "\n" + "".join(
        row.format(i=i, s=s, v=i + 0.25) + "\n" for i, s in enumerate(SEQS)))
    m = run_build([src], tmp_path / "out", "--split", "none", "--workers", "1")
    info = m["inputs"][0]
    assert info["seq_col"] == seq_name and info["expr_col"] == expr_name
    assert info["columns_used"]["sequence"]["how"] == "header name"
    assert m["counts"]["rejected"] == 0 and _labels(tmp_path / "out") == [0.25, 1.25, 2.25, 3.25]


def test_r_write_table_row_names_column(tmp_path):
    """R's write.csv: the header has one name fewer than the data rows (row names come first)."""
    src = _write(tmp_path / "r.csv", '"sequence","expression"\n' + "".join(
        f'"{i + 1}","{s}",{i}\n' for i, s in enumerate(SEQS)))
    m = run_build([src], tmp_path / "out", "--split", "none", "--workers", "1")
    assert m["inputs"][0]["seq_col"] == "sequence" and m["counts"]["rejected"] == 0
    assert _labels(tmp_path / "out") == [0, 1, 2, 3]


def test_headerless_leading_index_column(tmp_path):
    src = _write(tmp_path / "i.tsv", "".join(f"{i}\t{s}\t{i * 2}\n" for i, s in enumerate(SEQS)))
    m = run_build([src], tmp_path / "out", "--split", "none", "--workers", "1")
    used = m["inputs"][0]["columns_used"]
    assert used["sequence"]["index"] == 1 and used["expression"]["index"] == 2
    assert _labels(tmp_path / "out") == [0, 2, 4, 6]


def test_comma_separated_txt_and_tab_separated_csv_are_sniffed(tmp_path):
    a = _write(tmp_path / "a.txt", "sequence,expression\n" + GOOD_TSV.replace("\t", ","))
    b = _write(tmp_path / "b.csv", "sequence\texpression\n" + GOOD_TSV)
    m = run_build([a, b], tmp_path / "out", "--split", "none", "--workers", "1")
    assert [i["format"] for i in m["inputs"]] == ["csv", "tsv"] and m["counts"]["written"] == 8


@pytest.mark.parametrize("text,needle", [
    ("sequence\treplicate1\treplicate2\n" + "".join(f"{s}\t1\t2\n" for s in SEQS), "--expr-col"),
    ("sequence,K562_log2FC,HepG2_log2FC\n" + "".join(f"{s},1,2\n" for s in SEQS), "K562_log2FC"),
    ("id,sequence\n" + "".join(f"x{i},{s}\n" for i, s in enumerate(SEQS)), "--expr-col none"),
    ("name,value\n" + "".join(f"x{i},{i}\n" for i, s in enumerate(SEQS)), "--seq-col"),
    ("".join(f"{s}\t1\t2\n" for s in SEQS), "--expr-col"),  # 3 columns, no header: which one?
    (",foo,bar\n" + "".join(f"{i},{s},{i}\n" for i, s in enumerate(SEQS)), "--expr-col"),
])
def test_unresolvable_columns_are_refused_with_the_column_list(tmp_path, capsys, text, needle):
    src = _write(tmp_path / ("x.csv" if "," in text else "x.tsv"), text)
    rc = main([str(src), "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(src) in err and needle in err and "columns" in err
    assert not (tmp_path / "out").exists()


def test_one_bad_file_fails_the_whole_build_unless_skipped(tmp_path, capsys):
    good = _write(tmp_path / "good.tsv", GOOD_TSV)
    bad = _write(tmp_path / "bad.csv", "id,sequence\n" + "".join(f"x{i},{s}\n" for i, s in enumerate(SEQS)))
    out = tmp_path / "out"
    assert main([str(good), str(bad), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "--skip-bad-files" in err and not out.exists()
    assert main([str(good), str(bad), "--out", str(out), "--workers", "1", "--skip-bad-files"]) == 0
    printed = capsys.readouterr()
    assert "skipped" in printed.out and str(bad) in printed.out
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["written"] == 4 and m["inputs"][1]["skipped"] is True
    assert m["inputs"][1]["problems"][0]["reason"] == "unresolved_columns"


def test_index_read_as_sequence_is_refused_before_any_record(tmp_path, capsys):
    """An explicitly chosen column that holds no DNA at all (the row index) is refused up front."""
    src = _write(tmp_path / "x.csv", ",oligo,activity\n" + "".join(f"{i},{s},{i}\n" for i, s in enumerate(SEQS)))
    assert main([str(src), "--out", str(tmp_path / "out"), "--seq-col", "0", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds no DNA" in err and "'0'" in err and str(src) in err


def test_a_file_whose_every_record_is_rejected_fails_the_build(tmp_path, capsys):
    good = _write(tmp_path / "good.tsv", GOOD_TSV)
    empty_expr = _write(tmp_path / "noexpr.tsv", "sequence\texpression\n" + "".join(f"{s}\t\n" for s in SEQS))
    out = tmp_path / "out"
    assert main([str(good), str(empty_expr), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert str(empty_expr) in err and "non_numeric_expression" in err and not out.exists()
    assert not list(tmp_path.glob("out.*"))
    m = run_build([good, empty_expr], out, "--workers", "1", "--skip-bad-files")
    assert m["counts"]["written"] == 4 and m["counts"]["rejected"] == 4


def test_empty_file_and_truncated_gzip_fail_unless_skipped(tmp_path):
    good = _write(tmp_path / "good.tsv", GOOD_TSV)
    empty = _write(tmp_path / "empty.tsv", "")
    gz = gzip.compress((GOOD_TSV * 200).encode())
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(BuildError, match="empty.tsv.*empty_file"):
        run_build([good, empty], tmp_path / "a", "--workers", "1")
    with pytest.raises(BuildError, match="cut.tsv.gz.*truncated"):
        run_build([good, cut], tmp_path / "b", "--workers", "1")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    m = run_build([good, empty], tmp_path / "c", "--workers", "1", "--skip-bad-files")
    assert m["counts"]["written"] == 4


def test_mixing_labeled_and_unlabeled_inputs_is_refused_up_front(tmp_path):
    good = _write(tmp_path / "good.tsv", GOOD_TSV)
    fa = _write(tmp_path / "x.fa", ">a\nACGT\n")
    with pytest.raises(BuildError, match="x.fa.*unlabeled"):
        run_build([good, fa], tmp_path / "out", "--workers", "1")


def test_every_summary_states_the_columns_and_how(tmp_path, capsys):
    a = _write(tmp_path / "a.tsv", GOOD_TSV)
    b = _write(tmp_path / "b.csv", ",id,Measured Expression,sequence\n" + "".join(
        f"{i},x,{i},{s}\n" for i, s in enumerate(SEQS)))
    c = _write(tmp_path / "c.csv", "name,seq,score\n" + "".join(f"n,{s},{i}\n" for i, s in enumerate(SEQS)))
    assert main([str(a), str(b), str(c), "--out", str(tmp_path / "out"), "--workers", "1", "--split", "none",
                 "--expr-col", "Measured Expression"]) == 2  # not in a.tsv / c.csv: refused, naming the flag
    assert "--expr-col" in capsys.readouterr().err
    assert main([str(a), str(b), str(c), "--out", str(tmp_path / "out"), "--workers", "1", "--split", "none"]) == 0
    out = capsys.readouterr().out
    assert f"{a}: sequence = index 0 (default: no header), expression = index 1 (default: no header)" in out
    assert f"{b}: sequence = index 3 'sequence' (header name), expression = index 2 'Measured Expression'" in out
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [i["columns_used"]["expression"]["how"] for i in m["inputs"]] == ["default", "header name", "header name"]
    assert [i["written"] for i in m["inputs"]] == [4, 4, 4]
    assert main([str(b), "--out", str(tmp_path / "o2"), "--workers", "1", "--expr-col", "0"]) == 0
    assert "expression = index 0 '' (--expr-col by index)" in capsys.readouterr().out


def test_bom_is_stripped_from_a_headerless_file_and_utf16_is_refused(tmp_path):
    src = tmp_path / "bom.tsv"
    src.write_bytes(b"\xef\xbb\xbf" + GOOD_TSV.encode())
    m = run_build([src], tmp_path / "out", "--workers", "1")
    assert m["counts"]["rejected"] == 0 and m["counts"]["written"] == 4
    u16 = _write(tmp_path / "u16.tsv", "\ufeffsequence\texpression\n" + GOOD_TSV, "utf-16-le")
    with pytest.raises(BuildError, match="u16.tsv.*UTF-16"):
        run_build([u16], tmp_path / "o2", "--workers", "1")


def test_resolver_refuses_a_named_sequence_column_without_dna(tmp_path):
    src = _write(tmp_path / "x.tsv", "element\tactivity\n" + "".join(f"chr1:{i}-{i + 9}\t{i}\n" for i in range(4)))
    with pytest.raises(ValueError, match="'element'.*holds no DNA.*chr1:0-9"):
        resolve_columns(str(src), "tsv")


def test_duplicate_inputs_and_folders_are_refused(tmp_path):
    good = _write(tmp_path / "good.tsv", GOOD_TSV)
    copy = _write(tmp_path / "copy.tsv", GOOD_TSV)
    with pytest.raises(BuildError, match="given twice"):
        run_build([good, tmp_path / "." / "good.tsv"], tmp_path / "a", "--workers", "1")
    with pytest.raises(BuildError, match="copy.tsv.*same content"):
        run_build([good, copy], tmp_path / "b", "--workers", "1")
    with pytest.raises(BuildError, match="is a folder"):
        run_build([tmp_path], tmp_path / "c", "--workers", "1")

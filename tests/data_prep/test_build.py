import gzip
import os

import mmh3
import numpy as np
import pytest

from data_prep.build import BuildError, main
from data_prep.layouts import PLASMID_5_FLANK
from data_prep.simulate import simulate, write_tsv
from tests.data_prep.util import decode_all, run_build


@pytest.fixture(scope="module")
def sim_tsv(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "sim.tsv"
    data = simulate(3000, seed=3)
    # duplicates must share a fold; a long and a short sequence exercise truncation / padding
    seqs = list(data.sequences) + [data.sequences[0], data.sequences[1] + "ACGTACGTAC", data.sequences[2][:90]]
    expr = list(data.expression) + [5.0, 7.25, 3.0]
    with open(path, "w") as fh:
        fh.writelines(f"{s}\t{float(e)!r}\n" for s, e in zip(seqs, expr))
    return path, seqs, np.array(expr)


def expected_layout(seq: str, layout: str) -> str:
    if layout == "crmnet":
        return (seq + "N" * 112)[:112]
    return (PLASMID_5_FLANK + seq[17:])[-150:]


@pytest.mark.parametrize("layout", ["crmnet", "legnet"])
def test_round_trip_every_record(tmp_path, sim_tsv, layout):
    path, seqs, expr = sim_tsv
    m = run_build(
        [path],
        tmp_path / "out",
        "--layout",
        layout,
        "--workers",
        "1",
        "--chunk-bytes",
        "50000",
        "--records-per-shard",
        "1000",
    )
    c = m["counts"]
    assert c["records_in"] == len(seqs) == c["written"] + c["rejected"] and c["rejected"] == 0
    assert c["truncated"] == (1 if layout == "crmnet" else 0)
    rows = decode_all(tmp_path / "out")
    got = rows["train"] + rows["val"]
    assert len(got) == len(seqs)
    assert sum(len(s["shards"]) for s in m["splits"].values()) > 2  # several shards per split
    by_seq = {}
    for r in got:
        by_seq.setdefault(r["seq"], []).append(r)
    for s, e in zip(seqs, expr):
        cand = by_seq[expected_layout(s, layout)]
        fold = mmh3.hash(s, 0, signed=False) % 10
        assert any(r["fold"] == fold and r["label"] == np.float32(e) for r in cand)
        if layout == "legnet":
            assert all(r["is_singleton"] == int(float(r["label"]) == int(r["label"])) for r in cand)
    for split, rs in rows.items():
        assert all((r["fold"] == 9) == (split == "val") for r in rs)
        assert m["splits"][split]["records"] == len(rs)
        assert sum(m["splits"][split]["folds"].values()) == len(rs)


def test_legnet_layout_by_hand():
    from data_prep.alphabet import decode
    from data_prep.layouts import get_layout

    seq = "TGCATTTTTTTCACATC" + "ACGT" * 20 + "GGTTACGGCTGTT"
    out = decode(get_layout("legnet").apply_one(seq))
    assert len(out) == 150 and out.endswith("ACGT" * 20 + "GGTTACGGCTGTT")
    assert out == PLASMID_5_FLANK[-57:] + seq[17:]
    assert decode(get_layout("crmnet").apply_one("acgtRYN")) == "ACGTNNN" + "N" * 105


def test_same_input_gives_byte_identical_shards_for_any_worker_count(tmp_path, sim_tsv):
    path = sim_tsv[0]
    a = run_build([path], tmp_path / "a", "--workers", "1", "--chunk-bytes", "40000")
    b = run_build([path], tmp_path / "b", "--workers", "2", "--chunk-bytes", "40000")
    for split in a["splits"]:
        assert [s["sha256"] for s in a["splits"][split]["shards"]] == [
            s["sha256"] for s in b["splits"][split]["shards"]
        ]
        for s in a["splits"][split]["shards"]:
            assert (tmp_path / "a" / s["file"]).read_bytes() == (tmp_path / "b" / s["file"]).read_bytes()


def test_gzip_input_is_transparent(tmp_path, sim_tsv):
    path = sim_tsv[0]
    gz = tmp_path / "sim.tsv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    a = run_build([path], tmp_path / "a", "--workers", "1")
    b = run_build([gz], tmp_path / "b", "--workers", "1")
    assert [s["sha256"] for s in a["splits"]["train"]["shards"]] == [
        s["sha256"] for s in b["splits"]["train"]["shards"]
    ]


BAD_LINES = [
    ("ACGTACGTAC\t1.5", None),
    ("ACGTACGTAC\t1.5\textra", "wrong_column_count"),
    ("ACGTACGTAC", "wrong_column_count"),
    ("ACGTACGTAC\tabc", "non_numeric_expression"),
    ("ACGTACGTAC\t", "non_numeric_expression"),
    ("ACGTACGTAC\tnan", "non_finite_expression"),
    ("ACGTACGTAC\t-inf", "non_finite_expression"),
    ("\t3", "empty_sequence"),
    ("ACGUACGTAC\t3", "invalid_character"),
    ("ACG TACGTAC\t3", "invalid_character"),
    ("", "empty_line"),
    ("acgtnRYKMacgt\t2", None),
]


def test_malformed_lines_are_rejected_with_file_line_and_reason(tmp_path):
    src = tmp_path / "bad.tsv"
    src.write_text("\n".join(line for line, _ in BAD_LINES) + "\n")
    m = run_build([src], tmp_path / "out", "--workers", "1")
    expected = {i + 1: r for i, (_, r) in enumerate(BAD_LINES) if r}
    rows = [line.split("\t") for line in (tmp_path / "out" / "rejected.tsv").read_text().splitlines()[1:]]
    assert {int(r[1]): r[2] for r in rows} == expected
    assert all(r[0] == str(src) for r in rows)
    c = m["counts"]
    assert c["records_in"] == len(BAD_LINES) and c["written"] == 2 and c["rejected"] == len(expected)
    assert sum(c["rejected_by_reason"].values()) == c["rejected"]
    assert "found 3" in [r for r in rows if int(r[1]) == 2][0][3]
    assert "'U' at position 4" in [r for r in rows if int(r[1]) == 9][0][3]


def test_strict_aborts_on_first_bad_record_and_leaves_no_output(tmp_path, capsys):
    src = tmp_path / "bad.tsv"
    src.write_text("ACGT\t1\nACGT\t1\nACXT\t2\nACGT\tzz\n")
    assert main([str(src), "--out", str(tmp_path / "out"), "--strict", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{src}:3: invalid_character" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.*"))


def test_empty_file_and_truncated_gzip(tmp_path, sim_tsv):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    whole = sim_tsv[0].read_bytes()
    gz = gzip.compress(whole)
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(BuildError, match="empty.tsv: empty_file"):  # issue 17: a bad file fails the build...
        run_build([empty, cut], tmp_path / "out", "--workers", "1")
    m = run_build([empty, cut], tmp_path / "out", "--workers", "1", "--skip-bad-files")  # ...unless opted out
    probs = {os.path.basename(i["path"]): i["problems"] for i in m["inputs"]}
    assert probs["empty.tsv"][0]["reason"] == "empty_file"
    assert probs["cut.tsv.gz"][0]["reason"] == "truncated_input"
    c = m["counts"]
    assert c["records_in"] == c["written"] + c["rejected"]
    # everything that decompressed before the cut is kept: all complete lines
    import zlib

    d = zlib.decompressobj(wbits=31)
    recovered = d.decompress(gz[: len(gz) // 2])
    assert c["written"] == recovered.count(b"\n")
    assert c["rejected_by_reason"].get("truncated_input", 0) == (0 if recovered.endswith(b"\n") else 1)
    text = (tmp_path / "out" / "rejected.tsv").read_text()
    assert "empty_file" in text and "truncated gzip" in text
    with pytest.raises(BuildError, match="cut.tsv.gz"):
        run_build([cut], tmp_path / "strict", "--workers", "1", "--strict")


def test_rebuild_replaces_whole_folder_and_refuses_foreign_folder(tmp_path, sim_tsv):
    path = sim_tsv[0]
    run_build([path], tmp_path / "out", "--workers", "1", "--chunk-bytes", "20000", "--records-per-shard", "200")
    many = set(os.listdir(tmp_path / "out"))
    m = run_build([path], tmp_path / "out", "--workers", "1")
    now = set(os.listdir(tmp_path / "out"))
    listed = {s["file"] for v in m["splits"].values() for s in v["shards"]}
    assert now == listed | {"manifest.json", "rejected.tsv"} and len(many) > len(now)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="refusing"):
        run_build([path], foreign, "--workers", "1")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_random_split_is_deterministic(tmp_path, sim_tsv):
    path = sim_tsv[0]
    a = run_build(
        [path], tmp_path / "a", "--split", "random", "--val-fraction", "0.1", "--workers", "1", "--chunk-bytes", "40000"
    )
    b = run_build(
        [path], tmp_path / "b", "--split", "random", "--val-fraction", "0.1", "--workers", "2", "--chunk-bytes", "40000"
    )
    assert a["splits"]["val"]["records"] == b["splits"]["val"]["records"]
    assert 0.06 < a["splits"]["val"]["records"] / a["counts"]["written"] < 0.14
    assert a["splits"]["val"]["shards"][0]["sha256"] == b["splits"]["val"]["shards"][0]["sha256"]


def test_test_folds_and_hash_seed(tmp_path, sim_tsv):
    path, seqs, _ = sim_tsv
    m = run_build(
        [path], tmp_path / "a", "--val-folds", "0,1", "--test-folds", "2", "--hash-seed", "7", "--workers", "1"
    )
    folds = np.array([mmh3.hash(s, 7, signed=False) % 10 for s in seqs])
    assert m["splits"]["val"]["records"] == np.isin(folds, [0, 1]).sum()
    assert m["splits"]["test"]["records"] == (folds == 2).sum()


def test_fasta_input_is_unlabeled_with_ids(tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">one desc\nACGTAC\nGTAC\n>two\nTTTT\n>empty\n>three\nacgtnn\n")
    fa.write_text("junk before header\n" + fa.read_text())
    m = run_build([fa], tmp_path / "out", "--split", "none", "--workers", "1")
    assert m["schema"]["labeled"] is False and m["schema"]["has_ids"] is True
    rows = decode_all(tmp_path / "out")["all"]
    assert [(r["id"], r["seq"].rstrip("N")) for r in rows] == [
        ("one desc", "ACGTACGTAC"),
        ("two", "TTTT"),
        ("three", "ACGT"),
    ]
    rej = m["counts"]["rejected_by_reason"]
    assert rej == {"sequence_before_header": 1, "empty_sequence": 1}


def test_csv_with_header_and_named_columns(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text(",id,Measured Expression,sequence\n0,a,3.5,ACGT\n1,b,4,ACGA\n")
    m = run_build([src], tmp_path / "out", "--split", "none", "--workers", "1")
    assert m["inputs"][0]["seq_col"] == "sequence" and m["inputs"][0]["expr_col"] == "Measured Expression"
    assert [r["label"] for r in decode_all(tmp_path / "out")["all"]] == [3.5, 4.0]
    m = run_build([src], tmp_path / "out2", "--split", "none", "--workers", "1", "--expr-col", "0")
    assert [r["label"] for r in decode_all(tmp_path / "out2")["all"]] == [0.0, 1.0]


def test_quoted_csv(tmp_path):
    src = tmp_path / "q.csv"
    src.write_text('name,sequence,expression\n"a, b",ACGT,1\n"c",ACGT,"2.5"\n"d,ACGT,3\n')
    m = run_build([src], tmp_path / "out", "--split", "none", "--workers", "1")
    assert m["counts"]["written"] == 2 and m["counts"]["rejected"] == 1


GPRA = ["Native_complex.csv", "Random_complex.csv", "SSWM_complex.csv", "Drift_complex.csv", "Drift_delta_complex.csv"]


@pytest.mark.parametrize("layout", ["crmnet", "legnet"])
def test_real_gpra_files_convert_without_rejects(tmp_path, shared_data, layout):
    files = [shared_data / "gpra" / f for f in GPRA]
    m = run_build(files, tmp_path / "out", "--layout", layout, "--split", "none")
    expected = sum(sum(1 for _ in open(f)) - 1 for f in files)
    assert m["counts"] == {**m["counts"], "records_in": expected, "written": expected, "rejected": 0}
    assert all(i["header"] and i["expr_col"] == "Measured Expression" for i in m["inputs"])


def test_sswm_delta_rows_are_rejected_for_their_empty_sequence(tmp_path, shared_data):
    src = shared_data / "gpra" / "SSWM_delta_complex.csv"
    with pytest.raises(BuildError, match="no records written"):
        run_build([src], tmp_path / "out", "--split", "none")


def test_dream_demo_file(tmp_path, shared_data):
    m = run_build([shared_data / "dream2022" / "demo_train.txt"], tmp_path / "out")
    assert m["counts"]["rejected"] == 0 and m["counts"]["written"] == 6370
    lab = m["splits"]["train"]["label"]
    assert 0.5 < lab["singleton_fraction"] < 0.65 and 0 <= lab["min"] and lab["max"] <= 17
    assert m["bytes_per_record"] < 60


def test_records_per_shard_is_exact_and_independent_of_workers(tmp_path):
    write_tsv(simulate(3733, seed=4), tmp_path / "in.tsv")
    a = run_build(
        [tmp_path / "in.tsv"], tmp_path / "a", "--split", "none", "--records-per-shard", "1000", "--workers", "1"
    )
    assert [s["records"] for s in a["splits"]["all"]["shards"]] == [1000, 1000, 1000, 733]
    # shard boundaries fall inside chunks and inside gzip members; any worker count gives the same bytes
    b = run_build(
        [tmp_path / "in.tsv"],
        tmp_path / "b",
        "--split",
        "none",
        "--records-per-shard",
        "1000",
        "--workers",
        "2",
        "--chunk-bytes",
        "30000",
    )
    c = run_build(
        [tmp_path / "in.tsv"],
        tmp_path / "c",
        "--split",
        "none",
        "--records-per-shard",
        "1000",
        "--workers",
        "1",
        "--chunk-bytes",
        "30000",
    )
    assert [s["sha256"] for s in b["splits"]["all"]["shards"]] == [s["sha256"] for s in c["splits"]["all"]["shards"]]
    assert decode_all(tmp_path / "a") == decode_all(tmp_path / "b")
    assert a["compression"] == "GZIP" and a["build"]["compressor"].split()[0] in ("isal", "zlib")
    with pytest.raises(BuildError, match="records-per-shard"):
        run_build([tmp_path / "in.tsv"], tmp_path / "d", "--records-per-shard", "0")

"""Issue 23 items 4-6 for data_prep.build: a second concurrent build into the same --out is refused (two
processes), repeated sequences with conflicting labels are counted (manifest and summary) under a chosen policy,
a label too large to train on is named by file and line, and the build's flags never guess."""
import json
import os
import subprocess
import sys
import time

import pytest

from data_prep.build import main, parser
from tests.data_prep.util import run_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQS = ["ACGTACGTACGTAAAC", "TTGACCATGCAAGTCA", "GGGCATCATCGATTTA", "CATTACGGACTTGACC", "GATTACAGATTACAGA"]

HOLD = """
import os, sys, time
import data_prep.build as b
real = b._build
def held(*args):
    open(sys.argv[1], "w").close()            # the lock is taken: tell the test
    while not os.path.exists(sys.argv[2]):     # and hold it until the test says go
        time.sleep(0.05)
    return real(*args)
b._build = held
sys.exit(b.main(sys.argv[3:]))
"""


def test_a_second_build_into_the_same_out_is_refused(tmp_path, capsys):
    src = tmp_path / "in.tsv"
    src.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(SEQS)))
    out = tmp_path / "out"
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(ready), str(go), str(src), "--out", str(out),
                              "--workers", "1", "--quiet"], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ready.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), first.communicate()
        assert main([str(src), "--out", str(out), "--workers", "1"]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"{out}: pid {first.pid} on " in err[0], err
        assert "is building into this folder right now; wait for it to finish or choose another --out" in err[0]
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads((out / "manifest.json").read_text())["counts"]["written"] == len(SEQS)
    assert sorted(os.listdir(tmp_path)) == ["go", "in.tsv", "out", "ready"]  # the lock file went with the build
    assert main([str(src), "--out", str(out), "--workers", "1"]) == 0  # and the folder is free again


def _dups(tmp_path):
    src = tmp_path / "in.tsv"
    rows = [(SEQS[0], 1), (SEQS[1], 2), (SEQS[0], 1), (SEQS[2], 3), (SEQS[1], 5), (SEQS[3], 4), (SEQS[1].lower(), 2)]
    src.write_text("".join(f"{s}\t{v}\n" for s, v in rows))
    return src


def test_repeated_sequences_are_counted_and_kept(tmp_path, capsys):
    src = _dups(tmp_path)
    assert main([str(src), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    dup = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["duplicates"]
    assert dup == {"sequences_repeated": 2, "records_repeated": 3, "conflicting_sequences": 1,
                   "conflicting_records": 3, "first_conflict": f"{src}:2 (label 2) and {src}:5 (label 5)",
                   "policy": "keep"}
    out = capsys.readouterr().out
    assert "7 written" in out
    assert (f"repeated sequences: 2 occur more than once (3 extra records, all kept); 1 of them with different "
            f"labels (3 records), first {src}:2 (label 2) and {src}:5 (label 5)") in out


def test_conflicting_duplicates_refused_on_request(tmp_path, capsys):
    src = _dups(tmp_path)
    assert main([str(src), "--out", str(tmp_path / "out"), "--duplicates", "refuse", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"first {src}:2 (label 2) and {src}:5 (label 5); --duplicates refuse" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["in.tsv"]  # nothing written or left behind
    same = tmp_path / "same.tsv"  # repeats with equal labels are no conflict
    same.write_text(f"{SEQS[0]}\t1\n{SEQS[0]}\t1\n{SEQS[1]}\t2\n")
    assert main([str(same), "--out", str(tmp_path / "ok"), "--duplicates", "refuse", "--workers", "1"]) == 0


def test_duplicates_across_chunks_and_workers(tmp_path):
    from data_prep.simulate import simulate, write_tsv

    src = tmp_path / "big.tsv"
    write_tsv(simulate(600, seed=4), src)
    lines = src.read_text().splitlines(keepends=True)
    first_seq = lines[1].split("\t")[0]
    src.write_text("".join(lines) + f"{first_seq}\t999\n")
    m = run_build([src], tmp_path / "out", "--workers", "2", "--chunk-bytes", "4000")
    dup = m["counts"]["duplicates"]
    assert dup["conflicting_sequences"] >= 1
    assert dup["first_conflict"].startswith(f"{src}:2 (label ") and f"{src}:{len(lines) + 1} (label 999)" in \
        dup["first_conflict"]


def test_a_huge_label_is_named_by_file_and_line(tmp_path, capsys):
    from data_prep.manifest import load_manifest
    from seq2exp.cli.checks import UsageError, check_label_range

    src = tmp_path / "huge.tsv"
    src.write_text("".join(f"{s}\t{i}\n" for i, s in enumerate(SEQS)) + "ACGTACGTACGTACGTAAGG\t1e30\n")
    run_build([src], tmp_path / "out", "--split", "none")
    m = load_manifest(str(tmp_path / "out"))
    assert m.label_stats("all")["max_at"] == f"{src}:6" and m.label_stats("all")["min_at"] == f"{src}:1"
    with pytest.raises(UsageError, match=f"^{src}:6: labels in the all split reach 1e\\+30"):
        check_label_range([m], "all")


@pytest.mark.parametrize("flag,hint", [("--ou", "--out"), ("--layuot", "--layout"), ("--duplicate", "--duplicates"),
                                       ("--val-fold", "--val-folds")])
def test_build_flags_are_never_abbreviated_and_typos_name_the_flag(tmp_path, capsys, flag, hint):
    src = tmp_path / "in.tsv"
    src.write_text(f"{SEQS[0]}\t1\n")
    with pytest.raises(SystemExit) as stop:
        main([str(src), "--out", str(tmp_path / "o"), flag, "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag}: unknown flag; did you mean {hint}?" in err[0]
    assert not (tmp_path / "o").exists()


def test_every_build_flag_has_help_with_its_real_default():
    p = parser()
    text = p.format_help()
    assert "(default: None)" not in text and "[9]" not in text
    for action in p._actions:
        assert action.help, action.option_strings
        if action.option_strings and action.default not in (None, False) and action.dest != "help":
            assert "default" in action.help, action.option_strings


def test_average_keeps_one_record_per_sequence_with_the_mean(tmp_path, capsys):
    from tests.data_prep.util import decode_all

    src = _dups(tmp_path)
    assert main([str(src), "--out", str(tmp_path / "out"), "--duplicates", "average", "--workers", "1",
                 "--split", "none"]) == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["counts"]["written"] == 4 and m["counts"]["rejected_by_reason"] == {"duplicate_merged": 3}
    assert m["counts"]["duplicates"]["policy"] == "average" and m["counts"]["duplicates"]["records_repeated"] == 3
    labels = {r["seq"].rstrip("N"): r["label"] for r in decode_all(tmp_path / "out")["all"]}
    assert labels == {SEQS[0]: 1.0, SEQS[1]: 3.0, SEQS[2]: 3.0, SEQS[3]: 4.0}  # SEQS[1]: mean of 2, 5, 2
    rejected = (tmp_path / "out" / "rejected.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[1:4] for r in rejected] == [
        ["3", "duplicate_merged", f"averaged into {src}:1 (2 copies, mean 1)"],
        ["5", "duplicate_merged", f"averaged into {src}:2 (3 copies, mean 3)"],
        ["7", "duplicate_merged", f"averaged into {src}:2 (3 copies, mean 3)"]]
    assert "3 extra records, merged into the first copy, labelled with the mean" in capsys.readouterr().out


def test_average_across_chunks_workers_and_files(tmp_path):
    from data_prep.simulate import simulate, write_tsv

    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    write_tsv(simulate(500, seed=4), a)
    lines = a.read_text().splitlines(keepends=True)
    seq, label = lines[10].rstrip("\n").split("\t")[:2]
    b.write_text(f"sequence\texpression\n{seq}\t{float(label) + 2}\n")
    m = run_build([a, b], tmp_path / "out", "--workers", "2", "--chunk-bytes", "4000", "--duplicates", "average")
    assert m["counts"]["rejected_by_reason"].get("duplicate_merged") == m["counts"]["duplicates"]["records_repeated"]
    assert m["counts"]["records_in"] == m["counts"]["written"] + m["counts"]["rejected"]
    rejected = (tmp_path / "out" / "rejected.tsv").read_text()
    assert f"{b}\t2\tduplicate_merged\taveraged into {a}:11 (2 copies, mean {float(label) + 1:g})" in rejected


def test_simulate_follows_the_output_rule(tmp_path, capsys):
    from data_prep import simulate

    out = tmp_path / "sim.tsv"
    assert simulate.main(["--n", "50", "--out", str(out)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["sim.truth.json", "sim.tsv"]
    before = out.read_bytes()
    assert simulate.main(["--n", "60", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[-1] and "exists; pass --overwrite" in err[-1] and out.read_bytes() == before
    assert simulate.main(["--n", "60", "--out", str(out), "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 60

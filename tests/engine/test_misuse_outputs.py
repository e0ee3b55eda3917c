"""Issue 23 items 1, 2 and 6 (evaluate's part): no command writes over what it did not create.

evaluate / predict / the report refuse, with one line (exit 2) and nothing written, an output that is one of their
inputs (the model read included), a file a run folder owns, or an existing file without --overwrite; the rule
itself is data_prep.outputs.OutputRule (one place, used by every command that writes).
"""
import json
import os

import pytest

from data_prep.outputs import OutputError, OutputRule, advisory_lock, release_lock, run_owner
from data_prep.simulate import simulate, write_tsv
from seq2exp.cli.commands import evaluate_main, predict_main
from tests.helpers import untrained_run_folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An untrained tiny CRMnet in a run folder as a training leaves it (model.keras, config.yaml, history)."""
    return untrained_run_folder(tmp_path_factory.mktemp("run"), "model: crmnet\npreset: tiny\n", history=True)


@pytest.fixture(scope="module")
def test_tsv(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_tsv(simulate(30, seed=1), d / "test.tsv")
    return d / "test.tsv"


def _snapshot(folder):
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, p))}


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and ": error: " in err[0], err
    return err[0]


@pytest.mark.parametrize("target,needle", [
    ("model.keras", "is the input"),           # the model evaluate reads
    ("config.yaml", "is the input"),           # the config it reads the model name from
    ("history.json", "belongs to the run folder"),
    (".seq2exp.lock", "belongs to the run folder"),
    ("checkpoints/x.json", "belongs to the run folder"),
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_evaluate_never_writes_over_the_run(run_dir, test_tsv, capsys, target, needle, overwrite):
    before = _snapshot(run_dir)
    out = os.path.join(run_dir, target)
    rc = evaluate_main([str(run_dir), str(test_tsv), "--metrics-json", out] + ["--overwrite"] * overwrite)
    assert rc == 2
    line = _one_line(capsys)
    assert needle in line and "--metrics-json" in line and target.split("/")[0] in line
    assert _snapshot(run_dir) == before and not os.path.exists(os.path.join(run_dir, "checkpoints"))


def test_evaluate_metrics_json_needs_overwrite_to_replace(run_dir, test_tsv, tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("keep me\n")
    assert evaluate_main([str(run_dir), str(test_tsv), "--metrics-json", str(out)]) == 2
    assert "exists; pass --overwrite" in _one_line(capsys) and out.read_text() == "keep me\n"
    assert evaluate_main([str(run_dir), str(test_tsv), "--metrics-json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["test.crmnet"]["n"] == 30
    # a new file of its own inside the run folder is fine: the run does not own it
    mine = run_dir / "eval-test.json"
    assert evaluate_main([str(run_dir), str(test_tsv), "--metrics-json", str(mine)]) == 0
    assert json.loads(mine.read_text())["test.crmnet"]["n"] == 30
    mine.unlink()


def test_predict_never_writes_over_the_model_it_reads(run_dir, test_tsv, tmp_path, capsys):
    model = tmp_path / "m.keras"
    model.write_bytes((run_dir / "model.keras").read_bytes())
    before = model.read_bytes()
    assert predict_main([str(model), str(test_tsv), "--predictions", str(model), "--overwrite"], model="crmnet") == 2
    line = _one_line(capsys)
    assert "--predictions" in line and "is the input" in line and str(model) in line
    assert model.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.keras"]
    before_run = _snapshot(run_dir)
    for target in ("model.keras", "config.yaml", "history.json"):
        assert predict_main([str(run_dir), str(test_tsv), "--predictions", str(run_dir / target), "--overwrite"]) == 2
        assert "--predictions" in _one_line(capsys)
    assert _snapshot(run_dir) == before_run


@pytest.mark.parametrize("where,needle", [
    ("run", "is a run folder"),
    ("run/checkpoints", "belongs to the run folder"),
    ("data", "holds the input"),
    ("data/test.tsv", "is the input"),
    ("full", "exists and is not empty; pass --overwrite"),
])
def test_report_folder_refused_in_a_run_or_at_an_input(run_dir, test_tsv, tmp_path, capsys, where, needle):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine\n")
    folder = {"run": run_dir, "run/checkpoints": run_dir / "checkpoints", "data": test_tsv.parent,
              "data/test.tsv": test_tsv, "full": full}[where]
    before = {d: _snapshot(d) for d in (run_dir, test_tsv.parent, full)}
    assert evaluate_main([str(run_dir), str(test_tsv), "--report", str(folder), "--bootstrap", "0"]) == 2
    line = _one_line(capsys)
    assert needle in line and "--report" in line
    assert {d: _snapshot(d) for d in before} == before and not (run_dir / "checkpoints").exists()


def test_report_into_a_new_folder_of_the_run_then_overwrite(run_dir, test_tsv, tmp_path, capsys):
    report = run_dir / "report"
    try:
        args = [str(run_dir), str(test_tsv), "--report", str(report), "--bootstrap", "0", "--compare-col", "none"]
        assert evaluate_main(args) == 0
        made = sorted(os.listdir(report))
        assert "metrics.json" in made and "summary.md" in made and not [m for m in made if "partial" in m]
        (report / "mine.txt").write_text("keep\n")
        assert evaluate_main(args) == 2 and "--overwrite" in _one_line(capsys)
        assert evaluate_main(args + ["--overwrite"]) == 0
        assert (report / "mine.txt").read_text() == "keep\n"
        assert sorted(os.listdir(report)) == sorted(made + ["mine.txt"])
    finally:
        import shutil

        shutil.rmtree(report, ignore_errors=True)


def test_evaluate_prints_rejected_rows_it_does_not_keep(run_dir, tmp_path, capsys):
    data = tmp_path / "t.tsv"
    rows = simulate(20, seed=3)
    write_tsv(rows, data)
    lines = data.read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\tnot-a-number"
    lines[5] = "ACGTXACGT" + lines[5][9:]
    data.write_text("\n".join(lines) + "\n")
    assert evaluate_main([str(run_dir), str(data)]) == 0
    out = capsys.readouterr().out
    assert "see " not in out and "rejected.tsv" not in out
    assert "2 rejected (invalid_character 1, non_numeric_expression 1); the first:" in out
    assert f"{data}:4: non_numeric_expression" in out and f"{data}:6: invalid_character" in out
    work = tmp_path / "work"
    assert evaluate_main([str(run_dir), str(data), "--work", str(work)]) == 0
    out = capsys.readouterr().out
    shown = out.split("see ")[1].split(")")[0]
    assert shown.endswith("rejected.tsv") and os.path.isfile(shown) and shown.startswith(str(work))


def test_the_rule_itself(tmp_path):
    run = tmp_path / "run"
    (run / "pretrain" / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: legnet\n")
    assert run_owner(str(run / "pretrain" / "checkpoints" / "ckpt-1")) == (str(run), "pretrain")
    assert run_owner(str(run / "notes.txt")) is None
    assert run_owner(str(tmp_path / "config.yaml")) is None  # no run folder above
    project = tmp_path / "project"  # a config.yaml kept for --config next to data/ is no run folder
    (project / "data").mkdir(parents=True)
    (project / "config.yaml").write_text("model: crmnet\ndata: [data/train.tsv]\n")
    assert run_owner(str(project / "data" / "preds.tsv")) is None
    (project / ".seq2exp.lock").write_text("")  # ... until a training has used it
    assert run_owner(str(project / "data" / "preds.tsv")) == (str(project), "data")
    link = tmp_path / "link.keras"
    (run / "model.keras").write_text("x")
    link.symlink_to(run / "model.keras")
    rule = OutputRule([str(tmp_path / "in.tsv")], overwrite=True)
    with pytest.raises(OutputError, match="belongs to the run folder"):
        rule.check_file(str(link), "--out")  # through a symlink too
    with pytest.raises(OutputError, match="does not exist"):
        rule.check_file(str(tmp_path / "nope" / "x.tsv"), "--out")
    out = tmp_path / "o.txt"
    with pytest.raises(RuntimeError), rule.open(str(out)) as fh:
        fh.write("half")
        raise RuntimeError("stop")
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["link.keras", "project", "run"]
    strict = OutputRule([], overwrite=False)
    with strict.open(str(out)) as fh:
        fh.write("1")
    with strict.open(str(out)) as fh:  # what this invocation created it may write again
        fh.write("2")
    assert out.read_text() == "2"
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        OutputRule().check_file(str(out), "--out")


def test_advisory_lock_refuses_a_second_holder_and_can_remove_its_file(tmp_path):
    from data_prep.outputs import LockedError

    lock = str(tmp_path / ".x.lock")
    first = advisory_lock(lock, "x", "building into it", "wait")
    with pytest.raises(LockedError, match=f"x: pid {os.getpid()} on .* is building into it right now; wait"):
        advisory_lock(lock, "x", "building into it", "wait")
    release_lock(first, remove=True)
    assert not os.path.exists(lock)
    release_lock(advisory_lock(lock, "x", "building", "wait"))


def test_predict_ids_of_invalid_fasta_records_are_their_headers(run_dir, tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">good one\nACGTACGTACGTTTGAACGT\n>bad_char\nACGTXXACGTACGTTTGA\n>empty\n>dots\nACGT.ACGTAC\n")
    out = tmp_path / "p.tsv"
    assert predict_main([str(run_dir), str(fa), "--predictions", str(out)]) == 0
    rows = [r.split("\t") for r in out.read_text().splitlines()[1:]]
    assert [r[2] for r in rows] == ["good one", "bad_char", "empty", "dots"]
    assert rows[0][3] != "" and [r[3] for r in rows[1:]] == ["", "", ""]
    assert rows[1][4].startswith("invalid_character") and rows[2][4].startswith("empty_sequence")

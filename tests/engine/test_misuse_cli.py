"""Issue 17 through the command lines, without a training: wrong flags and config values are one line (exit 2)
before any work; predict never writes over its input or an existing --out, writes atomically and notes
sequences the layout cuts; evaluate reads same-named files from different folders, refuses unlabeled data,
names a truncated .keras file, and leaves no temporary folder behind (SIGTERM included)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from data_prep.simulate import simulate, write_tsv
from seq2exp.cli.commands import evaluate_main, predict_main, train_main
from seq2exp.engine.data import prepare
from tests.helpers import untrained_run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained tiny CRMnet saved as a run folder would hold it (predict/evaluate only need the file)."""
    return untrained_run_folder(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    (d / "repA").mkdir()
    (d / "repB").mkdir()
    write_tsv(simulate(40, seed=1), d / "repA" / "test.tsv")
    write_tsv(simulate(70, seed=2), d / "repB" / "test.tsv")
    write_tsv(simulate(400, seed=3), d / "train.tsv")
    return d


def _one_line_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and (err[0].startswith("error: ") or ": error: " in err[0]), err
    return err[0]


@pytest.mark.parametrize("flags,needle", [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "-5"], "--batch-size -5: must be at least 1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--preset", "tiyn"], "preset must be one of small, tiny for model crmnet; got 'tiyn'"),
    (["--model-config", '{"seq_len": "112"}'], "--model-config: seq_len needs int like 112, got '112' (str)"),
    (["--model-config", '{"seq_lenn": 112}'], "unknown key 'seq_lenn' for crmnet (did you mean 'seq_len'?)"),
    (["--model-config", '[1, 2]'], "--model-config: expected a JSON object"),
    (["--model", "crmnt"], "invalid choice: 'crmnt'"),
    (["--precision", "float64"], "float64"),
])
def test_bad_flags_are_one_line_before_anything_is_written(tmp_path, tables, capsys, flags, needle):
    run = tmp_path / "run"
    try:  # a value outside a closed set stops in the argument parser itself (SystemExit 2), the rest after it
        rc = train_main(["--data", str(tables / "train.tsv"), "--run-dir", str(run), "--preset", "tiny",
                         "--strategy", "default", *flags], model=None if "--model" in flags else "crmnet")
    except SystemExit as stop:
        rc = stop.code
    assert rc == 2 and needle in _one_line_error(capsys)
    assert not run.exists()


@pytest.mark.parametrize("text,needle", [
    ("epochs: ten\n", "c.yaml: epochs: needs a whole number, got 'ten' (str)"),
    ("batch_size: 0\n", "c.yaml: batch_size 0: must be at least 1"),
    ("model_config: 3\n", "c.yaml: model_config: needs a mapping"),
    ("resume: maybe\n", "c.yaml: resume: needs true/false"),
    ("test: [1, 2]\n", "c.yaml: test: needs a list of paths"),
])
def test_wrong_typed_config_file_values_are_named(tmp_path, tables, capsys, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert train_main(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--data", str(tables / "train.tsv")],
                      model="crmnet") == 2
    assert needle in _one_line_error(capsys)


def test_yaml_data_given_as_a_string_is_one_path_not_letters(tmp_path, tables):
    from seq2exp.cli import config as run_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tables / 'train.tsv'}\ntest: {tables / 'repA/test.tsv'},{tables / 'repB/test.tsv'}\n")
    args = type("A", (), {"config": str(cfg)})()
    resolved = run_config.resolve(args, "crmnet")
    assert resolved.data == [str(tables / "train.tsv")]
    assert resolved.test == [str(tables / "repA/test.tsv"), str(tables / "repB/test.tsv")]


def test_batch_larger_than_the_data_is_named_before_training(tmp_path, tables, capsys):
    run = tmp_path / "run"
    rc = train_main(["--data", str(tables / "repA" / "test.tsv"), "--run-dir", str(run), "--preset", "tiny",
                     "--strategy", "default", "--batch-size", "64"], model="crmnet")
    err = _one_line_error(capsys)
    assert rc == 2 and "--batch-size 64 is larger than the" in err and "use --batch-size" in err
    assert not (run / "checkpoints").exists() and not (run / "history.json").exists()


def test_unlabeled_test_set_fails_before_training(tmp_path, tables, capsys):
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nACGTACGTACGTTTGA\n>b\nACGTTTTTACGTTTGA\n")
    run = tmp_path / "run"
    rc = train_main(["--data", str(tables / "train.tsv"), "--test", str(fa), "--run-dir", str(run), "--preset",
                     "tiny", "--strategy", "default", "--batch-size", "32"], model="crmnet")
    err = _one_line_error(capsys)
    assert rc == 2 and str(fa) in err and "no measured expression" in err and "predict" in err
    assert not (run / "history.json").exists()


def test_labels_whose_squares_overflow_float32_fail_before_training(tmp_path, tables, capsys):
    src = tmp_path / "huge.tsv"
    src.write_text((tables / "train.tsv").read_text() + "ACGTACGTACGTACGTAAGG\t1e30\n")
    rc = train_main(["--data", str(src), "--run-dir", str(tmp_path / "run"), "--preset", "tiny",
                     "--strategy", "default", "--batch-size", "32"], model="crmnet")
    assert rc == 2 and "reach 1e+30" in _one_line_error(capsys)


def test_raw_inputs_are_keyed_by_content_not_name(tmp_path, tables):
    work = tmp_path / "work"
    a, b = prepare([str(tables / "repA/test.tsv"), str(tables / "repB/test.tsv")], "crmnet", str(work),
                   split="none", group=False)
    assert a.folder != b.folder and (a.records("all"), b.records("all")) == (40, 70)
    edited = tmp_path / "data.tsv"
    edited.write_text((tables / "repA/test.tsv").read_text())
    first = prepare([str(edited)], "crmnet", str(work), split="none")[0]
    edited.write_text((tables / "repB/test.tsv").read_text())  # same name, new content: built again
    second = prepare([str(edited)], "crmnet", str(work), split="none")[0]
    assert first.records("all") == 40 and second.records("all") == 70


def test_evaluate_reads_same_named_files_from_two_folders(model_dir, tables, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert evaluate_main([str(model_dir), str(tables / "repA/test.tsv"), str(tables / "repB/test.tsv"),
                          "--metrics-json", str(out)], model="crmnet") == 0
    res = json.loads(out.read_text())
    assert {k: v["n"] for k, v in res.items()} == {"repA/test.crmnet": 40, "repB/test.crmnet": 70}


def test_evaluate_on_unlabeled_data_and_truncated_keras_are_one_line(model_dir, tmp_path, capsys):
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nACGTACGTACGTTTGA\n")
    assert evaluate_main([str(model_dir), str(fa)], model="crmnet") == 2
    err = _one_line_error(capsys)
    assert str(fa) in err and "no measured expression" in err
    cut = tmp_path / "cut.keras"
    cut.write_bytes((model_dir / "model.keras").read_bytes()[:5000])
    for main in (evaluate_main, predict_main):
        assert main([str(cut), str(fa)], model="crmnet") == 2
        err = _one_line_error(capsys)
        assert "not a valid .keras file" in err and "not found" not in err.lower().split("(")[0]
    assert predict_main([str(tmp_path / "nothere.keras"), str(fa)], model="crmnet") == 2
    assert "not found" in _one_line_error(capsys)


def test_evaluate_leaves_no_temporary_folder(model_dir, tables, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert evaluate_main([str(model_dir), str(tables / "repA/test.tsv")], model="crmnet") == 0
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nACGTACGTACGTTTGA\n")
    assert evaluate_main([str(model_dir), str(fa)], model="crmnet") == 2  # a failure cleans up too
    assert os.listdir(scratch) == []


def test_sigterm_during_evaluate_removes_its_temporary_folder(model_dir, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    big = tmp_path / "big.tsv"
    write_tsv(simulate(60_000, seed=5), big)
    env = {**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "seq2exp.evaluate", str(model_dir), str(big), "--model", "crmnet",
                             "--batch-size", "64"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(scratch.glob("seq2exp-eval-*/*/manifest.json")):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted" in err, err
    assert os.listdir(scratch) == []


def test_predict_never_overwrites_its_input_or_an_existing_out(model_dir, tables, tmp_path, capsys):
    src = tmp_path / "in.tsv"
    src.write_text((tables / "repA/test.tsv").read_text())
    before = src.read_bytes()
    assert predict_main([str(model_dir), str(src), "--predictions", str(src)], model="crmnet") == 2
    assert "is the input" in _one_line_error(capsys) and src.read_bytes() == before
    assert predict_main([str(model_dir), str(src), "--predictions", str(tmp_path / "." / "in.tsv"),
                         "--overwrite"], model="crmnet") == 2  # the same file spelt otherwise, even with --overwrite
    assert "is the input" in _one_line_error(capsys) and src.read_bytes() == before
    out = tmp_path / "p.tsv"
    out.write_text("keep me\n")
    assert predict_main([str(model_dir), str(src), "--predictions", str(out)], model="crmnet") == 2
    assert "--overwrite" in _one_line_error(capsys) and out.read_text() == "keep me\n"
    assert predict_main([str(model_dir), str(tmp_path / "missing.tsv"), "--predictions", str(out),
                         "--overwrite"], model="crmnet") == 2
    assert "missing.tsv" in _one_line_error(capsys) and out.read_text() == "keep me\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\nx,1\n")
    assert predict_main([str(model_dir), str(src), str(bad), "--predictions", str(out), "--overwrite"],
                        model="crmnet") == 2
    assert "bad.csv" in _one_line_error(capsys) and out.read_text() == "keep me\n"
    assert predict_main([str(model_dir), str(src), "--predictions", str(out), "--overwrite"], model="crmnet") == 0
    assert len(out.read_text().splitlines()) == 41


def test_predict_writes_atomically(model_dir, tables, tmp_path, monkeypatch):
    import seq2exp.analysis.evaluation as ev

    out = tmp_path / "p.tsv"
    calls = []

    def failing(model, spec, batch):
        calls.append(1)
        raise RuntimeError("device lost")

    monkeypatch.setattr(ev, "predict_batch", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        predict_main([str(model_dir), str(tables / "repA/test.tsv"), "--predictions", str(out)], model="crmnet")
    assert calls and os.listdir(tmp_path) == []  # neither a half-written p.tsv nor its temporary file


def test_predict_notes_sequences_longer_than_the_layout(model_dir, tmp_path, capsys):
    fa = tmp_path / "x.fa"
    fa.write_text(f">long\n{'ACGT' * 40}\n>short\nACGTACGTACGTTTGA\n")
    out = tmp_path / "p.tsv"
    assert predict_main([str(model_dir), str(fa), "--predictions", str(out)], model="crmnet") == 0
    rows = [r.split("\t") for r in out.read_text().splitlines()[1:]]
    assert rows[0][2] == "long" and "truncated: 160 nt, longer than the 112-nt crmnet layout" in rows[0][4]
    assert rows[1][4] == ""
    assert "1 longer than the 112-nt crmnet layout were cut" in capsys.readouterr().err

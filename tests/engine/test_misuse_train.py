"""Issue 23, the training cases: each refused before the long work with one line naming the flag or file and what to
do, leaving the run folder as it was (items 3, 5, 6); an interruption says how to resume (Ctrl-C and SIGTERM);
config.yaml records the strategy that really ran; --val-split none says there is no validation."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from seq2exp.cli.commands import train_main
from tests.helpers import TINY_TRAIN_ARGS, two_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = TINY_TRAIN_ARGS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return two_tables(tmp_path_factory.mktemp("train_misuse"), "edited.tsv")


def _snapshot(run) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()
            and p.name != ".seq2exp.lock"}


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ") or ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def _train(data, run, *flags, model="crmnet") -> int:
    return train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), *ARGS, *flags], model=model)


# ----------------------------------------------------------------------------- refused before any work


def _lambda_keras(path) -> None:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(str(path))


@pytest.mark.parametrize("flags,needle", [
    (["--val-split", "validation"], "--val-split validation: "),  # item 3: a split the dataset does not have
    (["--batch-size", "500", "--steps-per-epoch", "3"], "--batch-size 500 is larger than the"),
    (["--model-config", '{"seq_len": 150}'], '--model-config {"seq_len": 150}: model crmnet cannot be built with it'),
    (["--init-from", "{data}/train.tsv"], "--init-from {data}/train.tsv: not a checkpoint"),
    (["--init-from", "{data}/objects.npz"], "holds Python objects (pickled), which are never loaded"),
    (["--init-from", "{data}/lambda.keras"], "the model holds a Lambda layer"),
])
def test_refused_in_one_line_leaving_nothing(data, tmp_path, capsys, flags, needle):
    np.savez(data / "objects.npz", w=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    if not (data / "lambda.keras").exists():
        _lambda_keras(data / "lambda.keras")
    flags = [f.replace("{data}", str(data)) for f in flags]
    run = tmp_path / "run"
    assert _train(data, run, *flags) == 2
    assert needle.replace("{data}", str(data)) in _error(capsys)
    assert not run.exists()  # no config.yaml, no data/ built, no folder


def test_a_missing_or_empty_validation_split_is_named():
    from seq2exp.cli.checks import UsageError, check_val_split

    class Folder:  # a built dataset, as far as the check reads it
        folder, splits, data = "ds/lib", ["train", "val", "test"], {}

        def records(self, split):
            return 0 if split == "val" else 100

    with pytest.raises(UsageError, match="--val-split val: ds/lib has an empty 'val' split .* or --val-split none"):
        check_val_split([Folder()], "val", "train")
    with pytest.raises(UsageError, match="has no 'valid' split \\(its other splits: val, test\\)"):
        check_val_split([Folder()], "valid", "train")
    check_val_split([Folder()], "none", "train")


def test_run_dir_naming_a_file_is_refused(data, tmp_path, capsys):
    file = tmp_path / "results.txt"
    file.write_text("mine")
    assert _train(data, file) == 2
    assert f"--run-dir {file}: is a file, not a folder" in _error(capsys)
    assert file.read_text() == "mine"


def test_a_run_refused_at_preflight_leaves_only_what_was_there(data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    before = _snapshot(run)
    # builds, then the model (120 nt) does not take the 112-nt records: preflight refuses after the data build
    assert _train(data, run, "--model-config", '{"seq_len": 120}') == 1
    assert "but the model expects" in _error(capsys)
    assert _snapshot(run) == before  # no config.yaml, no data/, no checkpoints/


# ----------------------------------------------------------------------------- validation none


def test_val_split_none_says_there_is_no_validation(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1", "--val-split", "none") == 0
    out = capsys.readouterr()
    assert "validation: none (--val-split none): no best-weights selection and no early stopping" in out.out
    assert "val r2" not in out.err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"] is False and metrics["best_weights"] is False and metrics["early_stopping"] is False
    assert yaml.safe_load((run / "config.yaml").read_text())["val_split"] == "none"


# ----------------------------------------------------------------------------- interruptions and resume


@pytest.fixture(scope="module")
def interrupted(data, tmp_path_factory):
    """A 2-epoch run stopped by Ctrl-C after its first epoch was saved: (run folder, its stderr)."""
    import seq2exp.engine.trainer as trainer_module

    run = tmp_path_factory.mktemp("interrupted") / "run"
    real = trainer_module.Trainer._log_epoch

    def ctrl_c_after_epoch_1(self, row):
        real(self, row)
        raise KeyboardInterrupt

    trainer_module.Trainer._log_epoch = ctrl_c_after_epoch_1
    try:
        import io
        from contextlib import redirect_stderr

        err = io.StringIO()
        with redirect_stderr(err):
            rc = _train(data, run, "--epochs", "2")
    finally:
        trainer_module.Trainer._log_epoch = real
    assert rc == 130
    return run, err.getvalue()


def test_ctrl_c_says_how_to_resume_and_that_command_finishes_the_run(interrupted, tmp_path):
    run, err = interrupted
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted (Ctrl-C): the newest saved epoch is kept in {run}; continue with: "), last
    words = shlex.split(last.split("continue with: ", 1)[1])
    assert words[0] == "crmnet-train" and words[-1] == "--resume" and "--overwrite" not in words
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    args = [str(copy) if w == str(run) else w for w in words[1:]]
    assert train_main(args, model="crmnet") == 0
    assert [r["epoch"] for r in json.loads((copy / "history.json").read_text())] == [1, 2]


def test_resume_with_edited_data_is_refused_before_building_it(interrupted, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(interrupted[0], run)
    before = _snapshot(run)
    args = ["--data", str(data / "edited.tsv"), "--run-dir", str(run), *ARGS, "--epochs", "2", "--resume"]
    assert train_main(args, model="crmnet") == 2
    assert "--resume: the training data differ from those the run" in _error(capsys)
    assert _snapshot(run) == before  # the edited file was not built into data/, config.yaml not rewritten


def test_sigterm_during_training_says_how_to_resume(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "seq2exp.train", "--model", "crmnet", "--data",
                             str(data / "train.tsv"), "--run-dir", str(run), *ARGS, "--epochs", "200"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600
        while not (run / "history.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "stopped by signal 15 (SIGTERM)" in last and "continue with: python -m seq2exp.train --model crmnet" in last
    assert last.endswith("--resume")


def test_jax_records_the_strategy_that_ran(data, tmp_path):
    """--strategy mirrored under JAX is keras.distribution DataParallel: said, and recorded in config.yaml."""
    pytest.importorskip("jax")
    run = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    flags = [a for a in ARGS if a not in ("--strategy", "default")]
    res = subprocess.run([sys.executable, "-m", "seq2exp.train", "--model", "crmnet", "--data",
                          str(data / "train.tsv"), "--run-dir", str(run), *flags, "--strategy", "mirrored",
                          "--epochs", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "--strategy mirrored runs under jax as DataParallel" in res.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["strategy"] == "mirrored"  # what was asked (a rerun from config.yaml asks the same) ...
    assert saved["ran_with"]["backend"] == "jax" and saved["ran_with"]["strategy"] == "DataParallel"  # ... what ran

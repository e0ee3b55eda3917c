"""Issue 17, cases 1, 3 and 4: a run folder belongs to one run. A second training into it is refused (an
earlier run without --resume/--overwrite, a live writer by its lock); a resume that would continue it as
another run is refused before anything is written; --resume on an empty folder is a normal fresh start;
a dataset rebuilt under a running training stops it instead of switching its data."""
import json
import os
import shutil

import pytest

from seq2exp.cli.commands import train_main
from tests.data_prep.util import run_build
from tests.helpers import TINY_TRAIN_ARGS, two_tables

ARGS = TINY_TRAIN_ARGS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return two_tables(tmp_path_factory.mktemp("data"), "other.tsv")


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("base") / "run"
    assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "2", *ARGS],
                      model="crmnet") == 0
    return run


def _snapshot(run) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()
            and p.name != ".seq2exp.lock"}


def _error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1, err
    return err[0]


def test_second_training_into_a_run_folder_is_refused_and_overwrite_replaces_it(base_run, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    (run / "notes.txt").write_text("mine")
    before = _snapshot(run)
    assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "1", *ARGS],
                      model="crmnet") == 2
    err = _error(capsys)
    assert "holds an earlier run (model crmnet, 2 epoch(s) done)" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(run) == before  # nothing overwritten: history, checkpoints, model.keras, config.yaml
    assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "1", "--overwrite",
                       *ARGS], model="crmnet") == 0
    assert len(json.loads((run / "history.json").read_text())) == 1
    ckpts = sorted(p.name.split(".")[0] for p in (run / "checkpoints").glob("ckpt-*"))
    assert set(ckpts) == {"ckpt-1"}, ckpts  # no ckpt-2 of the earlier run mixed in
    assert (run / "notes.txt").read_text() == "mine"  # only the earlier run's files were removed


def test_a_second_live_writer_is_refused_by_the_lock(base_run, data, tmp_path, capsys):
    from seq2exp.cli.run_folder import RunFolder

    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    before = _snapshot(run)
    holder = RunFolder(str(run))
    holder.lock()  # as a training running in another process holds it
    try:
        assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "3", "--resume",
                           *ARGS], model="crmnet") == 2
        err = _error(capsys)
        assert f"pid {os.getpid()}" in err and "is training into this folder right now" in err
    finally:
        holder.release()
    assert _snapshot(run) == before


@pytest.mark.parametrize("flags,named", [
    (["--batch-size", "64"], "batch_size 32 -> 64"),
    (["--preset", "small"], "preset 'tiny' -> 'small'"),
    (["--model-config", '{"kernel_size": 5}'], 'model_config {} -> {"kernel_size": 5}'),
    (["--seed", "2"], "seed 1 -> 2"),
])
def test_resume_with_another_config_is_refused_before_anything_is_written(base_run, data, tmp_path, capsys,
                                                                          flags, named):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    before = _snapshot(run)
    args = ["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "3", "--resume", *ARGS, *flags]
    assert train_main(args, model="crmnet") == 2
    err = _error(capsys)
    assert named in err and "resume with the run's settings" in err
    assert _snapshot(run) == before


def test_resume_with_another_model_is_named_not_reported_as_damage(base_run, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    before = _snapshot(run)
    assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--resume", *ARGS],
                      model="legnet") == 2
    err = _error(capsys)
    assert "model 'crmnet' -> 'legnet'" in err and "backup" not in err and "unreadable" not in err
    assert _snapshot(run) == before


def test_resume_with_other_data_is_refused(base_run, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    assert train_main(["--data", str(data / "other.tsv"), "--run-dir", str(run), "--epochs", "3", "--resume", *ARGS],
                      model="crmnet") == 2
    assert "the training data differ" in _error(capsys)
    assert len(json.loads((run / "history.json").read_text())) == 2


def test_resume_on_an_empty_folder_is_a_fresh_start_with_the_normal_init(base_run, data, tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    assert train_main(["--data", str(data / "train.tsv"), "--run-dir", str(run), "--epochs", "2", "--resume", *ARGS],
                      model="crmnet") == 0
    assert "nothing to resume" in capsys.readouterr().out
    fresh = json.loads((base_run / "history.json").read_text())
    resumed = json.loads((run / "history.json").read_text())
    # the same run as a fresh start (output bias at the label mean): without the init epoch 1 was far worse
    assert resumed[0]["loss"] == pytest.approx(fresh[0]["loss"], rel=1e-3)
    assert resumed[0]["val_r2"] == pytest.approx(fresh[0]["val_r2"], abs=1e-3)


def test_a_dataset_rebuilt_under_a_training_stops_it(data, tmp_path, monkeypatch, capsys):
    import seq2exp.engine.trainer as trainer_module

    ds = tmp_path / "ds"
    run_build([data / "train.tsv"], ds, "--layout", "crmnet", "--workers", "1")
    real = trainer_module.write_history

    def rebuild_after_epoch_1(run_dir, rows):
        real(run_dir, rows)
        if len(rows) == 1:  # another command rebuilds the dataset folder while the training runs
            run_build([data / "other.tsv"], ds, "--layout", "crmnet", "--workers", "1")

    monkeypatch.setattr(trainer_module, "write_history", rebuild_after_epoch_1)
    run = tmp_path / "run"
    assert train_main(["--data", str(ds), "--run-dir", str(run), "--epochs", "3", *ARGS], model="crmnet") == 1
    err = _error(capsys)
    assert f"{ds}/manifest.json: rebuilt or replaced while this training reads it" in err
    assert len(json.loads((run / "history.json").read_text())) == 1  # epoch 2 never ran on the new data
    monkeypatch.undo()
    assert train_main(["--data", str(ds), "--run-dir", str(run), "--epochs", "3", "--resume", *ARGS],
                      model="crmnet") == 2
    assert "the training data differ" in _error(capsys)

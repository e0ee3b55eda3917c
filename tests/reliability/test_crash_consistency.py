"""The states a kill can leave between two file operations, recovered without training (fast, in-process)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tests.reliability.jobs import SMALL


def _trainer(run_dir):
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    return Trainer(get_model_spec("crmnet"), SMALL, str(run_dir),
                   settings=TrainSettings(epochs=3, batch_size=32, steps_per_epoch=1, log_every_seconds=1000))


@pytest.mark.parametrize("state", ["killed_between_renames", "killed_while_writing", "killed_after_first_rename"])
def test_best_folder_swap_is_finished_or_undone(tmp_path, state):
    from seq2exp.engine.checkpointing import recover_swap

    final, tmp, old = tmp_path / "best", tmp_path / "best.partial", tmp_path / "best.old"
    if state == "killed_between_renames":  # best -> best.old done, best.partial -> best not yet
        old.mkdir(), tmp.mkdir(), (old / "v").write_text("old"), (tmp / "v").write_text("new")
        expected = "new"
    elif state == "killed_while_writing":  # best.partial incomplete, best untouched
        final.mkdir(), tmp.mkdir(), (final / "v").write_text("old"), (tmp / "v").write_text("ne")
        expected = "old"
    else:  # both renames done, best.old not yet removed
        final.mkdir(), old.mkdir(), (final / "v").write_text("new"), (old / "v").write_text("old")
        expected = "new"
    recover_swap(str(final))
    assert (final / "v").read_text() == expected and not tmp.exists() and not old.exists()


def test_uncommitted_checkpoint_files_removed_on_resume(tmp_path):
    from seq2exp.engine.checkpointing import remove_uncommitted

    for name in ("ckpt-1.index", "ckpt-2.index", "ckpt-3.index", "ckpt-3.data-00000-of-00001", "ckpt-12.index",
                 "checkpoint"):
        (tmp_path / name).write_text("x")
    (tmp_path / "ckpt-3_temp").mkdir()
    remove_uncommitted(str(tmp_path), done=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "ckpt-1.index", "ckpt-2.index"]


def test_history_csv_takes_rows_with_new_columns(tmp_path):
    from seq2exp.engine.checkpointing import write_history

    write_history(str(tmp_path), [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0, "skipped_steps": 0}])
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,loss,skipped_steps", "1,2.0,", "2,1.0,0"]
    assert [r["epoch"] for r in json.loads((tmp_path / "history.json").read_text())] == [1, 2]


def test_best_weights_behind_the_checkpoint_are_rewritten_on_resume(tmp_path):
    """Killed after ckpt-2 was committed (epoch 2 was the best) but before best/ was replaced."""
    first = _trainer(tmp_path)
    first.checkpoints.best_epoch.assign(1)
    first.checkpoints.save_best()  # best/ = epoch 1
    first.model.trainable_variables[0].assign_add(tf.ones_like(first.model.trainable_variables[0]))
    first.checkpoints.epoch.assign(2)
    first.checkpoints.best_epoch.assign(2)
    first.checkpoints.best_score.assign(0.5)
    first.checkpoints.save(2)  # committed; the kill comes here
    expected = [v.numpy() for v in first.model.trainable_variables]

    second = _trainer(tmp_path)
    second.checkpoints.resume()
    from seq2exp.engine.checkpointing import checkpoint_epoch

    assert checkpoint_epoch(second.best_prefix) == 2
    third = _trainer(tmp_path)
    third.load_weights(str(tmp_path / "best" / "weights"))
    got = [v.numpy() for v in third.model.trainable_variables]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert not np.array_equal(got[0], _trainer(tmp_path / "fresh").model.trainable_variables[0].numpy())


def test_resume_with_another_model_config_is_named_not_mistaken_for_damage(tmp_path):
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    _trainer(tmp_path).checkpoints.save(1)
    wider = Trainer(get_model_spec("crmnet"), {**SMALL, "dense_units": [16]}, str(tmp_path),
                    settings=TrainSettings(epochs=3, batch_size=32, steps_per_epoch=1))
    with pytest.raises(ValueError, match=r"checkpoints/ckpt-1: does not fit this model .*the model config the run"):
        wider.checkpoints.resume()
    assert (tmp_path / "checkpoints" / "ckpt-1.index").exists()  # nothing deleted or skipped

"""A full disk during a save: a clear error, the partial files removed, the previous files intact.

The writes are made to fail the way TF and Keras fail on ENOSPC (measured on a 256 KiB tmpfs:
TF raises ResourceExhaustedError "... No space left on device" and leaves `ckpt-N_temp/`; Keras
raises OSError(28) and leaves a truncated model.keras). The last test fills a real 1 MiB tmpfs: as root
it mounts one directly; otherwise it re-runs itself as root of a private user + mount namespace
(`unshare -rm`, no privileges needed where the kernel allows user namespaces). Only where neither works
does it skip, and under CI it fails instead.
"""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from tests.conftest import missing
from tests.reliability.jobs import SMALL

ENOSPC = "No space left on device"


@pytest.fixture()
def trainer(tmp_path):
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    return Trainer(get_model_spec("crmnet"), SMALL, str(tmp_path / "run"),
                   settings=TrainSettings(epochs=2, batch_size=32, steps_per_epoch=1, log_every_seconds=1000))


def test_disk_full_during_checkpoint_write(trainer, monkeypatch):
    from seq2exp.engine.trainer import CheckpointWriteError

    trainer.checkpoints.save(1)
    write = tf.train.Checkpoint._write

    def fill_disk(self, prefix, options=None):
        os.makedirs(prefix + "_temp")
        with open(os.path.join(prefix + "_temp", "part-00000-of-00001.data-00000-of-00001.tempstate7"), "wb") as fh:
            fh.write(b"\0" * 1000)
        with open(prefix + ".index", "wb") as fh:
            fh.write(b"\0" * 10)
        raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}_temp/part-00000-of-00001.data; {ENOSPC}")

    monkeypatch.setattr(tf.train.Checkpoint, "_write", fill_disk)
    with pytest.raises(CheckpointWriteError) as info:
        trainer.checkpoints.save(2)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert f"could not write checkpoint {trainer.ckpt_dir}/ckpt-2: the disk is full" in message
    assert f"last complete checkpoint is {trainer.ckpt_dir}/ckpt-1" in message and "--resume" in message
    monkeypatch.setattr(tf.train.Checkpoint, "_write", write)
    names = sorted(os.listdir(trainer.ckpt_dir))
    assert not [n for n in names if n.startswith("ckpt-2")], names  # nothing partial left
    assert tf.train.latest_checkpoint(trainer.ckpt_dir).endswith("ckpt-1")
    trainer.checkpoints.checkpoint.restore(tf.train.latest_checkpoint(trainer.ckpt_dir)).assert_existing_objects_matched()


def test_disk_full_during_best_weights_keeps_the_previous_best(trainer, monkeypatch):
    from seq2exp.engine.trainer import CheckpointWriteError

    trainer.checkpoints.best_epoch.assign(1)
    trainer.checkpoints.save_best()
    best = os.path.dirname(trainer.best_prefix)
    before = {n: open(os.path.join(best, n), "rb").read() for n in os.listdir(best)}

    def fill_disk(prefix, options=None):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        with open(prefix + ".data-00000-of-00001", "wb") as fh:
            fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(trainer.checkpoints.best_ckpt, "write", fill_disk)
    trainer.checkpoints.best_epoch.assign(2)
    with pytest.raises(CheckpointWriteError, match=f"could not write best weights {trainer.best_prefix}: the disk"):
        trainer.checkpoints.save_best()
    assert not os.path.exists(best + ".partial") and not os.path.exists(best + ".old")
    assert {n: open(os.path.join(best, n), "rb").read() for n in os.listdir(best)} == before
    from seq2exp.engine.checkpointing import checkpoint_epoch

    assert checkpoint_epoch(trainer.best_prefix) == 1


def test_disk_full_during_model_export_and_history(trainer, tmp_path, monkeypatch):
    import keras

    from seq2exp.engine.checkpointing import save_keras, write_history
    from seq2exp.engine.trainer import CheckpointWriteError

    path = tmp_path / "model.keras"
    save_keras(trainer.model, str(path))
    good = path.read_bytes()

    def fill_disk(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as fh:  # Keras writes its zip in place: half a file
            fh.write(good[: len(good) // 2])
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(keras.Model, "save", fill_disk)
    with pytest.raises(CheckpointWriteError, match=f"could not write {path}: the disk is full"):
        save_keras(trainer.model, str(path))
    assert path.read_bytes() == good and not (tmp_path / "model.partial.keras").exists()

    rows = [{"epoch": 1, "loss": 1.0}]
    write_history(str(tmp_path), rows)

    class FullFile:
        def __init__(self, name, mode="r"):
            self.name = name

        def __enter__(self):
            with open(self.name, "w") as fh:
                fh.write("[{\"epo")
            return self

        def write(self, text):
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.name}; {ENOSPC}")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(tf.io.gfile, "GFile", FullFile)
    with pytest.raises(CheckpointWriteError, match="history.json: the disk is full"):
        write_history(str(tmp_path), rows + [{"epoch": 2, "loss": 0.5}])
    assert (tmp_path / "history.json").read_text().count('"epoch"') == 1
    assert not (tmp_path / "history.json.tmp").exists()


IN_NAMESPACE = "SEQ2EXP_TEST_IN_USER_NAMESPACE"


def _mount_tmpfs(path: Path) -> bool:
    return bool(shutil.which("mount")) and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, check=False).returncode == 0


def _rerun_in_user_namespace(tmp_path: Path, test_id: str) -> None:
    """Run one test of this file again as root of a private user + mount namespace; fail if it fails."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                                                     check=False).returncode != 0:
        missing("a 1 MiB tmpfs", f"mount -t tmpfs failed (euid {os.geteuid()}) and `unshare -rm` "
                "(unprivileged user namespaces) is not available")
    cmd = ["unshare", "-rm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           f"{__file__}::{test_id}", f"--basetemp={tmp_path / 'in-namespace'}"]
    try:  # a bound on a hang, not a speed limit: the inner test saves one small checkpoint
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900,
                              env={**os.environ, IN_NAMESPACE: "1"}, cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        pytest.fail(f"waited 900 s for {test_id} to finish inside `unshare -rm`; it hangs")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, (
        f"{test_id} inside `unshare -rm` failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")


@pytest.fixture()
def real_tmpfs_or_rerun(request, tmp_path):
    """A mounted 1 MiB tmpfs when this process may mount one (root); otherwise the test is re-run inside
    `unshare -rm` and this yields None."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if _mount_tmpfs(mount):
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=False)
        return
    if os.environ.get(IN_NAMESPACE) == "1":
        pytest.fail("mount -t tmpfs failed inside the user namespace")
    _rerun_in_user_namespace(tmp_path, request.node.name)
    yield None


def test_real_full_disk(real_tmpfs_or_rerun):
    """A 1 MiB file system: preflight refuses the run; forced past that, the save fails cleanly."""
    if real_tmpfs_or_rerun is None:
        return  # checked by the re-run inside a user namespace
    tiny_tmpfs = real_tmpfs_or_rerun
    from seq2exp.engine.preflight import PreflightError, check_free_space, checkpoint_bytes
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import CheckpointWriteError, Trainer, TrainSettings

    run = tiny_tmpfs / "run"
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(run), settings=TrainSettings(steps_per_epoch=1))
    with pytest.raises(PreflightError, match=f"{run}: .* MB free, but this run writes about"):
        check_free_space(str(run), checkpoint_bytes(trainer)["run"])
    free = shutil.disk_usage(tiny_tmpfs).free
    with open(tiny_tmpfs / "ballast", "wb") as fh:  # leave less than one checkpoint
        fh.write(b"\0" * (free - checkpoint_bytes(trainer)["checkpoint"] // 4))
    with pytest.raises(CheckpointWriteError, match=f"ckpt-1: the disk is full .*{ENOSPC}"):
        trainer.checkpoints.save(1)
    assert sorted(os.listdir(run / "checkpoints")) == []

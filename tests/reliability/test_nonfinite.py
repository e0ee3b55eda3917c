"""NaN/inf losses stop or skip by policy, say so, and never reach a checkpoint (checked in the files)."""
import logging

import numpy as np
import pytest
import tensorflow as tf

from tests.reliability.jobs import SMALL, build_dataset, checkpoint_floats


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("nonfinite"), 300)


def _trainer(data, run_dir, lr=1e-3, precision="float32", **settings):
    from data_prep.dataset import make_dataset
    from data_prep.manifest import load_manifest
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    m = load_manifest(data)
    s = TrainSettings(**{"epochs": 1, "batch_size": 32, "log_every_seconds": 1000, "precision": precision,
                         "schedule": {"name": "constant", "lr": lr}, **settings})
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(run_dir), settings=s, train_examples=m.records("train"))

    def train_fn(ctx, seed):
        return make_dataset(m, "train", trainer.global_batch, ctx, seed=seed, shuffle_buffer=256, drop_remainder=True)

    def val_fn(ctx):
        return make_dataset(m, "val", trainer.global_batch, ctx, training=False)

    return trainer, train_fn, val_fn


def _all_finite(prefix):
    values = {k: v for k, v in checkpoint_floats(prefix).items() if "best_score" not in k}  # -inf = "none yet"
    assert values, prefix
    bad = [k for k, v in values.items() if not np.isfinite(v).all()]
    assert not bad, (prefix, bad)


def test_absurd_learning_rate_with_skip_drops_updates_and_says_so(data, tmp_path, caplog):
    """lr 1e30: the first update blows the weights up, every later step's loss is non-finite and dropped --
    including the batch-norm statistics those forward passes computed, so what is saved is finite."""
    trainer, train_fn, val_fn = _trainer(data, tmp_path, lr=1e30, nan_policy="skip")
    with caplog.at_level(logging.WARNING, logger="seq2exp.engine.trainer"):
        trainer.fit(train_fn, val_fn)
    row = trainer.history[0]
    steps = trainer.steps_per_epoch
    assert row["skipped_steps"] == steps - 1 and row["step"] == 1, row
    assert f"nan_policy='skip' dropped {steps - 1} of {steps} updates" in caplog.text
    assert "skipped_steps" in (tmp_path / "history.csv").read_text().splitlines()[0]
    _all_finite(str(tmp_path / "checkpoints" / "ckpt-1"))


def test_float16_overflow_stops_and_keeps_the_last_finite_checkpoint(data, tmp_path):
    """mixed_float16: after a good epoch the first conv is scaled past float16's range (65504): epoch 2's
    loss is inf/NaN, policy "stop" raises, ckpt-1 stays the newest checkpoint and is finite."""
    from seq2exp.engine.trainer import NonFiniteLossError

    trainer, train_fn, val_fn = _trainer(data, tmp_path, epochs=2, precision="mixed_float16")
    assert trainer.model.get_layer("head_conv1").compute_dtype == "float16"

    def overflow(row):
        kernel = next(v for v in trainer.model.trainable_variables if "kernel" in v.path)
        kernel.assign(kernel * 1e6)

    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at epoch 2, step 1/\d+.*only finite"):
        trainer.fit(train_fn, val_fn, on_epoch_end=overflow)
    ckpts = tmp_path / "checkpoints"
    assert tf.train.latest_checkpoint(str(ckpts)).endswith("ckpt-1") and not list(ckpts.glob("ckpt-2*"))
    _all_finite(str(ckpts / "ckpt-1"))
    _all_finite(str(tmp_path / "best" / "weights"))


def test_nonfinite_weights_or_optimizer_state_are_never_written(data, tmp_path):
    from seq2exp.engine.trainer import NonFiniteLossError

    trainer, _, _ = _trainer(data, tmp_path)
    trainer.checkpoints.save(1)  # a finite one first
    weight = trainer.model.trainable_variables[0]
    good = weight.numpy()
    weight.assign(np.full(weight.shape, np.nan, "float32"))
    with pytest.raises(NonFiniteLossError, match=r"not finite \(e\.g\. .*refusing to write them to .*ckpt-2"):
        trainer.checkpoints.save(2)
    with pytest.raises(NonFiniteLossError, match="refusing to write them to .*best"):
        trainer.checkpoints.save_best()
    weight.assign(good)
    slot = next(v for v in trainer.optimizer.variables if "float" in str(v.dtype) and len(v.shape))
    slot.assign(np.full(slot.shape, np.inf, "float32"))
    with pytest.raises(NonFiniteLossError, match="not finite"):
        trainer.checkpoints.save(2)
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert not [f for f in files if f.startswith("ckpt-2") or f.startswith("weights")], files
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-1")
    _all_finite(str(tmp_path / "checkpoints" / "ckpt-1"))

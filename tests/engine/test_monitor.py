"""Progress bar / lines with a whole-run ETA, TensorBoard train/validation runs, curves.png."""
import io

import keras
import numpy as np
import pytest

from seq2exp.engine.monitor import Progress
from tests.helpers import tensorboard_scalars

SMALL = {"seq_len": 112, "encoder_filters": [8, 8], "num_heads": 1, "key_dim": 4, "embed_dim": 8, "ffn_dim": 8,
         "decoder_filters": 4, "head_conv_filters": [4], "dense_units": [8], "dense_dropouts": [0.0],
         "kernel_size": 5, "num_transformer_blocks": 1}


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_eta_counts_the_validations_left():
    p = Progress(epochs=3, steps_per_epoch=10, global_batch=32, val_examples=320, bar=False, stream=io.StringIO())
    assert p.eta(0, 0) is None  # nothing measured yet
    p.train_seconds, p.train_steps = 10.0, 10  # 1 s per step
    # 25 training steps left; 3 validations of 320 records, estimated at 3x the training throughput
    assert p.eta(0, 5) == pytest.approx(25 + 3 * (320 / 32 / 3))
    assert p.eta(0, 5, validating=False) == pytest.approx(25)
    p.validation_done(2.0)  # measured: replaces the estimate
    assert p.eta(1, 0) == pytest.approx(20 + 2 * 2.0)


def test_lines_when_not_a_terminal_and_a_bar_on_one():
    log = io.StringIO()
    p = Progress(epochs=2, steps_per_epoch=4, global_batch=8, val_examples=16, log_every_seconds=0, stream=log)
    assert not p.bar
    p.start_epoch(0)
    p.update(1, 1, 0.5)
    p.update(2, 1, 0.25)
    p.end_epoch()
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("epoch 1/2 step 2/4 loss 0.2500") and "ETA 0:00:" in lines[-1]
    assert "(validation included)" in lines[-1]

    term = _Terminal()
    p = Progress(epochs=2, steps_per_epoch=4, global_batch=8, stream=term)
    assert p.bar
    p.start_epoch(1)
    for step in range(1, 5):
        p.update(step, 1, 1.0 / step)
    p.end_epoch()
    text = term.getvalue()
    assert "epoch 2/2" in text and "4/4" in text and "run ETA" in text and "loss 0.2500" in text


def test_tensorboard_runs_and_curves_png(tmp_path):
    import tensorflow as tf

    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    rng = np.random.default_rng(0)
    seq = rng.integers(0, 4, (96, 112), dtype=np.uint8)
    label = (seq == 2).mean(1).astype(np.float32) * 10

    def train_fn(ctx, seed):
        return tf.data.Dataset.from_tensor_slices({"seq": seq, "label": label}).batch(32, drop_remainder=True)

    def val_fn(ctx):
        return tf.data.Dataset.from_tensor_slices({"seq": seq[:64], "label": label[:64]}).batch(32)

    # one step per call: the per-step scalars land on the steps tensorboard_every names (with more steps per
    # call they come once per call, at its last step)
    settings = TrainSettings(epochs=2, batch_size=32, steps_per_epoch=3, tensorboard_every=2, log_every_seconds=1000,
                             steps_per_execution=1, schedule={"name": "constant", "lr": 1e-3})
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(tmp_path), settings=settings, val_examples=64)
    trainer.fit(train_fn, val_fn)
    train = tensorboard_scalars(tmp_path / "tensorboard" / "train")
    val = tensorboard_scalars(tmp_path / "tensorboard" / "validation")
    # per step, every 2nd optimizer step (and the first): loss, learning rate, throughput
    assert [s for s, _ in train["loss"]] == [1, 2, 4, 6]
    assert [v for _, v in train["learning_rate"]] == pytest.approx([1e-3] * 4)
    assert [s for s, _ in train["seq_per_s"]] == [2, 4, 6] and all(v > 0 for _, v in train["seq_per_s"])
    assert [s for s, _ in train["epoch_loss"]] == [3, 6]
    assert {"epoch_loss", "epoch_pearson", "epoch_r2", "epoch_spearman", "epoch_mse", "epoch_mae"} <= set(val)
    assert [s for s, _ in val["epoch_pearson"]] == [3, 6]
    # the validation loss is the model's training loss (CRMnet: Huber) averaged over the validation rows
    history = trainer.history
    assert [v for _, v in val["epoch_loss"]] == pytest.approx([r["val_loss"] for r in history], rel=1e-6)
    spec = trainer.spec
    out = trainer.model(spec.inputs({"seq": seq[:64]}, False), training=False)
    direct = float(np.mean(keras.ops.convert_to_numpy(spec.loss(spec.targets({"label": label[:64]}), out))))
    best = next(r for r in history if r["epoch"] == trainer.checkpoints.best_epoch.numpy())  # restored weights
    assert best["val_loss"] == pytest.approx(direct, rel=1e-4)
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

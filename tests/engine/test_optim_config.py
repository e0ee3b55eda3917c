"""config.yaml's optimizer and schedule are complete: every value the run used, and building from them gives the
same optimizer and learning rates as building from the model's partial defaults."""
import keras
import numpy as np
import pytest

from seq2exp.engine.optim import build_optimizer, effective_optimizer, effective_schedule
from seq2exp.engine.registry import load_all_models

SPECS = {spec.name: spec for spec in load_all_models()}


def _lrs(opt, steps):
    schedule = opt.learning_rate if not hasattr(opt, "_learning_rate") else opt._learning_rate
    if not callable(schedule):
        return [float(keras.ops.convert_to_numpy(schedule))] * len(steps)
    return [float(keras.ops.convert_to_numpy(schedule(s))) for s in steps]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_effective_config_rebuilds_the_same_optimizer(name):
    spec = SPECS[name]
    opt_full, sched_full = effective_optimizer(spec.optimizer), effective_schedule(spec.schedule)
    assert effective_optimizer(opt_full) == opt_full and effective_schedule(sched_full) == sched_full  # a fixpoint
    assert {"beta_1", "beta_2", "epsilon", "clipnorm", "global_clipnorm"} <= set(opt_full)
    a = build_optimizer(spec.optimizer, spec.schedule, steps_per_epoch=7, epochs=5, replicas=2)
    b = build_optimizer(opt_full, sched_full, steps_per_epoch=7, epochs=5, replicas=2)
    ca, cb = a.get_config(), b.get_config()
    for c in (ca, cb):  # the schedule is compared by its values below; the name is only unique per process
        c.pop("learning_rate"), c.pop("name")
    assert ca == cb
    steps = [0, 1, 6, 20, 34, 100]
    np.testing.assert_allclose(_lrs(a, steps), _lrs(b, steps), rtol=1e-7)


def test_every_default_is_written_out():
    assert effective_optimizer({"name": "adamw"})["weight_decay"] == 0.01  # ours (PyTorch's), not Keras' 0.004
    assert effective_optimizer(None) == {"name": "adam", "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                                         "amsgrad": False, "clipnorm": None, "clipvalue": None,
                                         "global_clipnorm": None}
    assert effective_schedule({"name": "warmup_cosine", "peak_lr": 3e-3}) == {
        "name": "warmup_cosine", "peak_lr": 3e-3, "base_lr": 1e-4, "final_lr": 1e-4, "warmup_epochs": 10,
        "scale_with_replicas": True}
    assert effective_schedule({"name": "inverse_sqrt", "warmup_epochs": 2}) == {
        "name": "inverse_sqrt", "d_model": 512, "warmup_epochs": 2}


@pytest.mark.parametrize("bad, match", [({"name": "adam", "lr": 1e-3}, "unknown optimizer settings"),
                                        ({"name": "sgd"}, "unknown optimizer 'sgd'"),
                                        ({"name": "adam", "weight_decay": 0.1}, "use 'adamw'")])
def test_bad_optimizer_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        effective_optimizer(bad)


def test_bad_schedule_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown one_cycle schedule settings \['peak_lr'\]"):
        effective_schedule({"name": "one_cycle", "peak_lr": 1e-3})

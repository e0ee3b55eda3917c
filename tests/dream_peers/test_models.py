"""DREAM peer models: published parameter counts, registry entries, `.keras` round trips, dtypes."""
import keras
import numpy as np
import pytest

from dream_peers import CNNBiLSTMConfig, MacaronConfig, build_cnn_bilstm, build_macaron
from dream_peers.transforms import cnn_bilstm_inputs, macaron_inputs
from seq2exp.engine.registry import get_model_spec, model_names
from tests.helpers import assert_keras_roundtrip, random_codes, run_under_policy

CNN_TOTAL, CNN_TRAINABLE = 1_007_169, 1_006_017
MACARON_TOTAL = 47_425_543


def _count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def test_cnn_bilstm_published_counts():
    model = build_cnn_bilstm(CNNBiLSTMConfig())
    assert model.count_params() == CNN_TOTAL and _count(model.trainable_weights) == CNN_TRAINABLE
    assert tuple(model.input.shape) == (None, 110, 4) and tuple(model.output.shape) == (None, 1)
    assert model.get_layer("bilstm").count_params() == 2 * 4 * 8 * (64 + 8 + 1)
    # the report's figure (LSTM(32)) would not give the stated count
    assert build_cnn_bilstm(CNNBiLSTMConfig(lstm_units=32)).count_params() == 1_365_249


def test_macaron_published_counts():
    model = build_macaron(MacaronConfig())
    assert model.count_params() == MACARON_TOTAL and not model.non_trainable_weights
    assert tuple(model.input.shape) == (None, 200)
    assert tuple(model.output["expression"].shape) == (None, 1)
    assert tuple(model.output["nucleotides"].shape) == (None, 200, 6)
    assert tuple(model.get_layer("pseudo_tokens").output.shape) == (None, 232, 512)
    assert [model.get_layer(f"block{i}").count_params() for i in range(1, 5)] == [11_821_568] * 4
    assert model.get_layer("pseudo_tokens").count_params() == 1024  # Dense(512) on (.., 1) zeros


def test_registry_lists_and_builds_both():
    assert {"crmnet", "legnet", "cnn_bilstm", "macaron"} <= set(model_names())
    for name, total, trainable in (("cnn_bilstm", CNN_TOTAL, CNN_TRAINABLE), ("macaron", MACARON_TOTAL, MACARON_TOTAL)):
        spec = get_model_spec(name)
        assert spec.layout == "crmnet" and spec.compute_loss is not None and set(spec.presets) == {"tiny", "small"}
        model = spec.build({})
        # + LabelScale's non-trainable mean and std (expression units out)
        assert model.count_params() == total + 2 and _count(model.trainable_weights) == trainable
        assert model.name == name
        for preset in spec.presets.values():
            assert spec.build(preset()).count_params() < total / 5
    with pytest.raises(ValueError, match="unknown CNNBiLSTMConfig keys"):
        get_model_spec("cnn_bilstm").build({"lstm": 3})


def test_cnn_bilstm_roundtrip_and_initialize(tmp_path):
    spec = get_model_spec("cnn_bilstm")
    keras.utils.set_random_seed(0)
    model = spec.build(spec.presets["tiny"]())
    spec.initialize(model, {"mean": 7.5, "std": 3.0, "count": 10})
    x = cnn_bilstm_inputs({"seq": random_codes(4, 112)})
    reloaded = assert_keras_roundtrip(model, x, tmp_path)
    assert [float(w.numpy()) for w in reloaded.get_layer("label_scale").weights] == [7.5, 3.0]
    pred = spec.predict(reloaded, {"seq": random_codes(4, 112)}, spec.inputs)
    assert tuple(pred.shape) == (4,)


def test_macaron_roundtrip(tmp_path):
    spec = get_model_spec("macaron")
    keras.utils.set_random_seed(0)
    model = spec.build(spec.presets["tiny"]())
    spec.initialize(model, {"mean": 9.0, "std": 2.5})
    tokens = macaron_inputs({"seq": random_codes(3, 112)}, training=True)
    path = tmp_path / "macaron.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    a, b = model(tokens, training=False), reloaded(tokens, training=False)
    for key in ("expression", "nucleotides"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(b[key]), keras.ops.convert_to_numpy(a[key]), atol=1e-6)
    pred = keras.ops.convert_to_numpy(spec.predict(reloaded, {"seq": random_codes(3, 112)}, spec.inputs))
    assert pred.shape == (3,) and np.all(np.isfinite(pred))


@pytest.mark.parametrize("name", ["cnn_bilstm", "macaron"])
def test_mixed_precision_outputs_float32(name):
    spec = get_model_spec(name)
    model = run_under_policy("mixed_bfloat16", spec.build, spec.presets["tiny"]())
    out = model(spec.inputs({"seq": random_codes(2, 112)}, False), training=False)
    outs = out.values() if isinstance(out, dict) else [out]
    assert all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outs)
    assert model.get_layer("label_scale").compute_dtype == "float32"
    conv = "conv1" if name == "cnn_bilstm" else "block1"
    assert model.get_layer(conv).compute_dtype == "bfloat16"


def test_one_train_command_lists_every_model():
    import argparse
    import importlib
    import re

    from seq2exp.cli import config as run_config

    parser = argparse.ArgumentParser()
    run_config.add_arguments(parser, None)
    text = " ".join(parser.format_help().split())
    assert "one of cnn_bilstm, crmnet, legnet, macaron" in text
    assert run_config.resolve(parser.parse_args(["--model", "macaron", "--run-dir", "x"])).model == "macaron"
    per_package = argparse.ArgumentParser()
    run_config.add_arguments(per_package, "crmnet")  # python -m crmnet.train: the model is fixed
    assert not re.search(r"--model(?![-\w])", per_package.format_help())
    for name in ("seq2exp.train", "seq2exp.evaluate", "seq2exp.predict", "crmnet.train", "legnet_tf.train"):
        importlib.import_module(name)

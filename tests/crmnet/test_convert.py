"""crmnet.convert on REAL Keras-2 SavedModels.

The fixture writes the published architecture with tf-keras (``benchmarks/crmnet_keras2_reference.py``,
published object structure, random weights and BatchNorm statistics, one Adam step, ``model.save``)
in a subprocess under ``TF_USE_LEGACY_KERAS=1``; the tests convert it and compare with the Keras-2
model's own predictions. Error messages are tested on copies of that real checkpoint's reading
with one thing changed.
"""

import copy
import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from crmnet import CRMnetConfig, load_model
from crmnet.convert import (
    CheckpointMappingError,
    Keras2Variable,
    convert_checkpoint,
    keras2_role,
    main,
    plan_mapping,
    read_keras2_checkpoint,
    resolve_checkpoint_prefix,
)
from crmnet.model import build_crmnet
from tests.crmnet.keras2_fixture import (
    assert_predictions_match,
    codes_of,
    run,
    write_reference,
)

PUBLISHED_TOTAL = 34_170_289


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The published topology at a small width (8 transformer blocks, 17 SE models, 14 BatchNorms)."""
    return write_reference(tmp_path_factory.mktemp("keras2") / "small", preset="small")


@pytest.fixture(scope="module")
def checkpoint(reference):
    return read_keras2_checkpoint(reference["saved_model"])


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    """``python -m crmnet.convert`` in a fresh interpreter, with --check-input and --report."""
    out = tmp_path_factory.mktemp("converted")
    keras_file, report = out / "crmnet.keras", out / "mapping.tsv"
    proc = run(
        [
            "-m",
            "crmnet.convert",
            str(reference["saved_model"]),
            "--out",
            str(keras_file),
            "--config",
            str(reference["dir"] / "config.json"),
            "--report",
            str(report),
            "--check-input",
            str(reference["predictions_tsv"]),
        ]
    )
    return {"keras": keras_file, "report": report, "stdout": proc.stdout}


def _config(reference):
    return CRMnetConfig.from_dict(reference["config"])


def test_reference_has_the_published_object_structure(reference, checkpoint):
    assert reference["summary"]["keras"].startswith("2.")
    keys = tf.train.load_checkpoint(
        str(reference["saved_model"] / "variables" / "variables")
    ).get_variable_to_shape_map()
    # SE and transformer weights are stored only under variables/<n>, as in the released model
    assert sum(key.startswith("variables/") for key in keys) == 4 * 17 + 16 * 8
    assert sum(key.startswith("layer_with_weights-") for key in keys) == 2 * 23 + 4 * 14 + 2 * 5
    # the spec's measured census: 873 keys, 562 optimizer/, 2 keras_api/, 1 object graph
    assert len(keys) == 873 and sum(key.startswith("optimizer/") for key in keys) == 562
    assert sum(key.startswith("keras_api/") for key in keys) == 2
    classes = [layer.class_name for layer in checkpoint.weighted_layers]
    assert classes.count("SqueezeExcite") == 17 and classes.count("TransformerBlock") == 8
    assert classes.count("BatchNormalization") == 14
    assert checkpoint.stray == []


def test_cli_converts_and_check_input_passes(reference, converted):
    printed = converted["stdout"]
    assert "weights identical after reload" in printed
    assert f"{reference['summary']['params']:,} parameters" in printed
    assert "max |converted - expected|" in printed and "(OK," in printed


def test_converted_file_predicts_as_the_keras2_model(reference, converted):
    model = load_model(converted["keras"])
    preds = keras.ops.convert_to_numpy(model(codes_of(reference["sequences"]), training=False))
    assert_predictions_match(preds, reference)


def test_every_variable_copied_exactly_and_identified_by_object_path(reference, converted, checkpoint):
    model = load_model(converted["keras"])
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    reader = tf.train.load_checkpoint(checkpoint.source)
    rows = [line.split("\t") for line in converted["report"].read_text().splitlines()]
    assert rows[0] == ["checkpoint_key", "keras2_source", "weight", "shape", "transform"]
    assert sorted(row[2] for row in rows[1:]) == sorted(weights)
    for key, source, path, _, _ in rows[1:]:
        np.testing.assert_array_equal(weights[path], reader.get_tensor(key), err_msg=f"{key} -> {path}")
        if "_query_dense/" in source:  # the Keras-2 name agrees with the role we read from the object path
            assert "/query/" in source and path.endswith(("query/kernel", "query/bias"))
        if "/excitation_b/" in source:
            assert "_expand/" in path
    mapped = {row[0] for row in rows[1:]}
    assert len(mapped) + len(checkpoint.ignored_keys) == len(reader.get_variable_to_shape_map())
    assert all(
        k.startswith(("optimizer/", "keras_api/")) or k == "_CHECKPOINTABLE_OBJECT_GRAPH"
        for k in checkpoint.ignored_keys
    )


def test_decoder_concatenating_skip_first_is_reordered(tmp_path):
    """A graph that concatenates [skip, upsampled] still converts exactly (rows reordered)."""
    config = CRMnetConfig.tiny().to_dict()
    reference = write_reference(tmp_path / "skip_first", config=config, skip_first=True, num_sequences=48)
    model = convert_checkpoint(reference["saved_model"], config)
    assert sum(bool(entry.transform) for entry in model.mapping_report) == 3
    assert sum("[skip, upsampled]" in note for note in model.mapping_report.notes) == 3
    preds = keras.ops.convert_to_numpy(model(codes_of(reference["sequences"]), training=False))
    assert_predictions_match(preds, reference)


def test_accepts_saved_model_dir_variables_dir_and_prefix(reference):
    directory = reference["saved_model"]
    prefix = str(directory / "variables" / "variables")
    assert resolve_checkpoint_prefix(directory) == prefix
    assert resolve_checkpoint_prefix(directory / "variables") == prefix
    assert resolve_checkpoint_prefix(prefix) == prefix
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        resolve_checkpoint_prefix(directory / "nope")


def test_checkpoint_alone_maps_the_same(reference, checkpoint, tmp_path):
    """Without saved_model.pb / keras_metadata.pb (a bare checkpoint) the object graph still suffices."""
    shutil.copytree(reference["saved_model"] / "variables", tmp_path / "bare")
    bare = read_keras2_checkpoint(str(tmp_path / "bare" / "variables"))
    model = build_crmnet(_config(reference))
    with_names = plan_mapping(checkpoint, model)
    without = plan_mapping(bare, model)
    assert [(e.checkpoint_key, e.weight_path) for e in without] == [
        (e.checkpoint_key, e.weight_path) for e in with_names
    ]
    assert not bare.has_metadata and any("no keras_metadata.pb" in note for note in without.notes)


def test_keras2_roles():
    assert keras2_role([("kernel",)]) == ("", "kernel")
    assert keras2_role([("excitation_a", "kernel")]) == ("reduce", "kernel")
    assert keras2_role([("excitation_b", "bias")]) == ("expand", "bias")
    assert keras2_role([("att", "_query_dense", "kernel")]) == ("query", "kernel")
    assert keras2_role([("att", "_output_dense", "bias")]) == ("output", "bias")
    assert keras2_role([("layernorm2", "gamma")]) == ("norm2", "gamma")
    assert keras2_role([("ffn", "layer-1", "kernel"), ("ffn", "layer_with_weights-1", "kernel")]) == ("ffn2", "kernel")
    assert keras2_role([("ffn", "0", "bias")]) == ("ffn1", "bias")  # a plain list of layers
    assert keras2_role([("ffn", "layer-2", "kernel")]) is None  # layer-<i> counts weightless layers too
    assert keras2_role([("dense_7", "kernel")]) is None  # an auto-generated name says nothing


# --------------------------------------------------------------------------- error messages


def _weight_of(checkpoint, model, key):
    return next(e.weight_path for e in plan_mapping(checkpoint, model) if e.checkpoint_key == key)


def _find(checkpoint, class_name, nth, path):
    layer = [lay for lay in checkpoint.weighted_layers if lay.class_name == class_name][nth]
    return layer, next(v for v in layer.variables if v.path == path)


def _raises(checkpoint, model):
    with pytest.raises(CheckpointMappingError) as info:
        plan_mapping(checkpoint, model)
    return info.value


def test_missing_variable_names_our_weight(reference, checkpoint):
    model = build_crmnet(_config(reference))
    broken = copy.deepcopy(checkpoint)
    layer, variable = _find(broken, "TransformerBlock", 3, "att/_value_dense/kernel")
    path = _weight_of(checkpoint, model, variable.key)
    layer.variables.remove(variable)
    error = _raises(broken, model)
    assert error.unassigned_weights == [path] and path in str(error)
    assert error.unmapped_keys == [] and error.shape_mismatches == []


def test_wrong_shape_names_key_both_shapes_and_weight(reference, checkpoint):
    model = build_crmnet(_config(reference))
    broken = copy.deepcopy(checkpoint)
    layer, variable = _find(broken, "SqueezeExcite", 5, "excitation_a/kernel")
    path = _weight_of(checkpoint, model, variable.key)
    good = variable.shape
    layer.variables[layer.variables.index(variable)] = dataclasses.replace(variable, shape=(good[0], good[1] + 1))
    error = _raises(broken, model)
    message = str(error)
    assert variable.key in message and path in message and "excitation_a/kernel" in message
    assert error.shape_mismatches == [(variable.key, (good[0], good[1] + 1), path, good)]
    assert error.unmapped_keys == [] and error.unassigned_weights == []


def test_unknown_variables_are_errors_naming_them(reference, checkpoint):
    model = build_crmnet(_config(reference))
    broken = copy.deepcopy(checkpoint)
    layer, variable = _find(broken, "TransformerBlock", 0, "att/_query_dense/bias")
    odd = dataclasses.replace(
        variable,
        key="variables/9999/.ATTRIBUTES/VARIABLE_VALUE",
        paths=(("att", "_mystery_dense", "bias"),),
        name="transformer_block/mystery/bias",
    )
    layer.variables.append(odd)
    stray = Keras2Variable("variables/9998/.ATTRIBUTES/VARIABLE_VALUE", (("variables", "9998"),), (3,), tf.float32)
    broken.stray.append(stray)
    error = _raises(broken, model)
    message = str(error)
    assert set(error.unmapped_keys) == {odd.key, stray.key}
    assert "att/_mystery_dense/bias" in message and "transformer_block/mystery/bias" in message and stray.key in message
    assert error.unassigned_weights == [] and error.shape_mismatches == []


def test_extra_and_missing_layers_are_reported_alone(reference, checkpoint):
    """Alignment keeps a dropped or inserted layer from shifting every later one."""
    model = build_crmnet(_config(reference))
    broken = copy.deepcopy(checkpoint)
    dense = [layer for layer in broken.weighted_layers if layer.class_name == "Dense"][1]
    lost = sorted(_weight_of(checkpoint, model, v.key) for v in dense.variables)
    extra = copy.deepcopy([layer for layer in broken.weighted_layers if layer.class_name == "Conv1D"][2])
    extra.index, extra.node = 10_000, "layer-10000"
    extra.variables = [dataclasses.replace(v, key=v.key + "/extra") for v in extra.variables]
    broken.layers = [layer for layer in broken.layers if layer is not dense] + [extra]
    error = _raises(broken, model)
    assert sorted(error.unassigned_weights) == lost
    assert sorted(error.unmapped_keys) == sorted(v.key for v in extra.variables)
    assert error.shape_mismatches == []


def test_cli_wrong_config_fails_naming_the_problem(reference, tmp_path, capsys):
    config = dict(reference["config"], ffn_dim=reference["config"]["ffn_dim"] * 2)
    rc = main([str(reference["saved_model"]), "--out", str(tmp_path / "x.keras"), "--config", json.dumps(config)])
    err = capsys.readouterr().err
    assert rc == 2 and "shape mismatch" in err and "ffn/layer_with_weights-0/kernel" in err
    assert not (tmp_path / "x.keras").exists()


def test_name_based_checkpoint_is_a_clear_error(tmp_path):
    prefix = str(tmp_path / "tf1" / "model.ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["dense/kernel"], shape_and_slices=[""], tensors=[tf.zeros((2, 3))])
    with pytest.raises(ValueError, match="_CHECKPOINTABLE_OBJECT_GRAPH.*name-based"):
        read_keras2_checkpoint(prefix)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--check-input" in capsys.readouterr().out


# --------------------------------------------------------------------------- full size


def test_full_published_keras2_savedmodel_converts(tmp_path):
    """The published size (34,170,289 parameters) written by tf-keras, converted by the CLI."""
    reference = write_reference(tmp_path / "published", preset="published", num_sequences=48)
    assert reference["summary"]["params"] == PUBLISHED_TOTAL
    keras_file = tmp_path / "crmnet.keras"
    proc = run(
        [
            "-m",
            "crmnet.convert",
            str(reference["saved_model"]),
            "--out",
            str(keras_file),
            "--check-input",
            str(reference["predictions_tsv"]),
        ]
    )
    assert f"{PUBLISHED_TOTAL:,} parameters" in proc.stdout and "(OK," in proc.stdout
    model = load_model(keras_file)
    preds = model.predict(codes_of(reference["sequences"]), batch_size=16, verbose=0)
    assert_predictions_match(preds, reference)


def test_missing_tf_keras_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import importlib.util

    from tests.crmnet import keras2_fixture

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf_keras" else real(name, *a))
    monkeypatch.delenv("REQUIRE_SHARED_DATA", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="tf-keras is not installed"):
        keras2_fixture.require_tf_keras()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("REQUIRE_SHARED_DATA", "1")  # what .ci/run sets: the same switch as every optional package
    with pytest.raises(pytest.fail.Exception, match="tf-keras is not installed"):
        keras2_fixture.require_tf_keras()
    monkeypatch.delenv("REQUIRE_SHARED_DATA")
    with pytest.raises(pytest.skip.Exception):
        keras2_fixture.require_tf_keras()

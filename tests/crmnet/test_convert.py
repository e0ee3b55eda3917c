"""Checkpoint converter tests on synthetic Keras-2-style checkpoints.

The released SavedModel is not reachable here, so each test writes a TF
checkpoint with the Keras-2 functional naming (``layer_with_weights-<i>/...``,
a Keras-example transformer block, optimizer slots and bookkeeping keys) from
a randomly filled source model, converts it and compares with the source.
"""
import json
import os
import re
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from crmnet import CRMnetConfig, build_crmnet
from crmnet.convert import (
    VALUE_SUFFIX,
    CheckpointMappingError,
    MappingEntry,
    convert_checkpoint,
    main,
    plan_mapping,
    resolve_checkpoint_prefix,
    transformer_part,
)

from tests.helpers import random_codes

PUBLISHED_TOTAL = 34_170_289
TINY = CRMnetConfig.tiny()

# Our sub-layer of a TransformerBlock -> its attribute path in the Keras-example block.
KERAS_EXAMPLE_NAMES = {
    "attention/query": "att/_query_dense",
    "attention/key": "att/_key_dense",
    "attention/value": "att/_value_dense",
    "attention/attention_output": "att/_output_dense",
    "norm1": "layernorm1",
    "ffn1": "ffn/layer_with_weights-0",
    "ffn2": "ffn/layer_with_weights-1",
    "norm2": "layernorm2",
}


def _auto_names(block_index):
    """Keras-2 auto-generated names: global counters, not roles (dense_9, dense_10, ...)."""
    n = 7 + 2 * block_index
    return {
        **{k: v.replace("att/", f"multi_head_attention_{block_index}/")
           for k, v in KERAS_EXAMPLE_NAMES.items() if k.startswith("attention")},
        "norm1": f"layer_normalization_{n}",
        "ffn1": f"dense_{n}",
        "ffn2": f"dense_{n + 1}",
        "norm2": f"layer_normalization_{n + 1}",
    }


def keras2_groups(model, auto_names=False):
    """``[[(checkpoint sub path, weight), ...], ...]``, one list per Keras-2 weighted layer.

    Derived from ``model.weights`` order: plain layers own the weights under
    one path prefix; a transformer block owns everything under ``tf_blockN/``.
    """
    groups, current = [], None
    for weight in model.weights:
        parts = weight.path.split("/")
        if parts[0].startswith("tf_block"):
            owner = parts[0]
            inner = "/".join(parts[1:-1]).replace(f"{owner}_", "", 1)
            index = int(owner[len("tf_block"):])
            names = _auto_names(index) if auto_names else KERAS_EXAMPLE_NAMES
            sub = f"{names[inner]}/{parts[-1]}"
        else:
            owner = "/".join(parts[:-1])
            sub = parts[-1]
        if owner != current:
            groups.append([])
            current = owner
        groups[-1].append((sub, weight))
    return groups


def keras2_tensors(model, auto_names=False, group_order=None, slots=True):
    """Checkpoint tensors ``{key: array}`` with slots and bookkeeping, plus ``{key: weight path}``."""
    groups = keras2_groups(model, auto_names)
    if group_order is not None:
        groups = [groups[i] for i in group_order]
    tensors, truth = {}, {}
    for index, group in enumerate(groups):
        for sub, weight in group:
            key = f"layer_with_weights-{index}/{sub}{VALUE_SUFFIX}"
            value = keras.ops.convert_to_numpy(weight)
            tensors[key] = value
            truth[key] = weight.path
            if slots and weight.trainable:
                for slot in ("m", "v"):
                    slot_key = f"layer_with_weights-{index}/{sub}/.OPTIMIZER_SLOT/optimizer/{slot}{VALUE_SUFFIX}"
                    tensors[slot_key] = np.zeros_like(value)
    tensors["optimizer/iter" + VALUE_SUFFIX] = np.int64(1234)
    tensors["optimizer/learning_rate" + VALUE_SUFFIX] = np.float32(1e-3)
    tensors["save_counter" + VALUE_SUFFIX] = np.int64(1)
    tensors["keras_api/metrics/0/total" + VALUE_SUFFIX] = np.float32(3.0)
    tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = np.array(b"not a real object graph", dtype=object)
    return tensors, truth


def write_checkpoint(prefix, tensors):
    """Writes arbitrary keys as a TF V2 checkpoint bundle (``prefix.index`` + data)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[name]) for name in names],
    )
    return prefix


def write_saved_model(directory, tensors):
    """A SavedModel-shaped folder: ``saved_model.pb`` (a stub) and ``variables/variables``."""
    os.makedirs(directory / "variables", exist_ok=True)
    (directory / "saved_model.pb").write_bytes(b"stub")
    write_checkpoint(str(directory / "variables" / "variables"), tensors)
    return directory


def randomize(model, seed):
    """Distinct, non-default values everywhere, BatchNorm statistics included."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        weight.assign(value.astype("float32"))


def predict(model, codes):
    return keras.ops.convert_to_numpy(model(codes, training=False))


@pytest.fixture(scope="module")
def source():
    """A tiny CRMnet with random weights, the 'released' model of these tests."""
    keras.utils.set_random_seed(1)
    model = build_crmnet(TINY)
    randomize(model, seed=1)
    return model


@pytest.fixture(scope="module")
def released(source, tmp_path_factory):
    tensors, truth = keras2_tensors(source)
    directory = write_saved_model(tmp_path_factory.mktemp("released") / "crmnet_savedmodel", tensors)
    return directory, tensors, truth


@pytest.fixture(scope="module")
def converted(released):
    keras.utils.set_random_seed(2)  # a different init, so copied values are visible
    return convert_checkpoint(released[0], TINY)


def _convert_modified(tmp_path, tensors):
    directory = write_saved_model(tmp_path / "modified", tensors)
    return convert_checkpoint(directory, TINY)


def test_every_weight_equals_the_source(source, converted):
    assert len(converted.weights) == len(source.weights)
    for ours, theirs in zip(converted.weights, source.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), err_msg=ours.path
        )


def test_predictions_match_the_source(source, converted):
    codes = random_codes(16, TINY.seq_len, seed=3)
    diff = np.max(np.abs(predict(converted, codes) - predict(source, codes)))
    assert diff < 1e-5


def test_mapping_report_covers_every_weight(released, converted):
    _, tensors, truth = released
    report = converted.mapping_report
    assert all(isinstance(entry, MappingEntry) for entry in report)
    assert [entry.weight_path for entry in report] == [w.path for w in converted.weights]
    assert {entry.checkpoint_key: entry.weight_path for entry in report} == truth
    for key, _, shape in report:
        assert tuple(tensors[key].shape) == shape
    assert report.num_values == converted.count_params()
    assert report.order_only == []
    ignored = set(report.ignored_keys)
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in ignored and "save_counter" + VALUE_SUFFIX in ignored
    assert sum(".OPTIMIZER_SLOT" in key for key in ignored) == 2 * len(converted.trainable_weights)
    assert len(ignored) + len(report) == len(tensors)


def test_accepts_saved_model_dir_variables_dir_and_prefix(released):
    directory = released[0]
    prefix = str(directory / "variables" / "variables")
    assert resolve_checkpoint_prefix(directory) == prefix
    assert resolve_checkpoint_prefix(directory / "variables") == prefix
    assert resolve_checkpoint_prefix(prefix) == prefix
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        resolve_checkpoint_prefix(directory / "nope")


def test_prefix_conversion_equals_directory_conversion(released, converted):
    model = convert_checkpoint(str(released[0] / "variables" / "variables"), TINY.to_dict())
    for ours, reference in zip(model.weights, converted.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(reference))


def test_auto_named_transformer_falls_back_to_shape_and_order(source, tmp_path):
    # tiny: ffn_dim == embed_dim, so both FFN Denses and both LayerNorms share shapes
    tensors, truth = keras2_tensors(source, auto_names=True)
    assert any("dense_10/kernel" in key for key in tensors)  # natural, not lexical, order matters
    with pytest.warns(UserWarning, match="by position"):
        model = _convert_modified(tmp_path, tensors)
    assert {e.checkpoint_key: e.weight_path for e in model.mapping_report} == truth
    assert any("ffn1" in path for path in model.mapping_report.order_only)
    codes = random_codes(8, TINY.seq_len, seed=4)
    assert np.max(np.abs(predict(model, codes) - predict(source, codes))) < 1e-5


def test_swapped_transformer_pair_predicts_the_same(source, tmp_path):
    """Keras 2 may list a summed pair either way round: harmless, the pair is symmetric."""
    groups = keras2_groups(source)
    first = next(i for i, g in enumerate(groups) if g[0][1].path.startswith("tf_block2/"))
    assert groups[first + 1][0][1].path.startswith("tf_block3/")
    order = list(range(len(groups)))
    order[first], order[first + 1] = order[first + 1], order[first]
    tensors, _ = keras2_tensors(source, group_order=order)
    model = _convert_modified(tmp_path, tensors)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("tf_block2").weights[0]),
        keras.ops.convert_to_numpy(source.get_layer("tf_block3").weights[0]),
    )
    codes = random_codes(8, TINY.seq_len, seed=5)
    assert np.max(np.abs(predict(model, codes) - predict(source, codes))) < 1e-5


def test_extra_unknown_layer_key_is_an_error_naming_it(released, tmp_path):
    tensors = dict(released[1])
    count = 1 + max(int(m.group(1)) for k in tensors if (m := re.match(r"layer_with_weights-(\d+)/", k)))
    extra_group = f"layer_with_weights-{count}/kernel{VALUE_SUFFIX}"
    stray = f"mystery_layer/kernel{VALUE_SUFFIX}"
    extra_attr = f"layer_with_weights-0/surprise{VALUE_SUFFIX}"
    tensors[extra_group] = np.ones((3, 2), "float32")
    tensors[stray] = np.ones((4,), "float32")
    tensors[extra_attr] = np.ones((2,), "float32")
    with pytest.raises(CheckpointMappingError) as info:
        _convert_modified(tmp_path, tensors)
    for key in (extra_group, stray, extra_attr):
        assert key in str(info.value)
    assert set(info.value.unmapped_keys) == {extra_group, stray, extra_attr}
    assert info.value.unassigned_weights == [] and info.value.shape_mismatches == []


def test_wrong_shape_is_an_error_naming_key_and_both_shapes(released, tmp_path):
    tensors, truth = dict(released[1]), released[2]
    key = next(k for k, path in truth.items() if path == "enc2/enc2_conv1/kernel")
    assert tensors[key].shape == (5, 8, 8)
    tensors[key] = np.zeros((5, 8, 9), "float32")
    with pytest.raises(CheckpointMappingError) as info:
        _convert_modified(tmp_path, tensors)
    message = str(info.value)
    assert key in message and "(5, 8, 9)" in message and "(5, 8, 8)" in message
    assert "enc2/enc2_conv1/kernel" in message
    assert info.value.shape_mismatches == [(key, (5, 8, 9), "enc2/enc2_conv1/kernel", (5, 8, 8))]
    assert info.value.unmapped_keys == [] and info.value.unassigned_weights == []


@pytest.mark.parametrize(
    "missing",
    [
        ["enc1/enc1_se1/enc1_se1_reduce/bias"],
        ["tf_block1/tf_block1_norm2/beta"],
        ["tf_block4/tf_block4_attention/value/kernel"],
        ["head_dense1/kernel", "head_dense1/bias"],  # a whole layer_with_weights-i
    ],
)
def test_missing_variable_is_an_error_naming_our_weight(released, tmp_path, missing):
    tensors, truth = dict(released[1]), released[2]
    for key, path in truth.items():
        if path in missing:
            del tensors[key]
    with pytest.raises(CheckpointMappingError) as info:
        _convert_modified(tmp_path, tensors)
    for path in missing:
        assert path in str(info.value)
    assert sorted(info.value.unassigned_weights) == sorted(missing)
    assert info.value.unmapped_keys == [] and info.value.shape_mismatches == []


def test_transformer_part_names():
    assert transformer_part("att/_query_dense") == "query"
    assert transformer_part("att/_key_dense") == "key"
    assert transformer_part("att/_value_dense") == "value"
    assert transformer_part("att/_output_dense") == "output"
    assert transformer_part("layernorm2") == "norm2"
    assert transformer_part("ffn/layer_with_weights-1") == "ffn2"
    assert transformer_part("dense_1") is None  # a global counter, not a role
    assert transformer_part("layer_normalization_1") is None


def test_cli_writes_reloadable_keras_file(source, released, tmp_path, capsys):
    directory = released[0]
    codes = random_codes(6, TINY.seq_len, seed=6)
    expected = predict(source, codes).reshape(-1)
    letters = np.array(list("ACGTN"))
    check = tmp_path / "check.tsv"
    with open(check, "w") as handle:
        handle.write("sequence\texpected\n")
        for row, value in zip(codes, expected):
            handle.write("".join(letters[row]).rstrip("N") + f"\t{value:.9g}\n")
    out, report = tmp_path / "out" / "crmnet.keras", tmp_path / "mapping.tsv"
    rc = main([str(directory), "--out", str(out), "--config", json.dumps(TINY.to_dict()),
               "--report", str(report), "--check-input", str(check), "--check-atol", "1e-5"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert f"{source.count_params():,} parameters" in printed
    assert "identical after reload" in printed and "OK" in printed
    rows = report.read_text().splitlines()
    assert rows[0] == "checkpoint_key\tweight\tshape"
    assert len(rows) == 1 + len(source.weights)
    reloaded = keras.saving.load_model(out, safe_mode=True)
    np.testing.assert_allclose(predict(reloaded, codes).reshape(-1), expected, atol=1e-5, rtol=0)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--check-input" in capsys.readouterr().out


def test_full_published_config_maps_every_parameter(tmp_path):
    """Full shapes, mapping only (no forward pass): a 137 MB checkpoint, ~6 s on 2 cores."""
    start = time.perf_counter()
    model = build_crmnet(CRMnetConfig())
    tensors, truth = keras2_tensors(model, slots=False)
    prefix = write_checkpoint(str(tmp_path / "full" / "variables"), tensors)
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    report = plan_mapping(shapes, model)
    assert report.num_values == PUBLISHED_TOTAL == model.count_params()
    assert {e.checkpoint_key: e.weight_path for e in report} == truth
    assert len(report) == len(model.weights)
    assert time.perf_counter() - start < 60

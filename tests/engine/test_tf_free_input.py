"""seq2exp.engine.data's backend-neutral input: the numpy reader path the JAX engine takes, and its
equality with the tf.data path the TensorFlow engine takes (that one is not marked tf_free: it needs TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from data_prep.build import build, parser
from data_prep.manifest import load_manifest
from data_prep.simulate import simulate, write_tsv
from seq2exp.engine import data as engine_data
from seq2exp.engine.data import ProcessInput, input_batches, padded_batches, read_arrays
from tests.conftest import require_module


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tf_free_input")
    write_tsv(simulate(700, seed=5), tmp / "train.tsv")
    (tmp / "seqs.fa").write_text("".join(f">s{i}\n{'ACGT' * 20}{'ACGT'[i % 4] * 12}\n" for i in range(45)))
    out = {}
    for name, src, extra in (("legnet", "train.tsv", ["--layout", "legnet", "--records-per-shard", "100"]),
                             ("fasta", "seqs.fa", ["--split", "none"])):
        args = parser().parse_args([str(tmp / src), "--out", str(tmp / name), "--quiet", *extra])
        build(args.inputs, args.out, args)
        out[name] = load_manifest(str(tmp / name))
    return out


def _numpy_backend(monkeypatch):
    monkeypatch.setattr(engine_data, "uses_tf_data", lambda: False)


def _take_padded(gen, limit=1000):
    """(batches, masks) up to and including the first all-padding batch."""
    batches, masks = [], []
    for batch, mask in gen:
        batches.append(batch)
        masks.append(mask)
        if not mask.any() or len(masks) >= limit:
            break
    return batches, masks


#: the numpy-path tests run in CI's TF-free venv too (`-m tf_free`); the tf.data comparison needs TensorFlow
tf_free = pytest.mark.tf_free


@tf_free
def test_process_input_splits_the_global_batch():
    assert ProcessInput().get_per_replica_batch_size(96) == 96
    ctx = ProcessInput(num_input_pipelines=4, input_pipeline_id=3)
    assert ctx.get_per_replica_batch_size(96) == 24 and ctx.num_replicas_in_sync == 4
    with pytest.raises(ValueError, match="not divisible by the 4 input processes"):
        ctx.get_per_replica_batch_size(90)


@tf_free
def test_numpy_training_input_is_the_process_batch(datasets, monkeypatch):
    _numpy_backend(monkeypatch)
    m = datasets["legnet"]
    def first(seed):
        reader = input_batches(m, "train", 64, ProcessInput(2, 1), training=True, seed=seed, drop_remainder=True)
        assert type(reader).__name__ == "NumpyReader"
        return next(iter(reader))

    a, b, c = first(1), first(1), first(2)
    assert a["seq"].shape == (32, 150) and a["seq"].dtype == np.uint8
    assert set(a) == {"seq", "fold", "label", "is_singleton"}
    for k in a:  # the epoch's seed fixes its order (a resumed run reads the same batches)
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["label"], c["label"])


@tf_free
def test_padded_numpy_batches_cover_every_row_once(datasets, monkeypatch):
    _numpy_backend(monkeypatch)
    m = datasets["legnet"]
    whole = read_arrays(m, "val")
    for processes in (1, 2):
        got = []
        for pid in range(processes):
            ctx = ProcessInput(processes, pid)
            src = input_batches(m, "val", 14 * processes, ctx, training=False)
            batches, masks = _take_padded(padded_batches(src, 16))
            assert not masks[-1].any() and all(b["seq"].shape == (16, 150) for b in batches)
            assert all(mask[:mask.sum()].all() for mask in masks)  # padding only at the end of a batch
            got += [b["label"][mk] for b, mk in zip(batches, masks)]
        np.testing.assert_array_equal(np.sort(np.concatenate(got)), np.sort(whole["label"]))


@tf_free
def test_padded_numpy_drops_ids_and_pads_an_empty_share(datasets, monkeypatch):
    _numpy_backend(monkeypatch)
    m = datasets["fasta"]  # ids: the only string field
    batches, masks = _take_padded(padded_batches(input_batches(m, "all", 20, training=False), 20))
    assert set(batches[0]) == {"seq", "fold"} and sum(int(k.sum()) for k in masks) == 45
    empty = type("Empty", (), {"schema": m.schema, "__iter__": lambda self: iter(())})()
    (filler,), (mask,) = _take_padded(padded_batches(empty, 8))
    assert filler["seq"].shape == (8, m.schema.length) and not mask.any()


@pytest.mark.parametrize("training", [True, False])
def test_numpy_and_tf_data_paths_give_the_same_batches(datasets, training, monkeypatch):
    require_module("tensorflow")  # not tf_free: it compares with the tf.data reader
    from data_prep.dataset import make_dataset

    m = datasets["legnet"]
    kwargs = {"training": training, "seed": 4, "drop_remainder": training}
    split = "train" if training else "val"
    tf_ds = make_dataset(m, split, 32, None, **kwargs)
    _numpy_backend(monkeypatch)
    np_src = input_batches(m, split, 32, None, **kwargs)
    if training:
        pairs = zip(tf_ds.take(5), np_src)
    else:
        pairs = zip(padded_batches(tf_ds, 24).take(6), padded_batches(np_src, 24))
        pairs = (({**a[0], "mask": a[1]}, {**b[0], "mask": b[1]}) for a, b in pairs)
    n = 0
    for a, b in pairs:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), b[k], err_msg=k)
        n += 1
        if n == (5 if training else 6):
            break
    assert n == (5 if training else 6)

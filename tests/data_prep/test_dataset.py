import numpy as np
import pytest
import tensorflow as tf

from data_prep.dataset import make_dataset
from data_prep.manifest import ManifestError, load_manifest
from data_prep.simulate import simulate, write_tsv
from tests.data_prep.util import decode_all, run_build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_tsv(simulate(2000, seed=5), root / "a.tsv")
    write_tsv(simulate(500, seed=6), root / "b.tsv")
    run_build([root / "a.tsv"], root / "a", "--workers", "1", "--chunk-bytes", "20000", "--records-per-shard", "300")
    run_build([root / "b.tsv"], root / "b", "--workers", "1")
    run_build([root / "b.tsv"], root / "b_legnet", "--workers", "1", "--layout", "legnet")
    return root


def _all(ds):
    rows = [{k: v.numpy() for k, v in b.items()} for b in ds]
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def test_eval_reader_yields_every_record_as_uint8(built):
    m = load_manifest(built / "a", layout="crmnet", length=112, verify=True)
    got = _all(make_dataset(m, "train", 128, training=False))
    assert got["seq"].dtype == np.uint8 and got["seq"].shape == (m.records("train"), 112)
    assert got["label"].dtype == np.float32 and got["fold"].dtype == np.uint8
    ref = decode_all(built / "a")["train"]
    assert np.allclose(got["label"], [r["label"] for r in ref])
    assert set(got["fold"].tolist()) <= set(range(9))


def test_input_pipelines_split_files_without_overlap(built):
    m = load_manifest(built / "a")
    parts = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=4)
        ds = make_dataset(m, "train", 64, ctx, training=False)
        batch = next(iter(ds))["seq"]
        assert batch.shape[0] == 16  # per-replica batch = 64 / 4
        parts.append(_all(ds)["label"])
    assert len(parts[0]) + len(parts[1]) == m.records("train")
    assert sorted(np.concatenate(parts).tolist()) == sorted(
        _all(make_dataset(m, "train", 64, training=False))["label"].tolist()
    )


def test_training_reader_shuffles_and_drops_remainder(built):
    m = load_manifest(built / "a")
    ds = make_dataset(m, "train", 100, training=True, seed=1, drop_remainder=True, shuffle_buffer=1000)
    assert ds.element_spec["seq"].shape.as_list() == [100, 112]
    first = [b["label"].numpy() for b in ds]
    again = [b["label"].numpy() for b in ds]
    shards = len(m.shard_paths("train"))
    # each shard's last block is topped up from the same shard, so an epoch holds at least every record
    assert m.records("train") // 100 <= len(first) <= (m.records("train") + shards * 50) // 100
    everything = _all(make_dataset(m, "train", 100, training=True, seed=2))["seq"]
    assert {r.tobytes() for r in everything} == {
        r.tobytes() for r in _all(make_dataset(m, "train", 100, training=False))["seq"]
    }
    assert not np.array_equal(np.concatenate(first), np.concatenate(again))  # reshuffled each epoch
    ordered = _all(make_dataset(m, "train", 100, training=False))["label"]
    assert not np.array_equal(np.concatenate(first), ordered[: len(np.concatenate(first))])


def test_mixing_two_media_samples_both(built):
    ds = make_dataset([str(built / "a"), str(built / "b")], "train", 200, seed=0)
    seqs = np.concatenate([b["seq"].numpy() for b in ds.take(60)])
    a = {s.tobytes() for s in _all(make_dataset(str(built / "a"), "train", 500, training=False))["seq"]}
    from_a = np.mean([s.tobytes() in a for s in seqs])
    assert 0.35 < from_a < 0.65


def test_layout_mismatch_is_an_error_naming_the_file(built):
    with pytest.raises(ManifestError, match="b_legnet"):
        make_dataset([str(built / "a"), str(built / "b_legnet")], "train", 10)
    with pytest.raises(ManifestError, match="layout 'legnet'"):
        load_manifest(built / "b_legnet", layout="crmnet")
    m = load_manifest(built / "b_legnet")
    batch = next(iter(make_dataset(m, "train", 32, training=False)))
    assert batch["seq"].shape[1] == 150 and batch["is_singleton"].dtype == tf.uint8


def test_corrupted_shard_is_detected_by_checksum(built, tmp_path):
    import shutil

    shutil.copytree(built / "b", tmp_path / "b")
    shard = load_manifest(tmp_path / "b").shard_paths("train")[0]
    raw = bytearray(open(shard, "rb").read())
    raw[100] ^= 1
    open(shard, "wb").write(bytes(raw))
    with pytest.raises(ManifestError, match="SHA-256"):
        load_manifest(tmp_path / "b", verify=True)

"""A built folder reads the same through four readers: stock tf.data + parse_example, the `tfrecord`
package (the PyTorch side, no torch needed), our tf.data reader and our numpy reader."""
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.manifest import load_manifest
from data_prep.numpy_reader import make_numpy_reader
from data_prep.simulate import simulate, write_tsv
from tests.conftest import require_installed
from tests.data_prep.util import run_build

#: how each manifest feature is stored in the tf.train.Example (written here from the manifest's list)
KINDS = {"seq": "bytes", "fold": "int", "label": "float", "is_singleton": "int", "id": "bytes"}


@pytest.fixture(scope="module", params=["crmnet", "legnet"])
def folder(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    write_tsv(simulate(1200, seed=9), root / "in.tsv")
    run_build([root / "in.tsv"], root / "out", "--layout", request.param, "--workers", "2", "--chunk-bytes", "30000",
              "--records-per-shard", "400")
    return str(root / "out")


def _columns(rows: list[dict], features) -> dict[str, np.ndarray]:
    out = {k: np.array([r[k] for r in rows]) for k in features if k != "seq"}
    out["seq"] = np.stack([np.frombuffer(bytes(r["seq"]), np.uint8) for r in rows])
    return out


def _stock_tf(m, split):
    tf = pytest.importorskip("tensorflow")
    dtypes = {"bytes": tf.string, "int": tf.int64, "float": tf.float32}
    spec = {k: tf.io.FixedLenFeature([], dtypes[KINDS[k]]) for k in m.data["schema"]["features"]}
    assert m.data["compression"] == "GZIP"
    ds = tf.data.TFRecordDataset(m.shard_paths(split), compression_type="GZIP").batch(10_000)
    parsed = [tf.io.parse_example(b, spec) for b in ds]
    return _columns([{k: v[i].numpy() for k, v in p.items()} for p in parsed for i in range(len(p["fold"]))], spec)


PACKAGE_READER = """
import sys, numpy as np
from tfrecord.reader import tfrecord_loader
out, kinds, paths = sys.argv[1], dict(k.split("=") for k in sys.argv[2].split(",")), sys.argv[3:]
rows = [r for p in paths for r in tfrecord_loader(p, None, kinds, compression_type="gzip")]
cols = {k: np.array([r[k][0] for r in rows]) for k in kinds if k != "seq"}
cols["seq"] = np.stack([np.frombuffer(r["seq"], np.uint8) for r in rows])
assert "tensorflow" not in sys.modules
np.savez(out, **cols)
"""


def _tfrecord_package(m, split, tmp):
    """The `tfrecord` package's reader, in its own process: it registers tf.train.Example's protobuf
    names too, which clash with TensorFlow's in one process (its reader needs neither TF nor torch)."""
    require_installed("tfrecord", "the tfrecord package (test extra) is not installed; pip install -e '.[test]'")
    kinds = {"bytes": "byte", "int": "int", "float": "float"}
    description = ",".join(f"{k}={kinds[KINDS[k]]}" for k in m.data["schema"]["features"])
    out = os.path.join(tmp, f"{split}.npz")
    subprocess.run([sys.executable, "-c", PACKAGE_READER, out, description, *m.shard_paths(split)], check=True,
                   timeout=300)
    with np.load(out) as z:
        return dict(z)


def _ours(batches):
    batches = list(batches)
    return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}


def _assert_same(ref: dict, got: dict, who: str) -> None:
    assert sorted(ref) == sorted(got), who
    for k in ref:
        assert np.array_equal(np.asarray(ref[k]).astype(got[k].dtype), got[k]), (who, k)


def test_four_readers_yield_the_same_records(folder, tmp_path):
    pytest.importorskip("tensorflow")
    from data_prep.dataset import make_dataset

    m = load_manifest(folder, verify=True)
    for split in m.splits:
        ours_np = _ours(make_numpy_reader(m, split, 128, training=False))
        ours_tf = _ours({k: v.numpy() for k, v in b.items()} for b in make_dataset(m, split, 128, training=False))
        stock = _stock_tf(m, split)
        package = _tfrecord_package(m, split, str(tmp_path))
        assert len(ours_np["seq"]) == m.records(split) == sum(s["records"] for s in m.split(split)["shards"])
        assert ours_np["seq"].shape[1] == m.length and ours_np["seq"].dtype == np.uint8
        for who, got in (("tf.data reader", ours_tf), ("stock tf.data", stock), ("tfrecord package", package)):
            _assert_same(ours_np, got, who)
    assert all(os.path.basename(p).endswith(".tfrecord.gz") for p in m.shard_paths("train"))


def test_missing_tfrecord_fails_under_ci(monkeypatch, tmp_path):
    """The guard bites: with REQUIRE_SHARED_DATA=1 (what .ci/run sets) a missing `tfrecord` FAILS the test."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tfrecord" else real(name, *a))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("REQUIRE_SHARED_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="tfrecord"):
        _tfrecord_package(None, "train", str(tmp_path))
    monkeypatch.delenv("REQUIRE_SHARED_DATA")
    with pytest.raises(pytest.skip.Exception):
        _tfrecord_package(None, "train", str(tmp_path))

"""The numpy reader: same batches as the tf.data reader, process sharding, mixing, legacy folders, no TensorFlow."""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from data_prep.manifest import ManifestError, load_manifest
from data_prep.numpy_reader import make_numpy_reader
from data_prep.simulate import simulate, write_tsv
from tests.data_prep.util import decode_all, run_build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("np")
    write_tsv(simulate(2000, seed=5), root / "a.tsv")
    write_tsv(simulate(700, seed=6), root / "b.tsv")
    run_build([root / "a.tsv"], root / "a", "--workers", "1", "--records-per-shard", "300")
    run_build([root / "b.tsv"], root / "b", "--workers", "1", "--records-per-shard", "250", "--layout", "legnet")
    run_build([root / "b.tsv"], root / "b_crmnet", "--workers", "1")
    return root


def _tf_batches(*args, n=None, **kwargs):
    pytest.importorskip("tensorflow")
    from data_prep.dataset import make_dataset

    ds = make_dataset(*args, **kwargs)
    return [{k: v.numpy() for k, v in b.items()} for b in (ds.take(n) if n else ds)]


def _np_batches(*args, n=None, **kwargs):
    it = iter(make_numpy_reader(*args, **kwargs))
    return [b for _, b in zip(range(n), it)] if n else list(it)


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
            assert np.array_equal(x[k], y[k]), k


@pytest.mark.parametrize("drop", [False, True])
def test_training_batches_equal_the_tf_readers(built, drop):
    folder = str(built / "a")
    for batch in (100, 96):
        kw = dict(training=True, seed=11, drop_remainder=drop, shuffle_buffer=500)
        _same(_tf_batches(folder, "train", batch, **kw), _np_batches(folder, "train", batch, **kw))
    ref = _np_batches(folder, "train", 100, training=True, seed=11, drop_remainder=drop, shuffle_buffer=500)
    other = _np_batches(folder, "train", 100, training=True, seed=12, drop_remainder=drop, shuffle_buffer=500)
    assert not np.array_equal(ref[0]["seq"], other[0]["seq"])


def test_each_iteration_is_a_new_pass_on_both_readers(built):
    pytest.importorskip("tensorflow")
    from data_prep.dataset import make_dataset

    folder = str(built / "a")
    ds = make_dataset(folder, "train", 64, training=True, seed=3)
    reader = make_numpy_reader(folder, "train", 64, training=True, seed=3)
    passes = []
    for _ in range(2):
        t = [{k: v.numpy() for k, v in b.items()} for b in ds]
        n = list(reader)
        _same(t, n)
        passes.append(np.concatenate([b["seq"] for b in n]))
    assert not np.array_equal(passes[0], passes[1])
    every = {r.tobytes() for r in np.concatenate([b["seq"] for b in _np_batches(folder, "train", 500, training=False)])}
    assert {r.tobytes() for r in passes[0]} == every  # a pass reads every record (a few twice: group top-up)
    assert len(passes[0]) - len(every) < 64 * 4


def test_repeat_continues_with_new_passes(built):
    folder = str(built / "b_crmnet")
    n = load_manifest(folder).records("train")
    kw = dict(training=True, seed=5, repeat=True, drop_remainder=True)
    got = _np_batches(folder, "train", 128, n=3 * n // 128 + 2, **kw)
    _same(_tf_batches(folder, "train", 128, n=len(got), **kw), got)
    assert all(b["seq"].shape == (128, 112) for b in got)


@pytest.mark.parametrize("count", [2, 3])
def test_process_sharding_matches_tf_input_pipelines(built, count):
    tf = pytest.importorskip("tensorflow")
    folder = str(built / "a")
    seen = []
    for i in range(count):
        ctx = tf.distribute.InputContext(num_input_pipelines=count, input_pipeline_id=i, num_replicas_in_sync=2 * count)
        for training in (True, False):
            t = _tf_batches(folder, "train", 64 * count, ctx, training=training, seed=1)
            n = _np_batches(folder, "train", 32, process_index=i, process_count=count, training=training, seed=1)
            _same(t, n)
        seen.append(np.concatenate([b["label"] for b in n]))
    assert sum(map(len, seen)) == load_manifest(folder).records("train")


def test_row_sharding_when_fewer_shards_than_processes(built, caplog):
    folder = str(built / "b_crmnet")  # one shard per split
    parts = [np.concatenate([b["seq"] for b in _np_batches(folder, "val", 16, process_index=i, process_count=3,
                                                           training=False)]) for i in range(3)]
    assert "sharding by record" in caplog.text
    whole = np.concatenate([b["seq"] for b in _np_batches(folder, "val", 16, training=False)])
    assert np.array_equal(np.concatenate(parts), np.concatenate([whole[i::3] for i in range(3)]))


def test_mixing_matches_tf_and_uses_both_sets(built):
    sets = [str(built / "a"), str(built / "b_crmnet")]
    kw = dict(training=True, seed=4, weights=[0.3, 0.7], drop_remainder=True)
    got = _np_batches(sets, "train", 100, n=100, **kw)
    _same(_tf_batches(sets, "train", 100, n=100, **kw), got)
    a = {s.tobytes() for b in _np_batches(sets[0], "train", 500, training=False) for s in b["seq"]}
    from_a = np.mean([s.tobytes() in a for b in got for s in b["seq"]])
    assert 0.2 < from_a < 0.4
    with pytest.raises(ValueError, match="weights"):
        make_numpy_reader(sets, "train", 100, weights=[1.0])


def test_evaluation_reads_every_record_once_in_order(built):
    folder = built / "b"
    ref = decode_all(folder)
    for split in ("train", "val"):
        got = _np_batches(str(folder), split, 64, training=False)
        assert all(len(b["seq"]) <= 64 for b in got)
        cat = {k: np.concatenate([b[k] for b in got]) for k in got[0]}
        assert [r["label"] for r in ref[split]] == cat["label"].tolist()
        assert [r["is_singleton"] for r in ref[split]] == cat["is_singleton"].tolist()
        assert [r["fold"] for r in ref[split]] == cat["fold"].tolist()
        assert cat["seq"].dtype == np.uint8 and cat["seq"].shape == (len(ref[split]), 150)
        dropped = _np_batches(str(folder), split, 64, training=False, drop_remainder=True)
        assert all(len(b["seq"]) == 64 for b in dropped)


def test_fasta_ids_read_the_same_and_refuse_training(tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text("".join(f">rec{i} note\n{'ACGT' * (i % 7 + 1)}\n" for i in range(40)))
    run_build([fa], tmp_path / "out", "--split", "none", "--workers", "1", "--records-per-shard", "15")
    got = _np_batches(str(tmp_path / "out"), "all", 16, training=False)
    assert [len(b["seq"]) for b in got] == [16, 16, 8]
    assert [i.decode() for b in got for i in b["id"]] == [f"rec{i} note" for i in range(40)]
    _same(_tf_batches(str(tmp_path / "out"), "all", 16, training=False), got)
    with pytest.raises(ManifestError, match="training=False"):
        make_numpy_reader(str(tmp_path / "out"), "all", 16, training=True)


def _as_zlib_folder(src, dst):
    """A folder as builds before GZIP shards wrote it: one ZLIB stream per shard, manifest 'ZLIB'."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["compression"] = "ZLIB"
    for split in m["splits"].values():
        for s in split["shards"]:
            data = zlib.compress(gzip.decompress((dst / s["file"]).read_bytes()))
            (dst / s["file"]).write_bytes(data)
            s.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (dst / "manifest.json").write_text(json.dumps(m))


def test_folders_built_before_gzip_still_read(built, tmp_path):
    _as_zlib_folder(built / "b", tmp_path / "old")
    load_manifest(tmp_path / "old", verify=True)
    for kw in (dict(training=False), dict(training=True, seed=2)):
        new = _np_batches(str(built / "b"), "train", 50, **kw)
        _same(new, _np_batches(str(tmp_path / "old"), "train", 50, **kw))
        _same(new, _tf_batches(str(tmp_path / "old"), "train", 50, **kw))
    m = json.loads((tmp_path / "old" / "manifest.json").read_text())
    m["compression"] = "ZSTD"
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="rebuild"):
        load_manifest(tmp_path / "old")


def test_a_corrupt_shard_names_the_file(built, tmp_path):
    shutil.copytree(built / "b", tmp_path / "b")
    shard = load_manifest(tmp_path / "b").shard_paths("val")[0]
    with open(shard, "rb") as fh:
        raw = fh.read()
    with open(shard, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=os.path.basename(shard)):
        _np_batches(str(tmp_path / "b"), "val", 50, training=False)


TF_FREE = """
import importlib.abc, sys
class NoTF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, NoTF())
import numpy as np
from data_prep.build import main
from data_prep.manifest import load_manifest
from data_prep.numpy_reader import make_numpy_reader
from data_prep.simulate import simulate, write_tsv
out = sys.argv[1]
write_tsv(simulate(1500, seed=1), out + ".tsv")
assert main([out + ".tsv", "--out", out, "--layout", "legnet", "--quiet", "--records-per-shard", "400",
             "--workers", "2", "--chunk-bytes", "30000"]) == 0
m = load_manifest(out, layout="legnet", verify=True)
train = list(make_numpy_reader(m, "train", 64, seed=0, drop_remainder=True))
assert train and all(b["seq"].shape == (64, 150) and b["label"].dtype == np.float32 for b in train)
rows = sum(len(b["seq"]) for b in make_numpy_reader(m, "val", 64, training=False))
assert rows == m.records("val"), rows
assert not [k for k in sys.modules if k.split(".")[0] in ("tensorflow", "keras")]
print("ok", len(train), rows)
"""


def test_build_manifest_and_numpy_reader_run_without_tensorflow(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(TF_FREE), str(tmp_path / "set")], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines()[-1].startswith("ok ")

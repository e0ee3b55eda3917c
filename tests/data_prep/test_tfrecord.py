import gzip
import struct

import google_crc32c
import numpy as np
import pytest

from data_prep.tfrecord import (
    MEMBER_RECORDS,
    ShardWriter,
    compress_fixed,
    compress_many,
    crc32c,
    frame_fixed,
    frame_one,
    iter_records,
    masked_crc,
    read_shard,
    record_ends,
)


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA


def test_frame_fixed_equals_framing_one_by_one():
    rows = np.random.default_rng(0).integers(0, 256, (300, 37), dtype=np.uint8)
    framed = frame_fixed(rows)
    assert [r.tobytes() for r in framed] == [frame_one(r.tobytes()) for r in rows]
    r = framed[5].tobytes()
    assert struct.unpack_from("<Q", r)[0] == 37 and r[12:49] == rows[5].tobytes()
    assert struct.unpack_from("<I", r, 49)[0] == int(masked_crc(google_crc32c.value(rows[5].tobytes())))
    assert record_ends(framed.tobytes()).tolist() == [53 * (i + 1) for i in range(300)]


def _write(path, segments):
    w = ShardWriter(str(path))
    for seg in segments:
        w.append(seg)
    return w.close()


def test_shards_are_multi_member_gzip_readable_by_gzip(tmp_path):
    rows = np.random.default_rng(1).integers(0, 4, (2 * MEMBER_RECORDS + 7, 20), dtype=np.uint8)
    seg = compress_fixed(frame_fixed(rows))
    assert seg.counts == [MEMBER_RECORDS, MEMBER_RECORDS, 7] and len(seg.members) == 3
    info = _write(tmp_path / "s.tfrecord.gz", [seg])
    assert info["records"] == len(rows) and not (tmp_path / "s.tfrecord.gz.partial").exists()
    assert gzip.decompress((tmp_path / "s.tfrecord.gz").read_bytes()) == frame_fixed(rows).tobytes()
    assert list(iter_records(str(tmp_path / "s.tfrecord.gz"))) == [r.tobytes() for r in rows]


@pytest.mark.parametrize("cut", [1, 5, MEMBER_RECORDS, MEMBER_RECORDS + 1, 2 * MEMBER_RECORDS + 6])
def test_segment_split_at_any_record(tmp_path, cut):
    rows = np.random.default_rng(cut).integers(0, 4, (2 * MEMBER_RECORDS + 7, 9), dtype=np.uint8)
    head, tail = compress_fixed(frame_fixed(rows)).split(cut)
    assert (head.records, tail.records) == (cut, len(rows) - cut)
    _write(tmp_path / "a", [head])
    _write(tmp_path / "b", [tail])
    assert list(iter_records(str(tmp_path / "a"))) + list(iter_records(str(tmp_path / "b"))) == \
        [r.tobytes() for r in rows]


def test_records_of_varying_length_split_and_read_back(tmp_path):
    records = [bytes([i % 251]) * (i % 13) for i in range(MEMBER_RECORDS + 300)]
    head, tail = compress_many(records).split(MEMBER_RECORDS + 10)
    _write(tmp_path / "s", [head, tail])
    assert list(iter_records(str(tmp_path / "s"))) == records


def test_tensorflow_reads_multi_member_shards(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rows = np.random.default_rng(1).integers(0, 256, (64, 20), dtype=np.uint8)
    _write(tmp_path / "s", [compress_fixed(frame_fixed(rows[:30])), compress_fixed(frame_fixed(rows[30:]))])
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "s"), compression_type="GZIP")]
    assert got == [r.tobytes() for r in rows]


def test_corruption_is_detected(tmp_path):
    _write(tmp_path / "s", [compress_many([b"abc" * 50, b"defg" * 40])])
    raw = bytearray((tmp_path / "s").read_bytes())
    raw[len(raw) // 2] ^= 0x40
    (tmp_path / "bad").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bad"):
        list(iter_records(str(tmp_path / "bad")))
    (tmp_path / "cut").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ValueError, match="rebuild"):
        read_shard(str(tmp_path / "cut"))

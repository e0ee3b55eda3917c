import zlib

import numpy as np
import pytest

from data_prep.tfrecord import (ShardWriter, adler32_combine, crc32c, crc32c_rows, deflate_segment, frame_fixed,
                                frame_many, iter_records)


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA


def test_crc32c_rows_matches_scalar():
    rows = np.random.default_rng(0).integers(0, 256, (50, 37), dtype=np.uint8)
    got = crc32c_rows(rows)
    assert [int(c) for c in got] == [crc32c(r.tobytes()) for r in rows]


@pytest.mark.parametrize("n1,n2", [(0, 5), (1, 1), (1000, 77777), (300000, 3)])
def test_adler32_combine(n1, n2):
    rng = np.random.default_rng(n1 + n2)
    x, y = rng.bytes(n1), rng.bytes(n2)
    assert adler32_combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y)


def test_segments_concatenate_into_one_valid_zlib_stream(tmp_path):
    records = [bytes([i]) * (i % 7 + 1) for i in range(200)]
    w = ShardWriter(str(tmp_path / "s.tfrecord"))
    for part in (records[:50], records[50:51], records[51:]):
        w.append(deflate_segment(frame_many(part), len(part)))
    info = w.close()
    assert info["records"] == 200 and not (tmp_path / "s.tfrecord.partial").exists()
    assert list(iter_records(str(tmp_path / "s.tfrecord"))) == records
    zlib.decompress((tmp_path / "s.tfrecord").read_bytes())  # checks the Adler-32 trailer


def test_tensorflow_reads_our_shards(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rows = np.random.default_rng(1).integers(0, 256, (64, 20), dtype=np.uint8)
    w = ShardWriter(str(tmp_path / "s.tfrecord"))
    w.append(deflate_segment(frame_fixed(rows[:30]).tobytes(), 30))
    w.append(deflate_segment(frame_fixed(rows[30:]).tobytes(), 34, level=1))
    w.close()
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "s.tfrecord"), compression_type="ZLIB")]
    assert got == [r.tobytes() for r in rows]


def test_corruption_is_detected(tmp_path):
    w = ShardWriter(str(tmp_path / "s.tfrecord"))
    w.append(deflate_segment(frame_many([b"abc", b"defg"]), 2, level=0))
    w.close()
    raw = bytearray((tmp_path / "s.tfrecord").read_bytes())
    raw[len(raw) // 2] ^= 0x40
    (tmp_path / "bad.tfrecord").write_bytes(bytes(raw))
    with pytest.raises((ValueError, zlib.error)):
        list(iter_records(str(tmp_path / "bad.tfrecord")))

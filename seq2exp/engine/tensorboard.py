"""TensorBoard scalars without TensorFlow (the JAX engine's event files).

An event file is TFRecord-framed `Event` protocol buffers (tensorflow/core/util/event.proto): first
one naming the file version, then one per scalar (`Event.summary.value {tag, simple_value}` at a
step). The few fields written here are encoded by hand (the `tensorboard` package's own writer
imports TensorFlow when it is installed, and the JAX machines may not have `tensorboard` at all);
the framing is the project's TFRecord writer (`data_prep.tfrecord.frame_one`). TensorBoard and
`tf.compat.v1.train.summary_iterator` read these files.
"""
from __future__ import annotations

import os
import socket
import struct
import time

from data_prep.tfrecord import frame_one


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement)
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def event(wall_time: float, step: int = 0, *, file_version: str | None = None,
          scalars: dict[str, float] | None = None) -> bytes:
    """One serialized Event: wall_time (1, double), step (2, int64), file_version (3) or summary (5)."""
    out = bytes([1 << 3 | 1]) + struct.pack("<d", wall_time) + _varint(2 << 3) + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode())
    if scalars:
        values = b"".join(_field(1, _field(1, tag.encode()) + bytes([2 << 3 | 5]) + struct.pack("<f", value))
                          for tag, value in scalars.items())  # Summary.value: tag (1), simple_value (2, float)
        out += _field(5, values)
    return out


class EventFileWriter:
    """Scalars into one new event file under `logdir` (`scalar`, `flush`, `close`)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{id(self)}.v2"
        self.path = os.path.join(logdir, name)
        self._fh = open(self.path, "ab")
        self._fh.write(frame_one(event(time.time(), file_version="brain.Event:2")))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._fh.write(frame_one(event(time.time(), int(step), scalars={tag: float(value)})))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

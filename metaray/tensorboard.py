"""TensorBoard scalar event files, written directly (a TFRecord of ``Event`` protocol buffers), and the search's
TensorBoard callback (``TensorBoardCallback``).

tensorboardX imports PyTorch when it is installed (~2 s of CPU in the driver, which on a laptop competes
with the fits); scalars need none of it. The format (TensorFlow's ``event.proto``, ``summary.proto`` and its
record framing) is small and stable:

    record = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
    Event  = 1: wall_time (double), 2: step (int64), 3: file_version (string), 5: summary (Summary)
    Summary = 1: value (repeated Value);  Value = 1: tag (string), 2: simple_value (float)

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d, ScalarWriter(d) as w:
...     w.add_scalar("score/subset", 0.9, 0)
...     [tag for tag, step, value in read_scalars(w.path)]
['score/subset']
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from metaray.callbacks import Callback


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, *, tag: str | None = None, value: float = 0.0, file_version: str | None = None) -> bytes:
    out = _varint(1 << 3 | 1) + struct.pack("<d", time.time()) + _varint(2 << 3) + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode())
    if tag is not None:
        summary_value = _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value)
        out += _field(5, _field(1, summary_value))
    return out


class ScalarWriter:
    """Writes scalars to a new event file in ``logdir`` (what ``tensorboard --logdir`` reads)."""

    def __init__(self, logdir: str | os.PathLike):
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.path = Path(logdir) / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._f = open(self.path, "wb")
        self._write(_event(0, file_version="brain.Event:2"))

    def _write(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._f.write(header + _masked(header) + data + _masked(data))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._write(_event(int(step), tag=tag, value=float(value)))
        self._f.flush()  # readable while it is written, as TensorBoard reads a run that goes on

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TensorBoardCallback(Callback):
    """Every configuration's scores as TensorBoard scalars, in ``tensorboard/<trial>/`` of the run folder (what
    ``tensorboard --logdir`` reads): ``objective/running`` (the objective over its first 1, 2, ... subsets, steps from
    1) and ``score/subset`` (the primary metric on each subset, steps from 0), of its latest stage. A configuration's
    file is written once: a resumed search leaves those of the configurations it replays."""

    def __init__(self):
        self.logdir: Path | None = None

    def on_search_start(self, setup) -> None:
        self.logdir = setup.folder / "tensorboard"

    def on_trial_end(self, trial, ranking) -> None:
        scores = ranking.scores(trial)
        folder = self.logdir / trial.id
        if not scores or folder.exists():  # made with its file, by an earlier run of this search
            return
        with ScalarWriter(folder) as w:
            for step, value in enumerate(ranking.running(trial), 1):
                w.add_scalar("objective/running", value, step)
            for k, value in enumerate(scores):
                w.add_scalar("score/subset", value, k)


def read_scalars(path: str | os.PathLike) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in an event file, checking each record's checksums."""
    data, out, i = Path(path).read_bytes(), [], 0
    while i < len(data):
        (length,) = struct.unpack_from("<Q", data, i)
        if data[i + 8 : i + 12] != _masked(data[i : i + 8]):
            raise ValueError(f"{path}: corrupt record length at byte {i}")
        record = data[i + 12 : i + 12 + length]
        if data[i + 12 + length : i + 16 + length] != _masked(record):
            raise ValueError(f"{path}: corrupt record at byte {i}")
        out += _scalars(record)
        i += 16 + length
    return out


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        result |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return result, i


def _scalars(event: bytes) -> list[tuple[str, int, float]]:
    fields = list(_fields(event))
    step = next((v for n, v in fields if n == 2), 0)
    out = []
    for n, summary in fields:
        if n != 5:
            continue
        for _, value in (f for f in _fields(summary) if f[0] == 1):
            parts = dict(_fields(value))
            if 2 in parts:
                out.append((parts[1].decode(), step, struct.unpack("<f", parts[2])[0]))
    return out

"""metaray's own TensorBoard event files, read back by an independent parser (tensorboardX's protobufs)."""

import struct

import pytest

from metaray.tensorboard import ScalarWriter, crc32c, read_scalars


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_events_parse_with_the_reference_protobufs(tmp_path):
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    with ScalarWriter(tmp_path) as w:
        for step, v in enumerate([0.5, 0.25, -1.0]):
            w.add_scalar("score/subset", v, step)
    data, events, i = w.path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        e = event_pb2.Event()
        e.ParseFromString(data[i + 12 : i + 12 + n])
        events.append(e)
        i += n + 16
    assert events[0].file_version == "brain.Event:2"
    assert [(e.step, e.summary.value[0].tag, e.summary.value[0].simple_value) for e in events[1:]] == [
        (0, "score/subset", 0.5), (1, "score/subset", 0.25), (2, "score/subset", -1.0)]
    assert read_scalars(w.path) == [("score/subset", 0, 0.5), ("score/subset", 1, 0.25), ("score/subset", 2, -1.0)]


def test_a_corrupt_record_is_refused(tmp_path):
    with ScalarWriter(tmp_path) as w:
        w.add_scalar("x", 1.0, 3)
    data = bytearray(w.path.read_bytes())
    data[-5] ^= 0xFF
    w.path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        read_scalars(w.path)

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


def test_the_callback_writes_each_configurations_scalars_once(tmp_path):
    """The running objective (steps from 1) and the score of each subset (steps from 0), in one file per
    configuration; a resumed search that replays the configuration leaves its file as it is, and a configuration
    without a score (failed on its first subset) gets none."""
    from types import SimpleNamespace

    from metaray.tensorboard import TensorBoardCallback

    class Ranking:
        def __init__(self, scores):
            self._scores = scores

        def scores(self, trial):
            return self._scores if trial.id == "t0003" else []

        def running(self, trial):
            return [sum(self._scores[:m]) / m for m in range(1, len(self._scores) + 1)] if self.scores(trial) else []

    callback = TensorBoardCallback()
    callback.on_search_start(SimpleNamespace(folder=tmp_path))
    for trial_id, scores in (("t0003", [0.5, 0.75]), ("t0003", [0.25, 0.25]), ("t0004", [])):
        callback.on_trial_end(SimpleNamespace(id=trial_id), Ranking(scores))
    files = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert [f.parent.name for f in files] == ["t0003"]
    assert read_scalars(files[0]) == [("objective/running", 1, 0.5), ("objective/running", 2, 0.625),
                                      ("score/subset", 0, 0.5), ("score/subset", 1, 0.75)]

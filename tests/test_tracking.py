"""The tracking process, from the side of the searches that share it."""

from metaray.spec import load_spec
from metaray.tracking import Tracker

DATASET = {"name": "iris", "task": "classification", "rows": 150}


def test_a_search_still_logging_does_not_share_its_tracking_process_with_the_next(tmp_path):
    """A search whose command stopped waiting for MLflow (a second Ctrl-C) keeps its tracking process to itself:
    the next search in the same Python process gets a new one, and each hears only its own replies."""
    spec = load_spec({"name": "shared", "data": {"dataset": "iris"}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = Tracker(spec, tmp_path / "a", DATASET, uri=uri)
    first_parent = first.start().result(timeout=120)
    second = Tracker(spec, tmp_path / "b", DATASET, uri=uri)  # the first never closed
    second_parent = second.start().result(timeout=120)
    assert first._server is not second._server and first._server.pid != second._server.pid
    assert first_parent != second_parent
    second.close()
    first.close()  # its own process answers it
    third = Tracker(spec, tmp_path / "c", DATASET, uri=uri)
    third.start().result(timeout=120)
    assert third._server is second._server  # a process whose search has ended is reused
    third.close()

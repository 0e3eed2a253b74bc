"""The tracking process, from the side of the searches that share it."""

import math
import threading

import pytest

from metaray.spec import load_spec
from metaray.tracking import Tracker

DATASET = {"name": "iris", "task": "classification", "rows": 150}


@pytest.fixture
def writer_here(monkeypatch):
    """For a test that starts a ``Writer`` in its own process: the writer sets MLflow's process-wide tracking URI (and
    with it $MLFLOW_TRACKING_URI), as the tracking process needs; undone afterwards, so that the later tests of this
    pytest worker use their own stores."""
    import os

    import mlflow

    if "MLFLOW_TRACKING_URI" in os.environ:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])  # restored afterwards
    yield
    mlflow.set_tracking_uri(None)  # (unsets the variable too; monkeypatch then puts back what was there)


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


def test_the_command_stops_ray_while_the_tracking_process_ends_and_returns_once_both_have():
    """``shutdown(meanwhile=...)``: the tracking process is told to end, ``meanwhile`` (the command's ``ray.shutdown``)
    runs while it does, and the call returns only once the process is gone."""
    from metaray import tracking

    server = tracking._server()
    seen = []
    tracking.shutdown(meanwhile=lambda: seen.append(server._proc.poll()))
    assert seen == [None]  # still ending while the other end ran: not waited for first
    assert server._proc.poll() is not None and not server.alive  # gone when the call returns
    assert tracking._server() is not server  # a later search gets a process of its own
    tracking.shutdown()


def test_the_tracking_process_answers_every_request_in_order():
    """The process's side of the protocol (metaray.tracking_protocol), with a writer that needs no MLflow: one
    ``Logged`` per configuration (with MLflow's refusal in one line), ``Finished`` with its notes, ``Ended`` last; a
    search that ends without finishing is aborted (its parent run KILLED); with no store, only ``End`` is answered."""
    from metaray.tracking import Writer as MlflowWriter
    from metaray.tracking import _handle
    from metaray.tracking_protocol import End, Ended, Finish, Finished, Logged, LogTrial, Results

    class Writer:
        submit, drain, _answered = MlflowWriter.submit, MlflowWriter.drain, MlflowWriter._answered  # the real ones

        def __init__(self):
            self.logged, self.aborted, self.ended, self._closed = [], 0, False, False
            self._pool, self._pending, self._down_since, self.lost = None, set(), None, []
            self._down, self._probed = threading.Lock(), -math.inf

        def log_trial(self, trial):
            if trial.trial == "t0001":
                raise ValueError("refused\nat length")
            self.logged.append(trial.trial)

        def results(self, message):  # answered by Finish's reply, not one of its own
            self.logged.append("results")

        def finish(self, message):
            self.ended = True
            return ("a note",)

        def abort(self):
            self.ended, self.aborted = True, self.aborted + 1

    def trial(trial_id):
        return LogTrial(trial_id, "completed", {}, {}, "knn", None, [], [])

    replies, writer = [], Writer()
    for message in (trial("t0000"), trial("t0001"), trial("t0002"), Results(result=None, model=None),
                    Finish(result=None, model=None)):
        assert _handle(message, writer, replies.append) is writer
    assert _handle(End(), writer, replies.append) is None
    assert replies == [Logged(), Logged("ValueError: refused"), Logged(), Finished(notes=("a note",)), Ended()]
    assert writer.logged == ["t0000", "t0002", "results"] and writer.aborted == 0

    replies, unfinished = [], Writer()
    assert _handle(trial("t0000"), unfinished, replies.append) is unfinished
    assert _handle(End(), unfinished, replies.append) is None and unfinished.aborted == 1
    assert _handle(trial("t0001"), None, replies.append) is None and _handle(End(), None, replies.append) is None
    assert replies == [Logged(), Ended(), Ended()]


def test_the_driver_side_reads_the_replies(tmp_path):
    """How far MLflow lags, its first failure, the parent run, the notes: from the replies alone."""
    from metaray.tracking_protocol import Finished, Logged, Started

    spec = load_spec({"name": "replies", "data": {"dataset": "iris"}})
    tracker = Tracker(spec, tmp_path, DATASET, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker.reply(Started("abc"))
    assert tracker.started.result(timeout=0) == "abc" and tracker.parent_id == "abc"
    tracker.sent = 3
    for reply in (Logged(), Logged("MlflowException: refused"), Logged("OSError: later")):
        tracker.reply(reply)
    assert tracker.lag == 0 and tracker.failure == "MlflowException: refused"
    tracker.reply(Finished(notes=("report: written to x, but not logged to MLflow (OSError: full)",)))
    assert tracker.notes == ["report: written to x, but not logged to MLflow (OSError: full)"]


def test_a_tracking_process_lost_before_the_end_fails_the_end_at_once(tmp_path):
    """The process died after the results were handed over (while the report was drawn): the end's future fails
    with why, instead of waiting for an answer that cannot come."""
    spec = load_spec({"name": "lost", "data": {"dataset": "iris"}})
    tracker = Tracker(spec, tmp_path, DATASET, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    class Gone:
        def put(self, message):  # the feeder drops what a dead process can no longer read
            pass

    tracker._server, tracker.results_sent = Gone(), True
    tracker.lost("the tracking process (pid 1) exited with -9")
    with pytest.raises(RuntimeError, match="exited with -9"):
        tracker.finish(None).result(timeout=5)


def test_searches_started_at_once_on_a_new_store_each_open_it(tmp_path):
    """Three tracking processes start at once on a store that does not exist yet (searches started together in one
    folder, the same spec): each opens it, the store is made once, the experiment once, and each search gets its
    parent run. MLflow's tracking store takes no lock while it makes a new store's tables: without
    ``store.first_open`` two of three failed with 'duplicate column name: step'."""
    import subprocess
    import sys
    import textwrap

    from mlflow import MlflowClient

    uri, go = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}", tmp_path / "go"
    (tmp_path / "new").mkdir()
    script = tmp_path / "start.py"
    script.write_text(textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from metaray.spec import load_spec
        from metaray.tracking import Writer
        from metaray.tracking_protocol import Start
        import mlflow  # imported before the start line: the three open the store together
        Path({str(tmp_path)!r}, f"ready-{{os.getpid()}}").touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        spec = load_spec({{"name": "together", "data": {{"dataset": "iris"}}}})
        start = Start(spec, Path({str(tmp_path)!r}), {DATASET!r}, {uri!r}, "together", None, "accuracy", "max", {{}},
                      {str(tmp_path)!r}, {{}})
        print(Writer(start).start())
    """))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path) for _ in range(3)]
    try:
        import time

        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:  # each has imported MLflow
            time.sleep(0.05)
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-600:] for _, err in outs]
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "together"]
    parents = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in parents) == sorted(out.strip().splitlines()[-1] for out, _ in outs)


@pytest.mark.usefixtures("ray_session")
def test_a_driver_gone_after_the_results_leaves_its_parent_run_killed_and_a_finish_ends_it(tmp_path, new_store,
                                                                                             writer_here):
    """``Results`` logs the results and the best model but does not end the search: a driver that goes away before
    ``Finish`` (killed while drawing the report) leaves its parent run KILLED, as before any result; ``Finish``
    logs the files and ends it FINISHED (a real Writer and store)."""
    import dataclasses

    from mlflow import MlflowClient

    import metaray
    from metaray.tracking import Writer, _handle, _pickled
    from metaray.tracking_protocol import End, Ended, Finish, Finished, Results, Start

    result = metaray.search({"name": "ended", "data": {"dataset": "iris"}, "subsets": {"k": 2},
                             "search": {"num_samples": 2, "space": {"C": {"loguniform": [0.1, 10.0]}}},
                             "storage": str(tmp_path / "runs")}, track=False)
    uri, spec = new_store(tmp_path), load_spec({"name": "ended", "data": {"dataset": "iris"}})
    client = MlflowClient(uri)
    for finish, status in ((False, "KILLED"), (True, "FINISHED")):
        writer = Writer(Start(spec, result.run_dir, DATASET, uri, "ended", None, "accuracy", "max", {},
                              str(tmp_path), {}))
        parent, replies = writer.start(), []
        _handle(Results(dataclasses.replace(result, model=None), _pickled(result.model)), writer, replies.append)
        assert client.get_run(parent).data.metrics["configurations"] == len(result.results)
        if finish:
            _handle(Finish(None, None, (result.run_dir / "results.csv",)), writer, replies.append)
        assert _handle(End(), writer, replies.append) is None
        assert replies == ([Finished(), Ended()] if finish else [Ended()])
        assert client.get_run(parent).info.status == status


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("children, expected", [("top:2", 2), ("none", 0)])
def test_tracking_children_logs_the_best_n_or_none_and_the_whole_table_with_the_parent(children, expected, tmp_path,
                                                                                       shared_store):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    import metaray

    spec = {"name": f"children_{children.replace(':', '')}", "data": {"dataset": "iris"}, "subsets": {"k": 2},
            "tracking": {"children": children},
            "search": {"num_samples": 5, "space": {"C": {"loguniform": [0.001, 10.0]}}}}
    result = metaray.search(spec, run_dir=tmp_path / "run")
    client = MlflowClient(shared_store)
    parent = client.get_run(result.mlflow_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'")
    best_first = result.results["trial"].tolist()
    assert sorted(r.data.tags["metaray.trial"] for r in runs) == sorted(best_first[:expected])
    artifacts = {f.path for f in client.list_artifacts(result.mlflow_run_id)}
    assert {"results.csv", "results.parquet"} <= artifacts
    path = client.download_artifacts(result.mlflow_run_id, "results.parquet", str(tmp_path))
    assert pd.read_parquet(path)["trial"].tolist() == best_first  # every configuration, whatever is logged


def test_a_request_the_server_applied_but_never_answered_is_not_applied_twice(tmp_path, new_store, writer_here):
    """Over HTTP, a child run's requests are tried again when the server does not answer, as when it is killed
    between applying one and answering: a child run it made is found, not made twice, and a batch sent again doubles
    no metric (a real Writer and store; the client drops the answer to the first create and to a batch)."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from mlflow import MlflowClient

    from metaray.tracking import Writer
    from metaray.tracking_protocol import Logged, LogTrial, Start

    class Unanswered:
        """The store applies every request; the answers to the first create and the second batch are lost."""

        def __init__(self, client):
            self.client, self.calls = client, Counter()

        def __getattr__(self, name):
            return getattr(self.client, name)

        def _lost(self, name, nth, *args, **kwargs):
            answer = getattr(self.client, name)(*args, **kwargs)
            self.calls[name] += 1
            if self.calls[name] == nth:
                raise requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
            return answer

        def create_run(self, *args, **kwargs):
            return self._lost("create_run", 1, *args, **kwargs)

        def log_batch(self, *args, **kwargs):
            return self._lost("log_batch", 2, *args, **kwargs)

    uri = new_store(tmp_path)
    spec = load_spec({"name": "unanswered", "data": {"dataset": "iris"}})
    writer = Writer(Start(spec, tmp_path / "run", DATASET, uri, "unanswered", None, "accuracy", "max", {},
                          str(tmp_path), {}))
    parent = writer.start()
    writer._client, writer._pool = Unanswered(writer._client), ThreadPoolExecutor(1)  # as over HTTP
    k = 700  # 700 subsets' scores: three batches of MLflow's 1,000 metrics
    series = [(i, {"accuracy": 0.5 + i / 2000, "f1": 0.4}, 0.01) for i in range(k)]
    replies = []
    writer.submit(LogTrial("t0000", "completed", {"objective": 0.6}, {"C": 1.0}, "logistic", None, series,
                           [0.6] * k), replies.append)
    writer.drain()
    writer._pool.shutdown()
    assert replies == [Logged()] and writer.lost == []
    assert writer._client.calls["create_run"] == 1 and writer._client.calls["log_batch"] > 3  # both were sent again
    client = MlflowClient(uri)
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    history = client.get_metric_history(children[0].info.run_id, "accuracy")
    assert sorted(m.step for m in history) == list(range(k))

    # a process killed after a child run's metrics, before its end: the resume sends them again, doubling none
    def ended_by_kill(run_id, status):
        raise KeyboardInterrupt  # (the process's end, not an answer)

    trial = LogTrial("t0001", "completed", {"objective": 0.6}, {"C": 2.0}, "logistic", None, series, [0.6] * k)
    writer._client, writer._pool = MlflowClient(uri), None
    writer._client.set_terminated = ended_by_kill
    with pytest.raises(KeyboardInterrupt):
        writer.submit(trial, replies.append)
    resumed = Writer(Start(spec, tmp_path / "run", DATASET, uri, "unanswered", parent, "accuracy", "max", {},
                           str(tmp_path), {}))
    resumed.start()
    resumed.submit(trial, replies.append)
    run = next(r for r in client.search_runs([children[0].info.experiment_id], f"tags.`mlflow.parentRunId` = "
                                             f"'{parent}'") if r.data.tags["metaray.trial"] == "t0001")
    assert run.info.status == "FINISHED" and replies[-1] == Logged()
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "accuracy")) == list(range(k))

    # a server that was slow, not dead: the create it did not answer in time lands after the one tried again; the
    # search's end deletes the second run
    class Late(Unanswered):
        def create_run(self, *args, **kwargs):
            self.calls["create_run"] += 1
            if self.calls["create_run"] == 1:
                self.late = (args, kwargs)
                raise requests.exceptions.ReadTimeout("Read timed out")
            answer = self.client.create_run(*args, **kwargs)
            self.client.create_run(*self.late[0], **self.late[1])  # the first, applied at last
            return answer

    resumed._client, resumed._pool = Late(MlflowClient(uri)), ThreadPoolExecutor(1)
    resumed.submit(LogTrial("t0002", "completed", {"objective": 0.6}, {"C": 3.0}, "logistic", None, series[:3],
                            [0.6] * 3), replies.append)
    resumed.drain()
    resumed._pool.shutdown()

    def runs_of(trial):
        return [r for r in client.search_runs([children[0].info.experiment_id],
                                              f"tags.`mlflow.parentRunId` = '{parent}'") if
                r.data.tags["metaray.trial"] == trial]

    assert replies[-1] == Logged() and len(runs_of("t0002")) == 2
    resumed._one_each()
    assert [r.info.run_id for r in runs_of("t0002")] == [resumed._children["t0002"][0]]


def test_a_server_down_for_good_fails_calls_at_once_but_a_probe_now_and_then_finds_it_back(monkeypatch):
    """Past SERVER_DOWN_S without an answer, calls fail at once (no try each) but one every PROBE_S, whose answer
    ends the down time; a refusal of a server that answers is not retried."""
    import requests

    import metaray.tracking as tracking

    class Clock:  # made-up time: sleeping advances it
        now = 1000.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(tracking, "time", clock)
    monkeypatch.setattr(tracking, "SERVER_DOWN_S", 0.3)
    monkeypatch.setattr(tracking, "PROBE_S", 0.6)
    writer = tracking.Writer.__new__(tracking.Writer)  # only its retries: no store
    writer._pool, writer._down, writer._down_since, writer._probed = object(), threading.Lock(), None, -math.inf
    tries = []

    def unanswered():
        tries.append(1)
        raise requests.exceptions.ConnectionError("Connection refused")

    with pytest.raises(tracking.ServerDown):
        writer._answered(unanswered)  # a try, 0.5 s of backoff, and a probe
    assert len(tries) == 2
    with pytest.raises(tracking.ServerDown):
        writer._answered(unanswered)  # within PROBE_S of the probe: no try
    assert len(tries) == 2
    clock.sleep(0.6)
    assert writer._answered(lambda: "answered") == "answered" and writer._down_since is None  # the next probe
    with pytest.raises(ValueError):
        writer._answered(lambda: tries.append(1) or int("refused"))
    assert len(tries) == 3

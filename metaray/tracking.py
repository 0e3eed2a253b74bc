"""MLflow logging: the search's MLflow callback on the driver, and the tracking process that writes to MLflow.

A search is a parent run (the spec as an artifact, the dataset, the best result and model, the report and the best
network's weights that other callbacks wrote); every configuration is a child run (its parameters, every aggregate,
the per-subset scores as a step series, fit seconds, tags). One writer, in a process of its own, fed by the driver
through a bounded queue: SQLite never locks, and MLflow's writes take neither the driver's time nor its GIL. The
messages and their protocol (Ctrl-C, a killed driver, a resume) are in metaray.tracking_protocol.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from metaray import __version__
from metaray.aggregates import COLUMNS
from metaray.callbacks import Callback
from metaray.driver import STATUSES
from metaray.errors import SpecError, one_line
from metaray.store import (
    QUICK_HTTP,
    absolute_uri,
    first_open,
    is_server,
    reach_database,
    store_error,
    tracking_uri,
    uri_key,
)
from metaray.tracking_protocol import (
    Abort,
    End,
    Ended,
    Finish,
    Finished,
    Logged,
    LogTrial,
    Results,
    Start,
    Started,
    StartFailed,
)

# the driver's side -------------------------------------------------------------------------------------------------


class MlflowCallback(Callback):
    """Logs a search to MLflow (through a ``Tracker``): the parent run at its start (awaited before any fit: a store
    that cannot be reached stops the search), a child run per configuration, and at its end the results with the
    files that ``report`` (metaray.report.ReportCallback) and ``weights`` (metaray.weights.WeightsCallback), called
    before it, made. ``progress`` hears how far MLflow lags at the end; ``say``, lines about what it could not log.
    """

    def __init__(self, *, progress=lambda line: None, say=lambda line: None, report=None, weights=None):
        self.progress, self.say, self.report, self.weights = progress, say, report, weights
        self.tracker: Tracker | None = None
        self._folder = None
        self._children, self._top, self._sign = "all", None, 1.0  # tracking.children; top:N; the objective's sign
        self._kept: list = []  # top:N: (key, LogTrial) of the N best completed so far, a heap (the worst first)

    def on_search_start(self, setup) -> None:
        state, prepared = setup.folder.state, setup.prepared
        self._folder = setup.folder
        self._children, self._top = setup.spec.tracking.children, setup.spec.tracking.top
        self._sign = 1.0 if prepared.mode == "max" else -1.0
        self.tracker = Tracker(setup.spec, setup.folder.path, prepared.dataset.describe(), uri=state.get("mlflow_uri"),
                               parent_id=state.get("parent_run_id"), metric=prepared.metric.name,
                               mode=prepared.mode, metafeatures=setup.metafeatures)
        # MLflow's start-up overlaps Ray's; the parent run is recorded as soon as it exists, even if the search
        # stops before it is awaited
        self.tracker.start().add_done_callback(self._record_parent)

    def _record_parent(self, started: Future) -> None:
        if not started.exception() and started.result():
            self._folder.update_state(parent_run_id=started.result(), mlflow_uri=self.tracker.uri,
                                      mlflow_experiment=self.tracker.experiment_name)

    def on_fits_start(self) -> None:
        self.tracker.started.result()  # a SpecError when the store cannot be reached: before any fit

    def on_trial_end(self, trial, ranking) -> None:
        import heapq
        import math

        if self._children == "none":
            return
        if self._top is not None and not (trial.status == "completed" and trial.feasible
                                          and math.isfinite(trial.objective)):
            return  # top:N: only the best completed ones, and they are known at the end
        message = LogTrial(trial.id, trial.status, ranking.row(trial), ranking.visible(trial),
                           ranking.learner(trial)[0], trial.error, ranking.series(trial), ranking.running(trial),
                           dict(trial.values), trial.feasible)
        if self._top is None:
            self.tracker.log(message)
            return
        key = (self._sign * trial.objective, -trial.index)  # better, then earlier, is larger
        if len(self._kept) < self._top:
            heapq.heappush(self._kept, (key, message))
        elif key > self._kept[0][0]:
            heapq.heapreplace(self._kept, (key, message))

    def on_results(self, result) -> None:
        for _, message in sorted(self._kept, key=lambda kept: kept[0], reverse=True):  # top:N, best first
            self.tracker.log(message)
        self._kept = []
        result.mlflow_run_id = self.tracker.parent_id
        self.tracker.results(result)  # logged while the report is drawn

    def on_search_end(self, result) -> None:
        if not self.tracker.results_sent:  # (a caller that skipped on_results)
            self.on_results(result)
        if self.tracker.lag:
            self.progress(f"MLflow: catching up, {self.tracker.lag} configurations still to log")
        made = self.report.made if self.report is not None else None
        try:
            self.tracker.finish(result, report=(made.html, *made.figures.values()) if made else (),
                                weights=self.weights.path if self.weights is not None else None).result()
        finally:
            for note in self.tracker.notes:
                self.say(note)

    def on_search_error(self, exc: BaseException) -> None:
        if self.tracker is not None:
            self.tracker.abort()

    def close(self, say) -> None:
        if self.tracker is not None:
            self.tracker.close(say)


class Tracker:
    """One search's link to the tracking process (see ``_Server``); every method returns at once, with a future where
    there is something to wait for.

    Args:
        spec: the spec as the run folder records it; run_dir: the run folder; dataset: ``Dataset.describe()``.
        uri, parent_id: the store and parent run an interrupted search already logged to (its run folder's record);
            a resumed search logs there, whatever the working folder is now.
        metric, mode, metafeatures: the search's resolved metric, the objective's direction and its data's
            meta-features (metaray.metafeatures), recorded on the parent run for later searches to find it by.
    """

    def __init__(self, spec, run_dir: Path, dataset: dict[str, Any], *, uri: str | None = None,
                 parent_id: str | None = None, metric: str = "", mode: str = "",
                 metafeatures: dict[str, float] | None = None):
        self.spec, self.run_dir, self.dataset = spec, Path(run_dir), dataset
        self.metric, self.mode, self.metafeatures = metric, mode, dict(metafeatures or {})
        self.uri = uri or absolute_uri(tracking_uri(spec.tracking.uri))
        self.experiment_name = spec.tracking.experiment or spec.name
        self.parent_id: str | None = parent_id
        self.sent = 0  # configurations handed to the queue
        self.logged = 0  # configurations the tracking process has logged
        self.failure: str | None = None
        self.notes: list[str] = []  # lines for the user from the tracking process
        self.started: Future = Future()  # the parent run's id
        self._server: _Server | None = None
        self._finished: Future = Future()  # the search's end logged (made now: a process lost before fails it)
        self._ended: Future = Future()
        self.results_sent = False

    def start(self) -> Future:
        """Start (or reuse) the tracking process, which connects, creates the experiment and the parent run (or
        reopens it on resume); the future's result is the parent run id, or a SpecError when the tracking store
        cannot be reached."""
        self._server = _server()
        self._server.attach(self)
        self._server.put(Start(self.spec, self.run_dir, self.dataset, self.uri, self.experiment_name, self.parent_id,
                               self.metric, self.mode, self.metafeatures, os.getcwd(), dict(os.environ)))
        return self.started

    def log(self, trial: LogTrial) -> None:
        """One configuration; waits only when ``_Server.MAX_QUEUED`` messages are still to be logged."""
        self.sent += 1
        self._server.put(trial)

    @property
    def lag(self) -> int:
        """Configurations handed over but not yet logged."""
        return self.sent - self.logged

    def results(self, result) -> None:
        """Log the search's results and best model (after every configuration before them), without waiting: the
        files ``finish`` brings are still being made."""
        self._server.put(Results(dataclasses.replace(result, model=None), _pickled(result.model)))
        self.results_sent = True

    def finish(self, result, *, report: tuple[Path, ...] = (), weights: Path | None = None) -> Future:
        """Log the ``report``'s files and the ``weights`` file (and the results and best model, unless ``results``
        sent them) and end the parent run; the future resolves when that is done."""
        if not self.results_sent:
            self.results(result)
        self._server.put(Finish(None, None, tuple(report), weights))
        return self._finished

    def abort(self) -> None:
        """Mark the parent run KILLED, after everything already handed over is logged."""
        if self._server is not None:
            self._server.put(Abort())

    def close(self, say=lambda line: None) -> None:
        """Wait until the tracking process has logged everything of this search; interrupted (Ctrl-C) while it
        catches up, it is left to finish on its own, and said so."""
        if self._server is None:
            return
        self._server.put(End())
        if self.lag > 0:
            say(f"MLflow: logging the last {self.lag} configurations")
        try:
            self._ended.result()
        except KeyboardInterrupt:
            say(f"MLflow: {self.lag} configurations are still being logged by process {self._server.pid}, "
                "which ends when it is done")
            raise
        except RuntimeError:
            pass  # the process died: said below
        if self.failure:
            import warnings

            warnings.warn(f"MLflow logging failed: {self.failure}", stacklevel=2)

    def reply(self, reply) -> None:
        """A reply of the tracking process (on the server's reader thread)."""
        match reply:
            case Started(parent_id=parent_id):
                self.parent_id = parent_id
                self.started.set_result(parent_id)
            case StartFailed(error=error):
                self.started.set_exception(error)
            case Logged(error=error):
                self.failure = self.failure or error
                self.logged += 1
            case Finished(error=error, notes=notes):
                self.notes.extend(notes)
                if error is None:
                    self._finished.set_result(None)
                else:
                    self._finished.set_exception(RuntimeError(error))
            case Ended():
                self._ended.set_result(None)

    @property
    def ended(self) -> bool:
        return self._ended.done()

    def lost(self, why: str) -> None:
        """The tracking process is gone: nothing this search waits for will come (nor will a later ``finish``)."""
        self.failure = self.failure or why
        for future in (self.started, self._finished, self._ended):
            if not future.done():
                future.set_exception(RuntimeError(why))


def _pickled(model) -> bytes | None:
    """The best model as bytes for the tracking process (cloudpickle, as MLflow itself saves it)."""
    if model is None:
        return None
    import cloudpickle

    return cloudpickle.dumps(model)


class _Server:
    """The tracking process (``python -m metaray.tracking``) and the driver's two threads that talk to it: one per
    driver process, shared by its searches one after another, so that MLflow is imported once. Messages go through
    a bounded queue to its stdin; replies come back on its stdout to the search that is attached. It ends when its
    stdin closes (``shutdown``, or the driver process ending in any way)."""

    #: messages waiting for the tracking process before the driver waits for it
    MAX_QUEUED = 10_000

    def __init__(self):
        import metaray

        env = dict(os.environ)
        package_root = str(Path(metaray.__file__).resolve().parents[1])  # metaray importable, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env.pop("RAY_ADDRESS", None)  # nothing Ray in there
        self._proc = subprocess.Popen([sys.executable, "-m", "metaray.tracking"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)
        self.pid = self._proc.pid
        self._queue: queue.Queue = queue.Queue(self.MAX_QUEUED)
        self._tracker: Tracker | None = None
        self._retired = False
        self._threads = [threading.Thread(target=target, name=f"metaray-mlflow{target.__name__}", daemon=True)
                         for target in (self._feed, self._read)]
        for thread in self._threads:
            thread.start()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and all(t.is_alive() for t in self._threads)

    @property
    def busy(self) -> bool:
        """Still logging a search that stopped waiting for it (a second Ctrl-C): its replies must not reach the
        next search."""
        return self._tracker is not None and not self._tracker.ended

    def retire(self) -> None:
        """End the process once its search has ended (without waiting for it); no other search will use it."""
        self._retired = True

    def attach(self, tracker: Tracker) -> None:
        self._tracker = tracker

    def put(self, message) -> None:
        self._queue.put(message)

    def close(self) -> None:
        """Close the process's stdin (after what is queued): it logs what it has and exits."""
        self._queue.put(None)

    def wait(self) -> None:
        self._proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)

    def _feed(self) -> None:
        """Queue -> the process's stdin; the sentinel None closes it."""
        pipe = self._proc.stdin
        try:
            while (message := self._queue.get()) is not None:
                pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                if self._queue.empty():
                    pipe.flush()
        except (BrokenPipeError, OSError):  # the process died: the reader says so
            while self._queue.get() is not None:  # keep the driver's puts from blocking
                pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()

    def _read(self) -> None:
        """The process's replies -> the attached search."""
        pipe = self._proc.stdout
        while True:
            try:
                reply = pickle.load(pipe)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if self._tracker is not None:
                self._tracker.reply(reply)
            if isinstance(reply, Ended) and self._retired:
                self._queue.put(None)
        if self._tracker is not None:
            self._tracker.lost(f"the tracking process (pid {self.pid}) exited with {self._proc.wait()}")


#: the tracking process of this driver process: module state because it outlives a search (MLflow is imported once
#: per driver process, not once per search); ended by ``shutdown``, at the latest when the interpreter exits
_SERVER: _Server | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> _Server:
    """The tracking process of this driver process, started on first use (or again, if it died or is still busy
    with a search that stopped waiting for it)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive or _SERVER.busy:
            if _SERVER is None:
                import atexit

                atexit.register(shutdown)
            elif _SERVER.alive:
                _SERVER.retire()
            _SERVER = _Server()
        return _SERVER


def shutdown(meanwhile: Callable[[], None] | None = None) -> None:
    """End the tracking process, after it has logged everything it was sent (the ``metaray`` command calls it before
    it exits; otherwise it runs at the interpreter's exit). ``meanwhile`` runs while the process ends (the command
    stops Ray then: both take a second)."""
    global _SERVER
    with _SERVER_LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.close()
    try:
        if meanwhile is not None:
            meanwhile()
    finally:
        if server is not None:
            server.wait()


# the tracking process's side ---------------------------------------------------------------------------------------


class Writer:
    """The MLflow side of a search, in the tracking process: one client, one call after another."""

    def __init__(self, start: Start):
        self.spec, self.run_dir, self.dataset, self.uri = start.spec, Path(start.run_dir), start.dataset, start.uri
        self.metric, self.mode, self.metafeatures = start.metric, start.mode, start.metafeatures
        self.experiment_name, self.parent_id = start.experiment, start.parent_id
        self._client = None
        self._experiment_id: str | None = None
        # trial id -> its child run, and the time its metrics carry: the run's start, the same on every try (a batch
        # sent again is then kept once by the server)
        self._children: dict[str, tuple[str, int | None]] = {}
        self.ended = False  # finished or aborted: the parent run has its final status
        self._closed = False  # every child run logged: the search's results and end come next
        self._result, self._notes = None, ()  # the search's results (``results``), lines for the user about them
        self._failed: Exception | None = None  # why logging the results failed: ``finish`` raises it
        # over HTTP, child runs are logged HTTP_PARALLEL at once (each is three requests, and a server on a database
        # answers several at a time); else one after another
        self._pool = (ThreadPoolExecutor(HTTP_PARALLEL, thread_name_prefix="metaray-child")
                      if is_server(self.uri) else None)
        self._pending: set[Future] = set()
        self._down = threading.Lock()  # the threads' shared view of the server:
        self._down_since: float | None = None  # since when it has not answered (a monotonic time)
        self._probed = -math.inf  # when a try last went to a server down for good
        self._logged: set[str] = set()  # trials whose child runs are complete (a resume's too)
        self._batched: set[str] = set()  # ... whose child runs have their metrics, not yet their end
        self._asked: set[str] = set()  # ... whose child run was asked for: the server may have made it unanswered
        self._unsure: set[str] = set()  # ... whose child run was asked for again after no answer
        self.lost: list[str] = []  # trials whose child runs could not be logged
        self.resumed = False  # the parent run is an earlier process's
        # MLflow's client repeats a request that got no answer, a create too: a child run the server made just
        # before it died would be made twice. While child runs are logged over HTTP, the writer repeats requests
        # itself (a create first looks for its run, a batch keeps its time) and MLflow's repeats are off, unless the
        # user set them
        self._own_retries = self._pool is not None and RETRIES not in start.environ

    def submit(self, t: LogTrial, reply) -> None:
        """Log a configuration's child run, now or on the pool, and reply ``Logged`` when it is done. Over HTTP, a
        server that does not answer (restarting, or down) is tried again with backoff, from where the child run got
        to, until it has not answered for ``SERVER_DOWN_S``: then every child run not yet logged fails at once
        (``Logged`` with the reason), and the search's end says how many; ``metaray resume`` logs them."""
        if self._closed:  # (the protocol sends none after the results; the pool is shut)
            return reply(Logged("the search has ended"))

        def log() -> None:
            try:
                self._answered(lambda: self.log_trial(t))
            except Exception as exc:
                if isinstance(exc, ServerDown):
                    self.lost.append(t.trial)
                reply(Logged(one_line(exc)))
                return
            reply(Logged())

        if self._pool is None:
            return log()
        future = self._pool.submit(log)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _answered(self, call):
        """``call()``, tried again with backoff while the server does not answer (over HTTP). Once it has not
        answered for ``SERVER_DOWN_S`` (any call's tries, counted from the first that got none; or this call's own,
        however the others fare), ``ServerDown``, at once for every call but one every ``PROBE_S``: its answer tells
        that the server is back."""
        delay, first = 0.5, None
        while True:
            with self._down:
                now = time.monotonic()
                down = self._down_since is not None and now - self._down_since >= SERVER_DOWN_S
                if down and now - self._probed < PROBE_S:
                    raise ServerDown(f"the MLflow tracking server did not answer for {SERVER_DOWN_S:g} s")
                if down:
                    self._probed = now  # this try is the probe
            try:
                value = call()
            except Exception as exc:
                if self._pool is None or not _unanswered(exc):
                    raise
                now = time.monotonic()
                with self._down:
                    self._down_since = now if self._down_since is None else self._down_since
                first = now if first is None else first
                if down or now - first >= SERVER_DOWN_S:
                    raise ServerDown(f"the MLflow tracking server did not answer for {SERVER_DOWN_S:g} s") from exc
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF_MAX_S)
                continue
            with self._down:
                self._down_since = None
            return value

    def drain(self) -> None:
        """Wait for the child runs being logged."""
        if self._pending:
            wait(self._pending.copy())  # (a copy, made at once: the threads remove theirs as they finish)

    def start(self) -> str:
        """Connect, create the experiment if new, and create the parent run, or reopen it (a resume): the parent
        run's id."""
        import logging

        import mlflow
        from mlflow import MlflowClient

        # after the import, which sets MLflow's own levels: a new store's schema migrations log at INFO
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)  # its note on pickles: the model is the user's

        # named by where the URI came from: the spec, else $MLFLOW_TRACKING_URI (read before MLflow sets it below)
        key = uri_key("tracking.uri", bool(self.spec.tracking.uri))
        mlflow.set_tracking_uri(self.uri)  # this process's own: MLflow's fluent API logs the model
        try:  # a store that cannot be opened (a database driver missing, say) is refused like one out of reach
            reach_database(self.uri)  # a database down: said in seconds, not after MLflow's 100 s of retries
            with first_open(self.uri):  # another search starting now waits: a new store is made once
                client = self._client = MlflowClient(self.uri)
                exp = client.get_experiment_by_name(self.experiment_name)
                self._experiment_id = exp.experiment_id if exp else client.create_experiment(self.experiment_name)
        except Exception as exc:
            raise store_error(key, "cannot reach the MLflow tracking store", exc, self.uri) from None
        parent = self._reopen() if self.parent_id else self._create_parent()
        self._mlflow_retries(False)
        return parent

    def _mlflow_retries(self, on: bool) -> None:
        """MLflow's own repeats of a request, off while child runs are logged over HTTP (see ``_own_retries``)."""
        if self._own_retries:
            os.environ[RETRIES] = QUICK_HTTP[RETRIES] if on else "0"

    def _close(self) -> None:
        """Every child run is logged (``drain``) and no more will come: requests are MLflow's to repeat again."""
        self._closed = True
        self._mlflow_retries(True)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _end(self) -> None:
        """The search's end: the parent run gets its final status."""
        self._close()
        self.ended = True

    def _reopen(self) -> str:
        """A resumed search's parent run, running again, and the child runs it already holds (skipped)."""
        client, token = self._client, None
        self.resumed = True
        client.update_run(self.parent_id, status="RUNNING")
        while True:  # every child run already logged, page by page
            page = client.search_runs([self._experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                      max_results=10000, page_token=token)
            self._children.update({r.data.tags.get("metaray.trial"): (r.info.run_id, r.info.start_time) for r in page})
            self._logged.update(r.data.tags.get("metaray.trial") for r in page if r.info.status != "RUNNING")
            token = page.token
            if not token:
                return self.parent_id

    def _create_parent(self) -> str:
        spec, client = self.spec, self._client
        tags = {"metaray.kind": "search", "metaray.version": __version__, "metaray.run_dir": str(self.run_dir),
                "dataset": self.dataset["name"], "task": self.dataset["task"], "protocol": spec.subsets.protocol,
                "seed": str(spec.seed), "strategy": spec.strategy, "searcher": spec.search.searcher,
                "scheduler": spec.search.scheduler.name, "metric": self.metric or spec.objective.metric or "",
                "aggregate": spec.objective.aggregate, "metaray.mode": self.mode or ""}
        run = client.create_run(self._experiment_id, run_name=f"{spec.name}-{self.run_dir.name}", tags=tags)
        self.parent_id = run.info.run_id
        params = {f"dataset.{k}": v for k, v in self.dataset.items() if k != "columns"}
        # a table's roles; a column name with characters MLflow's keys refuse ("Price ($)") is written with "_"
        params.update({f"column.{_key(c)}": role for c, role in self.dataset.get("columns", {}).items()})
        params.update({"subsets.k": spec.subsets.k, "subsets.sampler": spec.subsets.sampler,
                       "subsets.fraction": spec.subsets.fraction, "learner": spec.learner.name,
                       "search.num_samples": spec.search.num_samples, "final": spec.final})
        params.update({f"metafeature.{k}": f"{v:.6g}" for k, v in self.metafeatures.items()})
        self._batch(self.parent_id, params=params)
        client.log_dict(self.parent_id, spec.to_dict(), "spec.yaml")
        if self.dataset.get("columns"):
            client.log_dict(self.parent_id, self.dataset["columns"], "columns.json")  # names as they are
        return self.parent_id

    def _batch(self, run_id: str, *, params=None, metrics=None, tags=None, stamp: int | None = None) -> None:
        """Params, metrics (name, value, step) and tags, in as many of MLflow's batches as they take. Sent again
        with the same ``stamp`` (milliseconds), the metrics a server already holds are not doubled: it keeps one of
        each (name, time, step, value), and params and tags that are the same are no change."""
        from mlflow.entities import Metric, Param, RunTag

        now = stamp or int(time.time() * 1000)
        p = [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]
        m = [Metric(k, float(v), now, step) for k, v, step in (metrics or []) if v is not None and math.isfinite(v)]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        chunks = max(math.ceil(len(m) / 1000), math.ceil(len(p) / 100), math.ceil(len(t) / 100), 1)
        for i in range(chunks):  # MLflow caps one batch at 1000 metrics, 100 params, 100 tags
            self._client.log_batch(run_id, metrics=m[i * 1000 : (i + 1) * 1000], params=p[i * 100 : (i + 1) * 100],
                                   tags=t[i * 100 : (i + 1) * 100])

    def log_trial(self, t: LogTrial) -> None:
        """A configuration's child run (none if a resumed search's parent already holds it whole); called again
        after a failure, it goes on from the step that failed."""
        if t.trial in self._logged:
            return  # logged before the crash that this run resumes from
        spec, row = self.spec, t.row
        primary = next(iter(t.series[0][1]), None) if t.series else None  # the metric of its scores, if any
        tags = {"mlflow.parentRunId": self.parent_id, "metaray.kind": "trial", "metaray.trial": t.trial,
                "metaray.status": t.status, "metaray.version": __version__, "dataset": self.dataset["name"],
                "protocol": spec.subsets.protocol, "seed": str(spec.seed), "learner": t.learner,
                "metaray.mode": self.mode if primary else "",
                "strategy": spec.strategy if spec.strategy != "auto" else self.dataset["task"]}
        if primary:
            tags["metaray.metric"] = primary
        if t.error:
            tags["metaray.error"] = t.error[:5000]
        if "origin" in row:
            tags["metaray.origin"] = row["origin"]
        if not t.feasible:
            tags["metaray.feasible"] = "false"
        if t.trial not in self._children:
            run = self._child_run(t.trial, tags)
            self._children[t.trial] = run.info.run_id, run.info.start_time or int(time.time() * 1000)
        run_id, stamp = self._children[t.trial]
        params = {"learner": t.learner, **{k: v for k, v in t.params.items() if k != "learner"}}
        metrics = [(k, row[k], 0) for k in ("objective", *COLUMNS, "subsets_done") if k in row]
        for k, scores, fit_seconds in t.series:
            metrics += [(name, value, k) for name, value in scores.items()]
            metrics.append(("fit_seconds", fit_seconds, k))
        metrics.append(("fit_seconds_total", sum(r[2] for r in t.series), 0))
        taken = {name for name, _, _ in metrics}  # a label that is a logged series' name (fit_seconds): "mean_" first
        metrics += [(f"mean_{label}" if label in taken else label, value, 0) for label, value in t.values.items()]
        metrics += [("running_objective", v, m) for m, v in enumerate(t.running, 1)]
        if t.trial not in self._batched:
            self._batch(run_id, params=params, metrics=metrics, stamp=stamp)
            self._batched.add(t.trial)
        self._client.set_terminated(run_id, "FAILED" if t.status == "failed" else "FINISHED")
        self._logged.add(t.trial)

    def _child_run(self, trial: str, tags: dict[str, str]):
        """A configuration's new child run. Asked for again after a request that got no answer, it is first looked
        for: the server may have made it before it died (MLflow's create has no key that would make it once)."""
        if trial in self._asked:
            self._unsure.add(trial)
            made = self._made(trial)
            if made:
                return made[0]
        self._asked.add(trial)
        return self._client.create_run(self._experiment_id, run_name=trial, tags=tags)

    def _made(self, trial: str) -> list:
        """The child runs of ``trial`` the server holds."""
        return self._client.search_runs([self._experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}' and "
                                        f"tags.`metaray.trial` = '{trial}'", max_results=100)

    def _one_each(self) -> None:
        """A create that got no answer may yet have been applied after the search that looked for it (a server that
        was slow, not dead): at the end, any second child run of such a configuration is deleted."""
        for trial in sorted(self._unsure & set(self._children)):
            for run in self._made(trial):
                if run.info.run_id != self._children[trial][0]:
                    self._client.delete_run(run.info.run_id)

    def results(self, r: Results) -> None:
        """The search's results and best model on the parent run (``finish`` brings the files and the end). Its
        error, if any, is ``finish``'s: the parent run is not ended as a success. Until ``finish``, the search has not
        ended: a driver killed meanwhile leaves its parent run KILLED."""
        self._close()
        client, result = self._client, r.result
        self._result, self._notes = result, ()
        try:
            if self.lost:  # the server did not answer for a while: said once, and on the parent run
                client.set_tag(self.parent_id, "metaray.children_lost", str(len(self.lost)))
                self._notes = (f"MLflow: {len(self.lost)} child runs could not be logged (the tracking server did not "
                               f"answer for {SERVER_DOWN_S:g} s); `metaray resume {result.run_dir}` logs them",)
            elif self.resumed:  # a resume that logged those an earlier process lost
                with contextlib.suppress(Exception):
                    client.delete_tag(self.parent_id, "metaray.children_lost")
            if self.resumed and result.ok:  # an earlier process's end, stopped before the parent run's status
                with contextlib.suppress(Exception):
                    client.delete_tag(self.parent_id, "metaray.error")
            metrics = [("configurations", len(result.results), 0), ("fits_run", result.fits_run, 0)]
            for status in STATUSES:
                metrics.append((f"configurations_{status}", int((result.results["status"] == status).sum()), 0))
            tags = {}
            if result.best:
                metrics += [("best_objective", result.best["objective"], 0), ("best_std", result.best["std"], 0)]
                metrics += [(f"holdout_{k}", v, 0) for k, v in result.holdout_scores.items()]
                tags = {"best_trial": result.best["trial"], "best_learner": result.best["learner"],
                        "best_params": json.dumps(result.best["params"], default=str)[:5000]}
            if result.front:  # several objectives: the configurations on the Pareto front
                metrics.append(("front_size", len(result.front["members"]), 0))
                tags["front"] = " ".join(m["trial"] for m in result.front["members"])[:5000]
            self._batch(self.parent_id, metrics=metrics, tags=tags)
            self._one_each()
            self._ties(result.results)
            client.log_artifact(self.parent_id, str(result.run_dir / "results.csv"))
            if (result.run_dir / "results.parquet").is_file():  # every configuration, whatever tracking.children logs
                client.log_artifact(self.parent_id, str(result.run_dir / "results.parquet"))
            if result.best and result.best.get("architecture"):
                client.log_text(self.parent_id, result.best["architecture"], "best_architecture.txt")
            if r.model is not None:
                self._log_model(pickle.loads(r.model))
            if not result.ok:  # a search without an answer is not a success, in MLflow either
                client.set_tag(self.parent_id, "metaray.error", (result.refit_error or result.failures()
                                                                 or result.infeasible_line()
                                                                 or "no configuration completed")[:5000])
        except Exception as exc:
            self._failed = exc

    def finish(self, f: Finish) -> tuple[str, ...]:
        """Log the search's end: its results (unless ``results`` did), the files the driver made, the parent run's
        final status; returns lines for the user about what could not be logged."""
        if f.result is not None:
            self.results(Results(f.result, f.model))
        if self._failed is not None:
            raise self._failed
        client, result = self._client, self._result
        notes = self._log_report(f.report) + self._notes
        if f.weights is not None:  # the best network's weights, loadable without metaray
            client.log_artifact(self.parent_id, str(f.weights))
        client.set_terminated(self.parent_id, "FINISHED" if result.ok else "FAILED")
        self._end()
        return notes

    def _log_report(self, files: tuple[Path, ...]) -> tuple[str, ...]:
        """The report's files (the HTML first) under ``report/``; a line for the user if they could not be."""
        try:
            for path in files:
                self._client.log_artifact(self.parent_id, str(path), "report")
        except Exception as exc:
            return (f"report: written to {files[0]}, but not logged to MLflow ({one_line(exc)})",)
        return ()

    def _ties(self, table) -> None:
        """Each child run's comparison with the best, known once the search has ended: ``p_vs_best`` and
        ``p_not_worse`` metrics, a ``tied_with_best`` tag."""
        import pandas as pd

        front = "on_front" in table
        for row in table.itertuples(index=False):
            if row.trial in self._children:
                metrics = [("p_vs_best", row.p_vs_best, 0), ("p_not_worse", row.p_not_worse, 0)]
                tags = {"tied_with_best": str(bool(row.tied_with_best)).lower()}
                if front:  # several objectives: its place in the Pareto front (metaray.front)
                    tags["on_front"] = str(bool(row.on_front)).lower()
                    if pd.notna(row.pareto_rank):
                        metrics.append(("pareto_rank", float(row.pareto_rank), 0))
                self._batch(self._children[row.trial][0], metrics=metrics, tags=tags)

    def _log_model(self, model) -> None:
        import warnings

        import mlflow
        import sklearn

        with mlflow.start_run(run_id=self.parent_id), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's note on pickles: the model is the user's own
            mlflow.sklearn.log_model(model, name="best_model", serialization_format="cloudpickle",
                                     pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                                       f"metaray=={__version__}"])

    def abort(self) -> None:
        """The search stopped without an answer: its parent run is KILLED (a resume sets it running again)."""
        self._end()
        if self.parent_id and self._client is not None:
            self._client.set_terminated(self.parent_id, "KILLED")


#: the tracking process's niceness once it has started: beside two fits on every core it still gets about a twentieth
#: of a core (a few child runs a second in SQLite), and all it wants when the cores are idle
NICENESS = 10
#: a tracking server that has not answered for this long is down: the child runs not yet logged fail (a resume
#: logs them); until then they are tried again with backoff, and the search does not wait
SERVER_DOWN_S = 120.0
#: child runs logged at once to a tracking server over HTTP (its workers take them in parallel; a SQLite store is
#: written one call after another: it would lock)
HTTP_PARALLEL = 8
#: the longest wait between two tries of a request the server did not answer: a server back from a restart is used
#: within seconds (8 threads trying every 4 s are no load on it)
BACKOFF_MAX_S = 4.0
#: a server down for good gets one try every this many seconds (the others fail at once): it may come back
PROBE_S = 10.0
#: how many times MLflow's client repeats a request (QUICK_HTTP's, or the user's)
RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def _serve() -> None:
    """The tracking process: requests from the driver on stdin, replies on what was stdout (stdout itself goes to
    stderr, where MLflow's own prints belong), until the driver closes the pipe (see metaray.tracking_protocol)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the search; this process logs what it was sent
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    driver_gone = False
    replying = threading.Lock()  # child runs logged in parallel reply from their threads

    def reply(message) -> None:
        nonlocal driver_gone
        with replying:
            if driver_gone:
                return
            try:
                pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
                replies.flush()
            except OSError:  # the driver was killed: log what it sent before, then mark its search KILLED
                driver_gone = True

    writer: Writer | None = None
    while True:
        try:
            message = pickle.load(requests)
        except EOFError:
            break
        writer = _start(message, reply) if isinstance(message, Start) else _handle(message, writer, reply)
    if writer is not None and not writer.ended:  # the driver went away without a word: it was killed
        with contextlib.suppress(Exception):
            writer.drain()
            writer.abort()


def _start(start: Start, reply) -> Writer | None:
    """A search's ``Start``: its writer, or None (and ``StartFailed``) when the store cannot be reached."""
    import importlib

    os.chdir(start.cwd)
    os.environ.clear()
    os.environ.update(start.environ)
    os.environ.update({k: v for k, v in QUICK_HTTP.items() if k not in os.environ})
    # MLflow's client prints two links to stdout at every run's end over HTTP, after one more request to the server:
    # the search's end gives its own, once
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    writer = Writer(start)
    try:
        reply(Started(writer.start()))
    except Exception as exc:
        reply(StartFailed(exc if isinstance(exc, SpecError) else RuntimeError(one_line(exc))))
        return None
    # from now on the fits come first and tracking catches up; meanwhile, what the search's end will need (its
    # results table, the best model) is imported, so that the end waits on no import
    with contextlib.suppress(OSError):
        os.nice(max(0, NICENESS - os.nice(0)))  # once: os.nice adds
    for module in ("pandas", "sklearn.pipeline", "metaray.results", "metaray.data", "mlflow.sklearn"):
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    return writer


def _handle(message, writer: Writer | None, reply) -> Writer | None:
    """Any other request: the writer for the next one (None once the search has ended, or had no store)."""
    if writer is None:  # no store (the driver has been told): nothing to log
        if isinstance(message, End):
            reply(Ended())
        return None
    if not isinstance(message, LogTrial):
        writer.drain()  # the search's end, or its abort, comes after every child run handed over before it
    match message:
        case LogTrial():
            writer.submit(message, reply)
        case Results():
            writer.results(message)
        case Finish():
            try:
                reply(Finished(notes=writer.finish(message)))
            except Exception as exc:
                reply(Finished(one_line(exc)))
        case Abort():
            writer.abort()
        case End():
            if not writer.ended:  # a search that stopped without saying how: not a success
                with contextlib.suppress(Exception):
                    writer.abort()
            reply(Ended())
            return None
    return writer


class ServerDown(Exception):
    """The tracking server has not answered for ``SERVER_DOWN_S``."""


def _unanswered(exc: BaseException) -> bool:
    """A request the server did not answer (down, restarting, overloaded: no connection, a timeout, a 5xx), not one
    it refused, nor an error of ours."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):
        return exc.get_http_status_code() >= 500
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    # MLflow's client wraps a request that failed after its own retries: "API request to ... failed with exception",
    # "... failed with timeout exception", "... failed with error code 502 != 200" (a body that is not MLflow's)
    message = str(exc)
    if not isinstance(exc, MlflowException) or "API request to" not in message:
        return False
    code = re.search(r"failed with error code (\d+)", message)
    return int(code.group(1)) >= 500 if code else "failed with" in message


def _key(name: str) -> str:
    """A column's name as an MLflow key: letters, digits and ``_-. /:`` kept, anything else made ``_``."""
    import re

    return re.sub(r"[^\w\-. /:]", "_", str(name))


if __name__ == "__main__":
    _serve()

"""MLflow tracking: one writer, in a process of its own, fed by the driver through a bounded queue, so that SQLite
never locks and logging stays off the driver's path (see ``Tracker``).

A search is a parent run (the spec as an artifact, the dataset, the best result and model); every
configuration is a child run (its parameters, every aggregate, the per-subset scores as a step series, fit
seconds, tags). TensorBoard event files per configuration go under the run folder's ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from metaray import __version__
from metaray.errors import SpecError
from metaray.store import DEFAULT_URI, absolute_uri, tracking_uri  # noqa: F401 (re-exported)


def _quick_http_failures() -> None:
    # MLflow retries an unreachable server for minutes by default; a search should fail before its first fit
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class Tracker:
    """Logs one search to MLflow through the tracking process (see ``_Server``); every method returns at once.

    The driver hands each finished configuration to a bounded queue (``MAX_QUEUED``; a driver that runs that far
    ahead waits) and a feeder thread pipes it to the tracking process, which owns the MLflow client: MLflow's
    writes (SQLite transactions or HTTP calls) take neither the driver's time nor its GIL, and the search runs on
    while tracking catches up. The process ignores Ctrl-C and logs everything it was sent before it says a search
    has ended: an interrupted search loses no child run, and one whose driver was killed has its parent run marked
    KILLED when the process sees its pipe close.
    """

    def __init__(self, spec, run_dir: Path, dataset: dict[str, Any], *, uri: str | None = None,
                 parent_id: str | None = None, metric: str | None = None, mode: str | None = None,
                 metafeatures: dict[str, float] | None = None):
        """``uri`` and ``parent_id``: the store and parent run an interrupted search already logged to (its run
        folder's record); a resumed search logs there, whatever the working folder is now. ``metric``, ``mode``
        and ``metafeatures``: the search's resolved metric and direction and its data's meta-features
        (metaray.metafeatures), recorded on the parent run for later searches to find it by."""
        self.spec, self.run_dir, self.dataset = spec, Path(run_dir), dataset
        self.about = {"metric": metric, "mode": mode, "metafeatures": dict(metafeatures or {})}
        self.uri = uri or absolute_uri(tracking_uri(spec.tracking.uri))
        self.experiment_name = spec.tracking.experiment or spec.name
        self.parent_id: str | None = parent_id
        self.sent = 0  # configurations handed to the queue
        self.logged = 0  # configurations the tracking process has logged
        self.failure: str | None = None
        self.notes: list[str] = []  # lines for the user from the tracking process (a report it could not make)
        self._server: _Server | None = None
        self._started: Future = Future()
        self._finished: Future | None = None
        self._ended: Future = Future()

    # called by the driver --------------------------------------------------------------------------------

    def start(self) -> Future:
        """Start (or reuse) the tracking process, which connects, creates the experiment and the parent run (or
        reopens it on resume); the future's result is the parent run id, or a SpecError when the tracking store
        cannot be reached."""
        self._server = _server()
        self._server.attach(self)
        # the process outlives this search: it takes this search's working folder (MLflow puts a new store's
        # artifacts under ./mlruns) and environment (credentials, MLFLOW_* settings) from the driver as they are now
        where = {"cwd": os.getcwd(), "environ": dict(os.environ)}
        self._server.put(("start", {"spec": self.spec, "run_dir": self.run_dir, "dataset": self.dataset,
                                    "uri": self.uri, "experiment": self.experiment_name,
                                    "parent_id": self.parent_id, **self.about}, where))
        return self._started

    def log_trial(self, row: dict[str, Any], trial_id: str, status: str, params: dict[str, Any], learner: str,
                  error: str | None, series: list[tuple[int, dict[str, float], float]]) -> None:
        """One configuration: its results-table ``row``, its parameters and its per-subset ``series`` of
        (subset, scores, fit seconds). Waits only when ``MAX_QUEUED`` messages are still to be logged."""
        snapshot = {"row": dict(row), "id": trial_id, "status": status, "visible": dict(params), "learner": learner,
                    "error": error, "results": list(series)}
        self.sent += 1
        self._server.put(("trial", snapshot))

    @property
    def lag(self) -> int:
        """Configurations handed over but not yet logged."""
        return self.sent - self.logged

    def finish(self, result, model) -> Future:
        """Log the search's results and its best model (after every configuration before it); the future resolves
        when that is done."""
        self._finished = Future()
        self._server.put(("finish", result, _pickled(model)))
        return self._finished

    def abort(self) -> None:
        """Mark the parent run KILLED, after everything already handed over is logged."""
        if self._server is not None:
            self._server.put(("abort",))

    def close(self, say=lambda line: None) -> None:
        """Wait until the tracking process has logged everything of this search; interrupted (Ctrl-C) while it
        catches up, it is left to finish on its own, and said so."""
        if self._server is None:
            return
        self._server.put(("end",))
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

    # replies from the tracking process (on the server's reader thread) ------------------------------------

    def _reply(self, kind: str, value) -> None:
        if kind == "started":
            self.parent_id = value
            self._started.set_result(value)
        elif kind == "start-error":
            self._started.set_exception(value)
        elif kind == "logged":
            self.logged += 1
        elif kind == "failed":
            self.failure = self.failure or value
        elif kind == "note":
            self.notes.append(value)
        elif kind == "finished" and self._finished is not None:
            if value is None:
                self._finished.set_result(None)
            else:
                self._finished.set_exception(RuntimeError(value))
        elif kind == "ended":
            self._ended.set_result(None)

    def _lost(self, why: str) -> None:
        """The tracking process is gone: nothing this search waits for will come."""
        self.failure = self.failure or why
        for future in (self._started, self._finished, self._ended):
            if future is not None and not future.done():
                future.set_exception(RuntimeError(why))


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
        return self._tracker is not None and not self._tracker._ended.done()

    def retire(self) -> None:
        """End the process once its search has ended (without waiting for it); no other search will use it."""
        self._retired = True

    def attach(self, tracker: Tracker) -> None:
        self._tracker = tracker

    def put(self, message) -> None:
        self._queue.put(message)

    def shutdown(self) -> None:
        """Close the process's stdin and wait for it to log what it has and exit."""
        self._queue.put(None)
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
                kind, value = pickle.load(pipe)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            if self._tracker is not None:
                self._tracker._reply(kind, value)
            if kind == "ended" and self._retired:
                self._queue.put(None)
        if self._tracker is not None:
            self._tracker._lost(f"the tracking process (pid {self.pid}) exited with {self._proc.wait()}")


_SERVER: _Server | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> _Server:
    """The tracking process of this driver process, started on first use (or again, if it died)."""
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


def shutdown() -> None:
    """End the tracking process, after it has logged everything it was sent (the ``metaray`` command calls it before
    it exits; otherwise it runs at the interpreter's exit)."""
    global _SERVER
    with _SERVER_LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.shutdown()


def _pickled(model) -> bytes | None:
    """The best model as bytes for the tracking process (cloudpickle, as MLflow itself saves it)."""
    if model is None:
        return None
    import cloudpickle

    return cloudpickle.dumps(model)


class Writer:
    """The MLflow side of a search, in the tracking process: one client, one call after another."""

    def __init__(self, spec, run_dir: Path, dataset: dict[str, Any], uri: str, experiment: str,
                 parent_id: str | None, metric: str | None = None, mode: str | None = None,
                 metafeatures: dict[str, float] | None = None):
        self.spec, self.run_dir, self.dataset, self.uri = spec, Path(run_dir), dataset, uri
        self.metric, self.mode, self.metafeatures = metric, mode, metafeatures or {}
        self.experiment_name, self.parent_id = experiment, parent_id
        self._client = None
        self._experiment_id: str | None = None
        self._children: dict[str, str] = {}  # trial id -> its child run
        self.ended = False  # finished or aborted: the parent run has its final status

    def abort(self) -> None:
        """The search stopped without an answer: its parent run is KILLED (a resume sets it running again)."""
        self.ended = True
        if self.parent_id and self._client is not None:
            self._client.set_terminated(self.parent_id, "KILLED")

    def start(self) -> str:
        import logging

        _quick_http_failures()
        import mlflow
        from mlflow import MlflowClient

        # after the import, which sets MLflow's own levels: a new store's schema migrations log at INFO
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)  # its note on pickles: the model is the user's

        mlflow.set_tracking_uri(self.uri)
        client = self._client = MlflowClient(self.uri)
        try:
            exp = client.get_experiment_by_name(self.experiment_name)
            exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment_name)
            self._experiment_id = exp_id
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpecError("tracking.uri", f"cannot reach the MLflow tracking store ({msg[:300]})",
                            got=self.uri) from None
        if self.parent_id:
            client.update_run(self.parent_id, status="RUNNING")
            token = None
            while True:  # every child run already logged, page by page
                page = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                          max_results=10000, page_token=token)
                self._children.update({r.data.tags.get("metaray.trial"): r.info.run_id for r in page})
                token = page.token
                if not token:
                    break
            return self.parent_id
        spec = self.spec
        tags = {"metaray.kind": "search", "metaray.version": __version__, "metaray.run_dir": str(self.run_dir),
                "dataset": self.dataset["name"], "task": self.dataset["task"], "protocol": spec.subsets.protocol,
                "seed": str(spec.seed), "strategy": spec.strategy, "searcher": spec.search.searcher,
                "scheduler": spec.search.scheduler.name,
                "metric": self.metric or spec.objective.metric or "", "aggregate": spec.objective.aggregate,
                "metaray.mode": self.mode or ""}
        run = client.create_run(exp_id, run_name=f"{spec.name}-{self.run_dir.name}", tags=tags)
        self.parent_id = run.info.run_id
        params = {f"dataset.{k}": v for k, v in self.dataset.items() if k != "columns"}
        # a table's roles; a column name with characters MLflow's keys refuse ("Price ($)") is written with "_"
        params.update({f"column.{_key(c)}": role for c, role in self.dataset.get("columns", {}).items()})
        params.update({"subsets.k": spec.subsets.k, "subsets.sampler": spec.subsets.sampler,
                       "subsets.fraction": spec.subsets.fraction, "learner": spec.learner.name,
                       "search.num_samples": spec.search.num_samples})
        params.update({f"metafeature.{k}": f"{v:.6g}" for k, v in self.metafeatures.items()})
        self._batch(self.parent_id, params=params)
        client.log_dict(self.parent_id, spec.to_dict(), "spec.yaml")
        if self.dataset.get("columns"):
            client.log_dict(self.parent_id, self.dataset["columns"], "columns.json")  # names as they are
        return self.parent_id

    def _batch(self, run_id: str, *, params=None, metrics=None, tags=None) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]
        m = [Metric(k, float(v), now, step) for k, v, step in (metrics or []) if v is not None and math.isfinite(v)]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        chunks = max(math.ceil(len(m) / 1000), math.ceil(len(p) / 100), math.ceil(len(t) / 100), 1)
        for i in range(chunks):  # MLflow caps one batch at 1000 metrics, 100 params, 100 tags
            self._client.log_batch(run_id, metrics=m[i * 1000 : (i + 1) * 1000], params=p[i * 100 : (i + 1) * 100],
                                   tags=t[i * 100 : (i + 1) * 100])

    def log_trial(self, s: dict[str, Any]) -> None:
        if s["id"] in self._children:
            return  # logged before the crash that this run resumes from
        from metaray.aggregates import objective_mode, running
        from metaray.metrics import get_metric

        client, spec, row = self._client, self.spec, s["row"]
        metric_names = list(s["results"][0][1]) if s["results"] else []
        primary = metric_names[0] if metric_names else None
        tags = {"mlflow.parentRunId": self.parent_id, "metaray.kind": "trial", "metaray.trial": s["id"],
                "metaray.status": s["status"], "metaray.version": __version__, "dataset": self.dataset["name"],
                "protocol": spec.subsets.protocol, "seed": str(spec.seed), "learner": s["learner"],
                "metaray.mode": "", "strategy": spec.strategy if spec.strategy != "auto" else self.dataset["task"]}
        if primary:
            gib = get_metric(primary).greater_is_better
            tags["metaray.mode"] = objective_mode(spec.objective.aggregate, gib)
            tags["metaray.metric"] = primary
        if s["error"]:
            tags["metaray.error"] = s["error"][:5000]
        if "origin" in row:
            tags["metaray.origin"] = row["origin"]
        run = client.create_run(self._experiment_id, run_name=s["id"], tags=tags)
        self._children[s["id"]] = run.info.run_id
        params = {"learner": s["learner"], **{k: v for k, v in s["visible"].items() if k != "learner"}}
        metrics = [(k, row[k], 0) for k in ("objective", "mean", "std", "worst", "median", "cvar", "mean_minus_std",
                                             "subsets_done") if k in row]
        for k, scores, fit_seconds in s["results"]:
            metrics += [(name, value, k) for name, value in scores.items()]
            metrics.append(("fit_seconds", fit_seconds, k))
        metrics.append(("fit_seconds_total", sum(r[2] for r in s["results"]), 0))
        if primary:
            values = [r[1][primary] for r in s["results"]]
            metrics += [("running_objective", v, m) for m, v in enumerate(
                running(values, spec.objective.aggregate, greater_is_better=gib, alpha=spec.objective.alpha,
                        lam=spec.objective.lam), 1)]
            self._tensorboard(s["id"], values, metrics)
        self._batch(run.info.run_id, params=params, metrics=metrics)
        client.set_terminated(run.info.run_id, "FAILED" if s["status"] == "failed" else "FINISHED")

    def _ties(self, table) -> None:
        """Each child run's comparison with the best, known once the search has ended: ``p_vs_best`` and
        ``p_not_worse`` metrics, a ``tied_with_best`` tag."""
        for row in table[["trial", "p_vs_best", "p_not_worse", "tied_with_best"]].itertuples(index=False):
            if row.trial in self._children:
                self._batch(self._children[row.trial], metrics=[("p_vs_best", row.p_vs_best, 0),
                                                                ("p_not_worse", row.p_not_worse, 0)],
                            tags={"tied_with_best": str(bool(row.tied_with_best)).lower()})

    def _tensorboard(self, trial_id: str, values, metrics) -> None:
        from metaray.tensorboard import ScalarWriter

        with ScalarWriter(self.run_dir / "tensorboard" / trial_id) as w:
            for name, value, step in metrics:
                if name in ("running_objective",):
                    w.add_scalar("objective/running", value, step)
            for k, v in enumerate(values):
                w.add_scalar("score/subset", v, k)

    def finish(self, result, model) -> str | None:
        """Log the search's end; returns a line for the user when its report could not be made."""
        self.ended = True
        client = self._client
        note = self._report(result.run_dir)  # first: MLflow failing below must not cost the user the report
        metrics = [("configurations", len(result.results), 0), ("fits_run", result.fits_run, 0)]
        for status in ("completed", "stopped", "failed"):
            metrics.append((f"configurations_{status}", int((result.results["status"] == status).sum()), 0))
        tags = {}
        if result.best:
            metrics += [("best_objective", result.best["objective"], 0), ("best_std", result.best["std"], 0)]
            metrics += [(f"holdout_{k}", v, 0) for k, v in result.holdout_scores.items()]
            tags = {"best_trial": result.best["trial"], "best_learner": result.best["learner"],
                    "best_params": json.dumps(result.best["params"], default=str)[:5000]}
        self._batch(self.parent_id, metrics=metrics, tags=tags)
        self._ties(result.results)
        client.log_artifact(self.parent_id, str(result.run_dir / "results.csv"))
        if result.best and result.best.get("architecture"):
            client.log_text(self.parent_id, result.best["architecture"], "best_architecture.txt")
        from metaray.learners import final_estimator

        net = getattr(final_estimator(model), "net_", None) if model is not None else None
        if net is not None:  # the best network's weights, loadable without metaray
            import torch

            path = result.run_dir / "best_weights.pt"
            torch.save(net.state_dict(), path)
            client.log_artifact(self.parent_id, str(path))
        if model is not None:
            import warnings

            import mlflow
            import sklearn

            with mlflow.start_run(run_id=self.parent_id), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLflow's note on pickles: the model is the user's own
                mlflow.sklearn.log_model(model, name="best_model", serialization_format="cloudpickle",
                                         pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                                           f"metaray=={__version__}"])
        if not result.ok:  # a search without an answer is not a success, in MLflow either
            client.set_tag(self.parent_id, "metaray.error", (result.refit_error or result.failures()
                                                             or "no configuration completed")[:5000])
        client.set_terminated(self.parent_id, "FINISHED" if result.ok else "FAILED")
        return note

    def _report(self, run_dir: Path) -> str | None:
        """The search's report (metaray.report), made here, off the driver, and logged under ``report/``; what went
        wrong, as a line for the user, if it could not be made."""
        from metaray.report import write

        try:
            made = write(run_dir)
        except Exception as exc:
            return f"report: not made ({_line(exc)}); try: metaray report {run_dir}"
        try:
            for path in (made.html, *made.figures.values()):
                self._client.log_artifact(self.parent_id, str(path), "report")
        except Exception as exc:
            return f"report: written to {made.html}, but not logged to MLflow ({_line(exc)})"
        return None


#: the tracking process's niceness once it has started: beside two fits on every core it still gets about a twentieth
#: of a core (a few child runs a second in SQLite), and all it wants when the cores are idle
NICENESS = 10


def _serve() -> None:
    """The tracking process: messages from the driver on stdin, replies on what was stdout (stdout itself goes to
    stderr, where MLflow's own prints belong), until the driver closes the pipe."""
    import importlib
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the search; this process logs what it was sent
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    driver_gone = False

    def reply(kind: str, value=None) -> None:
        nonlocal driver_gone
        if driver_gone:
            return
        try:
            pickle.dump((kind, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()
        except OSError:  # the driver was killed: log what it sent before, then mark its search KILLED
            driver_gone = True

    writer: Writer | None = None
    while True:
        try:
            message = pickle.load(requests)
        except EOFError:
            break
        kind = message[0]
        if kind == "start":
            os.chdir(message[2]["cwd"])
            os.environ.clear()
            os.environ.update(message[2]["environ"])
            writer = Writer(**message[1])
            try:
                reply("started", writer.start())
            except Exception as exc:
                writer = None
                reply("start-error", exc if isinstance(exc, SpecError) else RuntimeError(_line(exc)))
                continue
            # from now on the fits come first and tracking catches up; meanwhile, what the search's end will need
            # (its results table, the best model) is imported, so that the end waits on no import
            with contextlib.suppress(OSError):
                os.nice(max(0, NICENESS - os.nice(0)))  # once: os.nice adds
            for module in ("pandas", "sklearn.pipeline", "metaray.results", "metaray.data", "mlflow.sklearn",
                           "metaray.report"):
                with contextlib.suppress(Exception):
                    importlib.import_module(module)
            with contextlib.suppress(Exception):
                sys.modules["metaray.report"].preload()
        elif writer is None:  # no store (the driver has been told): nothing to log
            if kind == "end":
                reply("ended")
            continue
        elif kind == "trial":
            try:
                writer.log_trial(message[1])
            except Exception as exc:
                reply("failed", _line(exc))
            reply("logged")
        elif kind == "finish":
            try:
                model = pickle.loads(message[2]) if message[2] is not None else None
                note = writer.finish(message[1], model)
                if note:
                    reply("note", note)
                reply("finished")
            except Exception as exc:
                reply("finished", _line(exc))
        elif kind == "abort":
            writer.abort()
        elif kind == "end":
            if not writer.ended:  # a search that stopped without saying how: not a success
                with contextlib.suppress(Exception):
                    writer.abort()
            writer = None
            reply("ended")
    if writer is not None and not writer.ended:  # the driver went away without a word: it was killed
        with contextlib.suppress(Exception):
            writer.abort()


def _key(name: str) -> str:
    """A column's name as an MLflow key: letters, digits and ``_-. /:`` kept, anything else made ``_``."""
    import re

    return re.sub(r"[^\w\-. /:]", "_", str(name))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


if __name__ == "__main__":
    _serve()

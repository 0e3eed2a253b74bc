"""MLflow tracking: one writer thread on the driver, so that SQLite never locks and logging stays off the fit path.

A search is a parent run (the spec as an artifact, the dataset, the best result and model); every
configuration is a child run (its parameters, every aggregate, the per-subset scores as a step series, fit
seconds, tags). TensorBoard event files per configuration go under the run folder's ``tensorboard/``.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from metaray import __version__
from metaray.errors import SpecError

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(spec_uri: str | None = None) -> str:
    """The spec's URI, else $MLFLOW_TRACKING_URI, else SQLite in the working folder."""
    return spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_uri(uri: str) -> str:
    """A tracking URI that means the same store from any working folder: a relative SQLite file or local folder is
    made absolute (what a run folder records, so that ``metaray resume`` finds the store from anywhere).

    Example:
        >>> absolute_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
        >>> absolute_uri("sqlite:///mlflow.db").startswith("sqlite:////")
        True
    """
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path, sep, query = uri.removeprefix("sqlite:///").partition("?")
        return f"sqlite:///{Path(path).resolve()}{sep}{query}"
    if uri.startswith("file:") and not uri.startswith("file:/"):  # file:./mlruns
        return Path(uri.removeprefix("file:")).resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri


def _quick_http_failures() -> None:
    # MLflow retries an unreachable server for minutes by default; a search should fail before its first fit
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class Tracker:
    """Logs one search to MLflow from a single background thread; every method returns at once."""

    def __init__(self, spec, run_dir: Path, dataset: dict[str, Any], *, uri: str | None = None,
                 parent_id: str | None = None):
        """``uri`` and ``parent_id``: the store and parent run an interrupted search already logged to (its run
        folder's record); a resumed search logs there, whatever the working folder is now."""
        self.spec, self.run_dir, self.dataset = spec, Path(run_dir), dataset
        self.uri = uri or absolute_uri(tracking_uri(spec.tracking.uri))
        self.experiment_name = spec.tracking.experiment or spec.name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="metaray-mlflow")
        self._client = None
        self.parent_id: str | None = parent_id
        self._logged: set[str] = set()
        self._pending: list[Future] = []

    # called by the driver --------------------------------------------------------------------------------

    def start(self) -> Future:
        """Connect, create the experiment and the parent run (or reopen it on resume); the future's result is
        the parent run id, or a SpecError when the tracking store cannot be reached."""
        return self._pool.submit(self._start)

    def log_trial(self, row: dict[str, Any], trial_id: str, status: str, params: dict[str, Any], learner: str,
                  error: str | None, series: list[tuple[int, dict[str, float], float]]) -> None:
        """One configuration: its results-table ``row``, its parameters and its per-subset ``series`` of
        (subset, scores, fit seconds)."""
        if trial_id in self._logged:
            return  # logged before the crash that this run resumes from
        snapshot = {"row": dict(row), "id": trial_id, "status": status, "visible": dict(params), "learner": learner,
                    "error": error, "results": list(series)}
        self._pending.append(self._pool.submit(self._log_trial, snapshot))

    def finish(self, result, model) -> Future:
        return self._pool.submit(self._finish, result, model)

    def abort(self) -> None:
        """Mark the parent run KILLED, on the writer thread: after a start still under way, whatever stopped the
        search first."""
        def kill():
            if self.parent_id and self._client is not None:
                self._client.set_terminated(self.parent_id, "KILLED")

        self._pool.submit(kill)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for f in self._pending:
            if f.exception() is not None:
                import warnings

                warnings.warn(f"MLflow logging failed: {f.exception()}", stacklevel=2)
                break

    # the writer thread -----------------------------------------------------------------------------------

    def _start(self) -> str:
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
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpecError("tracking.uri", f"cannot reach the MLflow tracking store ({msg[:300]})",
                            got=self.uri) from None
        if self.parent_id:
            client.update_run(self.parent_id, status="RUNNING")
            children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                          max_results=10000)
            self._logged = {r.data.tags.get("metaray.trial") for r in children}
            return self.parent_id
        spec = self.spec
        tags = {"metaray.kind": "search", "metaray.version": __version__, "metaray.run_dir": str(self.run_dir),
                "dataset": self.dataset["name"], "task": self.dataset["task"], "protocol": spec.subsets.protocol,
                "seed": str(spec.seed), "strategy": spec.strategy, "searcher": spec.search.searcher,
                "scheduler": spec.search.scheduler.name,
                "metric": spec.objective.metric or "", "aggregate": spec.objective.aggregate}
        run = client.create_run(exp_id, run_name=f"{spec.name}-{self.run_dir.name}", tags=tags)
        self.parent_id = run.info.run_id
        params = {f"dataset.{k}": v for k, v in self.dataset.items()}
        params.update({"subsets.k": spec.subsets.k, "subsets.sampler": spec.subsets.sampler,
                       "subsets.fraction": spec.subsets.fraction, "learner": spec.learner.name,
                       "search.num_samples": spec.search.num_samples})
        self._batch(self.parent_id, params=params)
        client.log_dict(self.parent_id, spec.to_dict(), "spec.yaml")
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

    def _log_trial(self, s: dict[str, Any]) -> None:
        from metaray.aggregates import aggregate, objective_mode
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
        run = client.create_run(client.get_run(self.parent_id).info.experiment_id, run_name=s["id"], tags=tags)
        params = {"learner": s["learner"], **{k: v for k, v in s["visible"].items() if k != "learner"}}
        metrics = [(k, row[k], 0) for k in ("objective", "mean", "std", "worst", "median", "cvar", "mean_minus_std",
                                             "subsets_done") if k in row]
        for k, scores, fit_seconds in s["results"]:
            metrics += [(name, value, k) for name, value in scores.items()]
            metrics.append(("fit_seconds", fit_seconds, k))
        metrics.append(("fit_seconds_total", sum(r[2] for r in s["results"]), 0))
        if primary:
            values = [r[1][primary] for r in s["results"]]
            for m in range(1, len(values) + 1):
                running = aggregate(values[:m], greater_is_better=gib, alpha=spec.objective.alpha,
                                    lam=spec.objective.lam)[spec.objective.aggregate]
                metrics.append(("running_objective", running, m))
            self._tensorboard(s["id"], values, metrics)
        self._batch(run.info.run_id, params=params, metrics=metrics)
        client.set_terminated(run.info.run_id, "FAILED" if s["status"] == "failed" else "FINISHED")

    def _tensorboard(self, trial_id: str, values, metrics) -> None:
        from metaray.tensorboard import ScalarWriter

        with ScalarWriter(self.run_dir / "tensorboard" / trial_id) as w:
            for name, value, step in metrics:
                if name in ("running_objective",):
                    w.add_scalar("objective/running", value, step)
            for k, v in enumerate(values):
                w.add_scalar("score/subset", v, k)

    def _finish(self, result, model) -> None:
        client = self._client
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

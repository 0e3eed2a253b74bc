"""Tables that look like users' tables, and learners that misbehave on purpose (one that never finishes, one that fails
only on the whole training pool), for tests that run whole searches from outside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

#: label kinds a user's target column comes in, and how each is written: (file suffix, labels from the lowest score up)
LABELS = {
    "words": (".csv", ["no", "yes"]),  # pandas 3 reads them as its `str` dtype
    "words3": (".csv", ["low", "mid", "high"]),
    "category": (".parquet", ["churned", "stayed"]),  # a pandas `category` column, kept by Parquet
    "bool": (".csv", [False, True]),
    "plus_minus_one": (".csv", [-1, 1]),  # whole numbers that are not 0..n-1 (read as floats: the column has gaps)
    "three_seven_nine": (".csv", [3, 7, 9]),
}


def user_table(labels: str = "words", n: int = 240, seed: int = 0, missing_targets: int = 9) -> pd.DataFrame:
    """A table with what users' tables have: empty fields, ``NA`` tokens, a ``?`` that is a category unless
    ``data.na_values`` says otherwise, a category that appears twice (so some fits first see it when scoring), a
    numeric column that is almost always missing, and rows whose target is missing. The target (column ``label``)
    follows ``income`` and ``region``, so a fitted model scores well above chance."""
    rng = np.random.default_rng(seed)
    income = rng.normal(size=n)
    region = rng.choice(["north", "south", "east", "west"], n)
    score = 1.8 * income + np.where(region == "south", 1.2, 0.0) - np.where(region == "west", 0.8, 0.0)
    score += rng.normal(scale=0.5, size=n)
    names = LABELS[labels][1]
    cuts = np.quantile(score, np.linspace(0, 1, len(names) + 1)[1:-1])
    target = pd.Series([names[int(np.searchsorted(cuts, s))] for s in score], dtype=object)
    frame = pd.DataFrame({
        "income": income.round(4),
        "age": pd.Series(rng.integers(18, 80, n)).astype(object),
        "region": pd.Series(region, dtype=object),
        "plan": rng.choice(["basic", "premium", "?"], n, p=[0.6, 0.35, 0.05]),
        "channel": ["fax" if i in (3, n // 2) else c for i, c in enumerate(rng.choice(["web", "phone"], n))],
        "sparse": np.where(np.arange(n) < 2, rng.normal(size=n), np.nan),
        "label": target,
    })
    frame.loc[rng.choice(n, n // 20, replace=False), "income"] = np.nan  # empty fields
    frame.loc[rng.choice(n, n // 25, replace=False), "age"] = "NA"  # NA tokens
    frame.loc[rng.choice(n, n // 16, replace=False), "region"] = None  # a missing category
    frame.loc[rng.choice(n, missing_targets, replace=False), "label"] = None
    if labels == "category":
        frame["label"] = frame["label"].astype("category")
        frame["region"] = frame["region"].astype("category")
    return frame


def write_table(frame: pd.DataFrame, folder: Path, labels: str) -> Path:
    suffix = LABELS[labels][0]
    path = Path(folder) / f"rows_{labels}{suffix}"
    if suffix == ".parquet":
        frame.assign(age=pd.to_numeric(frame["age"], errors="coerce")).to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


class _Centroids(ClassifierMixin, BaseEstimator):
    """Nearest class centroid: a tiny classifier to misbehave around."""

    def _fit_centroids(self, X, y):
        X, y = validate_data(self, X, y)
        self.classes_ = unique_labels(y)
        self.centroids_ = np.array([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        d = -((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class WarningClassifier(_Centroids):
    """Warns in every ``fit`` with a number that differs from fit to fit (as scipy's ill-conditioned matrix gives its
    ``rcond``), and once with a warning of another kind; with ``pool_rows``, a third kind when fitted on more rows
    than that (the refit on a whole training pool, not a subset)."""

    def __init__(self, shift: float = 0.0, pool_rows: int = 0):
        self.shift = shift
        self.pool_rows = pool_rows

    def fit(self, X, y):
        import warnings

        self._fit_centroids(X, y)
        spread = float(np.asarray(X, dtype=float).std()) + self.shift
        warnings.warn(f"An ill-conditioned matrix detected: rcond = {spread:.6e}.", RuntimeWarning, stacklevel=2)
        warnings.warn("centroids of a toy classifier", UserWarning, stacklevel=2)
        if self.pool_rows and len(X) > self.pool_rows:
            warnings.warn(f"fitted on {len(X)} rows, more than {self.pool_rows}", FutureWarning, stacklevel=2)
        return self


class HangingClassifier(_Centroids):
    """Sleeps ``hang_s`` seconds in ``fit`` (adding its process id to ``pid_file`` first), deaf to a polite cancel
    as a fit stuck in native code is: a fit that never ends."""

    def __init__(self, hang_s: float = 0.0, pid_file: str | None = None):
        self.hang_s = hang_s
        self.pid_file = pid_file

    def fit(self, X, y):
        if self.hang_s:
            if self.pid_file:
                with open(self.pid_file, "a") as fh:
                    fh.write(f"{os.getpid()}\n")
            until = time.monotonic() + self.hang_s
            while time.monotonic() < until:
                try:
                    time.sleep(until - time.monotonic())
                except KeyboardInterrupt:  # Ray's cancel without force
                    continue
        return self._fit_centroids(X, y)


class FailsOnTheWholePool(_Centroids):
    """Fits subsets of up to ``max_rows`` rows and refuses more (or, with ``hang_s``, sleeps that long): every
    subset fit works, the final refit on the whole training pool fails."""

    def __init__(self, max_rows: int = 100, hang_s: float = 0.0):
        self.max_rows = max_rows
        self.hang_s = hang_s

    def fit(self, X, y):
        if len(y) > self.max_rows:
            if self.hang_s:
                time.sleep(self.hang_s)
            raise MemoryError(f"{len(y)} rows do not fit in memory (at most {self.max_rows})")
        return self._fit_centroids(X, y)


class CrashingClassifier(_Centroids):
    """Kills its own process in ``fit`` while ``crash_file`` exists: a worker lost to the cluster, not a bad
    configuration."""

    def __init__(self, crash_file: str | None = None):
        self.crash_file = crash_file

    def fit(self, X, y):
        if self.crash_file and Path(self.crash_file).exists():
            os._exit(1)
        return self._fit_centroids(X, y)


#: a test that starts a process puts a value of its own under this name in the process's environment; every process
#: that one starts inherits it, so the test can find its own processes later (even those whose parent died) and
#: never judges another program's (or another test run's)
PROCESS_MARK = "METARAY_TEST_PROCESS"


def marked_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's environment) with a new, unique ``PROCESS_MARK``."""
    import uuid

    return {**(os.environ if env is None else env), PROCESS_MARK: uuid.uuid4().hex}


def marked_processes(env: dict, command: str = "") -> list:
    """The live processes (zombies aside) started with ``env``'s mark whose command line holds ``command``."""
    import psutil

    found, mark = [], env[PROCESS_MARK]
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE or command not in " ".join(p.info["cmdline"] or []):
            continue
        try:
            if p.environ().get(PROCESS_MARK) == mark:
                found.append(p)
        except psutil.Error:  # gone, or not ours to read
            continue
    return found


def listening_sockets(processes) -> list[dict]:
    """Every TCP socket the given processes listen on: process (its script or program), pid, address, port, and
    whether the address is the loopback (127.0.0.1, ::1, or 127.0.0.1 seen through IPv6)."""
    import ipaddress

    import psutil

    out = []
    for p in processes:
        try:
            cmd = p.cmdline()
            listening = [c for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
        words = [w for w in cmd if w.endswith((".py", "raylet", "gcs_server"))] or cmd[:1] or [p.name()]
        for c in listening:
            ip = ipaddress.ip_address(c.laddr.ip)
            ip = ip.ipv4_mapped or ip if ip.version == 6 else ip
            out.append({"process": Path(words[0]).name, "pid": p.pid, "address": c.laddr.ip, "port": c.laddr.port,
                        "loopback": ip.is_loopback})
    return out


def load_benchmark(name: str):
    """A script of experiments/benchmarks/ (not a package) as a module."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def postgres_missing() -> str | None:
    """Why an MLflow server on PostgreSQL (clusters/mlflow/local.sh) cannot run here, or None."""
    import glob
    import shutil

    if not (shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb")):
        return "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary; the test extra has it)"
    return None

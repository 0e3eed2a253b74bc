"""The MLflow tracking store as metaray reads it: where it is (URIs), and every read of past searches
(``metaray compare``, ``metaray history``, a warm start) through an explicit ``MlflowClient(uri)``.

Nothing global is set: not ``mlflow.set_tracking_uri`` (which also sets $MLFLOW_TRACKING_URI), and what a read needs
(MLflow's quick failures, its quiet loggers) only for the read's duration. Writing is ``metaray.tracking``'s job.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
#: MLflow retries an unreachable server for minutes by default; metaray fails in seconds (a variable the user set
#: is kept). MLflow reads them at each request.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
#: the parent run of a search, and the child run of one configuration
SEARCH_FILTER = "tags.`metaray.kind` = 'search'"
TRIAL_FILTER = "tags.`metaray.kind` = 'trial'"
#: the configurations ``trials`` reads at most
MAX_TRIALS = 50000
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def tracking_uri(uri: str | None = None, key: str = "tracking.uri") -> str:
    """``uri`` (what the spec or the command names: ``key``), else $MLFLOW_TRACKING_URI, else SQLite in the working
    folder; refused in one line (naming ``key`` or the variable, ``uri_key``) if MLflow has no store for its scheme."""
    return checked_uri(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI, uri_key(key, bool(uri)))


def uri_key(key: str, given: bool) -> str:
    """What a tracking URI's error names: ``key`` (the spec's, the command's option) when the URI was ``given``
    there, else $MLFLOW_TRACKING_URI when the URI came from that variable (``key`` for the default store)."""
    return key if given or not os.environ.get("MLFLOW_TRACKING_URI") else "MLFLOW_TRACKING_URI"


#: the URI schemes MLflow's client has a tracking store for (mlflow.tracking._tracking_service.utils; a database's
#: may name its driver, ``postgresql+psycopg2``); plugins add theirs (entry points ``mlflow.tracking_store``)
MLFLOW_SCHEMES = ("file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                  "uc")


def checked_uri(uri: str, key: str) -> str:
    """``uri`` if MLflow has a tracking store for its scheme (a path has none, and is a local folder), else a
    SpecError naming ``key``: refused before anything starts, not by MLflow once Ray is up.

    Example:
        >>> checked_uri("postgresql+psycopg2://me@db/mlflow", "tracking.uri")
        'postgresql+psycopg2://me@db/mlflow'
        >>> checked_uri("ftp://x", "tracking.uri")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        metaray.errors.SpecError: tracking.uri: MLflow has no tracking store for this scheme; allowed: a URI of ...
    """
    from importlib.metadata import entry_points
    from urllib.parse import urlsplit

    from metaray.errors import SpecError

    scheme = urlsplit(str(uri)).scheme.lower()
    if len(scheme) <= 1 or uri in ("databricks", "databricks-uc", "uc"):  # a path (C: is a drive), or a profile
        return uri
    if scheme.split("+")[0] in MLFLOW_SCHEMES or scheme in {e.name for e in entry_points(
            group="mlflow.tracking_store")}:
        return uri
    raise SpecError(key, "MLflow has no tracking store for this scheme",
                    allowed=f"a URI of {', '.join(MLFLOW_SCHEMES)} (a database's may name its driver: "
                            "postgresql+psycopg2://...), or a path", got=shown_uri(uri))


#: the databases MLflow opens through SQLAlchemy
DATABASES = ("postgresql", "mysql", "mssql")
#: the option that bounds the wait for a connection, by driver ("" for SQLAlchemy's default one); another driver is
#: given none (an option it does not know would fail a healthy database)
TIMEOUT_OPTION = {"postgresql": "connect_timeout", "postgresql+psycopg": "connect_timeout",
                  "postgresql+psycopg2": "connect_timeout", "postgresql+pg8000": "timeout",
                  "mysql": "connect_timeout", "mysql+mysqldb": "connect_timeout", "mysql+pymysql": "connect_timeout",
                  "mssql": "timeout", "mssql+pyodbc": "timeout"}
#: how long ``reach_database`` waits for the database to answer
CONNECT_TIMEOUT_S = 10
#: the package that installs a database driver's module (the one SQLAlchemy failed to import)
DRIVER_PACKAGE = {"psycopg": "'psycopg[binary]' (metaray's postgres extra)", "psycopg2": "psycopg2-binary",
                  "pg8000": "pg8000", "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "pyodbc": "pyodbc",
                  "pymssql": "pymssql"}


def database_url(uri: str):
    """A database's URI (PostgreSQL, MySQL, SQL Server; its driver named or not) as SQLAlchemy reads it, or None for
    any other URI. Raises SQLAlchemy's ArgumentError for one it cannot read."""
    from urllib.parse import urlsplit

    if urlsplit(str(uri)).scheme.lower().partition("+")[0] not in DATABASES:
        return None
    import sqlalchemy

    return sqlalchemy.engine.make_url(str(uri))


def store_error(key: str, problem: str, exc: BaseException, uri: str):
    """The SpecError of a tracking store that cannot be used: ``problem`` ("cannot read the MLflow tracking store")
    and the library's one-line reason, without the password ``uri`` carries, quoted or not."""
    from metaray.errors import SpecError, one_line

    return SpecError(key, f"{problem} ({scrubbed(one_line(exc), uri)[:300]})", got=shown_uri(uri))


@contextlib.contextmanager
def first_open(uri: str):
    """Within the block, this machine's other processes wait to open the same SQLite or database store: MLflow's
    tracking store creates a new store's tables and runs its schema migrations with no lock of its own, so two
    searches started at once in one folder migrated ./mlflow.db together and one failed ("duplicate column name:
    step"), and two of one spec could both create its experiment. Other URIs (a server): no lock."""
    import fcntl
    import hashlib
    import tempfile

    if uri.startswith("sqlite:///"):
        key = "sqlite:///" + os.path.abspath(uri.removeprefix("sqlite:///"))
    elif database_url(uri) is not None:
        key = uri
    else:
        yield
        return
    name = hashlib.sha256(key.encode()).hexdigest()[:20]
    try:
        lock = open(Path(tempfile.gettempdir()) / f"metaray-store-{name}.lock", "a")  # noqa: SIM115
    except OSError:  # another user's lock file, a read-only temp folder: open the store as MLflow does, unlocked
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def reach_database(uri: str) -> None:
    """For a database's URI (PostgreSQL, MySQL, SQL Server; its driver named or not): connect once, waiting at most
    ``CONNECT_TIMEOUT_S``, and raise ``ConnectionError`` with one line if the driver is missing or the database does
    not answer. MLflow itself, opening such a store, retries ten times over about 100 s, a warning with the driver's
    message each time. Any other URI: nothing to do.

    Example:
        >>> reach_database("sqlite:///mlflow.db")  # a file MLflow creates: nothing to reach
    """
    from metaray.errors import one_line

    url = database_url(uri)
    if url is None:
        return
    import sqlalchemy

    scheme = url.drivername.lower()
    dialect, _, driver = scheme.partition("+")
    option = TIMEOUT_OPTION.get(scheme)
    connect_args = {option: CONNECT_TIMEOUT_S} if option and option not in url.query else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:  # the driver SQLAlchemy loads for this scheme
        package = DRIVER_PACKAGE.get((getattr(exc, "name", None) or "").partition(".")[0])
        fix = (f"pip install {package}" if package else "install it") + (
            "" if driver else f", or name an installed driver ({dialect}+DRIVER://"
            + (", e.g. postgresql+psycopg2:// for psycopg2)" if dialect == "postgresql" else ")"))
        raise ConnectionError(f"the database driver for {scheme}:// is not installed ({one_line(exc)}): {fix}") \
            from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise ConnectionError(f"the database did not answer "
                              f"({one_line(getattr(exc, 'orig', None) or exc)[:300]})") from None
    finally:
        engine.dispose()


def scrubbed(text: str, uri: str) -> str:
    """``text`` (a library's error message) without the password ``uri`` carries, wherever it quotes it.

    Example:
        >>> scrubbed("Invalid url: http://me:" + "pw1@h:x/api", "http://me:" + "pw1@h:x")
        'Invalid url: http://me:***@h:x/api'
    """
    from urllib.parse import unquote, urlsplit

    netloc = urlsplit(str(uri)).netloc
    hidden = netloc.rpartition("@")[0].partition(":")[2] if "@" in netloc else ""  # the password
    with contextlib.suppress(Exception):  # a database's, as SQLAlchemy reads it
        hidden = getattr(database_url(uri), "password", None) or hidden
    for secret in {hidden, unquote(hidden)} - {""}:
        text = text.replace(secret, "***")
    return text


def shown_uri(uri: str) -> str:
    """A URI as it may be shown (on a terminal, in a log): without the user and password it may carry (a database's
    as SQLAlchemy reads it: a password with a ``/`` in it, or in the query, too).

    Example:
        >>> shown_uri("https://me:" + "pass" + "@mlflow.example.com:8443/x")  # (split: no secret in a file)
        'https://mlflow.example.com:8443/x'
        >>> shown_uri("postgresql+psycopg2://me@/mlflow?host=/run/db")
        'postgresql+psycopg2:///mlflow?host=%2Frun%2Fdb'
        >>> shown_uri("mysql://me:" + "a/b" + "@db:3306/mlflow?password=" + "pw")
        'mysql://db:3306/mlflow'
    """
    from urllib.parse import urlsplit

    text = str(uri)
    try:
        url = database_url(text)
    except Exception:
        return f"{urlsplit(text).scheme}://..."  # a database's that SQLAlchemy cannot read: nothing of it shown
    if url is not None:
        url = url._replace(username=None, password=None).difference_update_query(["password", "user", "username"])
        return url.render_as_string(hide_password=False)
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    return (f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}" + (f"?{parts.query}" if parts.query
            else "") + (f"#{parts.fragment}" if parts.fragment else ""))


def is_server(uri) -> bool:
    """Whether ``uri`` is a tracking server's (HTTP), not a store this process writes itself.

    Example:
        >>> is_server("https://mlflow.example.com"), is_server("sqlite:///mlflow.db")
        (True, False)
    """
    return str(uri).startswith(("http://", "https://"))


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


@contextlib.contextmanager
def reading():
    """For a read's duration only: ``QUICK_HTTP`` in the environment (those the user did not set) and MLflow's and
    Alembic's loggers at WARNING (a store's INFO lines are noise here); both restored after."""
    import mlflow  # noqa: F401  (importing it configures its loggers: ours goes over that, and back)

    added = {k: v for k, v in QUICK_HTTP.items() if k not in os.environ}
    levels = {name: logging.getLogger(name).level for name in ("mlflow", "alembic")}
    os.environ.update(added)
    for name in levels:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class Store:
    """The searches one tracking store holds, read through ``MlflowClient(uri)``.

    Raises:
        SpecError: a SQLite store that does not exist (reading does not create it).
    """

    def __init__(self, uri: str):
        from metaray.errors import SpecError

        if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
            raise SpecError("tracking.uri", "no MLflow store there (a search creates it)", got=uri)
        reach_database(uri)  # a database down is said in seconds, not after MLflow's 100 s of retries
        with reading(), first_open(uri):
            import mlflow

            self.uri, self.client = uri, mlflow.MlflowClient(uri)
            self.client.search_experiments(max_results=1)  # the store opened here, not by another meanwhile

    def _pages(self, method: Callable, *args, **kwargs):
        """Every result of a paged MLflow search."""
        token = None
        while True:
            page = method(*args, **kwargs, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def experiments(self) -> dict[str, str]:
        """Experiment id -> name, of every experiment."""
        with reading():
            return {e.experiment_id: e.name for e in self._pages(self.client.search_experiments)}

    def searches(self, *, task: str | None = None, metric: str | None = None):
        """Every metaray search the store holds (newest first): experiment, run id and name, dataset, task, metric,
        mode, best objective, trial, learner and parameters, configurations, and ``mf.<name>`` meta-feature
        columns."""
        import pandas as pd

        experiments = self.experiments()
        filters = [SEARCH_FILTER] + ([f"tags.task = '{task}'"] if task else []) + (
            [f"tags.metric = '{metric}'"] if metric else [])
        with reading():
            found = list(self._pages(self.client.search_runs, list(experiments), " and ".join(filters),
                                     order_by=["attributes.start_time DESC"])) if experiments else []
        if not found:
            return pd.DataFrame()
        out = pd.DataFrame([_search_row(r, experiments) for r in found])
        for c in out.columns:
            if c.startswith("mf."):
                out[c] = pd.to_numeric(out[c], errors="coerce")
        return out

    def best_configurations(self, run_id: str, mode: str | None, limit: int) -> list[dict]:
        """The best ``limit`` completed configurations of a past search, best first (a child run: itself), each
        ``{"id", "metric", "parent", "trial", "params", "objective"}``; ``mode`` None: read from them."""
        with reading():
            run = self.client.get_run(run_id)
            if run.data.tags.get("metaray.kind") == "trial":
                return [_configuration(run)]
            completed = f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`metaray.status` = 'completed'"
            if not mode:  # a search logged before its parent run had its direction: its configurations have it
                some = self.client.search_runs([run.info.experiment_id], completed, max_results=1)
                mode = some[0].data.tags.get("metaray.mode") if some else None
            order = "ASC" if mode == "min" else "DESC"
            runs = self.client.search_runs([run.info.experiment_id], completed, max_results=limit,
                                           order_by=[f"metrics.objective {order}", "metrics.std ASC",
                                                     "attributes.run_name ASC"])  # of equals, the steadiest first
        return [_configuration(r) for r in runs if "objective" in r.data.metrics]

    def scores(self, configuration: dict) -> tuple[float, ...]:
        """A configuration's K subset scores in its past search (its primary metric's step series)."""
        if not configuration["metric"]:
            return ()
        with reading():
            history = self.client.get_metric_history(configuration["id"], configuration["metric"])
        return tuple(float(m.value) for m in sorted(history, key=lambda m: m.step))

    def named(self, items: list[str], say: Callable[[str], None]) -> list[tuple[str, str | None, str]]:
        """(run id, mode, label) of the searches a list names: run ids (a search's parent run, or one
        configuration's child run) and experiment names (every search in it, newest first); one that is not in
        the store is said and skipped."""
        out = []
        for item in items:
            if _RUN_ID.match(item):
                try:
                    with reading():
                        run = self.client.get_run(item)
                except Exception:
                    say(f"warm start: no run {item} in the tracking store; skipped")
                    continue
                out.append((item, run.data.tags.get("metaray.mode"), f"run {item}"))
                continue
            with reading():
                exp = self.client.get_experiment_by_name(item)
                parents = [] if exp is None else self.client.search_runs(
                    [exp.experiment_id], SEARCH_FILTER, max_results=1000, order_by=["attributes.start_time DESC"])
            if exp is None:
                say(f"warm start: no MLflow experiment {item!r}; skipped")
            out += [(p.info.run_id, p.data.tags.get("metaray.mode"), f"{item}/{p.info.run_name}") for p in parents]
        return out

    def trials(self, names: list[str] = ()):
        """The configurations (child runs) of the named experiments, every experiment's when none is named: one
        row each with its experiment, search (parent run name), tags, metrics and ``params.<name>`` columns.

        Raises:
            SpecError: a named experiment is not in the store (the message lists those that are).
        """
        import pandas as pd

        from metaray.errors import SpecError

        experiments = self.experiments()
        by_name = {name: i for i, name in experiments.items()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SpecError("experiment", "no such MLflow experiment", allowed=sorted(by_name), got=missing[0])
        ids = [by_name[n] for n in names] if names else list(experiments)
        if not ids:
            return pd.DataFrame()
        with reading():
            runs = list(itertools.islice(self._pages(self.client.search_runs, ids, TRIAL_FILTER), MAX_TRIALS))
            wanted = {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}
            # the searches' names in one paged query, not one call per search; a parent without metaray's tag by id
            parents = {run.info.run_id: run.info.run_name for run in self._pages(self.client.search_runs, ids,
                                                                                 SEARCH_FILTER)
                       if run.info.run_id in wanted}
            parents.update({p: self.client.get_run(p).info.run_name for p in wanted - set(parents)})
        return pd.DataFrame([_trial_row(r, experiments, parents) for r in runs])


def past_searches(uri: str, *, task: str | None = None, metric: str | None = None):
    """Every metaray search the store at ``uri`` holds, newest first (``Store.searches``): ``metaray.history``."""
    return Store(uri).searches(task=task, metric=metric)


def _search_row(run, experiments: dict[str, str]) -> dict[str, Any]:
    tags, metrics = run.data.tags, run.data.metrics
    row = {"experiment": experiments.get(run.info.experiment_id), "run_id": run.info.run_id,
           "search": run.info.run_name, "status": run.info.status, "dataset": tags.get("dataset"),
           "task": tags.get("task"), "metric": tags.get("metric"), "mode": tags.get("metaray.mode"),
           "best_objective": metrics.get("best_objective"), "best_trial": tags.get("best_trial"),
           "best_learner": tags.get("best_learner"), "best_params": tags.get("best_params"),
           "configurations": metrics.get("configurations"), "run_dir": tags.get("metaray.run_dir")}
    for k, v in run.data.params.items():
        if k.startswith("metafeature."):
            row["mf." + k.removeprefix("metafeature.")] = v
    return row


def _trial_row(run, experiments: dict[str, str], parents: dict[str, str]) -> dict[str, Any]:
    tags, metrics = run.data.tags, run.data.metrics
    row = {"experiment": experiments.get(run.info.experiment_id), "search": parents.get(tags.get("mlflow.parentRunId")),
           "trial": tags.get("metaray.trial"), "learner": tags.get("learner"), "status": tags.get("metaray.status"),
           "objective": metrics.get("objective", float("nan")), "std": metrics.get("std", float("nan")),
           "worst": metrics.get("worst", float("nan")), "mode": tags.get("metaray.mode"),
           "metric": tags.get("metaray.metric")}
    row.update({f"params.{k}": v for k, v in run.data.params.items() if k != "learner"})
    return row


def _configuration(run) -> dict:
    """A past configuration (a child run) as warm start uses it; its parameters as values, not MLflow's text."""
    return {"id": run.info.run_id, "metric": run.data.tags.get("metaray.metric"),
            "parent": run.data.tags.get("mlflow.parentRunId", ""), "trial": run.data.tags.get("metaray.trial", ""),
            "params": {k: _value(v) for k, v in run.data.params.items()}, "objective": run.data.metrics["objective"]}


def _value(text: str):
    """A parameter as MLflow stored it (text) back to a value: numbers, None, booleans, lists, or the text."""
    import yaml

    if text in ("None", "null"):
        return None
    for number in (int, float):  # YAML reads 1e-05 as text
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list, str)) or value is None else text

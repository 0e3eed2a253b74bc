"""Tracking to a real `mlflow server` over HTTP (SQLite behind it, 127.0.0.1 only), and to one that is down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from metaray.cli import main
from metaray.run import search as run_search
from tests.conftest import ROOT, free_port
from tests.helpers import postgres_missing

pytestmark = pytest.mark.slow

SPEC = {"name": "remote", "seed": 1, "data": {"dataset": "wine", "scale": True},
        "learner": {"name": "logistic_regression"}, "subsets": {"k": 3},
        "search": {"num_samples": 12, "space": {"C": {"loguniform": [0.01, 10.0]}}}}


def _wait_healthy(url: str, proc, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """An MLflow server on PostgreSQL as users start it (clusters/mlflow/local.sh), for the module; its stop leaves
    nothing running (checked at the end)."""
    if why := postgres_missing():
        pytest.skip(why)
    folder, port = tmp_path_factory.mktemp("mlflow-postgres"), free_port()
    script, env = str(ROOT / "clusters" / "mlflow" / "local.sh"), {**os.environ, "PYTHON": sys.executable}
    started = subprocess.run([script, "start", str(folder), "--port", str(port), "--workers", "2"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    url = f"http://127.0.0.1:{port}"
    assert url in started.stdout
    yield {"url": url, "log": folder / "server.log", "backend": "postgresql", "folder": folder, "script": script,
           "env": env}
    state = json.loads((folder / "server.json").read_text())  # (a restart wrote its own)
    stopped = subprocess.run([script, "stop", str(folder)], capture_output=True, text=True, env=env, timeout=120)
    assert stopped.returncode == 0 and "stopped 2 process groups" in stopped.stdout, stopped.stdout + stopped.stderr
    with pytest.raises(ProcessLookupError):  # nothing of that server is left: its process group is gone
        os.killpg(state["pid"], 0)
    assert not Path(state["db"]).exists()  # nor PostgreSQL's folder (its processes ended with pg_ctl stop)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mlflow_server(request, tmp_path_factory, new_store):
    """A real ``mlflow server`` on 127.0.0.1: SQLite behind it, or PostgreSQL (clusters/mlflow/local.sh, as users
    start it)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_server")
        return
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", new_store(folder),
                             "--artifacts-destination", str(folder / "artifacts"), "--workers", "2"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, proc, folder / "server.log")
    yield {"url": url, "log": folder / "server.log", "backend": "sqlite"}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def test_every_run_and_metric_arrives_over_http(mlflow_server, ray_session, tmp_path, write_yaml, monkeypatch, capfd):
    """`metaray run` to the server (the command's entry point on the suite's Ray; test_cli runs the whole command
    cold): every child run, metric and step arrives; the end names the server to browse, and MLflow's own links (two
    per child run) stay off the user's screen, the tracking process's output included."""
    import pandas as pd
    from mlflow import MlflowClient

    path = write_yaml({**SPEC, "storage": str(tmp_path / "runs"),
                       "search": {**SPEC["search"], "max_concurrent": 12}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["url"])
    capfd.readouterr()
    code = main(["run", str(path)])
    out, err = capfd.readouterr()  # at the descriptors: the tracking process's output too
    assert code == 0, err[-3000:]
    assert "View run" not in err + out and "View experiment" not in err + out, err[-3000:]
    run_dir = next((tmp_path / "runs").glob("*/*"))
    results, best = pd.read_csv(run_dir / "results.csv"), json.loads((run_dir / "best.json").read_text())
    parent_id = json.loads((run_dir / "state.json").read_text())["parent_run_id"]
    assert f"mlflow: run {parent_id} (browse it at {mlflow_server['url']})" in out
    assert (results["status"] == "completed").all()

    client = MlflowClient(mlflow_server["url"])
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_objective"] == pytest.approx(best["objective"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=100)
    assert len(children) == len(results) == 12
    by_trial = {c.data.tags["metaray.trial"]: c for c in children}
    for row in results.itertuples():
        child = by_trial[row.trial]
        assert child.info.status == "FINISHED"
        assert child.data.metrics["objective"] == pytest.approx(row.objective)
        steps = client.get_metric_history(child.info.run_id, child.data.tags["metaray.metric"])
        assert sorted(m.step for m in steps) == [0, 1, 2]
    assert "database is locked" not in mlflow_server["log"].read_text()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "results.csv" in artifacts


def test_an_unreachable_server_fails_fast_before_any_fit(ray_session, tmp_path, capsys, write_yaml):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    path = write_yaml({**SPEC, "storage": str(tmp_path / "runs"), "tracking": {"uri": url}})
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("metaray: error: tracking.uri: cannot reach the MLflow tracking")
    journals = list((tmp_path / "runs").glob("*/*/fits.jsonl"))
    assert all(j.read_text() == "" for j in journals)  # no fit ran


@pytest.mark.parametrize("uri, env, said", [
    ("mysql+nosuchdriver://me@127.0.0.1:1/mlflow", None, "tracking.uri: cannot reach the MLflow tracking store"),
    (None, "mysql+nosuchdriver://me@127.0.0.1:1/mlflow", "MLFLOW_TRACKING_URI: cannot reach the MLflow tracking"),
    (None, "gopher://127.0.0.1/mlflow", "MLFLOW_TRACKING_URI: MLflow has no tracking store for this scheme"),
    ("postgresql://{credentials}@127.0.0.1:{port}/mlflow", None,
     "tracking.uri: cannot reach the MLflow tracking store (ConnectionError: the database did not answer"),
], ids=["a store that cannot be opened", "one from the environment", "a scheme from the environment",
        "a database that does not answer"])
def test_a_store_mlflow_cannot_open_is_refused_in_one_line(uri, env, said, ray_session, tmp_path, capsys, write_yaml,
                                                          monkeypatch):
    """A database whose driver is missing or that does not answer (said at once: MLflow retries opening it for
    about 100 s, a warning each time), or $MLFLOW_TRACKING_URI of a scheme MLflow has no store for: one line naming
    the key, without the password the URI carries, exit 2, no fit (the spec's own ``tracking.uri`` is checked with
    the spec: test_cli's BAD)."""
    secret = "not-" + "a-secret"  # (split: no secret in a file)
    uri = uri and uri.format(port=free_port(), credentials=f"me:{secret}")
    if env:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    path = write_yaml({**SPEC, "storage": str(tmp_path / "runs"), **({"tracking": {"uri": uri}} if uri else {})})
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and secret not in err
    assert err.strip().splitlines()[-1].startswith(f"metaray: error: {said}"), err
    assert all(j.read_text() == "" for j in (tmp_path / "runs").glob("*/*/fits.jsonl"))  # no fit ran


@pytest.mark.parametrize("command, uri, said", [
    ("compare", "http://127.0.0.1:{port}", "cannot read the MLflow tracking store (MlflowException: API request"),
    ("history", "mysql+nosuchdriver://me@127.0.0.1:1/mlflow", "cannot read the MLflow tracking store (NoSuchModule"),
    ("history", "ftp://mlflow.example.com", "MLflow has no tracking store for this scheme"),
    ("history", "mssql://me@127.0.0.1:1/mlflow",
     "cannot read the MLflow tracking store (ConnectionError: the database driver for mssql:// is not installed "
     "(ModuleNotFoundError: No module named 'pyodbc'): pip install pyodbc, or name an installed driver"),
    ("compare", "postgresql://{credentials}@127.0.0.1:{port}/mlflow",
     "cannot read the MLflow tracking store (ConnectionError: the database did not answer"),
    ("history", "http://{credentials}@127.0.0.1:nan/mlflow", "cannot read the MLflow tracking store (InvalidUrl"),
], ids=["compare, a server that does not answer", "history, a driver missing", "history, an unknown scheme",
        "history, the default driver missing", "compare, a database that does not answer",
        "history, a URL MLflow quotes with its password"])
def test_compare_and_history_refuse_a_store_they_cannot_read_in_one_line(command, uri, said, capsys):
    """One line naming --uri, exit 2; a database that does not answer is said at once (MLflow retries opening it
    for about 100 s), and a password the URI carries is not shown."""
    secret = "not-" + "a-secret"  # (split: no secret in a file)
    assert main([command, "--uri", uri.format(port=free_port(), credentials=f"me:{secret}")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and secret not in err and "retried" not in err
    assert err.strip().splitlines()[-1].startswith(f"metaray: error: --uri: {said}"), err


def test_a_warm_start_and_history_over_http(mlflow_server, ray_session, tmp_path, monkeypatch, capsys):
    """The store behind a real server: a search's meta-features arrive, `history` lists it, and a search on another
    dataset warm-starts from it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["url"])
    first = run_search({**SPEC, "name": "remote_first"}, run_dir=tmp_path / "first")
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert "remote_first" in out and "mf.landmark_1nn" in out
    warm = run_search({**SPEC, "name": "remote_warm", "data": {"dataset": "breast_cancer", "scale": True},
                       "search": {**SPEC["search"], "num_samples": 4, "warm_start": {"source": "auto", "configs": 2}}},
                      run_dir=tmp_path / "warm", track=False)
    from metaray.warmstart import past_searches

    origins = warm.results.sort_values("trial")["origin"].tolist()
    wine = set(past_searches(mlflow_server["url"]).query("dataset == 'wine'")["run_id"])
    assert first.mlflow_run_id in wine and origins[2:] == ["search", "search"]
    assert all(o.startswith("warm ") and o.removeprefix("warm ").split("/")[0] in wine for o in origins[:2])



@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_postgresql_as_the_store_itself_with_either_driver(scheme, postgres_server, ray_session, tmp_path,
                                                           monkeypatch, capsys):
    """The database behind the server, as a tracking URI of its own (no server): ``postgresql://`` (SQLAlchemy's
    default driver, psycopg 3, in the postgres extra) and ``postgresql+psycopg2://``; a search logs into it and
    `history` lists it."""
    db = json.loads((postgres_server["folder"] / "server.json").read_text())["db"]  # its Unix socket's folder
    uri = f"{scheme}://postgres@/mlflow?host={db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    name = f"direct_{scheme.replace('+', '_')}"
    result = run_search({**SPEC, "name": name, "search": {**SPEC["search"], "num_samples": 3}},
                        run_dir=tmp_path / "run")
    assert result.mlflow_run_id and (result.results["status"] == "completed").all()
    capsys.readouterr()
    assert main(["history", "--uri", uri]) == 0
    assert name in capsys.readouterr().out


def test_a_tracking_server_killed_mid_search_and_restarted_loses_nothing(postgres_server, ray_session, tmp_path,
                                                                       monkeypatch):
    """The MLflow server (on PostgreSQL) is killed while a search logs to it and started again: the search goes on,
    the child runs it could not log meanwhile are tried again, and every run, step and value arrives."""
    import threading

    from mlflow import MlflowClient
    from ray import cloudpickle

    import tests.helpers

    url, server = postgres_server["url"], postgres_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    cloudpickle.register_pickle_by_value(tests.helpers)  # Ray's workers cannot import tests.helpers by name
    try:
        spec = {"name": "killed", "seed": 1, "data": {"dataset": "wine"}, "subsets": {"k": 3},
                "learner": {"name": "tests.helpers.HangingClassifier"},
                "search": {"num_samples": 30, "max_concurrent": 30, "space": {"hang_s": {"uniform": [0.2, 0.3]}}}}
        done: dict = {}
        search = threading.Thread(target=lambda: done.setdefault("result", run_search(spec, run_dir=tmp_path / "run")))
        search.start()
        client = MlflowClient(url)
        deadline = time.monotonic() + 120
        while not (experiment := client.get_experiment_by_name("killed")) or not client.search_runs(
                [experiment.experiment_id], "tags.`metaray.trial` != ''"):
            assert time.monotonic() < deadline and search.is_alive()
            time.sleep(0.2)
        assert search.is_alive()  # killed mid-search, with child runs still to log
        restarted = subprocess.run([server["script"], "restart", str(server["folder"]), "--kill"], capture_output=True,
                                   text=True, env=server["env"], timeout=300)  # down while a server starts
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        search.join(timeout=300)
        assert not search.is_alive(), "the search did not end within 5 minutes of the restart"
    finally:
        cloudpickle.unregister_pickle_by_value(tests.helpers)
    result = done["result"]
    assert (result.results["status"] == "completed").all() and len(result.results) == 30
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED" and "metaray.children_lost" not in parent.data.tags
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=100)
    assert sorted(c.data.tags["metaray.trial"] for c in children) == sorted(result.results["trial"])
    for child in children:
        assert child.info.status == "FINISHED" and "objective" in child.data.metrics
        steps = client.get_metric_history(child.info.run_id, child.data.tags["metaray.metric"])
        assert sorted(m.step for m in steps) == [0, 1, 2]

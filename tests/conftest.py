"""One real local Ray for the whole session (starting Ray costs 5-7 s here), shared by every test, on 127.0.0.1 like
every Ray metaray starts; and a check at the end that the suite left no Ray (or MLflow, or browser) process behind."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest

from metaray.cluster import ray_environment

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
ray_environment(None)  # before any test imports Ray

#: processes the suite starts: Ray's (by program, script or the title Ray gives them), the local.sh keeper, MLflow
#: servers, headless browsers
SUITE_PROCESSES = re.compile(r"gcs_server|/raylet|^ray::|dashboard/|monitor\.py|runtime_env/agent|"
                             r"ray\.util\.client\.server|default_worker\.py|ray_process_reaper|clusters/local\.py|"
                             r"mlflow[. ]server|chromium")
LEFTOVER_GRACE_S = 20


#: every process the suite starts inherits this (Ray's, the cluster keeper's, servers', browsers'): how the check
#: at the end tells them from processes another program (or another test run) started meanwhile
SESSION_MARK = "METARAY_TEST_SESSION"
os.environ[SESSION_MARK] = uuid.uuid4().hex


def suite_processes() -> dict[int, str]:
    import psutil

    found, mark = {}, os.environ[SESSION_MARK]
    for p in psutil.process_iter(["cmdline", "name", "status"]):
        command = " ".join(p.info["cmdline"] or []) or (p.info["name"] or "")
        if p.info["status"] == psutil.STATUS_ZOMBIE or not SUITE_PROCESSES.search(command):
            continue
        try:
            if p.environ().get(SESSION_MARK) == mark:
                found[p.pid] = command[:160]
        except psutil.Error:
            continue
    return found


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process the suite started outlives it (after a grace period for Ray's own shutdown), and
    end those processes so that the next run starts clean."""
    import psutil

    if "metaray.tracking" in sys.modules:  # the suite's own tracking process, shared by its in-process searches
        sys.modules["metaray.tracking"].shutdown()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        left = suite_processes()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.ensure_newline()
        reporter.write_line(f"FAILED: {len(left)} processes started by the test suite are still running:", red=True)
        for pid, command in left.items():
            reporter.write_line(f"  {pid} {command}")
    for pid in left:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED



@pytest.fixture(scope="session")
def ray_session():
    import ray

    from metaray.cluster import connect

    info = connect(num_cpus=2)
    yield info
    ray.shutdown()


@pytest.fixture(scope="session")
def new_store(tmp_path_factory):
    """``new_store(folder)``: a fresh MLflow SQLite store, ``folder/mlflow.db``, and its URI. MLflow builds a new store
    through its whole migration history (~1.5 s of CPU); this copies one built once."""
    from mlflow import MlflowClient

    empty = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{empty}").search_experiments()

    def make(folder: Path) -> str:
        shutil.copyfile(empty, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory, new_store):
    """One MLflow SQLite store for a whole test module."""
    return new_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def shared_store(mlflow_uri, monkeypatch):
    """Point this test's searches at the module's store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return mlflow_uri


@pytest.fixture
def write_yaml(tmp_path):
    """Write a spec dict to a YAML file and return its path."""
    import yaml

    def write(spec: dict, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec))
        return path

    return write


@pytest.fixture(autouse=True)
def _quiet_mlflow(tmp_path, monkeypatch, new_store):
    # tests never write the user's ./mlflow.db; each gets a fresh store of its own, tmp_path/mlflow.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(tmp_path))
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""One real local Ray for the whole session (starting Ray costs 5-7 s here), shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from metaray.cluster import connect

    info = connect(num_cpus=2)
    yield info
    ray.shutdown()


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """One MLflow SQLite store for a whole test module: creating a store costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


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
def _quiet_mlflow(tmp_path, monkeypatch):
    # tests never write the user's ./mlflow.db
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

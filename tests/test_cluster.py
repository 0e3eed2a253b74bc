"""A real multi-node Ray cluster on this machine (clusters/local.sh: a head and two worker nodes, separate raylets):
the same experiment gives the same table as on one node, survives a worker node killed mid-search, and the
cluster's dashboard refuses job API requests without the token."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from metaray.search import run_search
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

SPEC = {"name": "cluster", "seed": 3, "data": {"dataset": "digits"}, "learner": {"name": "random_forest"},
        "subsets": {"k": 4, "fraction": 0.5}, "objective": {"metric": "accuracy"},
        "search": {"num_samples": 12, "space": {"n_estimators": {"choice": [20, 40]},
                                                "max_depth": {"choice": [4, 8, None]},
                                                "max_features": {"choice": ["sqrt", 0.3]}}},
        "ray": {"fits_per_task": 1}}
COMPARED = ["trial", "status", "objective", "std", *[f"score_{k}" for k in range(4)]]


@pytest.fixture(scope="module")
def cluster():
    port = free_port() // 10 * 10  # room for the ports local.sh derives from it
    env = {**os.environ, "METARAY_RAY_PORT": str(port), "METARAY_DASHBOARD_PORT": str(free_port()),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    script = ROOT / "clusters" / "local.sh"
    start = subprocess.run([str(script), "start", "2"], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert start.returncode == 0, start.stderr
        dashboard = next(line.split()[-1] for line in start.stdout.splitlines() if line.startswith("dashboard:"))
        yield {"address": f"127.0.0.1:{port}", "env": env, "dashboard": dashboard, "script": script}
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    """The same search on the session's single-node Ray."""
    return run_search(SPEC, run_dir=tmp_path_factory.mktemp("one-node") / "run", track=False).table


def _run_on(cluster, tmp_path, *, kill_after: int | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "storage": str(tmp_path / "runs")}, sort_keys=False))  # the same space order
    env = {**cluster["env"], "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "metaray", "run", str(path), "--address", cluster["address"]],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    err = []
    for line in proc.stderr:
        err.append(line)
        if kill_after is not None and line.startswith(f"[{kill_after:>3}/"):
            _kill_worker_node(cluster, "metaray_w1")
            kill_after = None
    out = proc.stdout.read()
    proc.wait(timeout=300)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(err))
    return done, next((tmp_path / "runs").glob("*/*"), tmp_path)


def _kill_worker_node(cluster, resource: str) -> None:
    """SIGKILL the raylet of one worker node (its workers die with it), as a machine failure would."""
    pids = subprocess.run(["pgrep", "-f", f"raylet.*{resource}"], capture_output=True, text=True).stdout.split()
    assert pids, f"no raylet with {resource}"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)


def test_three_nodes_give_the_table_of_one(cluster, reference, tmp_path):
    done, run_dir = _run_on(cluster, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(run_dir / "results.csv")
    pd.testing.assert_frame_equal(table[COMPARED], reference[COMPARED], check_dtype=False)
    nodes = {json.loads(line)["node"] for line in (run_dir / "fits.jsonl").read_text().splitlines()}
    assert len(nodes) >= 3, nodes  # the fits were spread over every node


def test_dashboard_job_api_refuses_requests_without_the_token(cluster):
    url = f"{cluster['dashboard']}/api/jobs/"
    assert url.startswith("http://127.0.0.1:")
    for headers, code in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert err.value.code == code
    token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                timeout=10) as ok:
        assert ok.status == 200


def test_a_worker_node_killed_mid_search_loses_nothing(cluster, reference, tmp_path):
    done, run_dir = _run_on(cluster, tmp_path, kill_after=2)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(run_dir / "results.csv")
    assert (table["status"] == "completed").all() and len(table) == len(reference)
    pd.testing.assert_frame_equal(table[COMPARED], reference[COMPARED], check_dtype=False)
    assert table.iloc[0]["trial"] == reference.iloc[0]["trial"]  # the same best configuration


def test_without_an_address_metaray_starts_its_own_ray_beside_the_cluster(cluster):
    code = ("import ray\nfrom metaray.cluster import connect\n"
            "print('ADDRESS', connect(num_cpus=1)['address'])\nray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], env=cluster["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    address = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("ADDRESS"))
    assert address != cluster["address"]

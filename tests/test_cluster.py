"""A real multi-node Ray cluster on this machine (clusters/local.sh: a head and two worker nodes, separate raylets):
the same experiment gives the same table as on one node, survives a worker node killed mid-search, and the
cluster's dashboard refuses job API requests without the token."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from metaray.run import search as run_search
from tests.conftest import ROOT, SESSION_MARK, free_port
from tests.helpers import PROCESS_MARK, marked_env, marked_processes

pytestmark = pytest.mark.slow

SPEC = {"name": "cluster", "seed": 3, "data": {"dataset": "digits"}, "learner": {"name": "random_forest"},
        "subsets": {"k": 4, "fraction": 0.5}, "objective": {"metric": "accuracy"},
        "search": {"num_samples": 12, "space": {"n_estimators": {"choice": [20, 40]},
                                                "max_depth": {"choice": [4, 8, None]},
                                                "max_features": {"choice": ["sqrt", 0.3]}}},
        "ray": {"fits_per_task": 1}}
COMPARED = ["trial", "status", "objective", "std", *[f"score_{k}" for k in range(4)]]


def local_sh(*args, env, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "clusters" / "local.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def cluster_env(home: Path, **extra) -> dict:
    """The environment a test cluster and its clients run in: a home folder of their own (its token and state, not
    the developer's), no RAY_ADDRESS, and a mark of its own (tests.helpers.PROCESS_MARK) that every process of the
    cluster inherits."""
    env = marked_env({**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                      "HOME": str(home), **extra})
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    return env


def state_of(env: dict) -> dict:
    path = Path(env["HOME"]) / ".ray" / f"metaray-local-{env['METARAY_RAY_PORT']}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cluster_processes(env: dict, state: dict | None = None) -> list:
    """The processes of the local.sh cluster of this environment, found the way `stop` finds them (its keeper's
    tree and its session folder), plus any process of this cluster (by the environment's mark) still listening on
    its GCS port: another program's process is never counted."""
    import psutil

    local, port = _local_module(), int(env["METARAY_RAY_PORT"])
    state = state if state is not None else state_of(env)
    found = {p.pid: p for p in local.processes(state)}
    for p in marked_processes(env):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in p.net_connections("inet")):
                found[p.pid] = p
        except psutil.Error:
            continue
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _local_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "clusters" / "local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    port = free_port()
    env = cluster_env(tmp_path_factory.mktemp("home"), METARAY_RAY_PORT=str(port),
                      METARAY_DASHBOARD_PORT=str(free_port()),
                      RAY_metrics_report_interval_ms="1000")  # Ray's metrics every second, not 10 (transfer.py)
    start = local_sh("start", "2", env=env)
    try:
        assert start.returncode == 0, start.stderr
        dashboard = next(line.split()[1] for line in start.stdout.splitlines() if line.startswith("dashboard:"))
        yield {"address": f"127.0.0.1:{port}", "port": port, "env": env, "dashboard": dashboard,
               "state": state_of(env), "start": start.stdout}
    finally:
        local_sh("stop", env=env, timeout=120)


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    """The same search on the session's single-node Ray."""
    return run_search(SPEC, run_dir=tmp_path_factory.mktemp("one-node") / "run", track=False).results


def _run_on(cluster, tmp_path, *, kill_after: int | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path / "spec.yaml"
    # sort_keys=False: the same space order
    path.write_text(yaml.safe_dump({**SPEC, "storage": str(tmp_path / "runs")}, sort_keys=False))
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
    assert kill_after is None, "the search ended before the worker node was to be killed"
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(err))
    return done, next((tmp_path / "runs").glob("*/*"), tmp_path)


def _kill_worker_node(cluster, resource: str) -> None:
    """SIGKILL the raylet of one worker node of this test's cluster (its workers die with it), as a machine failure
    would."""
    raylets = [p for p in marked_processes(cluster["env"], "raylet") if resource in " ".join(p.cmdline())]
    assert len(raylets) == 1, f"{len(raylets)} raylets with {resource}"
    for p in raylets:
        os.kill(p.pid, signal.SIGKILL)


def test_every_listening_socket_of_the_cluster_is_on_loopback(cluster):
    from tests.helpers import listening_sockets

    local = _local_module()
    sockets = listening_sockets(local.processes(cluster["state"]))
    assert {"gcs_server", "raylet", "dashboard.py"} <= {s["process"] for s in sockets}, sockets
    assert sum(s["process"] == "raylet" for s in sockets) >= 6  # three nodes, two servers each
    assert not [s for s in sockets if not s["loopback"]], sockets


def test_three_nodes_give_the_table_of_one(cluster, reference, tmp_path):
    done, run_dir = _run_on(cluster, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(run_dir / "results.csv")
    pd.testing.assert_frame_equal(table[COMPARED], reference[COMPARED], check_dtype=False)
    nodes = {json.loads(line)["node"] for line in (run_dir / "fits.jsonl").read_text().splitlines()}
    assert len(nodes) >= 3, nodes  # the fits were spread over every node


def test_each_node_receives_the_data_once_however_many_fits_it_runs(cluster, tmp_path):
    """experiments/benchmarks/transfer.py on the cluster, as its docstring runs it: the objects a search makes (the
    table and each subset's encoded rows) do not multiply with its tasks, as they would if each task were shipped its
    data, and what the nodes received is what they sent (Ray's object manager metrics, read from each node). (A
    bound on each node's bytes is not asserted: under CI's load one node once received more than 1.25x the data.)"""
    env = {**cluster["env"], "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "benchmarks" / "transfer.py"), "--address",
                           cluster["address"], "--rows", "30000", "--configurations", "4,16", "--report-s", "1",
                           "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first, last = json.loads(done.stdout.splitlines()[-1])["searches"]
    assert last["fits"] == 4 * first["fits"] and last["completed"] == 16
    received, sent = ([sum(r[key] for r in s["nodes"]) for s in (first, last)] for key in ("received_mb", "sent_mb"))
    for search in (first, last):  # the objects do not multiply with the tasks (passed by value, each task's would)
        assert search["data_objects"] <= 4 + 4, search  # the table, a few of its parts, K = 4 subsets' encodings
    assert received[1] > 0 and sum(r["tasks"] for r in last["nodes"]) >= 16
    assert received == pytest.approx(sent, rel=0.05, abs=0.5)
    assert {r["node"] for r in last["nodes"]} == {"head", "w1", "w2"} and all(r["tasks"] for r in last["nodes"])


def test_dashboard_job_api_refuses_requests_without_the_token(cluster):
    url = f"{cluster['dashboard']}/api/jobs/"
    assert url.startswith("http://127.0.0.1:")
    for headers, code in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert err.value.code == code
    token = (Path(cluster["env"]["HOME"]) / ".ray" / "auth_token").read_text().strip()
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


def test_start_prints_the_lines_to_run_a_search(cluster):
    lines = cluster["start"].splitlines()
    assert f"run:         metaray run EXPERIMENT.yaml --address {cluster['address']}" in lines
    assert "             export RAY_AUTH_MODE=token RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in lines


def test_the_readme_cluster_commands_work_verbatim_in_a_clean_environment(tmp_path):
    """docs/cluster.md's first block, line by line, in a new folder, with no RAY_* or MLflow variables."""
    import re
    import shutil

    readme = (ROOT / "docs" / "cluster.md").read_text()
    block = readme[readme.index("```bash", readme.index("# From laptop to cluster")):]
    block = block[len("```bash"): block.index("\n\n")]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[0].startswith("clusters/local.sh start") and commands[-1] == "clusters/local.sh stop"
    assert any(command.startswith("metaray run") for command in commands)  # a search on the cluster, checked below
    for folder in ("clusters", "experiments"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    home = tmp_path / "home"  # a new user: no token yet
    env = marked_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin", "HOME": str(home),
                      "LANG": "C.UTF-8", SESSION_MARK: os.environ[SESSION_MARK]})  # the marks: see conftest, helpers
    where = {"HOME": str(home), "METARAY_RAY_PORT": re.search(r"--address 127\.0\.0\.1:(\d+)", block).group(1),
             PROCESS_MARK: env[PROCESS_MARK]}
    state = {}
    try:
        for command in commands:
            done = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, (command, done.stderr[-3000:])
            assert "InvalidAuthToken" not in done.stderr and "RAY_AUTH_MODE=disabled" not in done.stderr, command
            if command.startswith("clusters/local.sh start"):
                state = state_of(where)
                assert stat.S_IMODE((home / ".ray" / "auth_token").stat().st_mode) == 0o600
            if command.startswith("metaray run"):
                assert "best configuration" in done.stdout
        assert state and cluster_processes(where, state) == []
    finally:
        subprocess.run(["bash", "-c", "clusters/local.sh stop"], env=env, cwd=tmp_path, capture_output=True)


@pytest.mark.parametrize("variables, said", [
    ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/auth_token"}, "the cluster requires a token and none was found"),
    ({"RAY_AUTH_TOKEN": "not-the-token"}, "the cluster refused the token from $RAY_AUTH_TOKEN"),
], ids=["no token", "wrong token"])
def test_a_cluster_that_refuses_us_is_one_line_and_exit_2_without_retrying(cluster, variables, said, tmp_path):
    env = {k: v for k, v in cluster["env"].items() if not k.startswith("RAY_AUTH")} | variables
    done = subprocess.run([sys.executable, "-m", "metaray", "evaluate", str(ROOT / "experiments" /
                           "meta_classification_iris.yaml"), "--address", cluster["address"]], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # Ray's own retries would take minutes
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("evaluating ")]
    assert len(lines) == 1 and lines[0].startswith(f"metaray: error: ray.address: {said}"), done.stderr


def test_stop_ends_every_process_of_the_cluster_and_says_how_many(cluster):
    """The module's cluster, stopped by the last of its tests (its fixture then finds no cluster to stop)."""
    env, port = cluster["env"], cluster["port"]
    before = cluster_processes(env, cluster["state"])
    assert len(before) >= 10, before  # keeper, GCS, three raylets with their agents, dashboard, monitors, workers
    stopped = local_sh("stop", env=env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    count = int(stopped.stdout.split(": ")[1].split()[0])
    assert stopped.stdout.startswith(f"stopped the cluster at 127.0.0.1:{port}: ") and count >= len(before)
    assert cluster_processes(env, cluster["state"]) == []
    assert all(not p.is_running() or p.status() == "zombie" for p in before)
    assert local_sh("stop", env=env).stdout.startswith("no cluster at")

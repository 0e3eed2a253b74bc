"""The Ray that `metaray run --dashboard` starts, from a clean environment (no RAY_* variables, a new home folder):
every listening socket of its processes is on 127.0.0.1, the token file it creates is readable by its owner only,
Ray's "opt out" warning is not shown, the dashboard refuses requests and pages without the token, and the tasks carry
names a person can read."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from tests import browser
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# runs `metaray run --dashboard` in this process (main(), not the console script, so that Ray stays up after the
# search), then reports what it sees and waits for the test to close its stdin
PROBE = r"""
import json, sys
from metaray.cli import main
code = main(["run", sys.argv[1], "--dashboard"])
import psutil, ray
from ray.util.state import list_tasks
from metaray.cluster import connect
from tests.helpers import listening_sockets
dashboard = connect()["dashboard_url"]
names = sorted({t.name for t in list_tasks(address=dashboard, limit=1000, raise_on_missing_output=False)})
print(json.dumps({"code": code, "dashboard": dashboard, "tasks": names,
                  "sockets": listening_sockets(psutil.Process().children(recursive=True))}), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="module")
def own_ray(tmp_path_factory, new_store):
    home = tmp_path_factory.mktemp("home")
    spec = home / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "secure", "data": {"dataset": "iris"}, "subsets": {"k": 3},
                                    "search": {"num_samples": 2, "space": {"C": {"loguniform": [0.1, 10.0]}}},
                                    "storage": str(home / "runs")}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), MLFLOW_TRACKING_URI=new_store(home), PYTHONPATH=str(ROOT))
    with open(home / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", PROBE, str(spec)], env=env, cwd=home, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    line = "-"
    while line and not line.startswith("{"):  # the search's own table comes first
        line = proc.stdout.readline()
    try:
        assert line, (home / "stderr.txt").read_text()[-3000:]
        yield {"report": json.loads(line), "home": home, "proc": proc,
               "token": (home / ".ray" / "auth_token").read_text().strip()}
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)


def test_the_search_ran_and_every_listening_socket_is_on_loopback(own_ray):
    report = own_ray["report"]
    assert report["code"] == 0 and report["dashboard"].startswith("http://127.0.0.1:")
    sockets = report["sockets"]
    assert {"gcs_server", "raylet", "dashboard.py"} <= {s["process"] for s in sockets}, sockets
    exposed = [s for s in sockets if not s["loopback"]]
    assert not exposed, exposed


def test_the_token_file_it_creates_is_readable_by_its_owner_only(own_ray):
    token = own_ray["home"] / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) == 64


def test_tasks_carry_the_search_the_configuration_and_the_subsets(own_ray):
    names = own_ray["report"]["tasks"]
    assert any(n.startswith("secure t0000 s") for n in names), names
    assert any(n.startswith("secure t0001 s") for n in names), names
    assert "secure t0000 refit" in names or "secure t0001 refit" in names, names


def test_the_dashboard_api_refuses_requests_without_the_token(own_ray):
    url = f"{own_ray['report']['dashboard']}/api/jobs/"
    token = own_ray["token"]
    for headers, code in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
        assert err.value.code == code
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                timeout=10) as ok:
        assert ok.status == 200


@pytest.mark.skipif(browser.CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                                                      ".ci/run installs it)")
def test_the_dashboard_jobs_page_loads_with_the_token_and_refuses_without_it(own_ray, tmp_path):
    url = f"{own_ray['report']['dashboard']}/#/jobs"
    token = own_ray["token"]
    refused = browser.render(url, wait_for=["Authentication Token Required"], screenshot=tmp_path / "refused.png")
    assert "Authentication Token Required" in refused and "Fetched jobs" not in refused
    shown = browser.render(url, cookie=("ray-authentication-token", token), wait_for=["Fetched jobs"],
                           screenshot=tmp_path / "jobs.png")
    assert "Fetched jobs" in shown and "Authentication Token Required" not in shown
    assert "RUNNING" in shown  # the search's own job (its driver, still running) is listed
    assert (tmp_path / "jobs.png").stat().st_size > 10_000


def test_the_run_prints_the_dashboard_and_how_to_read_its_token_and_no_opt_out_warning(own_ray):
    err = (own_ray["home"] / "stderr.txt").read_text()
    line = next(x for x in err.splitlines() if x.startswith("Ray dashboard: "))
    assert line.startswith("Ray dashboard: http://127.0.0.1:") and "ray get-auth-token` prints it" in line
    assert "RAY_AUTH_MODE=disabled" not in err and "Token authentication is enabled" not in err, err[-2000:]

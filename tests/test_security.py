"""The local Ray that metaray starts: token authentication on, dashboard on 127.0.0.1, job API refused without
the token. Runs in a fresh process (the test session's own Ray has no dashboard)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

PROBE = r"""
import json, os, urllib.error, urllib.request
from pathlib import Path
import ray
from metaray.cluster import connect

info = connect(num_cpus=1, dashboard=True)
url = info["dashboard_url"] + "/api/jobs/"

def status(headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()
print(json.dumps({"url": info["dashboard_url"], "none": status({}), "wrong": status({"Authorization": "Bearer x"}),
                  "token": status({"Authorization": f"Bearer {token}"})}))
ray.shutdown()
"""


def test_metaray_local_ray_refuses_unauthenticated_job_requests(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["url"].startswith("http://127.0.0.1:")
    assert (seen["none"], seen["wrong"], seen["token"]) == (401, 403, 200), seen

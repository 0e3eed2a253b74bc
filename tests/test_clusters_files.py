"""Every file under clusters/ parses, holds what its tool requires, installs this package, binds to 127.0.0.1,
keeps Ray's token authentication on, and carries no secret; and no file of the repository carries one."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

CLUSTERS = ROOT / "clusters"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


@pytest.mark.parametrize("name, provider", [("aws.yaml", "aws"), ("gcp.yaml", "gcp")])
def test_cluster_launcher_yaml(name, provider):
    c = load(name)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "file_mounts"):
        assert key in c, key
    assert c["provider"]["type"] == provider
    assert c["head_node_type"] in c["available_node_types"]
    for node_type in c["available_node_types"].values():
        assert "node_config" in node_type and "resources" in node_type
    setup = " ".join(c["setup_commands"])
    assert "torch==2.13.0" in setup and "pip install" in setup and "~/metaray" in setup  # installs this package
    assert c["file_mounts"]["~/metaray"] == "."
    head = " ".join(c["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    workers = [cmd for cmd in c["worker_start_ray_commands"] if "ray start" in cmd]
    assert workers and all("RAY_AUTH_MODE=token" in cmd for cmd in workers)


def test_kuberay_manifest():
    m = load("kuberay.yaml")
    assert m["apiVersion"] == "ray.io/v1" and m["kind"] == "RayCluster"
    spec = m["spec"]
    assert spec["authOptions"]["mode"] == "token"
    assert spec["rayVersion"].startswith("2.60")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = [head, *spec["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"].endswith("metaray:latest")  # built by clusters/Dockerfile
        assert {e["name"] for e in container["env"]} >= {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"}
        password = next(e for e in container["env"] if e["name"] == "MLFLOW_TRACKING_PASSWORD")
        assert "secretKeyRef" in password["valueFrom"]  # from a Secret, never a value
    dockerfile = (CLUSTERS / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM rayproject/ray:2.60" in dockerfile
    assert "torch==2.13.0" in dockerfile and "pip install --no-cache-dir /home/ray/metaray" in dockerfile


def test_mlflow_server_setup():
    compose = load("mlflow/docker-compose.yaml")
    services = compose["services"]
    assert set(services) >= {"postgres", "mlflow", "proxy"}
    command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri" in command and "postgresql://" in command
    assert "--host 127.0.0.1" in command and "--app-name basic-auth" in command
    assert "--artifacts-destination" in command
    assert services["proxy"]["network_mode"] == "service:mlflow"
    for service in services.values():  # every password is taken from the environment
        for name, value in (service.get("environment") or {}).items():
            if "PASSWORD" in name or "SECRET" in name:
                assert str(value).startswith("${") and ":?" in str(value), name
    nginx = (CLUSTERS / "mlflow" / "nginx.conf").read_text()
    assert "proxy_pass http://127.0.0.1:5000" in nginx and "ssl_certificate" in nginx


def test_local_cluster_script_is_valid_bash():
    script = CLUSTERS / "local.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    usage = subprocess.run([str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


SECRET_PATTERNS = {
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),
    "password value": re.compile(r"(?i)(password|passwd|secret|token)\s*[:=]\s*['\"]?"
                                 r"(?!\$\{|\$\$|\.\.\.|<|\w*_PASSWORD)[A-Za-z0-9+/_\-]{8,}"),
    "credentials in a URI": re.compile(r"://[^/\s:@$]+:(?!\$|%s)[^@\s/$]{4,}@"),
}


def test_no_secret_in_any_file_of_the_repository():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".pt", ".parquet", ".db"}:
            continue
        text = path.read_text(errors="ignore")
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                if name == "tests/test_clusters_files.py":
                    continue  # the patterns themselves
                found.append(f"{name}: {what}: {match.group(0)[:40]}")
    assert not found, found


@pytest.mark.parametrize("text", ["password: hunter2hunter2", "MLFLOW_TRACKING_PASSWORD=s3cretValue99",
                                  "postgresql://mlflow:abc12345@db/x", "AKIAABCDEFGHIJKLMNOP"])
def test_the_secret_scan_finds_a_planted_secret(text):
    assert any(p.search(text) for p in SECRET_PATTERNS.values())

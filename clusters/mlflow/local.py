"""An MLflow tracking server on PostgreSQL, on this machine: the database on a Unix socket only (no TCP port), the
server on 127.0.0.1. For a cluster's searches to log to one store that keeps up (SQLite serialises every write).

    clusters/mlflow/local.sh start FOLDER [--port 5000] [--workers 4]   # prints the tracking URI
    clusters/mlflow/local.sh status FOLDER
    clusters/mlflow/local.sh restart FOLDER                             # the server again, same database and port
    clusters/mlflow/local.sh stop FOLDER                                # ends both, leaving nothing running

FOLDER keeps the server's log, its artifacts and what ``stop`` needs. It needs PostgreSQL's programs (Debian:
``apt-get install postgresql``) and psycopg2 in this Python (``pip install psycopg2-binary``; metaray's ``dev``
extra has it). Run as root, the database runs as the ``postgres`` user (PostgreSQL refuses root) in a folder of its
own under /tmp. No password anywhere: only the socket's owner (and root) can connect, through a folder only they can
enter.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        sys.exit(f"local.py: error: PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found


def _as_db_user(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the database's user: ``postgres`` when this is root."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def start(folder: Path, port: int, workers: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "server.json"
    if state_file.exists():
        sys.exit(f"local.py: error: {folder} already has a server (clusters/mlflow/local.sh stop {folder} first)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        sys.exit("local.py: error: psycopg2 is not installed in this Python (pip install psycopg2-binary)")
    db = Path(tempfile.mkdtemp(prefix="metaray-pg-"))  # PostgreSQL's own folder: data and socket
    if os.geteuid() == 0:
        shutil.chown(db, "postgres", "postgres")
    os.chmod(db, 0o700)
    state = {"db": str(db), "port": port, "url": f"http://127.0.0.1:{port}"}
    state_file.write_text(json.dumps(state))
    _as_db_user([_bin("initdb"), "-D", f"{db}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
    _as_db_user([_bin("pg_ctl"), "-D", f"{db}/data", "-l", f"{db}/postgres.log", "-w", "start", "-o",
                 f"-c listen_addresses='' -k {db} -c max_connections=200"])
    _as_db_user([_bin("createdb"), "-h", str(db), "-U", "postgres", "mlflow"])
    state["workers"] = workers
    return _serve(folder, state)


def _serve(folder: Path, state: dict) -> str:
    """Start the MLflow server on the database of ``state`` and wait until it answers."""
    uri = f"postgresql+psycopg2://postgres@/mlflow?host={state['db']}"
    log = open(folder / "server.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                             str(state["port"]), "--backend-store-uri", uri, "--artifacts-destination",
                             str(folder / "artifacts"), "--workers", str(state["workers"])],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state["pid"] = proc.pid
    (folder / "server.json").write_text(json.dumps(state))
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{state['url']}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(folder)
            sys.exit(f"local.py: error: the MLflow server did not start; its log: {folder / 'server.log'}")
        time.sleep(0.5)
    return state["url"]


def _end_server(state: dict, sig: int = signal.SIGTERM) -> int:
    """End the MLflow server and its workers (``sig``; SIGKILL after 10 s); 1 if it was running."""
    try:
        os.killpg(state["pid"], sig)
    except (KeyError, ProcessLookupError):
        return 0
    try:
        for _ in range(100):
            os.killpg(state["pid"], 0)
            time.sleep(0.1)
        os.killpg(state["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 1


def restart(folder: Path, kill: bool = False) -> str:
    """The MLflow server again, on the same database and port (``kill``: as if it crashed, SIGKILL)."""
    state = json.loads((folder / "server.json").read_text())
    _end_server(state, signal.SIGKILL if kill else signal.SIGTERM)
    return _serve(folder, state)


def stop(folder: Path) -> int:
    """End the server and the database; returns how many of the two were running."""
    state_file = folder / "server.json"
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    ended = _end_server(state)
    db = Path(state["db"])
    if (db / "data" / "postmaster.pid").exists():
        _as_db_user([_bin("pg_ctl"), "-D", f"{db}/data", "-m", "fast", "-w", "stop"])
        ended += 1
    shutil.rmtree(db, ignore_errors=True)
    state_file.unlink()
    return ended


def status(folder: Path) -> str:
    state_file = folder / "server.json"
    if not state_file.exists():
        return "stopped"
    url = json.loads(state_file.read_text())["url"]
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return f"running at {url}"
    except OSError:
        return f"not answering at {url}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "status", "restart", "stop"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4, help="the server's worker processes")
    parser.add_argument("--kill", action="store_true", help="restart: kill the server first (SIGKILL), as a crash")
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    if args.command == "start":
        url = start(folder, args.port, args.workers)
        print(f"MLflow on PostgreSQL: {url}\n  export MLFLOW_TRACKING_URI={url}   # or tracking.uri in the experiment\n"
              f"  clusters/mlflow/local.sh stop {args.folder}")
    elif args.command == "restart":
        print(f"MLflow on PostgreSQL again: {restart(folder, kill=args.kill)}")
    elif args.command == "stop":
        print(f"stopped {stop(folder)} process groups (the MLflow server, PostgreSQL)")
    else:
        print(status(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

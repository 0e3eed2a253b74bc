"""An MLflow tracking server on PostgreSQL, on this machine: the database on a Unix socket only (no TCP port), the
server on 127.0.0.1. For a cluster's searches to log to one store that keeps up (SQLite serialises every write).

    clusters/mlflow/local.sh start FOLDER [--port 5000] [--workers 4]   # prints the tracking URI
    clusters/mlflow/local.sh status FOLDER
    clusters/mlflow/local.sh restart FOLDER                             # the server again, same database and port
    clusters/mlflow/local.sh stop FOLDER                                # ends both, leaving nothing running

FOLDER keeps the server's log, its artifacts and what ``stop`` needs. It needs PostgreSQL's programs (Debian:
``apt-get install postgresql``) and psycopg2 in this Python (``pip install psycopg2-binary``; metaray's
``postgres`` and ``test`` extras have it). Run as root, the database runs as the ``postgres`` user (PostgreSQL refuses
root) in a folder of its own under /tmp. No password anywhere: only the socket's owner (and root) can connect,
through a folder only they can enter.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else the newest of Debian's /usr/lib/postgresql/VERSION/bin."""
    def version(path: str) -> tuple:
        return tuple(int(n) if n.isdigit() else 0 for n in Path(path).parts[-3].split("."))

    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, default=None)
    if not found:
        sys.exit(f"local.py: error: PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found


def _as_db_user(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the database's user: ``postgres`` when this is root; a failure (``check``) exits
    with its own words."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"{Path(argv[-1] if argv[0] == 'runuser' else argv[0]).name}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done


def start(folder: Path, port: int, workers: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "server.json"
    if state_file.exists():
        sys.exit(f"local.py: error: {folder} already has a server (clusters/mlflow/local.sh stop {folder} first)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        sys.exit("local.py: error: psycopg2 is not installed in this Python (pip install psycopg2-binary)")
    _port_free(port)
    programs = {name: _bin(name) for name in ("initdb", "pg_ctl", "createdb")}  # before anything is made
    db = Path(tempfile.mkdtemp(prefix="metaray-pg-"))  # PostgreSQL's own folder: data and socket
    if os.geteuid() == 0:
        shutil.chown(db, "postgres", "postgres")
    os.chmod(db, 0o700)
    state = {"db": str(db), "port": port, "url": f"http://127.0.0.1:{port}", "workers": workers}
    state_file.write_text(json.dumps(state))
    try:
        _as_db_user([programs["initdb"], "-D", f"{db}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        _as_db_user([programs["pg_ctl"], "-D", f"{db}/data", "-l", f"{db}/postgres.log", "-w", "start", "-o",
                     f"-c listen_addresses='' -k {db} -c max_connections=200"])
        _as_db_user([programs["createdb"], "-h", str(db), "-U", "postgres", "mlflow"])
    except RuntimeError as exc:
        stop(folder)
        sys.exit(f"local.py: error: PostgreSQL did not start: {exc}")
    if not _serve(folder, state):
        stop(folder)
        sys.exit(f"local.py: error: the MLflow server did not start; its log: {folder / 'server.log'}")
    return state["url"]


def _port_free(port: int) -> None:
    """Exit unless ``port`` of 127.0.0.1 is free: a server already there must not pass for this one."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no one's
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(f"local.py: error: port {port} of 127.0.0.1 is taken (--port another)")


def _serve(folder: Path, state: dict) -> bool:
    """Start the MLflow server on the database of ``state`` and wait until it answers; False if it died first."""
    uri = f"postgresql+psycopg2://postgres@/mlflow?host={state['db']}"
    with open(folder / "server.log", "a") as log:  # the server's own from now on
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
                                 str(state["port"]), "--backend-store-uri", uri, "--artifacts-destination",
                                 str(folder / "artifacts"), "--workers", str(state["workers"])],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state["pid"] = proc.pid
    (folder / "server.json").write_text(json.dumps(state))
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{state['url']}/health", timeout=2) as r:
                if r.status == 200 and proc.poll() is None:  # ours: the port was free before it
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    _end_server(state, signal.SIGKILL)
    return False


def _end_server(state: dict, sig: int = signal.SIGTERM) -> int:
    """End the MLflow server and its workers (``sig``; SIGKILL after 10 s) and wait until they are gone; 1 if it was
    running."""
    pid = state.get("pid")
    try:
        os.killpg(pid, sig)
    except (TypeError, ProcessLookupError):
        return 0
    if not _gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _gone(pid)
    return 1


def _gone(pid: int, seconds: float = 10.0) -> bool:
    """Wait until the process group ``pid`` has no process left; False if it still has after ``seconds``."""
    for _ in range(int(seconds * 10)):
        with contextlib.suppress(ChildProcessError):  # started by this process: reaped, not left a zombie
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def restart(folder: Path, kill: bool = False) -> str:
    """The MLflow server again, on the same database and port (``kill``: as if it crashed, SIGKILL)."""
    state = json.loads((folder / "server.json").read_text())
    _end_server(state, signal.SIGKILL if kill else signal.SIGTERM)
    _port_free(state["port"])  # else another server there would pass for this one
    if not _serve(folder, state):  # the database stays: only the server is ended
        sys.exit(f"local.py: error: the MLflow server did not start again; its log: {folder / 'server.log'}")
    return state["url"]


def stop(folder: Path) -> int:
    """End the server and the database; returns how many of the two were running."""
    state_file = folder / "server.json"
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    ended = _end_server(state)
    db = Path(state["db"])
    try:
        if (db / "data" / "postmaster.pid").exists():  # (a stale one, after a crash, fails to stop: nothing runs)
            ended += _as_db_user([_bin("pg_ctl"), "-D", f"{db}/data", "-m", "fast", "-w", "stop"],
                                 check=False).returncode == 0
    finally:
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

"""A Ray cluster of several nodes on this machine: a head and N worker nodes, each its own raylet with its own CPUs and
a resource naming it (metaray_head, metaray_w1, ...). Every server of every node binds to 127.0.0.1 and token
authentication is on. Run through clusters/local.sh:

    clusters/local.sh start [WORKERS]   # prints the lines to run a search on it
    clusters/local.sh status
    clusters/local.sh stop              # ends every process of this cluster, and says how many

How: a keeper process holds the cluster (Ray's ``ray.cluster_utils.Cluster``, Ray's own way to run several nodes on
one machine) and stops it when it gets SIGTERM. Ray takes 127.0.0.1 for this machine's address when
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set before it is imported; then every node binds its servers there. (``ray
start`` refuses to add a worker node in that mode, so the nodes are started the way Ray's tests start them.)

Settings (environment): METARAY_RAY_PORT (6390), METARAY_DASHBOARD_PORT (8266), METARAY_HEAD_CPUS (1),
METARAY_NODE_CPUS (1), METARAY_WORKERS (2), METARAY_OBJECT_STORE_MB (300 per node). The token is $RAY_AUTH_TOKEN or
the file ~/.ray/auth_token, created (readable by its owner only) when there is none.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
PORT = int(os.environ.get("METARAY_RAY_PORT", "6390"))
DASHBOARD_PORT = int(os.environ.get("METARAY_DASHBOARD_PORT", "8266"))
ADDRESS = f"127.0.0.1:{PORT}"
STATE = Path.home() / ".ray" / f"metaray-local-{PORT}.json"  # the user's own: no other user reads or writes it
LOG = STATE.with_suffix(".log")
START_TIMEOUT_S, STOP_TIMEOUT_S, KILL_TIMEOUT_S = 120.0, 30.0, 10.0


def _state() -> dict:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}


def _keeper(state: dict):
    """The keeper process the state names, if it is still that process (a PID can be reused), else None."""
    import psutil

    try:
        p = psutil.Process(state["pid"])
        if p.create_time() == state["created"] and p.status() != psutil.STATUS_ZOMBIE:
            return p
    except (KeyError, psutil.Error):
        pass
    return None


def processes(state: dict) -> list:
    """Every process of the cluster: the keeper and its descendants (the nodes' servers, agents and workers), and
    anything else naming the cluster's session folder (a process that left the keeper's tree)."""
    import psutil

    found: dict[int, psutil.Process] = {}
    keeper = _keeper(state)
    if keeper is not None:
        found[keeper.pid] = keeper
        found.update({p.pid: p for p in keeper.children(recursive=True)})
    session = state.get("session_dir")
    if session:
        for p in psutil.process_iter(["cmdline"]):
            try:
                if session in " ".join(p.info["cmdline"] or []):
                    found[p.pid] = p
                    found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                continue
    return [p for p in found.values() if p.pid != os.getpid()]


def start(workers: int) -> int:
    if _keeper(_state()) is not None:
        print(f"a cluster already runs at {ADDRESS} (clusters/local.sh stop first)", file=sys.stderr)
        return 1
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ[LOOPBACK_SWITCH] = "0"
    from metaray.cluster import secure_token_file

    secure_token_file(print, create=os.environ["RAY_AUTH_MODE"] == "token")
    STATE.unlink(missing_ok=True)
    STATE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(LOG, "w") as log:
        keeper = subprocess.Popen([sys.executable, __file__, "serve", str(workers)], stdout=log, stderr=log,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _state().get("ready"):
        if keeper.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(keeper.pid, signal.SIGKILL)  # the keeper and every node it started
            print(f"the cluster did not start; its log ({LOG}):\n{LOG.read_text()[-3000:]}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    state = _state()
    auth = os.environ["RAY_AUTH_MODE"]
    print(f"Ray cluster: {workers + 1} nodes at {ADDRESS}, every server on 127.0.0.1, token authentication: {auth}")
    print(f"dashboard:   {state['dashboard']}  (it asks for the token: ray get-auth-token prints it)")
    print(f"run:         metaray run EXPERIMENT.yaml --address {ADDRESS}")
    print("other Ray clients on this machine (ray status, ray job submit, ray.init) need in their shell:")
    print(f"             export RAY_AUTH_MODE={auth} {LOOPBACK_SWITCH}=0")
    print("stop:        clusters/local.sh stop")
    return 0


def serve(workers: int) -> None:
    """The keeper: starts the nodes, records where they are, and stops them on SIGTERM."""
    from ray.cluster_utils import Cluster  # Ray is imported here, after start() set the loopback switch

    memory = int(os.environ.get("METARAY_OBJECT_STORE_MB", "300")) * 2**20
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        gcs_server_port=PORT, num_cpus=int(os.environ.get("METARAY_HEAD_CPUS", "1")), object_store_memory=memory,
        resources={"metaray_head": 1}, include_dashboard=True, dashboard_host="127.0.0.1",
        dashboard_port=DASHBOARD_PORT))
    for i in range(1, workers + 1):
        cluster.add_node(num_cpus=int(os.environ.get("METARAY_NODE_CPUS", "1")), object_store_memory=memory,
                         resources={f"metaray_w{i}": 1})

    def stop(*_):
        cluster.shutdown()
        STATE.unlink(missing_ok=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    import psutil

    STATE.write_text(json.dumps({"pid": os.getpid(), "created": psutil.Process().create_time(), "address": ADDRESS,
                                 "ready": True,
                                 "session_dir": cluster.head_node.get_session_dir_path(),
                                 "dashboard": f"http://127.0.0.1:{DASHBOARD_PORT}"}))
    while True:
        signal.pause()


def stop() -> int:
    """SIGTERM to the keeper (which stops the nodes in order), then SIGTERM and, after a bounded wait, SIGKILL to
    any process of the cluster still there."""
    import psutil

    state = _state()
    procs = processes(state)
    if not procs:
        STATE.unlink(missing_ok=True)
        print(f"no cluster at {ADDRESS}")
        return 0
    keeper = _keeper(state)
    if keeper is not None:
        keeper.terminate()
        psutil.wait_procs([keeper], timeout=STOP_TIMEOUT_S)
    _, left = psutil.wait_procs(procs, timeout=1)
    left = _signal(left, "terminate")
    survivors = _signal(left, "kill")
    STATE.unlink(missing_ok=True)
    killed = f", {len(left)} of them with SIGKILL" if left else ""
    print(f"stopped the cluster at {ADDRESS}: {len(procs)} processes ended{killed}")
    if survivors:
        print(f"could not stop: {[p.pid for p in survivors]}", file=sys.stderr)
        return 1
    return 0


def _signal(procs: list, how: str) -> list:
    """Send each process SIGTERM ("terminate") or SIGKILL ("kill"); return those still running after a bounded wait."""
    import psutil

    for p in procs:
        try:
            getattr(p, how)()
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs(procs, timeout=KILL_TIMEOUT_S)[1]


def status() -> int:
    env = {**os.environ, LOOPBACK_SWITCH: "0"}
    env.setdefault("RAY_AUTH_MODE", "token")
    return subprocess.call([sys.executable, "-c", "from ray.scripts.scripts import main; main()", "status",
                            "--address", ADDRESS], env=env)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "start":
        return start(int(argv[1]) if len(argv) > 1 and argv[1] else int(os.environ.get("METARAY_WORKERS", "2")))
    if command == "serve":
        serve(int(argv[1]))
    if command == "stop":
        return stop()
    if command == "status":
        return status()
    print("usage: clusters/local.sh start [WORKERS] | status | stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

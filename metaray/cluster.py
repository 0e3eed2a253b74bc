"""Connecting to Ray: a local instance started by metaray, or an existing cluster by address.

Token authentication stays on. A local Ray is started with ``RAY_AUTH_MODE=token`` set explicitly for this process
(so Ray does not print its "set RAY_AUTH_MODE=disabled to opt out" warning), with a token file only its owner can
read. Joining a cluster by address uses the token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``; the cluster is asked once, before Ray connects, whether it accepts it, so that a refusal is
one line instead of Ray's ten seconds of retries. The dashboard binds to 127.0.0.1 unless the user asks otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from metaray.errors import SpecError

DASHBOARD_HOST = "127.0.0.1"
_DASHBOARD_URL: str | None = None  # ray.init's answer, kept for later calls in this process
PROBE_TIMEOUT_S = 5.0


#: Ray's switch for multi-node clusters on Windows and macOS. Set to 0 before Ray is imported, it makes Ray take
#: 127.0.0.1 for this machine's address: a local Ray then binds every server (GCS, raylets, workers, agents, metrics)
#: to 127.0.0.1, and a client joins a cluster at 127.0.0.1 without Ray rewriting that to the machine's network address
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (None: a local Ray of our own) stays on this machine.

    Example:
        >>> [is_loopback(a) for a in (None, "127.0.0.1:6390", "localhost:6379", "10.0.0.5:6379")]
        [True, True, True, False]
    """
    if address is None:
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in ("127.0.0.1", "localhost", "::1")


def target(address: str | None) -> str | None:
    """The Ray to start or join: ``address``, else ``$RAY_ADDRESS`` (as ``ray.init()`` joins it: a Ray job's driver);
    None (or ``"local"``): a Ray of our own."""
    if address == "local":
        return None
    return address or os.environ.get("RAY_ADDRESS") or None


HOST_PORT = re.compile(r"[\w.\-]+:\d+|\[[0-9a-fA-F:]+\]:\d+")


#: the variables ``ray_environment`` set before this process imported Ray: Ray's processes read them when they start,
#: so ``connect`` sets them again, for the time of ``ray.init``, when it starts a Ray after ``ray.shutdown()``
_FOR_RAY: dict[str, str] = {}


def ray_environment(address: str | None) -> None:
    """Set what Ray reads when it is imported and started, for a Ray metaray starts or joins at ``address`` (see
    ``target``). Called before anything imports Ray; a variable the user set is left as it is.

    - ``RAY_AUTH_MODE=token``: for a Ray of our own (said explicitly, so Ray prints no "opt out" warning), and for a
      cluster at HOST:PORT that refuses a client without a token, when a token is at hand (Ray presents a token only
      in this mode; a cluster without tokens is joined without one).
    - ``LOOPBACK_SWITCH=0`` when Ray stays on this machine: every server then binds to 127.0.0.1, and a client joins
      a cluster at 127.0.0.1 without Ray rewriting it to the machine's network address. A driver joining a cluster at
      a network address (or ``auto``) is left alone: the cluster's nodes must reach it.

    Ray reads both when it is imported (this process) and when its processes start (each reads its own environment,
    inherited from this process during ``ray.init``; workers started later inherit the raylet's): once ``connect``
    has started or joined Ray they are no longer needed. The public API (``metaray.search`` ...) runs within
    ``environment_scope``, which removes them again; the command and a test session keep them. Once Ray is imported,
    nothing changes here: ``connect`` then says what to set if a cluster refuses us.
    """
    if "ray" in sys.modules:
        return
    address = target(address)
    wanted = {}
    if is_loopback(address):
        wanted[LOOPBACK_SWITCH] = "0"
    if "RAY_AUTH_MODE" not in os.environ and (address is None or (
            HOST_PORT.fullmatch(address) and find_token()[0] is not None and _refused(ask(address, None)))):
        wanted["RAY_AUTH_MODE"] = "token"
    wanted = {k: v for k, v in wanted.items() if k not in os.environ}
    _FOR_RAY.update(wanted)
    os.environ.update(wanted)


@contextlib.contextmanager
def environment_scope():
    """Within the block, whatever is set in ``os.environ`` (by ``ray_environment``, and by Ray's own import and
    ``ray.init``: ``RAY_CLIENT_MODE``, ``RAY_USAGE_STATS_ENABLED``, ``PYTHONBREAKPOINT``) is undone when it ends:
    the public API leaves the environment as it found it. Ray's running processes have what they need by then."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for k in set(os.environ) - set(before):
            del os.environ[k]
        os.environ.update({k: v for k, v in before.items() if os.environ.get(k) != v})


def token_file() -> Path:
    """Where Ray reads (and ``ray get-auth-token --generate`` writes) the token: $RAY_AUTH_TOKEN_PATH, else
    ~/.ray/auth_token."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def find_token() -> tuple[str | None, str]:
    """The token a client presents and where it comes from: $RAY_AUTH_TOKEN, else the token file."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "$RAY_AUTH_TOKEN"
    path = token_file()
    return (path.read_text().strip() or None) if path.is_file() else None, str(path)


def token_hint() -> str:
    """How to read the token a dashboard asks for."""
    if os.environ.get("RAY_AUTH_MODE", "token") != "token":
        return "token authentication is off"
    where = ("it is $RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN")
             else f"`ray get-auth-token` prints it, from {token_file()}")
    return f"it asks for the token: {where}"


def secure_token_file(say: Callable[[str], None] | None = None, *, create: bool = False) -> None:
    """Make the token file readable by its owner only (telling ``say`` when a looser one is tightened); with
    ``create``, write a new random token (0600 from the start) when there is no token at all, as Ray would."""
    path = token_file()
    if not path.exists():
        if create and not os.environ.get("RAY_AUTH_TOKEN"):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))  # what Ray's own generator writes
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        if say:
            say(f"ray: {path} was readable by other users ({mode:04o}); it is now {0o600:04o}")


def ask(address: str, token: str | None):
    """Ask a cluster's GCS for its id, once, presenting ``token`` if given; the answer's gRPC status code. Raw gRPC,
    so that it can be asked before Ray is imported, and instead of Ray's ten seconds of retries."""
    import grpc

    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")(b"", timeout=PROBE_TIMEOUT_S,
                                                                             metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _status(name: str):
    import grpc

    return getattr(grpc.StatusCode, name)


def _refused(code) -> bool:
    """Whether a gRPC status code is the cluster refusing us (grpc is imported only when a cluster is asked)."""
    return code in (_status("UNAUTHENTICATED"), _status("PERMISSION_DENIED"))


def _check(address: str, say: Callable[[str], None] | None) -> None:
    """One question to the cluster before ``ray.init``: a refusal or silence is one line, not ten seconds of
    retries."""
    token, source = find_token()
    presented = token if os.environ.get("RAY_AUTH_MODE") == "token" else None
    if presented:
        secure_token_file(say)
    code = ask(address, presented)
    if _refused(code):
        if presented:
            raise SpecError("ray.address", f"the cluster refused the token from {source}; set RAY_AUTH_TOKEN to the "
                            "cluster's own token (on its head node: ray get-auth-token)", got=address)
        if token:  # at hand, but Ray was imported before metaray could turn token mode on
            raise SpecError("ray.address", "the cluster requires a token; set RAY_AUTH_MODE=token before Ray is "
                            "imported (the metaray command does)", got=address)
        raise SpecError("ray.address", "the cluster requires a token and none was found; set RAY_AUTH_TOKEN to the "
                        f"cluster's token (on its head node: ray get-auth-token) or copy its token file to "
                        f"{token_file()}", got=address)
    if code in (_status("UNAVAILABLE"), _status("DEADLINE_EXCEEDED")):
        raise SpecError("ray.address", f"no Ray cluster answers there ({code.name.lower()} after "
                        f"{PROBE_TIMEOUT_S:g} s)", got=address)
    if code != _status("OK"):
        raise SpecError("ray.address", f"cannot connect to Ray ({code.name})", got=address)


def connect(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = False,
            dashboard_host: str = DASHBOARD_HOST, say: Callable[[str], None] | None = None) -> dict:
    """Start or join Ray once per process and describe what was joined.

    ``address`` None joins ``$RAY_ADDRESS`` if set (as ``ray.init()`` does), else starts a Ray of our own
    (as ``"local"`` does: even when a ``ray start`` cluster runs on this machine).

    Returns:
        ``{"address", "cpus", "nodes", "dashboard_url"}``; ``dashboard_url`` is None without a dashboard.
    """
    import ray

    global _DASHBOARD_URL
    if not ray.is_initialized():  # a Ray this process already joined is used as it is, as ray.init users expect
        # Ray was imported under these; the processes ray.init starts read them too (a Ray started again after
        # ray.shutdown() included), and need them no longer once started
        again = {k: v for k, v in _FOR_RAY.items() if k not in os.environ}
        os.environ.update(again)
        try:
            info = _init(ray, target(address), num_cpus=num_cpus, dashboard=dashboard, dashboard_host=dashboard_host,
                         say=say)
        finally:
            for k, v in again.items():
                if os.environ.get(k) == v:
                    del os.environ[k]
        _DASHBOARD_URL = getattr(info, "dashboard_url", None) or None
    ctx = ray.get_runtime_context()
    url = _DASHBOARD_URL
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return {"address": ctx.gcs_address, "cpus": int(ray.cluster_resources().get("CPU", 0)),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "dashboard_url": url}


def _init(ray, address: str | None, *, num_cpus, dashboard: bool, dashboard_host: str, say):
    """``ray.init``: join the cluster at ``address`` (asked first, when it is HOST:PORT), or start a Ray of our own."""
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        if HOST_PORT.fullmatch(address):
            _check(address, say)
        try:
            return ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SpecError("ray.address", f"cannot connect to Ray ({str(exc).splitlines()[0]})", got=address) from None
    secure_token_file(say, create=os.environ.get("RAY_AUTH_MODE", "token") == "token")
    # address="local": a new Ray of our own, even when a `ray start` cluster runs on this machine
    return ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host=dashboard_host,
                    **kwargs)


def fit_slots(cpus_per_fit: float, gpus_per_fit: float = 0.0) -> int:
    """How many fits the cluster can run at once: on each alive node, as many as both its CPUs and its GPUs allow
    (three 4-CPU nodes run three 3-CPU fits, not 12 // 3 = 4)."""
    import ray

    total = 0
    for node in ray.nodes():
        if node.get("Alive"):
            have = node["Resources"]
            fits = have.get("CPU", 0.0) // cpus_per_fit if cpus_per_fit else math.inf
            if gpus_per_fit:
                fits = min(fits, have.get("GPU", 0.0) // gpus_per_fit)
            total += 0 if math.isinf(fits) else int(fits)
    return max(1, total)


def max_node_resource(resource: str = "CPU") -> float:
    """The most of a resource any single alive node offers: a fit asking for more can never be scheduled."""
    import ray

    return max((n["Resources"].get(resource, 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)


def _warm(modules: list[str]) -> int:
    import importlib

    for name in modules:
        importlib.import_module(name)
    return len(modules)


def warm_up(modules: list[str], slots: int) -> list:
    """Import what the fits will need in every idle worker, while the driver still waits on other start-up
    work (MLflow's store); the first fits then start warm. Returns the tasks' refs; nobody needs to wait."""
    import ray

    task = ray.remote(_warm).options(num_cpus=1, name="metaray warm-up")
    return [task.remote(modules) for _ in range(max(1, slots))]

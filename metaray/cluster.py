"""Connecting to Ray: a local instance started by metaray, or an existing cluster by address.

Ray 2.60 keeps token authentication on for the clusters it starts; metaray never turns it off, and binds
the dashboard to 127.0.0.1 unless the user passes another host.
"""

from __future__ import annotations

import logging
import math
import os

from metaray.errors import SpecError

DASHBOARD_HOST = "127.0.0.1"
_DASHBOARD_URL: str | None = None  # ray.init's answer, kept for later calls in this process


def connect(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = False,
            dashboard_host: str = DASHBOARD_HOST) -> dict:
    """Start or join Ray once per process and describe what was joined.

    Returns:
        ``{"address", "cpus", "nodes", "dashboard_url"}``; ``dashboard_url`` is None without a dashboard.
    """
    import ray

    global _DASHBOARD_URL
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
        if address:
            try:
                info = ray.init(address=address, **kwargs)
                _DASHBOARD_URL = getattr(info, "dashboard_url", None) or None
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SpecError("ray.address", f"cannot connect to Ray ({str(exc).splitlines()[0]})", got=address) from None
        else:
            # address="local": a new Ray of our own, even when a `ray start` cluster runs on this machine
            info = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                            dashboard_host=dashboard_host, **kwargs)
            _DASHBOARD_URL = getattr(info, "dashboard_url", None) or None
    ctx = ray.get_runtime_context()
    url = _DASHBOARD_URL
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return {"address": ctx.gcs_address, "cpus": int(ray.cluster_resources().get("CPU", 0)),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "dashboard_url": url}


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

    task = ray.remote(_warm).options(num_cpus=1)
    return [task.remote(modules) for _ in range(max(1, slots))]

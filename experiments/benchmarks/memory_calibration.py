"""Calibrates metaray.memory: the peak memory of one subset fit, measured, against the estimate.

Each (learner, table) pair runs alone in a fresh process: it loads a synthetic table (numeric columns, or category
columns whose one-hot is sparse), prepares it as a search does, records its resident memory, runs one subset fit
(metaray.objective.score_fit, the encoding included) and reads the process's peak resident memory. The ratio
``measured extra / (rows x encoded row bytes)`` is the number of copies of the encoded rows the fit held at its
peak: metaray.memory.COPIES must be at least the largest of them; the table prints the estimate beside the measure.

    python experiments/benchmarks/memory_calibration.py            # a table
    python experiments/benchmarks/memory_calibration.py --quick    # small sizes (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

LEARNERS = {
    "logistic_regression": {},
    "hist_gradient_boosting": {"max_iter": 20},
    "random_forest": {"n_estimators": 10, "max_depth": 12},
    "knn": {},
    "ridge": {},
}


def _table(kind: str, rows: int, width: int, folder: Path) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    if kind == "dense":
        frame = pd.DataFrame(rng.normal(size=(rows, width)), columns=[f"x{j}" for j in range(width)])
    else:  # category columns of 30 values each: one-hot, sparse
        frame = pd.DataFrame({f"c{j}": np.char.add("v", rng.integers(0, 30, rows).astype(str))
                              for j in range(width // 31)})
    frame["label"] = rng.integers(0, 2, rows).astype(str)
    path = folder / f"{kind}_{rows}_{width}.csv"
    frame.to_csv(path, index=False)
    return path


def child(path: str, learner: str) -> None:
    """One fit, alone in this process: prints JSON with the measured and the estimated peak."""
    from metaray.fits import Unit
    from metaray.memory import WORKER_BYTES, estimate
    from metaray.objective import prepare, score_fit
    from metaray.spec import load_spec

    spec = load_spec({"name": "cal", "data": {"path": path, "target": "label"}, "subsets": {"k": 1},
                      "learner": {"name": learner, "params": LEARNERS[learner]}})
    prepared = prepare(spec, say=lambda line: None)
    problem = prepared.problem()
    score_fit(problem, prepared.learner, Unit(0, 0, 0), 0)  # warm: imports and first-call allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import psutil

    now = psutil.Process().memory_info().rss
    r = score_fit(problem, prepared.learner, Unit(0, 0, 0), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = estimate(prepared.dataset, prepared.plan, prepared.learner.model)
    rows = est.rows
    extra = max(peak, before) - now  # what the fit added above the prepared process
    modelled = est.bytes - WORKER_BYTES
    print(json.dumps({"learner": learner, "rows": rows, "width": est.width, "dense": est.dense,
                      "measured_extra_mb": extra / 1e6, "estimate_extra_mb": modelled / 1e6,
                      "error": r.error}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    rows = 3_000 if args.quick else 40_000
    shapes = [("dense", 20), ("dense", 200), ("sparse", 620)] if not args.quick else [("dense", 20), ("sparse", 310)]
    learners = list(LEARNERS) if not args.quick else ["logistic_regression", "hist_gradient_boosting"]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, width in shapes:
            path = _table(kind, rows, width, Path(tmp))
            for learner in learners:
                done = subprocess.run([sys.executable, __file__, "--child", str(path), learner], capture_output=True,
                                      text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["table"] = f"{kind} {width}"
                out.append(row)
                enough = row["estimate_extra_mb"] >= row["measured_extra_mb"]
                print(f"  {row['table']:<11} {learner:<24} measured +{row['measured_extra_mb']:7.0f} MB  "
                      f"estimate +{row['estimate_extra_mb']:7.0f} MB  {'ok' if enough else 'UNDER'}",
                      file=sys.stderr, flush=True)
    under = [r for r in out if r["estimate_extra_mb"] < r["measured_extra_mb"]]
    print(json.dumps({"rows": out, "under": len(under)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

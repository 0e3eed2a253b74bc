"""Does a warm start from past searches find good configurations sooner? Leave-one-dataset-out.

A tracking store (SQLite, in a temporary folder) is filled with one search per dataset: bundled scikit-learn sets
and generated variants of different sizes, noise and shapes, all classification scored by accuracy, over one space
of several learner families. Those searches are the cold searches. Then, for each dataset, a warm search runs with
the same spec, seed and subsets, starting from the best configurations of the most similar *other* datasets' searches
(metaray.warmstart: nearest standardised meta-features, its own search excluded), the searcher continuing from
there. Both are compared on the same budget:

    needed   configurations (in the order they were tried) until one reaches the cold search's final best: within
             its tied set (metaray's ``tied_with_best``) or within 0.5 %, whichever is the easier
    ratio    warm needed / cold needed (target: <= 0.6 in the median over the datasets)
    best     the best meta-objective each found within the budget

    python experiments/benchmarks/warm_start.py                 # 9 datasets, 24 configurations each
    python experiments/benchmarks/warm_start.py --markdown      # the table as docs/learning.md has it
    python experiments/benchmarks/warm_start.py --quick         # 3 datasets, 6 configurations: the test's size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: name -> the spec's data section
DATASETS = {
    "iris": {"dataset": "iris"},
    "wine": {"dataset": "wine"},
    "breast_cancer": {"dataset": "breast_cancer"},
    "digits": {"dataset": "digits"},
    "classification_small_clean": {"dataset": "make_classification",
                                   "params": {"n_samples": 300, "n_features": 10, "n_informative": 5,
                                              "flip_y": 0.01, "class_sep": 1.5}},
    "classification_large_noisy": {"dataset": "make_classification",
                                   "params": {"n_samples": 1500, "n_features": 20, "n_informative": 6,
                                              "flip_y": 0.15, "class_sep": 0.7}},
    "classification_3_classes": {"dataset": "make_classification",
                                 "params": {"n_samples": 800, "n_features": 15, "n_informative": 8, "n_classes": 3,
                                            "flip_y": 0.05}},
    "moons": {"dataset": "make_moons", "params": {"n_samples": 600, "noise": 0.3}},
    "blobs": {"dataset": "make_blobs", "params": {"n_samples": 500, "centers": 4, "cluster_std": 3.0}},
}
QUICK = ("iris", "wine", "moons")

SPACE = {"learner": {"choice": [
    {"name": "logistic_regression", "params": {"C": {"loguniform": [1e-4, 1e3]}}},
    {"name": "svc", "params": {"C": {"loguniform": [1e-3, 1e3]}, "gamma": {"loguniform": [1e-5, 10.0]}}},
    {"name": "knn", "params": {"n_neighbors": {"randint": [1, 60]}}},
    {"name": "decision_tree", "params": {"max_depth": {"randint": [1, 20]}, "min_samples_leaf": {"randint": [1, 40]}}},
    {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 60]}, "max_depth": {"randint": [1, 12]}}},
]}}


@dataclass
class Row:
    dataset: str
    cold_needed: int  # budget + 1: never reached within the budget
    warm_needed: int
    ratio: float
    cold_best: float
    warm_best: float
    sources: str  # the past searches the warm start took its configurations from


def spec_for(name: str, *, samples: int, k: int, seed: int, warm: list[str] | None = None, configs: int = 8) -> dict:
    spec = {"name": f"warm_{name}", "seed": seed, "data": {**DATASETS[name], "scale": True},
            "subsets": {"k": k}, "objective": {"metric": "accuracy"},
            "search": {"num_samples": samples, "space": SPACE}}
    if warm:
        spec["search"]["warm_start"] = {"source": warm, "configs": configs}
    return spec


def needed(table, threshold: float) -> int:
    """How many configurations, in the order they were tried, until one reaches ``threshold`` (budget + 1: none)."""
    ordered = table.sort_values("trial")
    hits = [i for i, v in enumerate(ordered["objective"], 1) if v >= threshold]
    return hits[0] if hits else len(ordered) + 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 datasets, 6 configurations")
    parser.add_argument("--samples", type=int, default=24, help="configurations per search")
    parser.add_argument("--k", type=int, default=3, help="subsets per configuration")
    parser.add_argument("--n", type=int, default=3, help="past searches a warm start takes configurations from")
    parser.add_argument("--configs", type=int, default=6, help="past configurations evaluated first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="write every number as JSON")
    args = parser.parse_args(argv)
    names = list(QUICK if args.quick else DATASETS)
    samples = 6 if args.quick else args.samples
    configs = min(args.configs, samples // 2) if args.quick else args.configs

    import ray

    from metaray.objective import prepare
    from metaray.run import compute_metafeatures, search
    from metaray.spec import load_spec
    from metaray.warmstart import past_searches, similar

    started_ray = not ray.is_initialized()
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="metaray-warm-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        old = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            cold, runs = {}, {}
            for name in names:  # the store's history, and the cold searches
                result = search(spec_for(name, samples=samples, k=args.k, seed=args.seed),
                                run_dir=Path(tmp) / "cold" / name)
                cold[name], runs[name] = result, result.mlflow_run_id
                print(f"cold {name}: best {result.best['objective']:.4f}", flush=True)
            history = past_searches(uri, task="classification", metric="accuracy")
            for name in names:
                spec = spec_for(name, samples=samples, k=args.k, seed=args.seed)
                prepared = prepare(load_spec(spec), say=lambda line: None)
                here = compute_metafeatures(prepared.dataset, seed=args.seed)
                others = similar(history[history["run_id"] != runs[name]], here).head(args.n)
                sources = others["run_id"].tolist()
                warm = search(spec_for(name, samples=samples, k=args.k, seed=args.seed, warm=sources,
                                       configs=configs), run_dir=Path(tmp) / "warm" / name, track=False)
                table = cold[name].results
                best = cold[name].best["objective"]
                tied = table.loc[table["tied_with_best"], "objective"].min()
                threshold = min(tied, best * (1 - 0.005))
                c, w = needed(table, threshold), needed(warm.results, threshold)
                rows.append(Row(name, c, w, w / c, best, warm.best["objective"],
                                ", ".join(f"{r.experiment.removeprefix('warm_')} ({r.distance:.1f})"
                                          for r in others.itertuples())))
                print(f"warm {name}: needed {w} against {c} cold; best {warm.best['objective']:.4f}", flush=True)
        finally:
            os.environ.pop("MLFLOW_TRACKING_URI") if old is None else os.environ.update(MLFLOW_TRACKING_URI=old)
    if started_ray:
        ray.shutdown()
    median = statistics.median(r.ratio for r in rows)
    print()
    if args.markdown:
        print("| dataset | cold: configurations needed | warm: needed | warm / cold | best at equal budget, "
              "cold / warm | warm started from (distance) |")
        print("|---|---:|---:|---:|---|---|")
        for r in rows:
            print(f"| {r.dataset} | {_n(r.cold_needed, samples)} | {_n(r.warm_needed, samples)} | {r.ratio:.2f} | "
                  f"{r.cold_best:.4f} / {r.warm_best:.4f} | {r.sources} |")
        print(f"| **median** | | | **{median:.2f}** | | |")
    else:
        for r in rows:
            print(f"{r.dataset:<28} cold {_n(r.cold_needed, samples):>4}  warm {_n(r.warm_needed, samples):>4}  "
                  f"ratio {r.ratio:.2f}  best cold {r.cold_best:.4f} warm {r.warm_best:.4f}  from {r.sources}")
    verdict = "met" if median <= 0.6 else "not met"
    print(f"median warm/cold configurations needed: {median:.2f} (target <= 0.60: {verdict}); "
          f"{len(rows)} datasets x {samples} configurations x {args.k} subsets, {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [asdict(r) for r in rows], "median_ratio": median,
                                               "samples": samples, "k": args.k}, indent=1))
    return 0


def _n(needed: int, budget: int) -> str:
    return f">{budget}" if needed > budget else str(needed)


if __name__ == "__main__":
    raise SystemExit(main())

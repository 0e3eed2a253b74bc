"""How much of the accuracy / size / latency trade-off does each searcher find, at equal fits?

The NAS front experiment (``experiments/meta_nas_front_digits.yaml``: mean accuracy over K subsets, a network's
parameters and its prediction time, networks above 50,000 parameters infeasible) is searched, for each seed, by the
random searcher, by Optuna's multi-objective TPE, and by the random searcher under multi-objective ASHA (promoting
by non-dominated sorting; twice the configurations, its table cut to the first configurations whose fits add up to
the others' budget): at equal fits. For every search the hypervolume of its feasible, completed configurations is
measured twice: over (accuracy, parameters), both exact and deterministic, and over all three objectives
(prediction time is a measured time: noisy). Each objective is scaled to [0, 1] over every configuration of every
search of that seed (parameters on a log scale), the reference point is 1.1 beyond the worst, so the numbers of one
seed compare. Printed: each searcher's hypervolumes and their ratio to random's; ``--json`` writes every number.

    python experiments/benchmarks/front.py                       # 24 configurations, seeds 0 and 1
    python experiments/benchmarks/front.py --samples 12 --seeds 0
    python experiments/benchmarks/front.py --quick               # 6 configurations, 2 subsets, 5 epochs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fidelity.py, run as a script or loaded by the tests
from fidelity import local_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "meta_nas_front_digits.yaml"
#: name -> (searcher, scheduler, configurations per the others' one)
SEARCHERS = {"random": ("random", "none", 1), "optuna": ("optuna", "none", 1), "moasha": ("random", "asha", 2)}


def search(name: str, *, seed: int, samples: int, quick: bool, folder: Path) -> tuple[object, float]:
    """One search of the NAS front experiment; (its SearchResult, its wall seconds)."""
    import metaray

    searcher, scheduler, more = SEARCHERS[name]
    overrides = [f"search.searcher={searcher}", f"search.scheduler={scheduler}", f"search.num_samples={samples * more}",
                 f"seed={seed}"]
    if quick:
        overrides += ["subsets.k=2", "search.space.epochs=5"]
    t0 = time.perf_counter()
    result = metaray.search(EXPERIMENT, overrides, run_dir=folder / f"{name}-{seed}", track=False)
    return result, time.perf_counter() - t0


def within(result, budget: int):
    """The search's table cut to its first configurations (in the order they were opened) whose fits add up to at
    most ``budget``."""
    t = result.results.sort_values("trial")
    return t[t["subsets_done"].cumsum() <= budget]


def points(table, labels: list[str]) -> np.ndarray:
    """The feasible, completed configurations' values of the objectives ``labels`` ("objective" is the primary)."""
    done = table[(table["status"] == "completed") & table["feasible"].astype(bool)]
    return done[labels].to_numpy(float)


def volumes(tables: dict[str, object], labels: list[str], modes: list[str]) -> dict[str, float]:
    """Each search's hypervolume over ``labels``, every objective scaled to [0, 1] over all the searches' points
    (sizes on a log scale), the reference 1.1 beyond the worst."""
    from metaray.front import hypervolume

    got = {name: points(t, labels) for name, t in tables.items()}
    every = np.vstack(list(got.values()))
    log = [label in ("n_parameters", "model_bytes") for label in labels]

    def scaled(p: np.ndarray) -> np.ndarray:
        p = np.where(log, np.log10(np.maximum(p, 1e-12)), p)
        ref = np.where(log, np.log10(np.maximum(every, 1e-12)), every)
        lo, hi = ref.min(axis=0), ref.max(axis=0)
        return (p - lo) / np.where(hi > lo, hi - lo, 1.0)

    worst = np.array([-0.1 if m == "max" else 1.1 for m in modes])
    return {name: hypervolume(scaled(p), modes, worst) if len(p) else 0.0 for name, p in got.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24, help="configurations per search")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--quick", action="store_true", help="6 configurations, 2 subsets, 5 epochs, seed 0")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)
    samples, seeds = (6, [0]) if args.quick else (args.samples, [int(s) for s in args.seeds.split(",")])
    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_ray():
        for seed in seeds:
            results, seconds = {}, {}
            for name in SEARCHERS:
                results[name], seconds[name] = search(name, seed=seed, samples=samples, quick=args.quick,
                                                      folder=Path(tmp))
            front = results["random"].front or {"objectives": []}
            objectives = front["objectives"]
            labels = ["objective", *(o["label"] for o in objectives[1:])]
            modes = [o["mode"] for o in objectives]
            budget = int(results["random"].results["subsets_done"].sum())
            tables = {name: within(r, budget) for name, r in results.items()}
            two = volumes(tables, labels[:2], modes[:2])
            three = volumes(tables, labels, modes)
            for name in SEARCHERS:
                t = tables[name]
                rows.append({"seed": seed, "searcher": name, "configurations": len(t),
                             "fits": int(t["subsets_done"].sum()), "seconds": round(seconds[name], 1),
                             "front": int(t["on_front"].astype(bool).sum()),
                             "hv_accuracy_parameters": two[name], "hv_all": three[name],
                             "ratio_accuracy_parameters": two[name] / two["random"] if two["random"] else float("nan"),
                             "ratio_all": three[name] / three["random"] if three["random"] else float("nan")})
    print(f"{'seed':>4} {'searcher':<8} {'configs':>7} {'fits':>5} {'front':>5} {'HV acc×params':>14} "
          f"{'vs random':>9} {'HV all three':>13} {'vs random':>9} {'seconds':>8}")
    for row in rows:
        print(f"{row['seed']:>4} {row['searcher']:<8} {row['configurations']:>7} {row['fits']:>5} {row['front']:>5} "
              f"{row['hv_accuracy_parameters']:>14.4f} {row['ratio_accuracy_parameters']:>9.3f} "
              f"{row['hv_all']:>13.4f} {row['ratio_all']:>9.3f} {row['seconds']:>8.1f}")
    for name in list(SEARCHERS)[1:]:
        two = [r["ratio_accuracy_parameters"] for r in rows if r["searcher"] == name]
        three = [r["ratio_all"] for r in rows if r["searcher"] == name]
        print(f"{name} / random, mean over {len(two)} seed(s): accuracy x parameters {np.mean(two):.3f}, "
              f"all three {np.mean(three):.3f} (at equal fits)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

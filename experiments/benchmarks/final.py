"""Which final model predicts best: ``refit`` of the best configuration, ``bag`` of its subset models, or an
``ensemble`` chosen from the search's out-of-subset predictions (metaray.final)?

On the fidelity benchmark's datasets and splits (``fidelity.py``: a 40 % test split, seeded, stratified for
classification, that no part of the search sees), a metaray random search of N configurations (a space over several
learners, K subsets, protocol out_of_subset) runs on the training part with ``final: ensemble``; the same search is
then resumed twice from a copy of its run folder with ``final: refit`` and ``final: bag`` (the journal replays every
fit: the three final models come from one search). Each final model, as MLflow would log it, predicts the test
rows. Printed per dataset (averaged over the seeds): the test score of each final model, the ensemble's gain over the
refit, the fits and seconds each took; then on how many datasets the ensemble is at least as good as the refit (the
target: 5 of 6), the mean gain and its spread. ``--json`` writes every number.

    python experiments/benchmarks/final.py                     # six datasets, two seeds, 24 configurations
    python experiments/benchmarks/final.py --datasets wine,diabetes --samples 16 --repeats 1
    python experiments/benchmarks/final.py --quick              # one small dataset, 8 configurations
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fidelity.py, run as a script or loaded by the tests
from fidelity import CORES, SOURCES, TEST_SIZE, dataset_names, local_ray, spec_for, split  # noqa: E402

FINALS = ("refit", "bag", "ensemble")


@dataclass
class Run:
    """One dataset and seed: each final model's test score, fits and seconds, and the ensemble's members."""

    dataset: str
    seed: int
    metric: str
    greater_is_better: bool
    test: dict[str, float]
    fits: dict[str, int]
    seconds: dict[str, float]
    members: list[dict]
    search_seconds: float

    @property
    def gain(self) -> float:
        """The ensemble's test score minus the refit's, signed so that more is better."""
        sign = 1 if self.greater_is_better else -1
        return sign * (self.test["ensemble"] - self.test["refit"])


def run_dataset(name: str, *, seed: int, samples: int, k: int, say) -> Run:
    import pandas as pd
    import yaml

    from metaray.metrics import get_metric
    from metaray.run import resume, search

    source = SOURCES[name]
    X_train, X_test, y_train, y_test = split(source, seed)
    columns = [f"x{i}" for i in range(X_train.shape[1])]
    metric = get_metric(source.metric)
    test, fits, seconds = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="metaray-final-") as tmp:
        csv = Path(tmp) / f"{name}_train.csv"
        frame = pd.DataFrame(X_train, columns=columns)
        frame["target"] = y_train
        frame.to_csv(csv, index=False)
        spec = {**spec_for(source, csv, seed=seed, samples=samples, k=k, protocol="out_of_subset"),
                "name": f"final_{name}", "final": "ensemble"}
        t0 = time.perf_counter()
        first = search(spec, run_dir=Path(tmp) / "ensemble", track=False)
        search_seconds = time.perf_counter() - t0
        results = {"ensemble": first}
        for kind in ("refit", "bag"):
            folder = Path(tmp) / kind
            shutil.copytree(first.run_dir, folder)
            saved = yaml.safe_load((folder / "spec.yaml").read_text())
            (folder / "spec.yaml").write_text(yaml.safe_dump({**saved, "final": kind}, sort_keys=False))
            results[kind] = again = resume(folder, track=False)
            if again.fits_run:
                raise RuntimeError(f"{name}: the resume with final: {kind} fitted {again.fits_run} subsets again")
        X = pd.DataFrame(X_test, columns=columns)
        for kind, result in results.items():
            if result.refit_error:
                raise RuntimeError(f"{name}: final {kind} failed: {result.refit_error}")
            test[kind] = float(metric(np.asarray(y_test), result.model.predict(X), None))
            final = result.best["final"]
            fits[kind], seconds[kind] = final["fits"], final["seconds"]
    run = Run(name, seed, source.metric, metric.greater_is_better, test, fits, seconds,
              first.best["final"]["members"], search_seconds)
    say(f"{name} (seed {seed}): " + ", ".join(f"{kind} {test[kind]:.4f}" for kind in FINALS)
        + f"; ensemble of {len(run.members)}; search {search_seconds:.1f} s")
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small dataset, 8 configurations, one seed")
    parser.add_argument("--datasets", help=f"comma-separated, of {', '.join(SOURCES)} (default: all)")
    parser.add_argument("--samples", type=int, help="configurations per search (default 24; quick: 8)")
    parser.add_argument("--k", type=int, default=5, help="subsets per configuration (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (of the split, the data and the search)")
    parser.add_argument("--repeats", type=int, help="seeds seed, seed + 1, ... (default 2; quick: 1)")
    parser.add_argument("--json", metavar="PATH", help="write every number to this file")
    args = parser.parse_args(argv)
    names = dataset_names(parser, args)
    samples = args.samples or (8 if args.quick else 24)
    seeds = [args.seed + r for r in range(args.repeats or (1 if args.quick else 2))]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    with local_ray():
        runs = [run_dataset(n, seed=s, samples=samples, k=args.k, say=say) for s in seeds for n in names]
    wall = time.perf_counter() - t_start

    print(f"Final models on a {TEST_SIZE:.0%} test split no part of the search saw: {len(names)} datasets x "
          f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {samples} configurations x {args.k} subsets "
          "(out_of_subset); test scores averaged over the seeds; gain: ensemble - refit (a loss's sign flipped)")
    print(f"{'dataset':<26}{'metric':<10}" + "".join(f"{k:>10}" for k in FINALS) + f"{'gain':>10}"
          + "".join(f"{'fits ' + k:>14}" for k in FINALS) + "".join(f"{'s ' + k:>12}" for k in FINALS))
    gains = {}
    for name in names:
        mine = [r for r in runs if r.dataset == name]
        gains[name] = float(np.mean([r.gain for r in mine]))
        print(f"{name:<26}{mine[0].metric:<10}"
              + "".join(f"{np.mean([r.test[k] for r in mine]):10.4f}" for k in FINALS) + f"{gains[name]:+10.4f}"
              + "".join(f"{np.mean([r.fits[k] for r in mine]):14.1f}" for k in FINALS)
              + "".join(f"{np.mean([r.seconds[k] for r in mine]):12.2f}" for k in FINALS))
    held = sum(g >= 0 for g in gains.values())
    values = np.array(list(gains.values()))
    print(f"ensemble >= refit on {held} of {len(names)} datasets (target: 5 of 6); mean gain {values.mean():+.4f}, "
          f"spread (sd over datasets) {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}, from {values.min():+.4f} "
          f"to {values.max():+.4f}; bag - refit: mean "
          f"{np.mean([(1 if r.greater_is_better else -1) * (r.test['bag'] - r.test['refit']) for r in runs]):+.4f}")
    print(f"wall time: {wall:.1f} s on {CORES} cores")
    if args.json:
        data = {"cores": CORES, "wall_s": wall, "samples": samples, "k": args.k, "seeds": seeds,
                "test_size": TEST_SIZE, "runs": [asdict(r) | {"gain": r.gain} for r in runs], "gains": gains,
                "ensemble_at_least_refit": held, "datasets": len(names)}
        Path(args.json).write_text(json.dumps(data, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

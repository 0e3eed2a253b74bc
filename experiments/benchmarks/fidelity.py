"""Does the meta-objective predict generalisation? Its ranking of configurations against their true test scores.

For each dataset a large test split (40 %, seeded, stratified for classification) is set aside and never shown to
metaray. A metaray random search of N configurations (a space over several learners) runs on the remaining rows,
once per protocol (holdout, out_of_subset, full), each with K = 10 subsets, the same spec seed and so the same
configurations. Every configuration's true test score is its fit on the whole training part, scored on the test
split, exactly as metaray fits and scores (``metaray.objective.fit_final``). Then, for K = 1, 3, 5, 10 (the first K
of the ten per-subset scores: subset i depends only on the seed and i) and for the aggregates mean, median,
mean_minus_std and cvar (``metaray.aggregates.aggregate`` of those K scores), the meta-objective's ranking is
compared with the test ranking:

    Spearman  the rank correlation of meta-objective and test score over the configurations (1: same order);
    regret    test score of the best configuration minus that of the configuration the meta-objective picks
              (sign flipped for a loss, so regret >= 0; 0: it picked the best one), in the metric's units
              (accuracy for classification, R^2 for regression).

Every dataset is run twice by default (``--repeats``), with seeds 0 and 1 (of the split, the generated data and the
searches): one run's ranking of 60 configurations is noisy. Printed: every dataset x protocol x K x aggregate
(averaged over the repeats); the averages over the datasets (``--markdown``: as a Markdown table); the cells with
the best mean Spearman and the lowest mean regret. ``--json`` writes every number, each run's subset scores and test
scores included. Takes about five minutes on two cores.

    python experiments/benchmarks/fidelity.py                        # every dataset, tables
    python experiments/benchmarks/fidelity.py --markdown --json out.json
    python experiments/benchmarks/fidelity.py --datasets wine,diabetes --samples 30 --seed 1 --repeats 1
    python experiments/benchmarks/fidelity.py --quick                # one small dataset, 8 configurations
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CORES = os.cpu_count() or 1
PROTOCOLS = ("holdout", "out_of_subset", "full")
AGGREGATES = ("mean", "median", "mean_minus_std", "cvar")
KS = (1, 3, 5, 10)
TEST_SIZE = 0.4

CLASSIFICATION_SPACE = {"learner": {"choice": [
    {"name": "logistic_regression", "params": {"C": {"loguniform": [1e-4, 100.0]}}},
    {"name": "knn", "params": {"n_neighbors": {"randint": [1, 40]}, "weights": {"choice": ["uniform", "distance"]}}},
    {"name": "decision_tree", "params": {"max_depth": {"randint": [1, 16]}, "min_samples_leaf": {"randint": [1, 30]}}},
    {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 40]}, "max_depth": {"randint": [1, 12]}}},
    {"name": "svc", "params": {"C": {"loguniform": [1e-3, 1e3]}, "gamma": {"loguniform": [1e-4, 10.0]}}},
]}}
REGRESSION_SPACE = {"learner": {"choice": [
    {"name": "ridge", "params": {"alpha": {"loguniform": [1e-3, 1e4]}}},
    {"name": "knn", "params": {"n_neighbors": {"randint": [1, 40]}, "weights": {"choice": ["uniform", "distance"]}}},
    {"name": "decision_tree", "params": {"max_depth": {"randint": [1, 16]}, "min_samples_leaf": {"randint": [1, 30]}}},
    {"name": "svr", "params": {"C": {"loguniform": [1e-2, 1e4]}, "gamma": {"loguniform": [1e-4, 1.0]}}},
]}}


@dataclass(frozen=True)
class DataSource:
    """A dataset: a bundled scikit-learn loader (``load_<name>``) or a generator with its parameters."""

    name: str
    task: str
    metric: str
    loader: str
    params: dict = field(default_factory=dict)

    def load(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn import datasets

        fn = getattr(datasets, self.loader)
        if self.loader.startswith("make_"):
            X, y = fn(**self.params, random_state=seed)
        else:
            X, y = fn(return_X_y=True)
        return np.asarray(X, dtype=float), np.asarray(y)


SOURCES = {s.name: s for s in (
    DataSource("breast_cancer", "classification", "accuracy", "load_breast_cancer"),
    DataSource("wine", "classification", "accuracy", "load_wine"),
    DataSource("digits", "classification", "accuracy", "load_digits"),
    DataSource("synthetic_classification", "classification", "accuracy", "make_classification",
               {"n_samples": 800, "n_features": 20, "n_informative": 6, "n_redundant": 4, "n_classes": 3,
                "n_clusters_per_class": 2, "flip_y": 0.05, "class_sep": 0.8}),
    DataSource("diabetes", "regression", "r2", "load_diabetes"),
    DataSource("synthetic_regression", "regression", "r2", "make_regression",
               {"n_samples": 600, "n_features": 30, "n_informative": 10, "noise": 60.0}),
)}
DEFAULT_DATASETS = ("breast_cancer", "wine", "digits", "synthetic_classification", "diabetes", "synthetic_regression")


def split(source: DataSource, seed: int, test_size: float = TEST_SIZE):
    """(X_train, X_test, y_train, y_test): the rows metaray sees and the held-out test rows, stratified by class."""
    from sklearn.model_selection import train_test_split

    X, y = source.load(seed)
    return train_test_split(X, y, test_size=test_size, random_state=seed,
                            stratify=y if source.task == "classification" else None)


def rank_quality(meta, test, *, greater_is_better: bool) -> tuple[float, float, int]:
    """(Spearman, regret, chosen index) of a meta-objective against the test scores of the same configurations.

    Both are values of the metric (or an aggregate of it): larger is better unless ``greater_is_better`` is False.
    The meta-objective picks its best configuration (the earliest of equals, as metaray does); regret is how much
    worse that one's test score is than the best test score, >= 0 either way. Spearman is NaN when either side is
    constant (no order to compare).

    Example:
        >>> rank_quality([0.1, 0.2, 0.3], [0.5, 0.6, 0.9], greater_is_better=True)
        (1.0, 0.0, 2)
    """
    from scipy.stats import spearmanr

    meta, test = np.asarray(meta, dtype=float), np.asarray(test, dtype=float)
    if meta.shape != test.shape or meta.size == 0:
        raise ValueError(f"meta-objectives {meta.shape} and test scores {test.shape} must be the same, non-empty")
    sign = 1.0 if greater_is_better else -1.0
    chosen = int(np.argmax(sign * meta))
    regret = float(sign * (test[np.argmax(sign * test)] - test[chosen]))
    if np.ptp(meta) == 0 or np.ptp(test) == 0:
        rho = math.nan
    else:
        rho = float(spearmanr(meta, test).statistic)
    return rho, regret, chosen


@dataclass
class Cell:
    dataset: str
    seed: int
    protocol: str
    k: int
    aggregate: str
    spearman: float
    regret: float
    chosen: str  # the trial the meta-objective picks


@dataclass
class DatasetRun:
    name: str
    seed: int  # of the split, the data generator and the searches
    task: str
    metric: str
    greater_is_better: bool
    n_train: int
    n_test: int
    trials: list[str]
    learners: list[str]
    params: list[dict]
    test_scores: list[float]
    scores: dict[str, list[list[float]]]  # protocol -> one row of K_max subset scores per configuration
    search_seconds: dict[str, float]
    test_seconds: float
    random_regret: float  # the regret of a configuration picked at random, on average: the scale regrets compare to
    alpha: float  # the spec's CVaR tail fraction and mean_minus_std weight, which the aggregates of K scores use
    lam: float
    failed: list[str]  # configurations that failed under some protocol, left out of every ranking


def spec_for(source: DataSource, csv: Path, *, seed: int, samples: int, k: int, protocol: str) -> dict:
    return {
        "name": f"fidelity_{source.name}_{protocol}", "seed": seed,
        "data": {"path": str(csv), "target": "target", "task": source.task, "scale": True},
        "subsets": {"sampler": "subsample", "k": k, "fraction": 0.8, "protocol": protocol},
        "objective": {"metric": source.metric, "aggregate": "mean"},
        "search": {"searcher": "random", "num_samples": samples,
                   "space": CLASSIFICATION_SPACE if source.task == "classification" else REGRESSION_SPACE},
    }


def _param_columns(table) -> list[str]:
    return sorted(c for c in table.columns if c.startswith("param."))


def configurations(spec: dict, table) -> dict[str, tuple[str, dict]]:
    """trial id -> (learner, parameters) of every configuration of a search's results table.

    The table's parameter columns lose types (an integer parameter of one learner is NaN in the rows of the others,
    so pandas keeps it as a float); the configurations are drawn again from metaray's own seeded searcher instead,
    as the search drew them, and checked against the table."""
    from metaray.searchers import make_searcher
    from metaray.spec import load_spec

    s = load_spec(spec)
    space = s.parsed_space()
    searcher = make_searcher(s.search.searcher, space, s.search.num_samples, "max", s.seed)
    out = {}
    for i in range(s.search.num_samples):
        config = searcher.suggest(i)
        trial = f"t{i:04d}"
        row = table.loc[table["trial"] == trial].iloc[0]
        name, params = space.resolve(config)
        visible = space.visible(config)
        if row["learner"] != name or any(not _same(row[f"param.{p}"], v) for p, v in visible.items() if p != "learner"):
            raise RuntimeError(f"{trial}: the results table's configuration is not the searcher's {visible}")
        out[trial] = (name, params)
    return out


def _same(a, b) -> bool:
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_scores(spec: dict, configs: dict[str, tuple[str, dict]], X_test, y_test) -> dict[str, float]:
    """Each configuration fitted on the whole training part and scored on the test rows, by metaray's own refit
    (``fit_final``: the refit's seed, the spec's preprocessing, ``score_rows``), with the test rows as its hold-out."""
    import pandas as pd

    from metaray.objective import Problem, fit_final, prepare
    from metaray.spec import LearnerSpec, load_spec
    from metaray.subsets import SubsetPlan

    prepared = prepare(load_spec(spec), say=lambda line: None)
    ds = prepared.dataset
    test_X = ds.cleaner.transform(pd.DataFrame(X_test, columns=ds.cleaner.columns)) if ds.cleaner else X_test
    n = len(ds.y)
    X = (pd.concat([ds.X, test_X], ignore_index=True) if isinstance(ds.X, pd.DataFrame)
         else np.concatenate([ds.X, test_X]))
    y = np.concatenate([ds.y, np.asarray(y_test, dtype=ds.y.dtype)])
    plan = SubsetPlan("holdout", "subsample", (), (), np.arange(n, len(y)))
    problem = Problem(X, y, plan, ds.task, ds.classes, prepared.metrics[:1])
    metric = prepared.metrics[0]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the odd configuration; the searches saw them too
        for trial, (name, params) in configs.items():
            learner = prepared.learner_for(LearnerSpec(name=name, params=params))
            _, scores, _ = fit_final(problem, learner, prepared.spec.seed)
            out[trial] = scores[metric]
    return out


def run_dataset(source: DataSource, *, seed: int, samples: int, k: int, protocols, say) -> DatasetRun:
    """Split, search once per protocol on the training part, fit every configuration for its test score.

    Checked on the way, so that a wrong number cannot come out quietly: every protocol searched the same
    configurations (the table's learner and parameter columns), the configurations drawn again are the table's, and
    each aggregate of a configuration's K subset scores is the one the search itself reported. A configuration that
    failed under any protocol is left out of every ranking (said, and counted in ``failed``)."""
    import pandas as pd

    from metaray.aggregates import aggregate
    from metaray.metrics import get_metric
    from metaray.run import search
    from metaray.spec import load_spec

    X_train, X_test, y_train, y_test = split(source, seed)
    greater = get_metric(source.metric).greater_is_better
    tables, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="metaray-fidelity-") as tmp:
        csv = Path(tmp) / f"{source.name}_train.csv"
        frame = pd.DataFrame(X_train, columns=[f"x{i}" for i in range(X_train.shape[1])])
        frame["target"] = y_train
        frame.to_csv(csv, index=False)
        for protocol in protocols:
            spec = spec_for(source, csv, seed=seed, samples=samples, k=k, protocol=protocol)
            t0 = time.perf_counter()
            result = search(spec, run_dir=Path(tmp) / protocol, progress=None, track=False)
            seconds[protocol] = time.perf_counter() - t0
            table = result.results.sort_values("trial").reset_index(drop=True)
            columns = ["trial", "learner", *_param_columns(table)]
            if not tables:
                first_spec, reference = spec, table[columns]
                configs = configurations(spec, table)
            elif not reference.equals(table[columns]):  # the same spec seed and searcher: the same configurations
                raise RuntimeError(f"{source.name}: protocol {protocol} searched other configurations than "
                                   f"{protocols[0]}")
            say(f"{source.name}: {protocol} search, {len(table)} configurations x {k} subsets, "
                f"{seconds[protocol]:.1f} s")
            tables[protocol] = table
        failed = sorted({t for table in tables.values() for t in table.loc[table["status"] != "completed", "trial"]})
        for trial in failed:
            errors = {p: t.loc[t["trial"] == trial, "error"].iloc[0] for p, t in tables.items()}
            say(f"{source.name}: {trial} failed, left out: {errors}")
        trials = [t for t in reference["trial"] if t not in failed]
        t0 = time.perf_counter()
        tests = test_scores(first_spec, {t: configs[t] for t in trials}, X_test, y_test)
        test_seconds = time.perf_counter() - t0
    objective = load_spec(first_spec).objective
    scores = {}
    for protocol, table in tables.items():
        table = table.set_index("trial").loc[trials]
        scores[protocol] = table[[f"score_{i}" for i in range(k)]].to_numpy(dtype=float).tolist()
        for trial, row, subset_scores in zip(trials, table.itertuples(), scores[protocol], strict=True):
            mine = aggregate(subset_scores, greater_is_better=greater, alpha=objective.alpha, lam=objective.lam)
            for name in AGGREGATES:
                if not math.isclose(mine[name], getattr(row, name), rel_tol=1e-9, abs_tol=1e-12):
                    raise RuntimeError(f"{source.name}/{protocol}/{trial}: the {name} of the subset scores, "
                                       f"{mine[name]}, is not the search's {getattr(row, name)}")
    test = np.array([tests[t] for t in trials])
    best = test.max() if greater else test.min()
    random_regret = float(np.mean(np.abs(best - test)))
    say(f"{source.name}: test scores of {len(trials)} configurations, {test_seconds:.1f} s")
    return DatasetRun(source.name, seed, source.task, source.metric, greater, len(y_train), len(y_test), trials,
                      [configs[t][0] for t in trials], [configs[t][1] for t in trials], test.tolist(), scores,
                      seconds, test_seconds, random_regret, objective.alpha, objective.lam, failed)


def cells(run: DatasetRun, ks, aggregates=AGGREGATES) -> list[Cell]:
    """Spearman and regret of every (protocol, K, aggregate) of one dataset: each aggregate of the first K subset
    scores, with the spec's alpha and lam."""
    from metaray.aggregates import aggregate

    out = []
    for protocol, rows in run.scores.items():
        for k in ks:
            aggs = [aggregate(row[:k], greater_is_better=run.greater_is_better, alpha=run.alpha, lam=run.lam)
                    for row in rows]
            for name in aggregates:
                rho, regret, chosen = rank_quality([a[name] for a in aggs], run.test_scores,
                                                   greater_is_better=run.greater_is_better)
                out.append(Cell(run.name, run.seed, protocol, k, name, rho, regret, run.trials[chosen]))
    return out


def summarise(all_cells: list[Cell]):
    """protocol x K x aggregate -> Spearman and regret averaged over the datasets and repeats (every dataset has as
    many repeats, so this is the mean over the datasets of each one's mean); a Spearman that is NaN (a constant
    ranking) is left out of its mean and counted."""
    import pandas as pd

    frame = pd.DataFrame([asdict(c) for c in all_cells])
    grouped = frame.groupby(["protocol", "k", "aggregate"], sort=False)
    summary = grouped.agg(spearman=("spearman", "mean"), regret=("regret", "mean"), runs=("spearman", "size"),
                          spearman_nan=("spearman", lambda s: int(s.isna().sum())))
    return summary.reset_index()


def best_lines(summary) -> list[str]:
    rho = summary.loc[summary["spearman"].idxmax()]
    low = summary.loc[summary["regret"].idxmin()]
    return [f"best mean Spearman: protocol={rho['protocol']}, K={rho['k']}, aggregate={rho['aggregate']} "
            f"(Spearman {rho['spearman']:.3f}, regret {rho['regret']:.4f})",
            f"lowest mean regret: protocol={low['protocol']}, K={low['k']}, aggregate={low['aggregate']} "
            f"(regret {low['regret']:.4f}, Spearman {low['spearman']:.3f})"]


def wide(frame, fmt):
    """Rows protocol x K, a column per aggregate: 'Spearman / regret'."""
    import pandas as pd

    rows = []
    order = {p: i for i, p in enumerate(PROTOCOLS)}
    for (protocol, k), group in sorted(frame.groupby(["protocol", "k"]), key=lambda g: (order[g[0][0]], g[0][1])):
        by = {r.aggregate: fmt(r.spearman, r.regret) for r in group.itertuples()}
        rows.append({"protocol": protocol, "K": k, **{a: by[a] for a in AGGREGATES if a in by}})
    return pd.DataFrame(rows)


def markdown(summary) -> str:
    table = wide(summary, lambda rho, regret: f"{rho:.3f} / {regret:.4f}")
    head = ["protocol", "K", *[f"{a}: Spearman / regret" for a in table.columns[2:]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:"] + ["---:"] * (len(head) - 2)) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def dataset_names(parser, args) -> list[str]:
    """``--datasets`` (default: every dataset; ``--quick``: wine), each checked (``parser.error`` otherwise)."""
    names = args.datasets.split(",") if args.datasets else (["wine"] if args.quick else list(DEFAULT_DATASETS))
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {', '.join(SOURCES)}")
    return names


@contextlib.contextmanager
def local_ray():
    """A Ray on this machine for the benchmark, as the metaray command starts it (on 127.0.0.1 only); a Ray this
    process already joined (the test suite's) is used and left running."""
    from metaray.cluster import connect, ray_environment

    ray_environment(None)
    import ray

    started_ray = not ray.is_initialized()
    try:
        connect(num_cpus=CORES)
        yield
    finally:
        if started_ray:
            ray.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small dataset, 8 configurations, holdout, K <= 3")
    parser.add_argument("--datasets", help=f"comma-separated, of {', '.join(SOURCES)} (default: all)")
    parser.add_argument("--samples", type=int, help="configurations per search (default 60; quick: 8)")
    parser.add_argument("--seed", type=int, default=0, help="the split's, the data generators' and the searches' seed")
    parser.add_argument("--repeats", type=int, help="runs of every dataset, with seeds seed, seed + 1, ... "
                        "(default 2; quick: 1); the tables average over them")
    parser.add_argument("--protocols", help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    parser.add_argument("--json", metavar="PATH", help="write every number to this file")
    args = parser.parse_args(argv)
    names = dataset_names(parser, args)
    protocols = args.protocols.split(",") if args.protocols else (["holdout"] if args.quick else list(PROTOCOLS))
    if set(protocols) - set(PROTOCOLS):
        parser.error(f"unknown protocols {sorted(set(protocols) - set(PROTOCOLS))}; known: {', '.join(PROTOCOLS)}")
    samples = args.samples or (8 if args.quick else 60)
    repeats = args.repeats or (1 if args.quick else 2)
    seeds = [args.seed + r for r in range(repeats)]
    ks = [k for k in KS if k <= 3] if args.quick else list(KS)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    with local_ray():
        say(f"ray: {time.perf_counter() - t_start:.1f} s")
        runs = [run_dataset(SOURCES[n], seed=seed, samples=samples, k=max(ks), protocols=protocols, say=say)
                for seed in seeds for n in names]
    wall = time.perf_counter() - t_start
    all_cells = [c for run in runs for c in cells(run, ks)]
    summary = summarise(all_cells)

    print(f"Does the meta-objective predict generalisation? {len(names)} datasets x {repeats} repeats (seeds "
          f"{', '.join(map(str, seeds))}), {samples} configurations each, test split {TEST_SIZE:.0%}; cells are "
          f"'Spearman / regret' (regret in the metric's units), averaged over the repeats")
    for name in names:
        mine = [r for r in runs if r.name == name]
        failed = [f"{t} (seed {r.seed})" for r in mine for t in r.failed]
        first = mine[0]
        print(f"\n{name} ({first.task}, {first.metric}, {first.n_train} training rows, {first.n_test} test rows): "
              f"test {first.metric} from {min(min(r.test_scores) for r in mine):.4f} to "
              f"{max(max(r.test_scores) for r in mine):.4f}; regret of a random pick "
              f"{np.mean([r.random_regret for r in mine]):.4f}"
              + (f"; {len(failed)} failed configurations left out: {', '.join(failed)}" if failed else ""))
        table = summarise([c for c in all_cells if c.dataset == name])
        print(wide(table, lambda r, g: f"{r:6.3f} / {g:.4f}").to_string(index=False))
    print(f"\nmean over the {len(names)} datasets x {repeats} repeats (a random pick's regret: "
          f"{np.mean([r.random_regret for r in runs]):.4f}):")
    if args.markdown:
        print(markdown(summary))
    else:
        print(wide(summary, lambda r, g: f"{r:6.3f} / {g:.4f}").to_string(index=False))
    nan = int(summary["spearman_nan"].sum())
    if nan:
        print(f"({nan} Spearman values were undefined, a constant ranking, and are left out of their means)")
    for line in best_lines(summary):
        print(line)
    print(f"wall time: {wall:.1f} s on {CORES} cores")
    if args.json:
        data = {"cores": CORES, "wall_s": wall, "samples": samples, "seeds": seeds, "ks": ks,
                "protocols": protocols, "aggregates": list(AGGREGATES), "test_size": TEST_SIZE,
                "datasets": [asdict(r) for r in runs], "cells": [asdict(c) for c in all_cells],
                "summary": summary.to_dict("records"), "best": best_lines(summary)}
        Path(args.json).write_text(json.dumps(data, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

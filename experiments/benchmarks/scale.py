"""Does the driver keep a large cluster busy? A cluster simulator around the real, Ray-free ``Driver``.

The search's own driver (metaray.driver: the searcher, the scheduler, every decision) runs against a runner on a
virtual clock: N cores, each fit a duration drawn from a log-normal around its configuration's own cost (sigma 0.5;
configurations differ by a factor of 4), 2 % stragglers ten times as long (``--straggler``); its score the
configuration's quality plus the subset's noise. What the driver does between two results (delivering, deciding,
the searcher's ``suggest``: measured on this machine's clock, as it happens) is charged to the virtual clock: cores
whose fits end meanwhile stay idle until the driver hands them work. Utilisation: busy core-seconds over cores x
makespan.

For each searcher (random, optuna, hyperopt) x scheduler (none, asha, racing) and cluster size: utilisation, the
virtual time to the final best, fits spent, configurations; with ``search.max_concurrent`` as metaray resolves it
today (random: every core; the adaptive searchers: 8 configurations in flight) and, for the adaptive searchers,
``max(8, 2 x cores / K)`` configurations in flight ("auto": what ``search.max_concurrent: auto`` resolves to).
The real-run check (the same best as a real Ray run at small N) is not made here.

    python experiments/benchmarks/scale.py --quick --json      # 16, 128 and 1,024 cores, fewer configurations
    python experiments/benchmarks/scale.py                     # 16, 128, 1,024 cores; 4 waves of configurations
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # metaray, run from a checkout

K = 5  # subsets per configuration
STRAGGLER = 10.0  # 2 % of fits take this many times as long
SEARCHERS = ("random", "optuna", "hyperopt")
SCHEDULERS = ("none", "asha", "racing")
SPACE = {"x": {"uniform": [0.0, 1.0]}, "y": {"loguniform": [0.01, 10.0]}, "z": {"choice": ["a", "b", "c"]}}


@dataclass
class Row:
    searcher: str
    scheduler: str
    cores: int
    in_flight: str  # max_concurrent as resolved: "default" (8 for adaptive searchers) or "auto" (max(8, 2 cores / K))
    utilisation: float
    makespan_s: float  # virtual seconds
    time_to_best_s: float  # virtual seconds until the final best configuration ended
    fits: int
    configurations: int
    driver_s: float  # real seconds the driver spent (charged to the virtual clock)


class SimRunner:
    """The runner protocol (metaray.runners.Runner) on a virtual clock: ``cores`` fits at once, lower
    configurations first, each taking ``duration(unit, learner)`` virtual seconds."""

    def __init__(self, cores: int, duration, score, rng: np.random.Generator):
        self.cores, self.duration, self.score, self.rng = cores, duration, score, rng
        self.now = 0.0
        self.busy = 0.0  # core-seconds of fits that ran
        self._queue: list = []  # (unit, learner), kept sorted by unit
        self._running: list = []  # heap of (end, seq, unit, learner, start)
        self._seq = 0
        self._charged = time.perf_counter()  # real time of the driver not yet charged to the clock
        self.driver_s = 0.0

    # the driver's own time between calls goes on the virtual clock (fits keep running meanwhile)
    def _charge(self) -> None:
        spent = time.perf_counter() - self._charged
        self.driver_s += spent
        self.now += spent

    def submit(self, units, learner) -> None:
        self._queue += [(u, learner) for u in units]
        self._queue.sort(key=lambda job: job[0])

    def cancel(self, trial: int) -> None:
        self._queue = [job for job in self._queue if job[0].trial != trial]
        for end, _, unit, _, _ in self._running:
            if unit.trial == trial and end > self.now:  # a cancelled fit frees its core now: the rest is not spent
                self.busy -= end - self.now
        self._running = [r for r in self._running if r[2].trial != trial]
        heapq.heapify(self._running)

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def room(self) -> int:
        return 2 * self.cores - self.pending

    def _start(self) -> None:
        while self._queue and len(self._running) < self.cores:
            unit, learner = self._queue.pop(0)
            d = self.duration(unit, learner)
            self.busy += d
            self._seq += 1
            heapq.heappush(self._running, (self.now + d, self._seq, unit, learner, self.now))

    def wait(self, timeout: float | None = None):
        from metaray.fits import FitResult

        self._charge()
        # fits that ended while the driver worked come back now; else the clock moves to the next end
        self._start()
        if not self._running:
            self._charged = time.perf_counter()
            return []
        self.now = max(self.now, self._running[0][0])
        out = []
        while self._running and self._running[0][0] <= self.now:
            _, _, unit, learner, _ = heapq.heappop(self._running)
            out.append(FitResult(unit, scores={"score": self.score(unit, learner)}, fit_seconds=0.0))
        self._start()  # the freed cores take what is queued at once (the runner's queue, not the driver)
        self._charged = time.perf_counter()
        return out

    def close(self) -> None:
        self._queue, self._running = [], []


def simulate(searcher_name: str, scheduler_name: str, cores: int, configurations: int, in_flight: str,
             seed: int = 0, straggler: float = STRAGGLER) -> Row:
    from metaray.aggregates import aggregate
    from metaray.driver import Driver, Layout, drive
    from metaray.schedulers import make_scheduler
    from metaray.searchers import make_searcher
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec, load_spec

    rng = np.random.default_rng(seed)
    space = parse_space(SPACE, LearnerSpec(name="sklearn.dummy.DummyClassifier"))
    searcher = make_searcher(searcher_name, space, configurations, "max", seed)
    options = load_spec({"name": "s", "data": {"dataset": "iris"}, "subsets": {"k": K},
                         "search": {"scheduler": scheduler_name}}).search.scheduler
    scheduler = make_scheduler(options, mode="max", greater_is_better=True, total=K, overlap=0.25)
    layout = Layout.over_subsets(K, scheduler.milestones(K))
    if searcher.adaptive:
        max_concurrent = 8 if in_flight == "default" else max(8, 2 * cores // K)
    else:
        max_concurrent = None

    def quality(config) -> float:  # a smooth landscape with its best near x = 0.7, y = 1, z = b
        return (0.9 - 0.3 * (config["x"] - 0.7) ** 2 - 0.02 * math.log10(config["y"]) ** 2
                - (0.0 if config["z"] == "b" else 0.03))

    cost = {}

    def duration(unit, config) -> float:
        base = cost.setdefault(unit.trial, float(np.exp(rng.uniform(0, math.log(4)))))
        d = base * float(rng.lognormal(0.0, 0.5))
        return d * straggler if rng.random() < 0.02 else d

    def score(unit, config) -> float:
        noise = np.random.default_rng([seed, unit.trial, unit.subset]).normal(0, 0.01)
        return quality(config) + float(noise)

    runner = SimRunner(cores, duration, score, rng)
    driver = Driver(searcher, scheduler, layout, num_samples=configurations, max_concurrent=max_concurrent,
                    score=lambda s: aggregate(s, greater_is_better=True), objective="mean", metric="score",
                    accept=lambda config: config)
    ended: dict[int, float] = {}
    runner._charged = time.perf_counter()
    drive(driver, runner, learner_for=lambda trial, unit: trial.config,
          on_end=lambda trial: ended.__setitem__(trial.index, runner.now))
    runner._charge()
    done = [t for t in driver.trials if t.status == "completed" and math.isfinite(t.objective)]
    best = max(done, key=lambda t: (t.objective, -t.index)) if done else None
    fits = sum(t.fitted for t in driver.trials)
    makespan = runner.now
    return Row(searcher_name, scheduler_name, cores, in_flight, runner.busy / (cores * makespan) if makespan else 0.0,
               round(makespan, 2), round(ended.get(best.index, math.nan), 2) if best else math.nan, fits,
               len(driver.trials), round(runner.driver_s, 3))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations (1,024 cores included)")
    parser.add_argument("--json", action="store_true", help="print {'rows': [...]} as JSON")
    parser.add_argument("--cores", default="16,128,1024")
    parser.add_argument("--waves", type=int, help="configurations: this many times cores / K (20; 4 in --quick)")
    parser.add_argument("--searchers", default=",".join(SEARCHERS))
    parser.add_argument("--straggler", type=float, default=STRAGGLER, help="how much longer 2 %% of fits take")
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    args = parser.parse_args(argv)
    rows = []
    for cores in [int(c) for c in args.cores.split(",")]:
        # enough configurations for several waves of the cluster: 4 (2 in --quick), at least 40
        configurations = max(40, (args.waves or (4 if args.quick else 20)) * cores // K)
        for name in args.searchers.split(","):
            for scheduler in args.schedulers.split(","):
                modes = ("default", "auto") if name != "random" else ("default",)
                for in_flight in modes:
                    row = simulate(name, scheduler, cores, configurations, in_flight, straggler=args.straggler)
                    rows.append(row)
                    if not args.json:
                        print(f"{row.searcher:<8} {row.scheduler:<7} {row.cores:>5} cores  in flight {in_flight:<8} "
                              f"utilisation {row.utilisation:6.1%}  fits {row.fits:>6}  configurations "
                              f"{row.configurations:>5}  makespan {row.makespan_s:9.1f}  best at "
                              f"{row.time_to_best_s:9.1f}  driver {row.driver_s:7.2f} s", flush=True)
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

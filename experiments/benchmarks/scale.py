"""Does the driver keep a large cluster busy? A cluster simulator around the real, Ray-free ``Driver``.

The search's own driver (metaray.driver: the searcher, the scheduler, every decision, the fits it gives out ahead
of a decision) runs against a runner on a virtual clock: N cores, each fit a duration of its own (a log-normal
around its configuration's cost, sigma 0.5; configurations differ by a factor of 4), on a core that straggles 2 % of
the time (ten times as long: ``--straggler``); its score the configuration's quality plus the subset's noise. The
runner copies a fit still running ``metaray.runners.BACKUP_AFTER`` times the mean fit time (a backup copy, on a core
drawn afresh, queued in its configuration's place), as metaray's FitRunner does; the copy that loses is counted as
``wasted``, not busy. What the driver does between two results (delivering, deciding, the searcher's ``suggest``:
measured on this machine's clock, as it happens) is charged to the virtual clock: cores whose fits end meanwhile
stay idle until the driver hands them work.

Utilisation is busy core-seconds over cores x time, over three spans: while the searcher had configurations left to
open (``utilisation``: the steady state of a long search), until the last fit started (``utilisation_work``), and
until the end (``utilisation_total``: the drain, when the last fits run and no work is left, too).

For each searcher (random, optuna, hyperopt) x scheduler (none, asha, racing) and cluster size: the utilisations,
the virtual time to the final best, fits spent, configurations; with ``search.max_concurrent`` as metaray resolves it
(random: as the runner has room; the adaptive searchers: 8 in flight, "default", and what ``search.max_concurrent:
auto`` resolves to, "auto": metaray.plan.auto_in_flight; ``--quick`` runs "auto" only).

    python experiments/benchmarks/scale.py --quick --json      # 16, 128 and 1,024 cores; 4 x cores configurations
    python experiments/benchmarks/scale.py                     # 20 x cores configurations (hours: Optuna's and
                                                               # HyperOpt's suggestions slow as their trials grow)
    python experiments/benchmarks/scale.py --check             # the same searches on Ray at 16 cores: same decisions
    python experiments/benchmarks/scale.py --quick --plot docs/images/scale.png    # utilisation against cores

``--suggesters N`` models a design metaray does not have (``simulate``'s ``suggesters``): the adaptive searchers'
suggestions made by N processes beside the driver, each as soon as the in-flight rule allows it; ``--in-flight``
sets their ``max_concurrent``. E.g. ``--cores 1024 --waves 8 --searchers optuna --schedulers racing --suggesters 8``.
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
    in_flight: str  # max_concurrent as resolved: "default" (8 for adaptive searchers) or "auto" (auto_in_flight)
    utilisation: float  # busy core-seconds over cores x time, while the searcher had configurations left to open
    utilisation_work: float  # the same until the last fit started (the open configurations' last promotions too)
    utilisation_total: float  # the same until the last fit ended: the drain (no work left, the last fits running) too
    makespan_s: float  # virtual seconds
    steady_s: float  # virtual seconds until the last configuration opened
    drain_s: float  # from the last fit's start to the end
    time_to_best_s: float  # virtual seconds until the final best configuration ended
    fits: int
    configurations: int
    driver_s: float  # real seconds the driver spent (charged to the virtual clock)
    suggest_s: float  # ... of which in the searcher's ``suggest``
    copies: int  # backup copies of straggling fits started
    wasted: float  # core-seconds of the copies that lost, over cores x time (not in the utilisations)
    suggesters: int = 0  # 0: suggestions made in the driver (metaray); N: by N processes beside it (a design)


class SimRunner:
    """The runner protocol (metaray.runners.Runner) on a virtual clock: ``cores`` fits at once, lower
    configurations first. ``duration(unit, learner) -> (seconds, straggle)``: a fit's own duration and the factor a
    straggling core multiplies it by (drawn again for a backup copy). With ``backups``, as metaray.runners.FitRunner:
    a fit still running ``BACKUP_AFTER`` times the mean fit time after it started is copied when no fit is queued
    or its configuration is the oldest running; the first copy to end is taken, the other cancelled, its
    core-seconds counted as ``wasted``, not busy."""

    def __init__(self, cores: int, duration, score, rng: np.random.Generator, charge: bool = True,
                 backups: bool = True):
        self.cores, self.duration, self.score, self.rng, self.charge = cores, duration, score, rng, charge
        self.backups = backups
        self.now = 0.0
        self.busy = 0.0  # core-seconds of fits whose results were taken, or cut short by a cancel
        self.wasted = 0.0  # core-seconds of the copies that lost
        self.copies = 0  # backup copies started
        self._queue: list = []  # a heap of ((trial, stage, subset), seq, unit, learner[, the fit it copies])
        self._running: dict[int, list] = {}  # seq -> [end, unit, learner, start, twin seq or None]
        self._ends: list = []  # heap of (end, seq); entries of fits no longer running are skipped
        self._due: list = []  # heap of (when a backup is due, seq)
        self._seq = 0
        self._pairs = 0  # fits running with a copy
        self._copies_queued = 0
        self._deferred: list[int] = []  # fits due a copy, waiting for a core to idle
        self._expected: float | None = None  # the running mean of fit durations (FitRunner's, per learner)
        self.spans: dict[int, list[float]] = {}  # seq -> [start, end] of every fit that ran, but lost copies
        self.last_start = 0.0  # when the last fit started: after it, no work was left to hand out (the drain)
        self._charged = time.perf_counter()  # real time of the driver not yet charged to the clock
        self.driver_s = 0.0
        self.waits = 0  # calls of ``wait``
        self.not_before: dict[int, float] = {}  # configuration -> when its suggestion is ready (parallel suggesters)
        self._held: list = []  # a heap of (ready, seq, job): fits submitted before their configuration's suggestion

    # the driver's own time between calls goes on the virtual clock (fits keep running meanwhile)
    def _charge(self) -> None:
        spent = time.perf_counter() - self._charged
        self.driver_s += spent
        self.now += spent if self.charge else 0.0

    def submit(self, units, learner) -> None:
        for u in units:  # a heap, lowest configuration first, as metaray.runners.FitRunner's queue
            self._seq += 1
            job = ((u.trial, u.stage, u.subset), self._seq, u, learner)
            ready = self.not_before.get(u.trial, 0.0)
            if ready > self.now:  # its suggestion is still being made (``simulate(..., suggesters=N)``)
                heapq.heappush(self._held, (ready, self._seq, job))
            else:
                heapq.heappush(self._queue, job)

    def _release(self) -> None:
        """Fits whose configuration's suggestion is ready by now join the queue."""
        while self._held and self._held[0][0] <= self.now:
            heapq.heappush(self._queue, heapq.heappop(self._held)[2])

    def _stop(self, seq: int, wasted: bool) -> None:
        """End a running fit now: a cancelled one (its rest is not spent) or a copy that lost (all of it wasted)."""
        end, _, _, start, twin = self._running.pop(seq)
        self.busy -= end - self.now
        if wasted:
            self.busy -= self.now - start
            self.wasted += self.now - start
            del self.spans[seq]
        else:
            self.spans[seq][1] = self.now
        if twin is not None and twin in self._running:
            self._running[twin][4] = None
            self._pairs -= 1

    def cancel(self, trial: int) -> None:
        self._held = [held for held in self._held if held[2][0][0] != trial]
        heapq.heapify(self._held)
        self._queue = [job for job in self._queue if job[0][0] != trial]
        self._copies_queued = sum(len(job) == 5 for job in self._queue)
        heapq.heapify(self._queue)
        for seq in [s for s, r in self._running.items() if r[1].trial == trial]:
            self._stop(seq, wasted=False)  # a cancelled fit frees its core now: the rest is not spent

    @property
    def pending(self) -> int:
        return (len(self._queue) - self._copies_queued + len(self._running) - self._pairs  # a fit and its copy: one
                + len(self._held))

    def room(self) -> int:
        return 2 * self.cores - self.pending

    def idle(self) -> int:
        return self.cores - self.pending

    def _run(self, unit, learner, seconds: float, twin: int | None = None) -> int:
        self._seq += 1
        self.busy += seconds
        self.spans[self._seq] = [self.now, self.now + seconds]
        self._running[self._seq] = [self.now + seconds, unit, learner, self.now, twin]
        heapq.heappush(self._ends, (self.now + seconds, self._seq))
        if twin is None and self._expected is not None:
            from metaray.runners import backup_due

            heapq.heappush(self._due, (backup_due(self.now, self._expected), self._seq))
        return self._seq

    def _start(self) -> None:
        self._release()
        while self._queue and len(self._running) < self.cores:
            _, _, unit, learner, *copy_of = heapq.heappop(self._queue)
            self._copies_queued -= bool(copy_of)
            seconds, straggle = self.duration(unit, learner)  # a copy: the fit's own time, on a core drawn afresh
            if not copy_of:
                self._run(unit, learner, seconds * straggle)
                self.last_start = self.now
            elif copy_of[0] in self._running and self._running[copy_of[0]][4] is None:
                self._running[copy_of[0]][4] = self._run(unit, learner, seconds * straggle, twin=copy_of[0])
                self.copies += 1
                self._pairs += 1

    def _copy(self, due: list[int]) -> None:
        """Queue a copy of each fit due one, as FitRunner does: at once if no fit is queued (a core would idle) or
        its configuration is the oldest running (it holds up those after it), lowest configuration first; the others
        wait until then (``_deferred``)."""
        due = [seq for seq in due if seq in self._running and self._running[seq][4] is None]
        if not due:
            self._deferred = []
            return
        idle = len(self._queue) == self._copies_queued
        oldest = min(r[1].trial for r in self._running.values())
        self._deferred = []
        for seq in due:
            _, unit, learner, _, _ = self._running[seq]
            if (idle or unit.trial == oldest) and self._pairs + self._copies_queued < self.cores:
                self._seq += 1
                heapq.heappush(self._queue, ((unit.trial, unit.stage, unit.subset), self._seq, unit, learner, seq))
                self._copies_queued += 1
            else:
                self._deferred.append(seq)
        self._start()

    def _next_due(self) -> tuple[float, int] | None:
        """The next running fit due a backup copy."""
        if not self.backups:
            return None
        while self._due and (self._due[0][1] not in self._running or self._running[self._due[0][1]][4] is not None):
            heapq.heappop(self._due)
        return self._due[0] if self._due else None

    def wait(self, timeout: float | None = None):
        from metaray.fits import FitResult

        self._charge()
        self.waits += 1
        # fits that ended while the driver worked come back now; else the clock moves to the next end
        self._start()
        while True:
            while self._ends and self._ends[0][1] not in self._running:
                heapq.heappop(self._ends)
            if self._held and (not self._ends or self._held[0][0] < self._ends[0][0]):
                self.now = max(self.now, self._held[0][0])  # a suggestion ready before the next fit ends
                self._start()
                continue
            if not self._ends:
                self._charged = time.perf_counter()
                return []
            self._copy(self._deferred)
            due = self._next_due()
            if due is None or due[0] >= max(self.now, self._ends[0][0]):
                break
            self.now = max(self.now, due[0])
            heapq.heappop(self._due)
            self._copy([*self._deferred, due[1]])
        self.now = max(self.now, self._ends[0][0])
        out = []
        while self._ends and self._ends[0][0] <= self.now:
            _, seq = heapq.heappop(self._ends)
            if seq not in self._running:
                continue
            end, unit, learner, start, twin = self._running.pop(seq)
            if twin is not None and twin in self._running:
                self._pairs -= 1
                self._stop(twin, wasted=True)
            taken = end - start
            self._expected = taken if self._expected is None else 0.7 * self._expected + 0.3 * taken
            out.append(FitResult(unit, scores={"score": self.score(unit, learner)}, fit_seconds=0.0))
        self._start()  # the freed cores take what is queued at once (the runner's queue, not the driver)
        self._charged = time.perf_counter()
        return out

    def close(self) -> None:
        self._queue, self._running, self._ends, self._due, self._deferred, self._held = [], {}, [], [], [], []
        self._pairs = self._copies_queued = 0


def quality(config: dict) -> float:
    """The simulated landscape: its best near x = 0.7, y = 1, z = b."""
    return (0.9 - 0.3 * (config["x"] - 0.7) ** 2 - 0.02 * math.log10(config["y"]) ** 2
            - (0.0 if config["z"] == "b" else 0.03))


def score(unit, config: dict, seed: int) -> float:
    """A fit's score: the configuration's quality and the subset's noise, the same in the simulator and on Ray."""
    return quality(config) + float(np.random.default_rng([seed, unit.trial, unit.subset]).normal(0, 0.01))


def best_of(driver):
    """The driver's best completed configuration (the first of equals), or None."""
    done = [t for t in driver.trials if t.status == "completed" and math.isfinite(t.objective)]
    return max(done, key=lambda t: (t.objective, -t.index)) if done else None


def build_driver(searcher_name: str, scheduler_name: str, cores: int, configurations: int, in_flight: str,
                 seed: int = 0):
    """The search's driver as metaray builds it, for ``cores`` (``in_flight``: "default" or "auto")."""
    from metaray.aggregates import aggregate
    from metaray.driver import Driver, Layout
    from metaray.plan import ADAPTIVE_IN_FLIGHT, auto_in_flight
    from metaray.schedulers import make_scheduler
    from metaray.searchers import make_searcher
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec, load_spec

    space = parse_space(SPACE, LearnerSpec(name="sklearn.dummy.DummyClassifier"))
    searcher = make_searcher(searcher_name, space, configurations, "max", seed)
    options = load_spec({"name": "s", "data": {"dataset": "iris"}, "subsets": {"k": K},
                         "search": {"scheduler": scheduler_name}}).search.scheduler
    scheduler = make_scheduler(options, mode="max", greater_is_better=True, total=K, overlap=0.25)
    layout = Layout.over_subsets(K, scheduler.milestones(K))
    if searcher.adaptive:
        max_concurrent = (ADAPTIVE_IN_FLIGHT if in_flight == "default" else auto_in_flight(cores, layout)
                          if in_flight == "auto" else int(in_flight))
    else:
        max_concurrent = None
    return Driver(searcher, scheduler, layout, num_samples=configurations,
                  max_concurrent=max_concurrent, score=lambda s: aggregate(s, greater_is_better=True),
                  objective="mean", metric="score", accept=lambda config: config)


def outcome(driver) -> list[tuple]:
    """What a search decided: each configuration's status, fits delivered and objective."""
    return [(t.index, t.status, t.reported, round(t.objective, 12) if math.isfinite(t.objective) else None)
            for t in driver.trials]


def simulate(searcher_name: str, scheduler_name: str, cores: int, configurations: int, in_flight: str,
             seed: int = 0, straggler: float = STRAGGLER, keep: list | None = None, charge: bool = True,
             suggesters: int = 0) -> Row:
    """One simulated search (``keep``: a list the driver is appended to; ``charge=False``: the driver's own time is
    not charged to the clock, so that the result does not depend on this machine's speed).

    ``suggesters``: 0, the searcher's ``suggest`` runs in the driver, as metaray's does (its time charged with the
    driver's). N > 0 models a design metaray does not have: N processes beside the driver make the suggestions, each
    as soon as the in-flight rule allows it (configuration i once i - max_concurrent is delivered: the same
    suggestions, so the same decisions), the driver going on meanwhile; a suggestion's measured time goes on the clock
    of the first suggester free, and its configuration's fits start no sooner than it is ready."""
    from metaray.driver import drive

    rng = np.random.default_rng(seed)
    driver = build_driver(searcher_name, scheduler_name, cores, configurations, in_flight, seed)
    cost = {}

    def duration(unit, config) -> tuple[float, float]:  # the fit's own seconds, and the factor of a straggling core
        base = cost.setdefault(unit.trial, float(np.exp(rng.uniform(0, math.log(4)))))
        own = base * float(np.random.default_rng([seed, unit.trial, unit.stage, unit.subset]).lognormal(0.0, 0.5))
        return own, straggler if rng.random() < 0.02 else 1.0

    runner = SimRunner(cores, duration, lambda unit, config: score(unit, config, seed), rng, charge)
    opened, suggesting = [0.0], [0.0]  # when the last configuration opened; real seconds in ``suggest``
    suggest = driver.searcher.suggest
    free = [0.0] * suggesters  # when each suggester is next free (virtual seconds)

    def suggest_and_note(index):
        start = time.perf_counter()
        config = suggest(index)
        took = time.perf_counter() - start
        suggesting[0] += took
        # the virtual now: the driver's time since the runner last charged it to the clock counts too
        now = runner.now + (time.perf_counter() - runner._charged if runner.charge else 0.0)
        if suggesters:  # made by the first suggester free, from when it was asked; the driver did not spend it
            asked = now - (took if runner.charge else 0.0)
            k = int(np.argmin(free))
            free[k] = now = max(asked, free[k]) + (took if runner.charge else 0.0)
            runner._charged += took
            if config is not None:
                runner.not_before[index] = now
        if config is not None and runner.waits:  # (opened before the driver first waited: all at once, 0)
            opened[0] = now
        return config

    driver.searcher.suggest = suggest_and_note
    ended: dict[int, float] = {}
    runner._charged = time.perf_counter()
    drive(driver, runner, learner_for=lambda trial, unit: trial.config,
          on_end=lambda trial: ended.__setitem__(trial.index, runner.now))
    runner._charge()
    if keep is not None:
        keep.append(driver)
    best = best_of(driver)
    makespan, until = runner.now, runner.last_start

    def busy(t: float) -> float:  # busy core-seconds over cores x time, until t
        if t <= 0:
            return math.nan
        return round(sum(min(end, t) - start for start, end in runner.spans.values() if start < t) / (cores * t), 4)

    return Row(searcher_name, scheduler_name, cores, in_flight, busy(opened[0]), busy(until),
               round(runner.busy / (cores * makespan), 4) if makespan else 0.0, round(makespan, 2), round(opened[0], 2),
               round(makespan - until, 2), round(ended.get(best.index, math.nan), 2) if best else math.nan,
               sum(t.fitted for t in driver.trials), len(driver.trials), round(runner.driver_s, 3),
               round(suggesting[0], 3), runner.copies,
               round(runner.wasted / (cores * makespan), 4) if makespan else 0.0, suggesters)


class _Learner:
    """What a Ray fit task is handed: the configuration, with the name and memory ``FitRunner`` reads."""

    name, memory = "simulated", 0

    def __init__(self, config: dict):
        self.config = config


def _ray_fit(problem, learner: _Learner, unit, seed: int):
    from metaray.fits import FitResult

    return FitResult(unit, scores={"score": score(unit, learner.config, seed)}, fit_seconds=0.0)


def real_run(searcher_name: str, scheduler_name: str, cores: int, configurations: int, in_flight: str,
             seed: int = 0):
    """The same search on Ray (the running instance, or a local one): metaray's own ``FitRunner`` runs the fits as
    Ray tasks, in whatever order they finish. Returns the driver."""
    import ray
    from ray import cloudpickle

    from metaray.driver import drive
    from metaray.runners import FitRunner

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fit is this file's: workers cannot import it
    if not ray.is_initialized():
        ray.init(include_dashboard=False, configure_logging=False)
    driver = build_driver(searcher_name, scheduler_name, cores, configurations, in_flight, seed)
    runner = FitRunner(_ray_fit, ray.put(None), seed=seed, fits_per_task=1, label="scale-check")
    try:
        drive(driver, runner, learner_for=lambda trial, unit: _Learner(trial.config))
    finally:
        runner.close()
    return driver


def check(seed: int = 0, cores: int = 16, configurations: int = 60, searchers=SEARCHERS,
          schedulers=SCHEDULERS) -> list[dict]:
    """The simulator against a real Ray run, each searcher x scheduler at ``cores``: the same decisions and the
    same best configuration."""
    rows = []
    for name in searchers:
        for scheduler in schedulers:
            kept: list = []
            simulate(name, scheduler, cores, configurations, "auto", seed=seed, keep=kept)
            real = real_run(name, scheduler, cores, configurations, "auto", seed=seed)
            sim = kept[0]
            best = [getattr(best_of(d), "index", None) for d in (sim, real)]
            rows.append({"searcher": name, "scheduler": scheduler, "cores": cores, "same_decisions":
                         outcome(sim) == outcome(real), "best_simulated": best[0], "best_on_ray": best[1]})
    return rows


def _steady(row: dict) -> float:
    """The utilisation while configurations remain; where every configuration opened at once (the in-flight rule
    holds the whole search), until the last fit's start."""
    value = row["utilisation"]
    return row["utilisation_work"] if value is None or math.isnan(value) else value


def plot(rows: list[dict], path: Path) -> None:
    """Utilisation against cores, one line per searcher x scheduler (the "auto" in-flight rule for the adaptive
    searchers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    styles = {"random": "-", "optuna": "--", "hyperopt": ":"}
    colours = {"none": "tab:blue", "asha": "tab:orange", "racing": "tab:green"}
    for name in SEARCHERS:
        for scheduler in SCHEDULERS:
            line = sorted((r["cores"], _steady(r)) for r in rows if r["searcher"] == name
                          and r["scheduler"] == scheduler and r["in_flight"] in ("default" if name == "random"
                                                                                  else "auto",))
            if line:
                cores, used = zip(*line, strict=True)
                ax.plot(cores, used, styles[name], marker="o", color=colours[scheduler], label=f"{name} + {scheduler}")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["cores"] for r in rows})
    ax.set_xticks(ticks, [f"{c:,}" for c in ticks])
    ax.set_xlabel("cores (simulated)")
    ax.set_ylabel("core utilisation while configurations remain\n(to the last fit's start if all opened at once)",
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("experiments/benchmarks/scale.py: the real driver on a simulated cluster", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configurations (1,024 cores included)")
    parser.add_argument("--json", action="store_true", help="print {'rows': [...]} as JSON")
    parser.add_argument("--cores", default="16,128,1024")
    parser.add_argument("--waves", type=int, help="configurations: this many times the cores (20; 4 in --quick)")
    parser.add_argument("--searchers", default=",".join(SEARCHERS))
    parser.add_argument("--straggler", type=float, default=STRAGGLER, help="how much longer 2 %% of fits take")
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    parser.add_argument("--plot", type=Path, help="draw utilisation against cores into this PNG")
    parser.add_argument("--suggesters", type=int, default=0, help="0: the adaptive searchers suggest in the driver, "
                        "as metaray does; N: N processes beside it make the suggestions (a design, not built)")
    parser.add_argument("--in-flight", help="max_concurrent of the adaptive searchers (a number; default: auto in "
                        "--quick, else both the default and auto)")
    parser.add_argument("--check", action="store_true", help="the simulator against real Ray runs at 16 cores: the "
                        "same decisions and best configuration, for every searcher x scheduler")
    args = parser.parse_args(argv)
    if args.check:
        rows = check(searchers=args.searchers.split(","), schedulers=args.schedulers.split(","))
        print(json.dumps({"rows": rows}, indent=1) if args.json else "\n".join(
            f"{r['searcher']:<8} {r['scheduler']:<7} same decisions: {r['same_decisions']}  best: simulated "
            f"{r['best_simulated']}, on Ray {r['best_on_ray']}" for r in rows))
        return 0 if all(r["same_decisions"] and r["best_simulated"] == r["best_on_ray"] for r in rows) else 1
    rows = []
    for cores in [int(c) for c in args.cores.split(",")]:
        # enough configurations for several waves of the cluster: 20 (4 in --quick), at least 40
        configurations = max(40, (args.waves or (4 if args.quick else 20)) * cores)
        for name in args.searchers.split(","):
            for scheduler in args.schedulers.split(","):
                modes = (("default",) if name == "random" else (args.in_flight,) if args.in_flight else ("auto",)
                         if args.quick else ("default", "auto"))
                for in_flight in modes:
                    row = simulate(name, scheduler, cores, configurations, in_flight, straggler=args.straggler,
                                   suggesters=args.suggesters if name != "random" else 0)
                    rows.append(row)
                    if not args.json:
                        print(f"{row.searcher:<8} {row.scheduler:<7} {row.cores:>5} cores  in flight {in_flight:<8} "
                              f"utilisation {row.utilisation:6.1%} (to the last fit's start "
                              f"{row.utilisation_work:6.1%}, to the end {row.utilisation_total:6.1%})  "
                              f"fits {row.fits:>6}  configurations "
                              f"{row.configurations:>5}  makespan {row.makespan_s:9.1f}  best at "
                              f"{row.time_to_best_s:9.1f}  copies {row.copies:>5} (wasted {row.wasted:5.1%})  driver "
                              f"{row.driver_s:7.2f} s (suggest {row.suggest_s:7.2f} s)", flush=True)
    if args.plot:
        plot([asdict(r) for r in rows], args.plot)
    if args.json:  # (a value that is not defined, NaN, as null: JSON has no NaN)
        print(json.dumps({"rows": [{k: None if isinstance(v, float) and math.isnan(v) else v
                                    for k, v in asdict(r).items()} for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

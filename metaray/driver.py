"""The search's decisions, and nothing else: which configuration to open, which units to fit, when a configuration
is promoted, stopped, failed or finished. No Ray, no MLflow, no files: it takes fit results and gives work.

Determinism: results are delivered to the searcher and the scheduler in a canonical order, configuration by
configuration and, within one, unit by unit (stage by stage, subset by subset), whatever order the fits finish in.
An adaptive searcher suggests configuration i right after configuration i - max_concurrent is delivered, never
later, and max_concurrent is a number of the spec. A scheduler whose decision at a rung reads only that rung's
records (``by_rung``: ASHA) judges a configuration there ahead of those before it that have not passed the rung
(``Driver._decide_ahead``) only when their values could not change its decision, so it decides the same. So the
same spec and seed give the same decisions anywhere, and a search that replays a journal of finished fits makes
exactly the decisions it made before.

A configuration that waits for a decision (one before it has not ended, or not passed the rung) does not leave
cores idle: while the runner has slots that would idle, it is given its fits up to its next decision ahead of it
(``Driver._ahead``). They run on cores that would idle; the decision is the same, taken in order from the same
results; if it stops the configuration, what ran ahead is dropped (counted among the fits spent).

``drive`` runs a driver against a runner (metaray.runners): the same loop serves Ray and the in-process runner.

A time budget (``TimeBudget``) is the one clock: ``drive`` reads it before each decision and tells the driver, which
has none, to open no more configurations (``Driver.close_opening``), then, past the grace, to stop those still
running with what they have (``Driver.stop_running``). A budget ends the search's determinism where it cuts it.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import heapq
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metaray.errors import MetarayError, SpecError
from metaray.fits import FitResult, Unit, trial_id

#: the room ``drive`` gives a driver past a time budget's grace (nothing is fitted then: configurations a resume
#: replays from its journal open without room)
MAX_OPEN = 256
#: the grace of a time budget: configurations still running when the budget ends may finish for a tenth of the
#: budget more, at most a minute; then they are stopped with what they have and their fits cancelled
BUDGET_GRACE_FRACTION = 0.1
BUDGET_GRACE_MAX_S = 60.0
#: what a configuration stopped by the end of a time budget's grace says in the ``error`` column
BUDGET_STOP = "time budget: stopped unfinished after the grace"

#: how a configuration ends, in the order tables rank them (completed first)
STATUSES = ("completed", "stopped", "failed")


def status_rank(status: str) -> int:
    """Where a status sorts in a results table: ``STATUSES``' order, anything else (running) last."""
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)


def config_key(config: dict) -> str:
    """Identifies a configuration (in the journal): a hash of its sorted parameters."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Trial:
    """One configuration and what is known of it.

    ``results`` holds fit results by position (``Unit.position``); ``reported`` counts the positions delivered in
    order; ``submitted`` the positions given out as work; ``cap`` the positions allowed before the next decision
    (``submitted`` passes it when fits run ahead of that decision: ``Driver._ahead``).
    """

    index: int
    config: dict[str, Any]
    learner: Any = None
    status: str = "running"  # running | completed | stopped | failed
    error: str | None = None
    results: dict[int, FitResult] = field(default_factory=dict)
    reported: int = 0
    submitted: int = 0
    cap: int = 0
    objective: float = math.nan
    aggregates: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # its further objectives and constrained values
    violations: tuple[float, ...] = ()  # its constraints' (metaray.front; <= 0: met)
    feasible: bool = True  # it meets every constraint
    waiting: dict[int, tuple] = field(default_factory=dict)  # decision point -> (unknowns, value): left undecided
    fitted: int = 0  # fits run for it by this process
    replayed: int = 0  # fits taken from the journal of an earlier, interrupted process
    reused: int = 0  # fits taken from an earlier configuration with the same hyperparameters (``Driver.reused``)

    def __post_init__(self):
        self.key = config_key(self.config)

    @property
    def id(self) -> str:
        return trial_id(self.index)

    @property
    def final(self) -> bool:
        return self.status != "running"


@dataclass(frozen=True)
class Layout:
    """How a configuration's work is laid out in units, fitted in order.

    With the subsets fidelity there is one stage and unit position p is subset p. With the epochs fidelity, stage s
    trains every subset for ``epochs[s]`` epochs (the scheduler's rungs, then the learner's own epochs) and position p
    is subset p % K of stage p // K. ``decisions`` maps a number of positions done to the fidelity value then
    reached, at which the scheduler decides.
    """

    k: int
    epochs: tuple[int | None, ...] = (None,)
    decisions: dict[int, float] = field(default_factory=dict)

    @property
    def units(self) -> int:
        return self.k * len(self.epochs)

    def shortest_step(self) -> int:
        """The fewest units between two decision points (from the start to the first, between two, from the last to
        the end): what an open configuration has to fit at most before it waits for a decision again."""
        points = [0, *sorted(p for p in self.decisions if 0 < p < self.units), self.units]
        return min(b - a for a, b in zip(points, points[1:], strict=False) if b > a)

    def next_decision(self, position: int) -> int:
        """The first decision point after ``position`` units, or the last unit."""
        points = sorted(self.decisions)
        at = bisect.bisect_right(points, position)
        return points[at] if at < len(points) else self.units

    def unit(self, trial: int, position: int) -> Unit:
        return Unit(trial, position // self.k, position % self.k)

    @classmethod
    def over_subsets(cls, k: int, milestones: list[float]) -> Layout:
        """Decide after ceil(m) subsets for each milestone m (the highest milestone reached, if two share one)."""
        return cls(k, (None,), {math.ceil(m): m for m in milestones if math.ceil(m) < k})

    @classmethod
    def over_epochs(cls, k: int, total_epochs: int, milestones: list[float]) -> Layout:
        """One stage per milestone (trained for ceil(m) epochs), then one with every epoch; decide after each stage."""
        stages = sorted({math.ceil(m) for m in milestones if math.ceil(m) < total_epochs})
        return cls(k, (*stages, total_epochs), {(i + 1) * k: float(e) for i, e in enumerate(stages)})


class Driver:
    """The decision logic of one search.

    Args:
        searcher: metaray.searchers protocol: ``suggest(index)``, ``complete(index, value)``, ``adaptive``, ``total``.
        scheduler: metaray.schedulers protocol.
        layout: the units of a configuration and the decision points.
        num_samples: configurations at most.
        max_concurrent: configurations open at once (None: as many as the runner has room for).
        score: the primary metric's scores of a configuration -> its aggregates (a dict).
        objective: which aggregate is the objective.
        metric: the primary metric's name (a key of every result's ``scores``).
        accept: builds a configuration's learner from its flat config; raises SpecError when the learner rejects it
            (that configuration then fails, the search goes on).
        goals: the further objectives and the constraints (metaray.front.Goals), or None: a configuration that ends
            gets their values and its feasibility, and the searcher is told them all.
    """

    def __init__(self, searcher, scheduler, layout: Layout, *, num_samples: int, max_concurrent: int | None,
                 score: Callable[[list[float]], dict[str, float]], objective: str, metric: str,
                 accept: Callable[[dict], Any], goals=None):
        self.goals = goals if goals is not None and (goals.multi or goals.constraints) else None
        self.searcher, self.scheduler, self.layout = searcher, scheduler, layout
        self.num_samples, self.max_concurrent = num_samples, max_concurrent
        self._score, self._objective, self._metric, self._accept = score, objective, metric, accept
        self.trials: list[Trial] = []
        self.cursor = 0  # the first configuration not yet delivered
        self.exhausted = False  # the searcher has no more configurations (or num_samples is reached)
        self.limit: int | None = None  # configurations at most, once told to open no more (a time budget ended)
        self.stopping = False  # told to stop the configurations still running (a time budget's grace ended)
        self.stop_below = 0  # ... those below this index
        self._owed: list[Trial] = []  # configurations opened or promoted since work was last given out
        # judging ahead (a by_rung scheduler): where the open configurations stand at each decision point, and those
        # with results not yet looked at
        by_rung = getattr(scheduler, "by_rung", False)
        self._standing = _Standing(self.trials, sorted(layout.decisions)) if by_rung else None
        self._touched: set[int] = set()
        self._idle: list[int] = []  # a heap of configurations with every fit given out back, perhaps undecided
        self.searcher_s = 0.0  # seconds spent in the searcher (suggesting, being told): no work is given out meanwhile
        self._first: dict[str, int] = {}  # a configuration's key -> the first configuration with it


    @property
    def done(self) -> bool:
        return self.exhausted and self.cursor == len(self.trials)

    def close_opening(self, keep: int = 0) -> None:
        """Open no more configurations, but for the first ``keep`` (those a resume replays from its journal cost
        nothing); those open go on, and the search ends when they have."""
        self.limit = max(keep, len(self.trials)) if self.limit is None else self.limit
        self.exhausted = self.exhausted or len(self.trials) >= self.limit

    def stop_running(self) -> None:
        """Open no more configurations (but those ``close_opening`` keeps) and, at the next ``advance``, end every
        configuration open now, in order, with the fits told by then: ``stopped`` (partial, as a scheduler's stop),
        with ``BUDGET_STOP`` as its error; results that arrive later are ignored. From now on ``drive`` fits
        nothing: a configuration opened later (a resume's) has its replayed fits only, and is ended by the next
        call."""
        self.close_opening()
        self.stopping = True
        self.stop_below = len(self.trials)

    def tell(self, result: FitResult, *, replayed: bool = False, reused: bool = False) -> None:
        """A finished fit (ignored when its configuration has already ended); ``replayed`` from the journal, or
        ``reused`` from an identical configuration (``reused``)."""
        trial = self.trials[result.unit.trial]
        trial.replayed += replayed
        trial.reused += reused
        if not trial.final:
            trial.results[result.unit.position(self.layout.k)] = result
            if self._standing is not None:
                self._touched.add(trial.index)
            if len(trial.results) == trial.submitted < self.layout.units:
                heapq.heappush(self._idle, trial.index)  # (``_ahead`` looks again before it gives anything)

    def advance(self, room: int, idle: int = 0) -> tuple[list[Unit], list[Trial]]:
        """Deliver what has arrived, in order; decide; open configurations while the searcher may and the runner has
        ``room`` (fits it could take); give fits ahead of a decision to the slots that would still be ``idle``
        (slots; ``_ahead``). Returns the units to fit now and the configurations that just ended."""
        ended: list[Trial] = []
        room = self._open(room)
        while self.cursor < len(self.trials):
            trial = self.trials[self.cursor]
            self._deliver(trial)
            if not trial.final and self.stopping and trial.index < self.stop_below:
                trial.status = "stopped"
                trial.error = f"{BUDGET_STOP} ({len(self.scores(trial))}/{self.layout.k} subsets)"
            if self._standing is not None:
                self._standing.place(trial)
            if not trial.final:
                break
            self._finalize(trial)
            ended.append(trial)
            self.cursor += 1
            room = self._open(room)  # an adaptive searcher: exactly one new configuration per delivered one
        if self._standing is not None and not self.stopping:
            self._decide_ahead()
        work = []
        for t in self._owed:  # (one promoted twice in a round is listed twice: its fits go out once)
            if not t.final:
                work += [self.layout.unit(t.index, p) for p in range(t.submitted, t.cap)]
            t.submitted = max(t.submitted, t.cap)
        self._owed = []
        if not self.stopping:
            work += self._ahead(idle - len(work))
        return work, ended

    def reused(self, trial: Trial, unit: Unit) -> FitResult | None:
        """The result of ``unit`` taken from the first configuration with the same hyperparameters (a searcher that
        suggests one again: TPE on a discrete space, a grid passed over twice), when that one's fit of the same stage
        and subset is back: a fit depends on the configuration, the subset and the search's seed only
        (metaray.objective.fit_seed), so fitting it again would give the same scores. None for the first of its kind,
        or while its fit is not back, or when that fit failed."""
        first = self.first_of(trial)
        if first == trial.index:
            return None
        r = self.trials[first].results.get(unit.position(self.layout.k))
        if r is None or r.error:  # a failure is fitted again: a timeout, say, depends on the cluster's load
            return None
        return dataclasses.replace(r, unit=unit, predictions=None)  # (final: ensemble reads its twin's, ``first_of``)

    def first_of(self, trial: Trial) -> int:
        """The index of the first configuration with the same hyperparameters as ``trial`` (its own, if it is)."""
        return self._first.get(trial.key, trial.index)

    def scores(self, trial: Trial, name: str | None = None) -> list[float]:
        """The primary metric's scores (or another metric's, or a measure's: ``name``) of the trial's latest stage,
        in subset order, as far as delivered."""
        k, name = self.layout.k, name or self._metric
        start = (max(trial.reported - 1, 0) // k) * k
        got = [trial.results[p] for p in range(start, trial.reported)]
        return [r.scores[name] if name in r.scores else r.measures.get(name, math.nan) for r in got]

    # ------------------------------------------------------------------------------------------------------

    def _open(self, room: int) -> int:
        while not self.exhausted:
            if self.limit is not None and len(self.trials) >= self.limit:
                self.exhausted = True
                break
            open_now = len(self.trials) - self.cursor
            if self.max_concurrent and open_now >= self.max_concurrent:
                break
            # a non-adaptive searcher opens as long as the runner has room, however many are open: configurations are
            # delivered in order, so one held up by a slow fit holds those after it open, and the cluster's cores must
            # not wait for it (a cap of 256, later 16 x the runner's room, left most of 1,024 cores idle in the
            # cluster simulator, experiments/benchmarks/scale.py)
            if not self.searcher.adaptive and room <= 0:
                break
            index = len(self.trials)
            start = time.perf_counter()
            config = self.searcher.suggest(index) if index < self.num_samples else None
            self.searcher_s += time.perf_counter() - start
            if config is None:
                self.exhausted = True
                break
            trial = Trial(index, config)
            self.trials.append(trial)
            try:
                trial.learner = self._accept(config)
            except SpecError as exc:  # a value the learner rejects: this configuration fails, the search goes on
                trial.status, trial.error = "failed", str(exc)
                continue
            trial.cap = self.layout.next_decision(0)
            self._first.setdefault(trial.key, trial.index)
            self._owed.append(trial)
            if self._standing is not None:
                self._standing.place(trial)
            room -= trial.cap
        return room

    def _ahead(self, slots: int) -> list[Unit]:
        """Fits run ahead of a decision: a configuration past the first undelivered one that has every fit it was
        given back but is not decided yet (it waits for those before it) gets its fits up to its next decision point,
        one configuration per slot that would idle, oldest first (the next to be decided), so that cores do not idle
        while decisions wait, and no more runs ahead than they can take; when those are back, the next ones, as long
        as slots idle (not one with a failed fit: it fails when it is decided). So a configuration decided late has
        its fits already, and the decisions that wait on it follow at once: the decisions are the same (taken in
        order, from the same results); if one stops the configuration, what ran ahead is dropped."""
        work: list[Unit] = []
        while slots > 0 and self._idle:
            index = heapq.heappop(self._idle)
            t = self.trials[index]
            if (t.final or index <= self.cursor or len(t.results) != t.submitted or t.submitted >= self.layout.units
                    or any(r.error for r in t.results.values())):
                continue
            end = self.layout.next_decision(t.submitted)
            work += [self.layout.unit(index, p) for p in range(t.submitted, end)]
            slots -= 1
            t.submitted = end
        return work

    def _deliver(self, trial: Trial, ahead: _Standing | None = None) -> None:
        """Take the trial's results in order, deciding at each decision point. ``ahead`` (``_decide_ahead``): where
        the configurations before it stand; at a decision point where some of their values are not known yet, the
        scheduler decides only if those cannot change its decision, else the trial waits there."""
        layout = self.layout
        while not trial.final and trial.reported < layout.units and trial.reported in trial.results:
            r = trial.results[trial.reported]
            if r.error:
                trial.status, trial.error = "failed", f"subset {r.subset}: {r.error}"
                break
            point = trial.reported + 1
            unknown, pending = 0, []
            if ahead is not None and point in layout.decisions:
                unknown = ahead.unknown_before(point, trial.index)
                if unknown and 2 * unknown > trial.waiting.get(point, (math.inf,))[0]:
                    break  # left undecided with up to twice as many unknown before it: asked again once they halve
                pending = ahead.pending_before(point, trial.index)
            trial.reported += 1
            if trial.reported in layout.decisions:
                scores = self.scores(trial)
                value = self._score(scores)[self._objective]
                if self.goals is not None and self.goals.multi:  # every objective at this fidelity (MOASHA)
                    values, _ = self.goals.judge(lambda name: self.scores(trial, name))
                    value = (value, *(values[o.label] for o in self.goals.also))
                fidelity = layout.decisions[trial.reported]
                stop = (self.scheduler.decide(trial.index, fidelity, value, scores, unknown=unknown, pending=pending)
                        if unknown or pending else self.scheduler.decide(trial.index, fidelity, value, scores))
                if stop is None:
                    trial.reported -= 1
                    trial.waiting[point] = (unknown, value)
                    break
                if stop:
                    trial.status = "stopped"
                    break
                trial.cap = layout.next_decision(trial.reported)
                self._owed.append(trial)
        if trial.reported == layout.units and not trial.final:
            trial.status = "completed"

    def _decide_ahead(self) -> None:
        """Decisions of configurations after the first undelivered one, for a scheduler whose decision at a rung
        reads only the values recorded at that rung (``by_rung``: ASHA). Configuration j is judged at decision point p
        with the values there of the configurations before it (those judged, and those known but not yet judged) and
        the number of those whose value is not known yet (a fit still running): the scheduler decides only if no
        value of theirs, nor their stopping before p, could change its decision. So it decides as if every
        configuration were taken whole, one after another, and configurations neither wait at a rung for all before
        them to finish nor, mostly, for one held up by a slow fit. They are still finalized, and the searcher told,
        in order. Only configurations with new results, and those waiting at a point once enough of the unknown
        before them could have become known for the unknown to have halved (``_Standing.recheck``), are looked at, in
        index order (as one pass over them all would): a search with thousands open costs the driver what changed,
        not what is open, and mostly not what waits (one with a single unknown before it is looked at whenever any
        configuration becomes known there: with several objectives, judged ahead only with none unknown, that is
        every one waiting)."""
        standing = self._standing
        visit = [*self._touched, *standing.due()]
        heapq.heapify(visit)
        self._touched, last = set(), -1
        while visit:  # in index order, those made due by one looked at before those after it
            index = heapq.heappop(visit)
            if index == last or index < self.cursor:
                continue
            last, t = index, self.trials[index]
            if t.status == "running" and t.reported in t.results:
                self._deliver(t, standing)
            standing.place(t)
            standing.recheck(t)
            for due in standing.due():
                heapq.heappush(visit, due)

    def _finalize(self, trial: Trial) -> None:
        scores = self.scores(trial) if trial.reported else []
        if scores:
            trial.aggregates = self._score(scores)
            trial.objective = trial.aggregates[self._objective]
        value: Any = trial.objective
        if self.goals is not None and scores:
            trial.values, trial.violations = self.goals.judge(lambda name: self.scores(trial, name))
            trial.feasible = self.goals.feasible(trial.values)
            if self.goals.multi:
                value = (trial.objective, *(trial.values[o.label] for o in self.goals.also))
        value = value if trial.status != "failed" else None
        # constraints' violations only where there are constraints: a searcher of one objective takes two arguments
        start = time.perf_counter()
        self.searcher.complete(trial.index, value, *((trial.violations,) if trial.violations else ()))
        self.searcher_s += time.perf_counter() - start
        # an infeasible configuration is no incumbent (racing): the scheduler hears it as not completed
        self.scheduler.finished(trial.index, trial.status == "completed" and trial.feasible, trial.objective, scores)


class _Standing:
    """Where each open configuration stands at each decision point, for judging ahead (``Driver._decide_ahead``):
    per point, the indices of the configurations not yet past it whose value there is not known yet (``unknown``),
    and of those whose value is known but not yet judged (``waiting``; the value in ``Trial.waiting``), sorted."""

    def __init__(self, trials: list[Trial], positions: list[int]):
        self.trials, self.positions = trials, positions
        self.unknown: dict[int, list[int]] = {p: [] for p in positions}
        self.waiting: dict[int, list[int]] = {p: [] for p in positions}
        self._where: dict[int, dict[int, str]] = {}  # index -> {point: "unknown" | "waiting"}
        self.known = {p: 0 for p in positions}  # how many have left ``unknown`` at each point, ever
        self._due: dict[int, list[tuple[int, int]]] = {p: [] for p in positions}  # (known when due, index): heaps

    def place(self, t: Trial) -> None:
        """Bring ``t``'s entries up to date with where it stands now."""
        now: dict[int, str] = {}
        if t.status == "running":
            for p in self.positions:
                if t.reported < p:
                    now[p] = "waiting" if t.reported + 1 == p and p in t.waiting else "unknown"
        old = self._where.get(t.index, {})
        if now == old:
            return
        for p, state in old.items():
            if now.get(p) != state:
                entries = getattr(self, state)[p]
                del entries[bisect.bisect_left(entries, t.index)]
                self.known[p] += state == "unknown"
        for p, state in now.items():
            if old.get(p) != state:
                bisect.insort(getattr(self, state)[p], t.index)
        if now:
            self._where[t.index] = now
        else:
            self._where.pop(t.index, None)

    def recheck(self, t: Trial) -> None:
        """``t`` waiting at its next point with ``u`` unknown before it then is looked at again once the unknown
        before it could have halved (``Driver._deliver`` decides nothing before): once as many configurations, of any
        index, have left ``unknown`` there as must leave it before ``t`` (the unknown before a configuration only
        shrinks: those opened later come after it)."""
        p = t.reported + 1
        if t.status == "running" and p in t.waiting and p in self._due:
            needed = self.unknown_before(p, t.index) - t.waiting[p][0] // 2
            heapq.heappush(self._due[p], (self.known[p] + max(1, needed), t.index))

    def due(self) -> set[int]:
        """The configurations whose ``recheck`` has come (some no longer waiting: looking at them is harmless)."""
        out = set()
        for p, heap in self._due.items():
            while heap and heap[0][0] <= self.known[p]:
                out.add(heapq.heappop(heap)[1])
        return out

    def unknown_before(self, point: int, index: int) -> int:
        return bisect.bisect_left(self.unknown[point], index)

    def pending_before(self, point: int, index: int) -> list:
        entries = self.waiting[point]
        return [self.trials[i].waiting[point][1] for i in entries[: bisect.bisect_left(entries, index)]]


#: a search whose searcher took this share of its time, and at least SEARCHER_PACE_MIN_S, is told so
SEARCHER_PACE, SEARCHER_PACE_MIN_S = 0.25, 10.0


def searcher_pace(name: str, searcher_s: float, search_s: float) -> str | None:
    """A line for the user when the searcher set a search's pace: the driver is one thread, and while the searcher
    suggests a configuration or learns from one no fit is given out (Optuna's TPE is refitted on every suggestion
    over every trial: about 9 µs a trial, docs/performance.md), so the CPUs may have waited on it; None otherwise.

    Example:
        >>> searcher_pace("optuna", 412.0, 800.0)[:62]
        'the optuna searcher took 412 s of the 800 s search (52 %) to s'
        >>> searcher_pace("optuna", 4.0, 8.0) is None, searcher_pace("optuna", 100.0, 800.0) is None
        (True, True)
    """
    if searcher_s < SEARCHER_PACE_MIN_S or searcher_s < SEARCHER_PACE * search_s or search_s <= 0:
        return None
    return (f"the {name} searcher took {searcher_s:.0f} s of the {search_s:.0f} s search "
            f"({100 * searcher_s / search_s:.0f} %) to suggest configurations and learn from their results, and no "
            "fit was given out meanwhile: the CPUs may have waited on it (a random search, or fewer and longer fits, "
            "keeps them busier; docs/performance.md#keeping-a-large-cluster-busy)")


def budget_grace(seconds: float) -> float:
    """The grace of a time budget of ``seconds``: ``BUDGET_GRACE_FRACTION`` of it, at most ``BUDGET_GRACE_MAX_S``."""
    return min(BUDGET_GRACE_MAX_S, BUDGET_GRACE_FRACTION * seconds)


def duration(seconds: float) -> str:
    """Seconds as people write a time budget.

    Example:
        >>> [duration(s) for s in (600, 90, 5400, 3600, 0.30000000000000004)]
        ['10m', '90s', '1.5h', '1h', '0.3s']
    """
    if seconds >= 3600 and round(seconds) % 360 == 0 and seconds == round(seconds):
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{round(seconds, 3):g}s"


class TimeBudget:
    """A search's time budget (``search.time_budget``), the one clock of a search: ``drive`` asks it before each
    decision. Once ``seconds`` have passed since ``start``, the driver opens no more configurations; those open may
    finish within ``grace`` seconds more, after which they are stopped with what they have.

    Args:
        seconds: the budget.
        start: when it started, on ``now``'s clock (default: now).
        grace: seconds the configurations open at its end may take to finish (default ``budget_grace(seconds)``).
        now: the clock (``time.monotonic``; a test's own, to run a budget without waiting).
        keep: configurations that open even after it (a resume's, whose fits its journal holds: they cost nothing;
            those opened after the grace get their journaled fits only).
    """

    def __init__(self, seconds: float, *, start: float | None = None, grace: float | None = None,
                 now: Callable[[], float] = time.monotonic, keep: int = 0):
        self.seconds, self.now, self.keep = float(seconds), now, keep
        self.grace = budget_grace(self.seconds) if grace is None else float(grace)
        self.start = now() if start is None else start
        self.closed_at: float | None = None  # when it closed the opening
        self.cut = False  # its grace ended with configurations still running

    @property
    def reached(self) -> bool:
        """It ran out before the search ended (and so closed the opening)."""
        return self.closed_at is not None

    def check(self, driver: Driver) -> None:
        """Tell the driver what the clock says: nothing, no more opening, or stop what is open."""
        if driver.done:
            return
        now = self.now()
        if self.closed_at is None:
            if now - self.start < self.seconds:
                return
            self.closed_at = now
            driver.close_opening(self.keep)
        if self.cut or now >= self.closed_at + self.grace:
            self.cut = True
            driver.stop_running()  # again at every check: a resume's replayed configurations open after the cut

    def due(self) -> float:
        """Seconds until the next ``check`` could change something: the loop wakes up then, fits or not."""
        if self.cut:
            return 0.0
        until = self.start + self.seconds if self.closed_at is None else self.closed_at + self.grace
        return max(0.0, until - self.now())


class Stalled(MetarayError):
    """Nothing is pending and no configuration can advance: a bug, never the user's input."""


def drive(driver: Driver, runner, *, learner_for: Callable[[Trial, Unit], Any],
          replay: Callable[[Trial, Unit], FitResult | None] | None = None,
          on_fit: Callable[[Trial, FitResult], None] = lambda trial, result: None,
          on_end: Callable[[Trial], None] = lambda trial: None,
          before_wait: Callable[[], None] = lambda: None, budget: TimeBudget | None = None) -> list[Trial]:
    """Run the driver to its end against a runner (metaray.runners protocol).

    Args:
        learner_for: the learner to fit a unit with (a configuration's, with the unit's stage's epochs).
        replay: a finished fit recorded earlier (the journal), or None to fit the unit.
        on_fit: told of every fit this process ran, as it arrives (journal, warnings), and of every fit taken from an
            identical configuration (``Driver.reused``: journaled as its own, so that a resume replays it).
        on_end: told of every configuration that ends, in order (progress, tracking).
        before_wait: called before the loop blocks on the runner (the journal flushes what has arrived).
        budget: a time budget, checked before each decision; the loop wakes up when it is due even if no fit
            finishes (``runner.wait(timeout=...)``).
    """
    # the searcher's library quiet for the whole search (entering it for every call cost Optuna 0.6 ms a configuration)
    with getattr(driver.searcher, "quiet", contextlib.nullcontext)():
        while True:
            if budget is not None:
                budget.check(driver)
            # past a budget's grace nothing is fitted: what opens then (a resume's journal) needs no room
            work, ended = driver.advance(runner.room() if not driver.stopping else MAX_OPEN * driver.layout.units,
                                         runner.idle())
            for trial in ended:
                if trial.status != "completed":  # a completed configuration has nothing left queued or running
                    runner.cancel(trial.index)
                on_end(trial)
            fresh = _replayed_or_fresh(driver, work, replay, on_fit)
            if driver.stopping:
                fresh = {}  # stopped at the next check, with what the journal gave them
            for units in fresh.values():
                runner.submit(units, learner_for(driver.trials[units[0].trial], units[0]))
            if driver.done:
                return driver.trials
            if len(work) > sum(len(units) for units in fresh.values()):
                continue  # replayed or reused results came back: deliver them (and open what they make room for)
                # before waiting on the runner, which may hold a fit that takes long
            before_wait()
            due = budget.due() if budget is not None else None
            results = runner.wait() if due is None else runner.wait(timeout=due)
            if not results and runner.pending == 0 and not work and not ended:
                raise Stalled("search stalled: no fits pending and no configuration can advance")
            for r in results:
                trial = driver.trials[r.unit.trial]
                trial.fitted += 1
                on_fit(trial, r)
                driver.tell(r)


def _replayed_or_fresh(driver: Driver, work: list[Unit], replay,
                       on_fit: Callable[[Trial, FitResult], None]) -> dict[tuple[int, int], list[Unit]]:
    """The units of ``work`` to fit, by configuration and stage (each group goes to the runner as one submission);
    those ``replay`` has a result for, or an identical configuration has (``Driver.reused``: handed to ``on_fit`` as
    one arriving), are told to the driver instead."""
    fresh: dict[tuple[int, int], list[Unit]] = {}
    for unit in work:
        trial = driver.trials[unit.trial]
        hit = replay(trial, unit) if replay else None
        if hit is not None:
            driver.tell(hit, replayed=True)
        elif (same := driver.reused(trial, unit)) is not None:
            on_fit(trial, same)
            driver.tell(same, reused=True)
        else:
            fresh.setdefault((unit.trial, unit.stage), []).append(unit)
    return fresh

"""The driver without Ray: whole searches (every searcher, every scheduler, subsets and epochs as the fidelity) run
through the in-process runner with made-up fits, in milliseconds; results handed back in shuffled order give the
same decisions. (The schedulers' own rules are tested in test_schedulers.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from metaray.aggregates import aggregate
from metaray.driver import Driver, Layout, Stalled, drive
from metaray.errors import SpecError
from metaray.fits import FitResult, Unit
from metaray.runners import InProcessRunner
from metaray.schedulers import make_scheduler
from metaray.searchers import make_searcher
from metaray.space import parse_space
from metaray.spec import LearnerSpec, SchedulerSpec

K = 5
SPACES = {"random": {"C": {"loguniform": [1e-3, 1e3]}, "tol": {"uniform": [0.0, 1.0]}},
          "grid": {"C": {"grid": [0.001, 0.1, 1.0, 10.0, 1000.0]}, "tol": {"grid": [0.0, 0.5]}},
          "optuna": {"C": {"loguniform": [1e-3, 1e3]}, "tol": {"uniform": [0.0, 1.0]}},
          "hyperopt": {"C": {"loguniform": [1e-3, 1e3]}, "tol": {"uniform": [0.0, 1.0]}}}
SCHEDULERS = {"none": {"name": "none"}, "asha": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
              "racing": {"name": "racing", "min_subsets": 2}}


def fake_fit(unit: Unit, learner) -> FitResult:
    """An accuracy that peaks at C = 10, improves with epochs, and moves with the subset (shared by every
    configuration: common random numbers)."""
    config, epochs = learner
    quality = 1 / (1 + (math.log10(config["C"]) - 1) ** 2) - 0.05 * config["tol"]
    quality *= 1 - 0.3 / (epochs or 9)
    luck = ((unit.subset * 7919 + 13) % 11) / 100
    if config.get("explode"):
        return FitResult(unit, error="FloatingPointError: the loss became nan")
    return FitResult(unit, scores={"accuracy": quality + luck}, fit_seconds=0.001)


class Recording:
    """A searcher that records what it was told before each suggestion."""

    def __init__(self, searcher):
        self._s, self.adaptive, self.total, self.events = searcher, searcher.adaptive, searcher.total, []
        self.quiet = searcher.quiet

    def suggest(self, index):
        self.events.append(("suggest", index))
        return self._s.suggest(index)

    def complete(self, index, value):
        self.events.append(("complete", index))
        self._s.complete(index, value)


def make_driver(searcher="random", scheduler="none", *, n=24, max_concurrent=None, total_epochs=None, space=None,
                accept=None):
    space = parse_space(space or SPACES[searcher], LearnerSpec(name="logistic_regression"))
    options = SchedulerSpec.model_validate({**SCHEDULERS[scheduler], **({"fidelity": "epochs"} if total_epochs
                                                                          else {})})
    if searcher == "grid":
        n = 1  # one pass over the grid
    s = Recording(make_searcher(searcher, space, n, "max", seed=3))
    total = total_epochs or K
    sched = make_scheduler(options, mode="max", greater_is_better=True, total=total)
    layout = (Layout.over_epochs(K, total_epochs, sched.milestones(total)) if total_epochs
              else Layout.over_subsets(K, sched.milestones(K)))
    score = lambda scores: aggregate(scores, greater_is_better=True)  # noqa: E731
    if max_concurrent is None and s.adaptive:
        max_concurrent = 4
    return Driver(s, sched, layout, num_samples=s.total or n, max_concurrent=max_concurrent, score=score,
                  objective="mean", metric="accuracy", accept=accept or (lambda config: dict(config)))


ASHA_SPACE = {"C": {"loguniform": [0.01, 100.0]}, "tol": {"uniform": [0.0, 1.0]}}


def asha_driver(n: int, *, k: int = 4, rf: int = 2, seed: int = 0, cls=Driver) -> Driver:
    """A random search of ``n`` configurations with ASHA (grace 1, ``rf``) over ``k`` subsets, opening as the runner
    has room."""
    space = parse_space(ASHA_SPACE, LearnerSpec(name="logistic_regression"))
    scheduler = make_scheduler(SchedulerSpec(name="asha", grace_period=1, reduction_factor=rf), mode="max",
                               greater_is_better=True, total=k)
    return cls(make_searcher("random", space, n, "max", seed), scheduler,
               Layout.over_subsets(k, scheduler.milestones(k)), num_samples=n, max_concurrent=None,
               score=lambda s: aggregate(s, greater_is_better=True), objective="mean", metric="accuracy",
               accept=lambda config: config)


def run(driver, shuffle=None, **kw):
    runner = InProcessRunner(fake_fit, slots=3, shuffle=shuffle)
    epochs = driver.layout.epochs
    return drive(driver, runner, learner_for=lambda trial, unit: (trial.learner, epochs[unit.stage]), **kw)


def outcome(trials):
    return [(t.index, t.status, t.reported, round(t.objective, 12) if math.isfinite(t.objective) else None)
            for t in trials]


COMBINATIONS = [(s, sch) for s in SPACES for sch in SCHEDULERS]


@pytest.mark.parametrize("searcher, scheduler", COMBINATIONS, ids=[f"{a}-{b}" for a, b in COMBINATIONS])
def test_a_whole_search_runs_in_process_and_shuffled_results_change_nothing(searcher, scheduler):
    ordered = run(make_driver(searcher, scheduler))
    n = 10 if searcher == "grid" else 24
    assert len(ordered) == n and all(t.final for t in ordered)
    assert all(t.status in ("completed", "stopped") for t in ordered)
    assert all(t.reported == K for t in ordered if t.status == "completed")
    if scheduler != "none":
        assert any(t.status == "stopped" and t.reported < K for t in ordered), outcome(ordered)
    best = max((t for t in ordered if t.status == "completed"), key=lambda t: t.objective)
    if searcher == "grid":  # the peak is a point of the grid
        assert (best.config["C"], best.config["tol"]) == (10.0, 0.0)
    else:
        assert 0.5 < math.log10(best.config["C"]) < 1.6  # near the peak at C = 10
    for seed in (1, 2, 3):
        shuffled = run(make_driver(searcher, scheduler), shuffle=np.random.default_rng(seed))
        assert outcome(shuffled) == outcome(ordered)


@pytest.mark.parametrize("searcher", ["optuna", "hyperopt"])
def test_an_adaptive_searcher_suggests_i_having_seen_exactly_i_minus_m_plus_1_results(searcher):
    driver = make_driver(searcher, "asha", n=20, max_concurrent=4)
    run(driver, shuffle=np.random.default_rng(0))
    seen, events = 0, driver.searcher.events
    for kind, index in events:
        if kind == "complete":
            seen += 1
        else:
            assert seen == max(0, index - 4 + 1), events
    assert [i for kind, i in events if kind == "complete"] == list(range(20))  # told in the canonical order


def test_epochs_are_stages_and_each_stage_trains_its_epochs():
    driver = make_driver("random", "asha", n=12, total_epochs=9)
    assert driver.layout.epochs == (1, 2, 4, 8, 9) and driver.layout.decisions == {5: 1.0, 10: 2.0, 15: 4.0, 20: 8.0}
    trained = []

    def fit(unit, learner):
        trained.append((unit.stage, learner[1]))
        return fake_fit(unit, learner)

    epochs = driver.layout.epochs
    drive(driver, InProcessRunner(fit), learner_for=lambda trial, unit: (trial.learner, epochs[unit.stage]))
    assert {(s, e) for s, e in trained} <= {(0, 1), (1, 2), (2, 4), (3, 8), (4, 9)}
    completed = [t for t in driver.trials if t.status == "completed"]
    assert completed and all(t.reported == 5 * K for t in completed)
    assert any(t.status == "stopped" for t in driver.trials)


def test_replayed_results_are_not_fitted_again_and_give_the_same_decisions():
    first = run(make_driver("optuna", "asha"))
    recorded = {(t.index, p): r for t in first for p, r in t.results.items()}
    driver = make_driver("optuna", "asha")
    runner_fits = []

    def fit(unit, learner):
        runner_fits.append(unit)
        return fake_fit(unit, learner)

    replayed = drive(driver, InProcessRunner(fit), learner_for=lambda trial, unit: (trial.learner, None),
                     replay=lambda trial, unit: recorded.get((unit.trial, unit.position(K))))
    assert outcome(replayed) == outcome(first) and runner_fits == []
    assert sum(t.replayed for t in replayed) == len(recorded) - sum(
        1 for t in first for p in t.results if p >= t.reported)  # fits past a stop were never asked for


def test_a_rejected_configuration_and_a_failing_fit_fail_alone():
    def accept(config):
        if config["C"] > 100:
            raise SpecError("learner.params.C", "rejected by the learner", got=config["C"])
        return {**config, "explode": config["C"] < 0.01}

    trials = run(make_driver("random", "none", n=20, accept=accept))
    status = {t.index: (t.status, t.error) for t in trials}
    rejected = [t for t in trials if t.config["C"] > 100]
    exploded = [t for t in trials if t.config["C"] < 0.01]
    assert rejected and all(status[t.index] == ("failed", str(SpecError("learner.params.C", "rejected by the learner",
                                                                          got=t.config["C"]))) for t in rejected)
    assert exploded and all(t.status == "failed" and t.error.startswith("subset 0: FloatingPointError")
                            for t in exploded)
    assert any(t.status == "completed" for t in trials)


def test_a_runner_that_loses_work_is_a_stall_not_a_hang():
    class Forgetful(InProcessRunner):
        def submit(self, units, learner):
            pass

    with pytest.raises(Stalled):
        drive(make_driver("random", "none", n=3), Forgetful(fake_fit), learner_for=lambda trial, unit: None)


class Stragglers:
    """A cluster on a virtual clock: ``slots`` fits at once, lowest configuration first, each taking a random time, one
    in ten twenty times as long (a slow node); ``wait`` hands back the fits that end next."""

    def __init__(self, fit, slots: int, rng):
        self._fit, self.slots, self._rng = fit, slots, rng
        self._queue, self._running, self.now, self._seq = [], [], 0.0, 0

    def submit(self, units, learner):
        self._queue = sorted(self._queue + [(u, learner) for u in units], key=lambda job: job[0])

    def cancel(self, trial):
        self._queue = [job for job in self._queue if job[0].trial != trial]

    @property
    def pending(self):
        return len(self._queue) + len(self._running)

    def room(self):
        return 2 * self.slots - self.pending

    def idle(self):
        return self.slots - self.pending

    def wait(self, timeout=None):
        while self._queue and len(self._running) < self.slots:
            unit, learner = self._queue.pop(0)
            d = float(self._rng.exponential(1.0)) * (20 if self._rng.random() < 0.1 else 1)
            self._seq += 1
            self._running.append((self.now + d, self._seq, unit, learner))
        if not self._running:
            return []
        self._running.sort()
        end, _, unit, learner = self._running.pop(0)
        self.now = end
        return [self._fit(unit, learner)]

    def close(self):
        pass


def test_a_random_search_opens_configurations_while_the_runner_has_room_however_many_are_open():
    """Configurations are delivered in order, so one held up by a slow fit keeps those after it open: a random search
    opens as long as the runner has room for their fits (no cap on those open, which left most of 1,024 simulated cores
    idle), and no more."""
    space = parse_space(SPACES["random"], LearnerSpec(name="logistic_regression"))
    searcher = make_searcher("random", space, 5000, "max", 0)
    driver = Driver(searcher, make_scheduler(SchedulerSpec(), mode="max", greater_is_better=True, total=1),
                    Layout(1), num_samples=5000, max_concurrent=None,
                    score=lambda s: aggregate(s, greater_is_better=True), objective="mean", metric="accuracy",
                    accept=lambda config: config)
    work, _ = driver.advance(100)
    assert len(work) == 100  # no more than it has room for
    for unit in work[1:]:  # every fit but configuration 0's ends; it holds up their delivery
        driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
    for _ in range(40):
        work, ended = driver.advance(100)
        assert len(work) == 100 and not ended  # room for a hundred more each time: opened, all held open
        for unit in work:
            driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
    assert len(driver.trials) - driver.cursor == 4100


@pytest.mark.parametrize("searcher", ["random", "optuna"])
def test_asha_judges_ahead_of_slow_fits_and_decides_as_in_order(searcher):
    """On a cluster with slow nodes, ASHA judges configurations at a rung while fits before them are still running
    there, when their results could not change its decision, and every decision is the one taken in order."""
    def make(n=80):
        driver = make_driver(searcher, "asha", n=n, max_concurrent=24 if searcher == "optuna" else None)
        decide, ahead = driver.scheduler.decide, []

        def recording(trial, done, value, scores, **kw):
            got = decide(trial, done, value, scores, **kw)
            if kw.get("unknown") and got is not None:
                ahead.append(trial)
            return got

        driver.scheduler.decide = recording
        return driver, ahead

    in_order, _ = make()
    ordered = outcome(run(in_order))
    for seed in range(3):
        driver, ahead = make()
        drive(driver, Stragglers(fake_fit, 16, np.random.default_rng(seed)),
              learner_for=lambda trial, unit: (trial.learner, None))
        assert outcome(driver.trials) == ordered
        assert len(ahead) >= 5, ahead  # judged while some before it were not known at that rung


class Recorded(Stragglers):
    """Stragglers that keep every unit given to them (``given``)."""

    def submit(self, units, learner):
        self.given.extend(units)
        super().submit(units, learner)


@pytest.mark.parametrize("searcher", ["random", "optuna"])
def test_a_configuration_waiting_for_a_decision_fits_ahead_on_slots_that_would_idle_and_decides_as_in_order(searcher):
    """Racing judges a configuration against the incumbent of those before it, so on a cluster with slow nodes the
    configurations after one held up wait at their first decision. They do not leave cores idle: while the runner
    has slots that would idle they are given their fits up to the next decision ahead of it. The decisions are those
    taken in order; what ran ahead of a stop is dropped (and counted among the fits spent)."""
    def make():
        driver = make_driver(searcher, "racing", n=60, max_concurrent=24 if searcher == "optuna" else None)
        given, ahead = driver._ahead, []

        def recording(room):
            work = given(room)
            ahead.extend(work)
            return work

        driver._ahead = recording
        return driver, ahead

    ordered = outcome(run(make()[0]))
    for seed in range(3):
        driver, ahead = make()
        runner, given = Recorded(fake_fit, 16, np.random.default_rng(seed)), []
        runner.given = given
        drive(driver, runner, learner_for=lambda trial, unit: (trial.learner, None))
        assert outcome(driver.trials) == ordered
        assert len(ahead) >= 10, ahead
        assert len(given) == len(set(given)), "a fit given out twice"
        assert all(u.position(K) < driver.layout.units for u in given)
        assert any(t.status == "stopped" and t.fitted > t.reported for t in driver.trials)  # fitted ahead, dropped
    driver, ahead = make()
    work, _ = driver.advance(40)
    for unit in work:  # configuration 0 held up: the others wait at their first decision
        if unit.trial:
            driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
    assert driver.advance(0, 0)[0] == [] and not ahead  # no slot would idle: nothing ahead
    work = driver.advance(0, 6)[0]  # six would: the oldest six waiting, up to their next decision
    assert work == ahead == [Unit(t, 0, 2) for t in range(1, 7)]
    if searcher == "random":  # new configurations take the slots first
        work = driver.advance(4, 6)[0]
        assert len(work) == 6 and {u.trial for u in work} == {20, 21, 7, 8}, work


def test_asha_judges_a_configuration_at_a_rung_once_those_before_it_have_passed_it_not_finished():
    """Configuration 0's last fits are held up (a slow node): with ASHA the others are still judged at the first
    rung, once configuration 0 has passed it, and those promoted get their next fits now, where they used to wait
    for configuration 0 to finish. The decisions are those of a search that takes every configuration whole, in
    order: ASHA's decision at a rung reads that rung's records only."""
    def run(hold_up: bool) -> tuple[list[str], int]:
        driver = asha_driver(12)
        work, held, promoted_early = driver.advance(1000)[0], [], 0
        while work or held:
            for unit in work:
                if hold_up and unit.trial == 0 and unit.subset >= 1:
                    held.append(unit)  # configuration 0 has passed its first rung; the rest of it comes last
                else:
                    driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
            work = driver.advance(1000)[0]
            if hold_up and held and not driver.trials[0].final:
                promoted_early = max(promoted_early, sum(t.cap > 1 for t in driver.trials[1:]))
            if not work and held:
                for unit in held:
                    driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
                held, work = [], driver.advance(1000)[0]
        assert driver.done
        return [t.status for t in driver.trials], promoted_early

    whole, _ = run(hold_up=False)
    statuses, promoted_early = run(hold_up=True)
    assert statuses == whole and "stopped" in whole and "completed" in whole
    assert promoted_early >= 1  # promoted past the first rung while configuration 0 was still running


def test_a_configuration_left_waiting_at_a_rung_is_judged_once_the_unknown_before_it_become_known():
    """ASHA cannot judge a configuration at a rung while too many before it are not known there yet; the driver
    looks at it again once enough of those are known (not at every result: with thousands waiting that cost the
    driver more than the fits), and judges it then, ahead of the first configuration, held up by a slow node."""
    driver = asha_driver(60)
    held: list = []

    def settle(work, hold):  # every fit given out is told, but those of the configurations ``hold`` holds up
        while work:
            for unit in work:
                if hold(unit):
                    held.append(unit)
                else:
                    driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
            work = driver.advance(1000)[0]

    def waiting() -> list[int]:  # configurations after the first not yet judged at the first rung
        return [t.index for t in driver.trials[1:] if not t.final and t.reported == 0]

    settle(driver.advance(1000)[0], hold=lambda unit: unit.trial < 12 and unit.subset == 0)
    before = waiting()
    assert len(before) >= 20  # 12 unknown before them: most cannot be judged
    release, held[:] = [u for u in held if u.trial != 0], [u for u in held if u.trial == 0]
    settle(release, hold=lambda unit: unit.trial == 0)
    assert not driver.trials[0].final and driver.cursor == 0
    after = waiting()
    assert len(after) <= len(before) // 4, (before, after)  # one unknown before them now: nearly all judged
    settle([*held], hold=lambda unit: False)
    assert driver.done


def test_a_search_keeps_optunas_line_for_every_trial_quiet_and_restores_the_users_level():
    """Optuna logs a line at INFO for every trial: noise in a search, quieted for the whole search at once (setting
    a level for each call cost 0.6 ms a configuration: it clears the cache of every logger, Ray's many); the level
    its user set is back after, and Optuna's warnings still come through."""
    import logging

    import optuna

    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = seen.append
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.INFO)
    logging.getLogger("optuna").addHandler(handler)
    try:
        levels: list[int] = []  # Optuna's level while the search waits on its fits: quiet throughout
        run(make_driver("optuna", n=12, max_concurrent=4),
            before_wait=lambda: levels.append(optuna.logging.get_verbosity()))
        assert levels and set(levels) == {logging.WARNING}
        assert not [r for r in seen if r.levelno < logging.WARNING], [r.getMessage() for r in seen]
        assert optuna.logging.get_verbosity() == logging.INFO
        optuna.logging.get_logger("optuna.test").warning("still heard")
        assert [r.getMessage() for r in seen] == ["still heard"]
    finally:
        logging.getLogger("optuna").removeHandler(handler)
        optuna.logging.set_verbosity(before)


class LookingAtEveryWaiting(Driver):
    """The driver as it was: after every result, every configuration waiting at a point looked at, in index order."""

    def _decide_ahead(self) -> None:
        standing = self._standing
        visit, self._touched = self._touched.union(*standing.waiting.values()), set()
        for index in sorted(visit):
            if index >= self.cursor:
                t = self.trials[index]
                if t.status == "running" and t.reported in t.results:
                    self._deliver(t, standing)
                standing.place(t)


@pytest.mark.parametrize("rf", [2, 3])
def test_judging_ahead_looks_at_a_waiting_configuration_when_it_could_be_decided_and_decides_round_for_round_as_looking_at_every_one(rf):  # noqa: E501
    """ASHA's waiting configurations are looked at only when the unknown before them could have halved (a heap per
    rung), not after every result: every round (results arriving in random batches) ends exactly as it did when
    every waiting configuration was looked at, in index order: the same statuses, rungs and unknowns waited on."""
    def play(cls, seed: int) -> list:
        driver = asha_driver(60, k=8, rf=rf, seed=seed, cls=cls)
        rng, pending, rounds = np.random.default_rng(seed), [], []
        work = driver.advance(12, 4)[0]
        while not driver.done:
            pending += work
            rng.shuffle(pending)
            take = int(rng.integers(1, min(len(pending), 8) + 1))
            for unit in pending[:take]:
                driver.tell(fake_fit(unit, (driver.trials[unit.trial].config, None)))
            pending = pending[take:]
            work = driver.advance(12 if len(pending) < 40 else 0, 4)[0]
            rounds.append([(t.index, t.status, t.reported, sorted(t.waiting.items())) for t in driver.trials])
        return rounds

    for seed in range(25):
        assert play(Driver, seed) == play(LookingAtEveryWaiting, seed), seed

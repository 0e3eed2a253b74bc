"""metaray.runners: where subset fits run. The in-process runner with made-up fits (order, cancel, room, shuffled
results), task names, and FitRunner on the session's Ray: short fits batched across configurations, each with its
own learner; a cancel drops queued fits."""

from __future__ import annotations

import numpy as np
import pytest

from metaray.fits import FitResult, Unit
from metaray.runners import InProcessRunner, span, task_name


def score(unit: Unit, learner) -> FitResult:
    return FitResult(unit, scores={"accuracy": learner + unit.subset / 100}, fit_seconds=0.0)


def drain(runner) -> list[FitResult]:
    out = []
    while runner.pending:
        out += runner.wait()
    return out


def test_the_in_process_runner_fits_the_lowest_configuration_first_with_its_own_learner():
    runner = InProcessRunner(score, slots=2)
    runner.submit([Unit(3, 0, k) for k in range(3)], learner=0.3)
    runner.submit([Unit(1, 0, k) for k in range(3)], learner=0.1)  # an older configuration, submitted later
    assert runner.pending == 6 and runner.room() == 2 * 2 - 6
    first = runner.wait()
    assert [r.unit for r in first] == [Unit(1, 0, 0), Unit(1, 0, 1)]  # up to ``slots`` fits a wait
    rest = drain(runner)
    assert [r.unit for r in rest] == [Unit(1, 0, 2), *[Unit(3, 0, k) for k in range(3)]]
    assert {r.unit.trial: r.scores["accuracy"] - r.unit.subset / 100 for r in first + rest} == pytest.approx(
        {1: 0.1, 3: 0.3})
    assert runner.wait() == [] and runner.room() == 4


def test_the_in_process_runner_drops_a_cancelled_configuration_and_everything_on_close():
    runner = InProcessRunner(score, slots=1)
    runner.submit([Unit(0, 0, k) for k in range(3)], learner=0.0)
    runner.submit([Unit(1, 0, k) for k in range(3)], learner=0.0)
    runner.wait()
    runner.cancel(0)
    assert {r.unit.trial for r in drain(runner)} == {1}
    runner.submit([Unit(2, 0, 0)], learner=0.0)
    runner.close()
    assert runner.pending == 0 and runner.wait() == []


def test_shuffled_results_are_each_handed_back_once_in_another_order():
    units = [Unit(t, s, k) for t in range(4) for s in range(2) for k in range(3)]
    orders = set()
    for seed in range(3):
        runner = InProcessRunner(score, slots=3, shuffle=np.random.default_rng(seed))
        for t in range(4):
            runner.submit([u for u in units if u.trial == t], learner=float(t))
        got = [r.unit for r in drain(runner)]
        assert sorted(got) == units  # every fit once
        orders.add(tuple(got))
    assert len(orders) == 3 and tuple(units) not in orders


def test_task_names_say_the_search_the_configurations_and_the_subsets():
    assert span([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and span([4]) == "4" and span([]) == ""
    one = [(None, [Unit(3, 0, k) for k in range(5)])]
    assert task_name("meta_iris", one) == "meta_iris t0003 s0-4"
    later = [(None, [Unit(3, 1, 0), Unit(3, 1, 2)])]
    assert task_name("meta_iris", later) == "meta_iris t0003 s0,2 stage 1"
    many = [(None, [Unit(12, 0, k) for k in range(15, 20)]), (None, [Unit(13, 0, 0)]), (None, [Unit(14, 0, 0)])]
    assert task_name("x", many) == "x t0012 s15-19 +2 configurations"
    assert task_name("x", many[:2]) == "x t0012 s15-19 +1 configuration"


# FitRunner, on the session's Ray -----------------------------------------------------------------------------------


def _iris(**sections):
    from metaray.objective import prepare
    from metaray.spec import load_spec

    return prepare(load_spec({"name": "iris", "data": {"dataset": "iris"}, "learner": {"name": "logistic_regression"},
                              **sections}))


@pytest.mark.usefixtures("ray_session")
def test_short_fits_are_batched_across_configurations_and_every_result_comes_back_from_its_own_learner():
    import ray

    from metaray.objective import score_fit
    from metaray.runners import FitRunner
    from metaray.spec import LearnerSpec

    prepared = _iris(subsets={"k": 6, "protocol": "holdout"})
    problem = prepared.problem()
    runner = FitRunner(score_fit, ray.put(problem))
    learners = [prepared.learner_for(LearnerSpec(name="logistic_regression", params={"C": c}))
                for c in (0.001, 0.01, 1.0, 100.0)]
    for trial, learner in enumerate(learners):
        runner.submit([Unit(trial, 0, k) for k in range(6)], learner)
    groups_per_task = []
    original = runner._launch

    def counting(groups):
        groups_per_task.append([(units[0].trial, len(units)) for _, units in groups])
        return original(groups)

    runner._launch = counting
    got = {(r.unit.trial, r.subset): r.scores["accuracy"] for r in runner.results()}
    assert sorted(got) == [(t, k) for t in range(4) for k in range(6)]
    assert len(groups_per_task) < 24 and any(len(g) > 1 for g in groups_per_task), groups_per_task
    for (trial, k), value in got.items():  # each fit used its own configuration's learner
        assert value == score_fit(problem, learners[trial], Unit(trial, 0, k), 0).scores["accuracy"]
    assert len({value for (trial, k), value in got.items() if k == 0}) > 1  # the learners score differently


@pytest.mark.usefixtures("ray_session")
def test_batches_are_sized_from_rays_cost_per_task_as_measured_on_this_cluster():
    import math

    import ray

    from metaray.objective import score_fit
    from metaray.runners import ASSUMED_OVERHEAD_S, FitRunner, batch_size

    prepared = _iris(subsets={"k": 40, "protocol": "holdout"})
    runner = FitRunner(score_fit, ray.put(prepared.problem()))
    for trial in range(6):
        runner.submit([Unit(trial, 0, k) for k in range(40)], prepared.learner)
    launched = []  # (fits taken, what the rule said given what was measured at that moment)
    original = runner._launch

    def checking(groups):
        taken = sum(len(units) for _, units in groups)
        queued = len(runner._queue) + taken
        estimate = runner._fit_seconds.get(prepared.learner.name)
        rule = 1 if estimate is None else min(batch_size(estimate, runner.overhead_s), math.ceil(queued / runner.slots))
        launched.append((taken, min(max(1, rule), queued), runner.overhead_s))
        return original(groups)

    runner._launch = checking
    assert len(list(runner.results())) == 240
    assert all(taken == rule for taken, rule, _ in launched), launched
    overheads = {overhead for _, _, overhead in launched}
    assert len(overheads) > 2 and runner.overhead_s != ASSUMED_OVERHEAD_S  # measured, and updated as tasks end
    assert 0 < runner.overhead_s < 1.0
    assert max(taken for taken, _, _ in launched) > 1  # 40 iris fits of a few ms each are batched


@pytest.mark.usefixtures("ray_session")
def test_cancel_drops_queued_fits():
    import ray

    from metaray.objective import score_fit
    from metaray.runners import FitRunner

    prepared = _iris(subsets={"k": 30, "protocol": "full"}, ray={"fits_per_task": 1})
    runner = FitRunner(score_fit, ray.put(prepared.problem()), fits_per_task=1)
    runner.submit([Unit(0, 0, k) for k in range(30)], prepared.learner)
    runner.submit([Unit(1, 0, k) for k in range(3)], prepared.learner)
    got = []
    for r in runner.results():
        got.append(r.unit.trial)
        if len(got) == 1:
            runner.cancel(0)
    assert got.count(1) == 3 and got.count(0) < 30


@pytest.mark.usefixtures("ray_session")
def test_a_straggling_task_gets_a_backup_copy_and_the_first_to_finish_is_taken(tmp_path):
    """A fit that hangs on its first attempt (a slow node) and runs normally on a second: its task is copied once it
    runs ``BACKUP_AFTER`` times the fits' mean time, the copy's results come back, and the hung one is stopped. Without
    backups this search never ends (the guard below fails it)."""
    import time

    import ray

    from metaray.runners import FitRunner

    class Learner:
        name, memory = "sleeper", 0

    def fit(problem, learner, unit, seed):
        marker = tmp_path / f"{unit.trial}-{unit.subset}"
        first = not marker.exists()
        marker.touch()
        time.sleep(600 if first and unit == Unit(3, 0, 1) else 0.2)
        return FitResult(unit, scores={"accuracy": unit.trial + unit.subset / 10}, fit_seconds=0.2, score_seconds=0.0)

    runner = FitRunner(fit, ray.put(None), fits_per_task=1)
    for trial in range(4):
        runner.submit([Unit(trial, 0, k) for k in range(2)], Learner())
    got, until = {}, time.monotonic() + 120
    while runner.pending and time.monotonic() < until:
        got.update({r.unit: r for r in runner.wait(timeout=5)})
    try:
        assert sorted(got) == [Unit(t, 0, k) for t in range(4) for k in range(2)], "the straggler was never backed up"
        assert runner.copies >= 1 and all(r.error is None and r.scores["accuracy"] == u.trial + u.subset / 10
                                          for u, r in got.items())
        assert runner.pending == 0 and not runner._twin
    finally:
        runner.close()

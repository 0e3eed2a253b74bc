"""A time budget (``search.time_budget``, ``--time-budget``): no configuration opens after it; those running then
finish within the grace or are stopped unfinished; the end says so; a resume gets a fresh budget. The driver's part
runs on a made-up clock, without Ray; the rest through the `metaray` command, on the session's Ray, with fits that
sleep."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import tests.helpers
from metaray.cli import main
from metaray.driver import BUDGET_STOP, TimeBudget, drive, duration
from metaray.runners import InProcessRunner
from tests.test_driver import K, fake_fit, make_driver


class Clock:
    """Made-up time: every fit takes one second."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budgeted(seconds: float, *, grace: float, n: int = 24, start: float = 0.0, keep: int = 0, replay=None,
             searcher: str = "random"):
    """A search of ``n`` configurations of K fits under a budget on the made-up clock; returns the driver, the
    budget, the clock time at which each configuration opened, and the fits run."""
    clock, opened, fitted = Clock(), [], []

    def fit(unit, learner):
        clock.now += 1.0
        fitted.append(unit)
        return fake_fit(unit, learner)

    def accept(config):
        opened.append(clock.now)
        return dict(config)

    driver = make_driver(searcher, "none", n=n, accept=accept)
    budget = TimeBudget(seconds, start=start, grace=grace, now=clock, keep=keep)
    drive(driver, InProcessRunner(fit, slots=3), learner_for=lambda trial, unit: (trial.learner, None),
          replay=replay, budget=budget)
    return driver, budget, opened, fitted


def test_the_budget_stops_the_opening_and_the_grace_ends_what_still_runs():
    driver, budget, opened, _ = budgeted(20, grace=2)
    trials = driver.trials
    assert budget.reached and budget.cut and driver.done
    assert 0 < len(trials) < 24 and all(at < 20 for at in opened)  # nothing opened after the budget
    completed = [t for t in trials if t.status == "completed"]
    cut = [t for t in trials if t.status == "stopped"]
    assert completed and all(t.reported == K and t.error is None for t in completed)
    assert cut and all(t.reported < K and t.error == f"{BUDGET_STOP} ({t.reported}/{K} subsets)" for t in cut)
    assert [t.status for t in trials] == ["completed"] * len(completed) + ["stopped"] * len(cut)  # oldest first


def test_a_long_grace_lets_the_open_configurations_finish_and_a_spent_budget_opens_nothing():
    short, _, _, _ = budgeted(20, grace=2)
    driver, budget, _, _ = budgeted(20, grace=100)
    assert budget.reached and not budget.cut
    assert len(driver.trials) == len(short.trials) and all(t.status == "completed" for t in driver.trials)
    spent, budget, _, fitted = budgeted(5, grace=1, start=-10)  # spent before the first decision (a slow start-up)
    assert budget.reached and spent.trials == [] and fitted == []
    roomy, budget, _, _ = budgeted(1000, grace=10)
    assert not budget.reached and len(roomy.trials) == 24  # a search that ends first is not cut short


@pytest.mark.parametrize("searcher", ["random", "optuna"])
def test_a_resume_replays_its_journal_whatever_is_left_of_the_budget(searcher):
    first, _, _, _ = budgeted(1000, grace=10, n=12, searcher=searcher)
    recorded = {(t.index, p): r for t in first.trials[:6] for p, r in t.results.items()}
    del recorded[(2, 3)], recorded[(2, 4)]  # the kill came while configuration 2 was fitted
    replay = lambda trial, unit: recorded.get((unit.trial, unit.position(K)))  # noqa: E731
    driver, budget, _, fitted = budgeted(5, grace=0, n=12, start=-10, keep=6, replay=replay, searcher=searcher)
    assert budget.reached and fitted == []  # spent, grace too, before the first decision: nothing is fitted
    status = [t.status for t in driver.trials]
    assert status == ["completed"] * 2 + ["stopped"] + ["completed"] * 3, status  # every journaled one, no other
    assert driver.trials[2].reported == 3 and driver.trials[2].error.startswith(BUDGET_STOP)
    assert [t.objective for t in driver.trials if t.index != 2] == [t.objective for t in first.trials[:6]
                                                                    if t.index != 2]


def test_durations_read_as_they_were_written():
    assert [duration(s) for s in (600, 90, 5400, 3600, 4, 0.5, 86400)] == ["10m", "90s", "1.5h", "1h", "4s",
                                                                          "0.5s", "24h"]


# through the `metaray` command, on the session's Ray ----------------------------------------------------------------

#: iris, K = 2, fits that sleep 0.2 s, but for configuration 4 (of this seed), whose two fits sleep 30 s: they hold
#: both fit slots (the session's 2 CPUs) until the grace ends them
SLEEPY = {"name": "budget", "seed": 8, "data": {"dataset": "iris"}, "subsets": {"k": 2},
          "learner": {"name": "tests.helpers.HangingClassifier"},
          "search": {"num_samples": 50, "space": {"hang_s": {"choice": [0.2, 0.2, 0.2, 0.2, 0.2, 30]}}}}
BUDGET_S = 12  # a cold start (Ray's workers, MLflow's process) takes 4-10 s of it on 2 CPUs


@pytest.fixture(scope="module")
def budgeted_run(ray_session, tmp_path_factory, new_store):
    """`metaray run --time-budget 12s` of SLEEPY, once for the module: exit status, stdout, stderr, folder."""
    import contextlib
    import io

    from ray import cloudpickle

    tmp = tmp_path_factory.mktemp("budget")
    spec = {**SLEEPY, "storage": str(tmp / "runs"), "tracking": {"uri": new_store(tmp)}}
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    cloudpickle.register_pickle_by_value(tests.helpers)  # Ray's workers cannot import tests.helpers by name
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", str(path), "--time-budget", f"{BUDGET_S}s"])
    finally:
        cloudpickle.unregister_pickle_by_value(tests.helpers)
    return code, out.getvalue(), err.getvalue(), next((tmp / "runs").glob("*/*"))


def _table(folder):
    return pd.read_csv(folder / "results.csv")


def _cut(table):
    return table[table["error"].fillna("").str.startswith(BUDGET_STOP)]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_search_ends_at_its_time_budget_with_what_finished(budgeted_run):
    import mlflow

    code, out, err, folder = budgeted_run
    assert code == 0, err[-3000:]
    assert "time budget 12s" in err.splitlines()[0]
    table = _table(folder)
    cut = _cut(table)
    completed = table[table["status"] == "completed"]
    assert 1 <= len(completed) and len(table) < 50
    assert set(table["status"]) == {"completed", "stopped"} and len(cut) == len(table) - len(completed)
    assert (completed["subsets_done"] == 2).all() and (cut["subsets_done"] < 2).all()
    assert "t0004" in set(cut["trial"])  # its 30 s fits outlast the grace: stopped, not waited for
    assert table["status"].tolist() == ["completed"] * len(completed) + ["stopped"] * len(cut)  # ranked after
    line = f"time budget reached after {len(completed)} configurations (12s); {len(cut)} still running after a grace"
    assert line in err, err[-3000:]
    assert f"time budget reached after {len(completed)} configurations" in out.splitlines()[0]
    best = json.loads((folder / "best.json").read_text())
    state = json.loads((folder / "state.json").read_text())
    expected = {"seconds": BUDGET_S, "grace_seconds": 1.2, "reached": True, "configurations": len(completed),
                "stopped_unfinished": len(cut), "completed": len(completed)}
    assert best["time_budget"] == state["time_budget"] == expected
    assert best["trial"] in set(completed["trial"]) and best["objective"] == completed["objective"].max()
    assert state["status"] == "finished" and (folder / "report.html").is_file()
    parent = mlflow.MlflowClient(state["mlflow_uri"]).get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["configurations_completed"] == len(completed)
    assert parent.data.metrics["configurations_stopped"] == len(cut)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_resume_gets_a_fresh_budget_and_replays_its_journal_for_nothing(budgeted_run, capsys):
    from ray import cloudpickle

    folder = budgeted_run[3]
    first = _table(folder)
    fits = [json.loads(line) for line in (folder / "fits.jsonl").read_text().splitlines()]
    journaled = 1 + max(fit["trial"] for fit in fits)
    cloudpickle.register_pickle_by_value(tests.helpers)
    try:
        capsys.readouterr()
        # a budget spent before the first decision: the journal's configurations, replayed, and nothing fitted
        assert main(["resume", str(folder), "--time-budget", "0.01"]) == 0
        out, err = capsys.readouterr()
        assert "time budget: a fresh 0.01s for this resume" in err
        table = _table(folder)
        assert len(table) == journaled and f"0 subset fits run, {len(fits)} replayed" in out
        assert set(table.loc[table["status"] == "completed", "trial"]) == set(
            first.loc[first["status"] == "completed", "trial"])
        # a budget that starts afresh: configurations past the journal open again (6 s: the resume's own start
        # takes 1 to 3 s of it on 2 loaded CPUs)
        assert main(["resume", str(folder), "--time-budget", "6s"]) == 0
        out, err = capsys.readouterr()
    finally:
        cloudpickle.unregister_pickle_by_value(tests.helpers)
    assert "time budget: a fresh 6s for this resume" in err and "time budget reached after" in err
    assert len(_table(folder)) > journaled
    resumed = json.loads((folder / "state.json").read_text())["time_budget"]
    assert resumed["seconds"] == 6 and resumed["reached"] is True
    # the run folder's spec keeps the search's own budget: a plain resume gets it afresh
    assert yaml.safe_load((folder / "spec.yaml").read_text())["search"]["time_budget"] == BUDGET_S


@pytest.mark.parametrize("value", ["-3", "soon", "0", "10 parsecs"])
def test_a_bad_time_budget_is_one_line_and_exit_2(value, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SLEEPY, "storage": str(tmp_path / "runs")}))
    assert main(["run", str(path), "--time-budget", value]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("metaray: error: search.time_budget") and value in err, err
    assert not (tmp_path / "runs").exists()

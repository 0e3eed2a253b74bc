"""metaray.results: what a search's configurations become for people. The ranking of a whole in-process search (made-up
fits, no Ray): the results table best first, completed before stopped before failed, its rows and progress lines;
and the SearchResult's lines: failures, ties, the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaray.errors import SpecError
from metaray.results import Ranking, SearchResult
from metaray.space import parse_space
from metaray.spec import LearnerSpec
from metaray.stats import VersusBest
from tests.test_driver import SPACES, K, make_driver, run


def reject_large_c(config):
    if config["C"] > 300:
        raise SpecError("learner.params.C", "rejected by the learner", got=config["C"])
    return dict(config)


@pytest.fixture(scope="module")
def ranked():
    """A random search with racing over 24 configurations, some rejected: every status, ranked."""
    driver = make_driver("random", "racing", n=24, accept=reject_large_c)
    run(driver)
    space = parse_space(SPACES["random"], LearnerSpec(name="logistic_regression"))
    versus = VersusBest("mean", "max", True, n_train=100, n_test=25, rope=0.01, test="bayesian")
    ranking = Ranking(driver, space, metric="accuracy", greater_is_better=True, aggregate="mean", mode="max",
                      num_samples=24, versus=versus)
    return driver, ranking, ranking.table()


def test_the_table_ranks_completed_then_stopped_then_failed_best_first(ranked):
    driver, ranking, table = ranked
    assert sorted(table["trial"]) == [f"t{i:04d}" for i in range(24)]
    statuses = table["status"].tolist()
    assert statuses == sorted(statuses, key=["completed", "stopped", "failed"].index)
    assert {"completed", "stopped", "failed"} <= set(statuses)  # the order above says something
    for status, rows in table.groupby("status", sort=False):
        if status != "failed":
            assert rows["objective"].tolist() == sorted(rows["objective"], reverse=True), status
    best = ranking.best()
    assert table["trial"].iloc[0] == best.id and best.objective == max(
        t.objective for t in driver.trials if t.status == "completed")


def test_a_row_holds_the_configuration_its_scores_and_its_comparison_with_the_best(ranked):
    driver, _, table = ranked
    columns = table.columns.tolist()
    assert columns[:3] == ["trial", "status", "learner"] and {"param.C", "param.tol", "objective"} <= set(columns)
    assert columns.index("p_vs_best") < columns.index("tied_with_best") < columns.index("subsets_done")
    by_trial = table.set_index("trial")
    for t in driver.trials:
        row = by_trial.loc[t.id]
        assert row["param.C"] == pytest.approx(t.config["C"])
        scores = [row[f"score_{k}"] for k in range(int(row["subsets_done"]))]
        if t.status == "failed":
            assert "rejected by the learner" in row["error"] and row["subsets_done"] == 0 and not row["tied_with_best"]
        else:
            assert scores == pytest.approx(driver.scores(t)) and row["mean"] == pytest.approx(np.mean(scores))
            assert row["error"] == ""
    completed = table[table["status"] == "completed"]
    assert completed["tied_with_best"].iloc[0] and completed["p_vs_best"].iloc[0] == 1.0
    assert table.loc[table["status"] == "stopped", "p_vs_best"].notna().all()  # over the subsets they have
    assert table.loc[table["status"] == "failed", "p_vs_best"].isna().all()


def test_progress_lines_say_the_configuration_its_objective_and_the_best_so_far(ranked):
    driver, ranking, _ = ranked
    completed = next(t for t in driver.trials if t.status == "completed")
    line = ranking.line(completed)
    assert line.startswith(f"[{completed.index + 1:>3}/24] {completed.id} completed mean accuracy=")
    assert f"({K}/{K} subsets)" in line and f"C={completed.config['C']:.4g}" in line
    assert line.endswith(f"best {ranking.best().objective:.4f} ({ranking.best().id})")
    failed = next(t for t in driver.trials if t.status == "failed")
    assert ranking.line(failed).endswith(f"error: {failed.error}") and " failed " in ranking.line(failed)


def test_integer_parameters_stay_integers_where_other_rows_lack_them():
    space_raw = {"learner": {"choice": [{"name": "random_forest", "params": {"n_estimators": {"randint": [5, 30]}}},
                                        {"name": "knn", "params": {"n_neighbors": {"choice": [1, 5, 9]}}},
                                        {"name": "logistic_regression", "params": {"C": {"uniform": [1.0, 3.0]}}}]}}
    space = parse_space(space_raw, LearnerSpec(name="logistic_regression"))
    driver = make_driver("random", "none", n=12, space=space_raw,
                         accept=lambda config: {**config, "C": config.get("logistic_regression.C") or 1.0, "tol": 0.0})
    run(driver)
    table = Ranking(driver, space, metric="accuracy", greater_is_better=True, aggregate="mean", mode="max",
                    num_samples=12).table()
    assert set(table["learner"]) == {"random_forest", "knn", "logistic_regression"}
    for column in ("param.random_forest.n_estimators", "param.knn.n_neighbors"):
        assert str(table[column].dtype) == "Int64" and table[column].isna().any(), column
    assert table["param.logistic_regression.C"].dtype == float


def result(table: pd.DataFrame, **fields) -> SearchResult:
    best = {"trial": table["trial"].iloc[0], "learner": "knn", "params": {"n_neighbors": 5}, "objective": 0.9123,
            "std": 0.01}
    return SearchResult(**{"name": "s", "run_dir": Path("/nowhere"), "results": table, "best": best,
                           "metric": "accuracy", "aggregate": "mean", "mode": "max", "fits_run": 12,
                           "fits_replayed": 3, "wall_seconds": 1.5, "tie_method": "Bayesian correlated t-test",
                           **fields})


def test_failures_are_one_line_with_the_most_common_error_whatever_its_numbers():
    table = pd.DataFrame({"trial": ["t0000", "t0001", "t0002", "t0003"],
                          "status": ["completed", "failed", "failed", "failed"],
                          "error": ["", "subset 0: FitError: loss became nan at lr=1e+06",
                                    "subset 1: FitError: loss became nan at lr=3.5", "MemoryError: too big"]})
    assert result(table).failures() == ("3 of 4 configurations failed; most common error (2x): FitError: loss "
                                        "became nan at lr=1e+06")
    every = table.assign(status="failed", error="ValueError: no")
    assert result(every).failures() == "every configuration failed (4 of 4); most common error (4x): ValueError: no"
    assert result(table.assign(status="completed", error="")).failures() is None


def test_the_tie_line_and_the_summary():
    table = pd.DataFrame({"trial": ["t0002", "t0000", "t0001"], "status": ["completed"] * 3, "learner": ["knn"] * 3,
                          "param.n_neighbors": [5, 9, 1], "objective": [0.9123, 0.9, 0.5], "mean": [0.9123, 0.9, 0.5],
                          "std": [0.01, 0.02, 0.1], "worst": [0.9, 0.88, 0.4], "p_vs_best": [1.0, 0.4, 0.001],
                          "tied_with_best": [True, True, False], "subsets_done": [5, 5, 5]})
    simplest = {"trial": "t0000", "learner": "knn", "visible": {"n_neighbors": 9}, "objective": 0.9}
    res = result(table, simplest=simplest, holdout_scores={"accuracy": 0.95})
    assert res.ok and res.tied == 2
    assert res.tie_line() == ("tied with the best: 2 of 3 configurations (Bayesian correlated t-test)\n"
                              "simplest tied: t0000 knn(n_neighbors=9), mean accuracy = 0.9000")
    itself = result(table, simplest={**simplest, "trial": "t0002"})
    assert itself.tie_line().endswith("\nsimplest tied: the best configuration itself")
    summary = res.summary().splitlines()
    assert summary[0] == "s: 3 configurations, 12 subset fits run, 3 replayed from the journal, 1.5 s"
    assert "best configuration (mean accuracy = 0.9123, std 0.0100): knn(n_neighbors=5)" in summary
    assert "refitted on the training pool, on the hold-out rows: accuracy=0.9500" in summary
    assert summary[-1] == "results: /nowhere"
    assert [line.split()[0] for line in summary[3:6]] == ["t0002", "t0000", "t0001"]  # the table, best first
    none = result(table.assign(status="failed"), best=None)
    assert not none.ok and "no configuration completed" in none.summary()

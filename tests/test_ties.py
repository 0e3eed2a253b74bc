"""Which configurations are tied with the best, in a whole search: the results table, its CSV, the MLflow child runs,
the printed summary and the "simplest tied" recommendation."""

import math

import numpy as np
import pandas as pd
import pytest

from metaray.cli import main
from metaray.run import search

pytestmark = pytest.mark.usefixtures("ray_session", "shared_store")


@pytest.fixture
def easy_words(tmp_path):
    """Two well separated blobs with word labels and a text column: every learner gets them all right."""
    rng = np.random.default_rng(0)
    n = 160
    label = np.where(np.arange(n) % 2 == 0, "spam", "ham")
    x = rng.normal(0, 1, (n, 3)) + np.where(label == "spam", 6.0, -6.0)[:, None]
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": rng.choice(["red", "blue"], n),
                          "label": pd.array(label, dtype="string")})
    frame.loc[3, "a"] = np.nan
    path = tmp_path / "words.csv"
    frame.to_csv(path, index=False)
    return path


def test_the_simplest_tied_configuration_is_recommended(easy_words, write_yaml, capsys, tmp_path, mlflow_uri,
                                                         monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    spec = {"name": "ties_words", "seed": 1, "data": {"path": str(easy_words), "target": "label"},
            "subsets": {"k": 4}, "storage": str(tmp_path / "runs"),
            "search": {"num_samples": 8, "space": {"learner": {"choice": [
                {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 30]}}},
                {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10]}}}]}}}}
    assert main(["run", str(write_yaml(spec))]) == 0
    out = capsys.readouterr().out
    run_dir = next((tmp_path / "runs" / "ties_words").iterdir())
    table = pd.read_csv(run_dir / "results.csv")
    assert {"p_vs_best", "p_not_worse", "tied_with_best"} <= set(table.columns)
    assert (table["objective"] == 1.0).all() and table["tied_with_best"].all()  # the same scores: equivalent
    linear = table[table["learner"] == "logistic_regression"]
    assert len(linear) and len(linear) < len(table)
    simplest = linear.loc[linear["param.logistic_regression.C"].idxmin(), "trial"]  # linear first, then least C
    assert f"tied with the best: {len(table)} of {len(table)} configurations (Bayesian correlated t-test" in out
    expect = (f"simplest tied: {simplest} logistic_regression" if simplest != table["trial"][0]
              else "simplest tied: the best configuration itself")
    assert expect in out
    assert "p_vs_best" in out and "tied_with_best" in out  # the printed table's columns

    client = mlflow.MlflowClient(mlflow_uri)
    parent = client.search_runs([client.get_experiment_by_name("ties_words").experiment_id],
                                "tags.`metaray.kind` = 'search'")[0]
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == len(table)
    for child in children:
        row = table[table["trial"] == child.data.tags["metaray.trial"]].iloc[0]
        assert child.data.tags["tied_with_best"] == str(bool(row["tied_with_best"])).lower()
        assert child.data.metrics["p_vs_best"] == pytest.approx(row["p_vs_best"])
        assert child.data.metrics["p_not_worse"] == pytest.approx(row["p_not_worse"])


WINE = {"name": "ties_wine", "seed": 0, "data": {"dataset": "wine", "scale": False},
        "learner": {"name": "logistic_regression"}, "subsets": {"k": 6, "fraction": 0.6},
        "search": {"num_samples": 10, "space": {"C": {"loguniform": [1e-5, 10]}}}}


@pytest.mark.slow
def test_ties_follow_the_test_the_spec_names(tmp_path):
    bayes = search(WINE, ["objective.rope=0.02"], run_dir=tmp_path / "b", track=False)
    freq = search(WINE, ["objective.tie_test=t_test"], run_dir=tmp_path / "f", track=False)
    b, f = bayes.results, freq.results
    assert b["p_vs_best"].tolist() == pytest.approx(f["p_vs_best"].tolist(), nan_ok=True)  # the same corrected t
    assert f["tied_with_best"].tolist() == (f["p_vs_best"] >= 0.05).tolist()
    assert b["tied_with_best"].tolist() == (b["p_not_worse"] >= 0.95).tolist()
    # not significantly worse is a weaker claim than equivalent: every Bayesian tie is a frequentist one
    assert set(b.loc[b["tied_with_best"], "trial"]) <= set(f.loc[f["tied_with_best"], "trial"])
    assert 1 < f["tied_with_best"].sum() < len(f) and (b["objective"].max() - b["objective"].min() > 0.1)
    assert "not significantly worse at 0.95" in freq.tie_line() and "ROPE 0.02" in bayes.tie_line()
    assert freq.best["tied"]["count"] == f["tied_with_best"].sum()


@pytest.mark.slow
def test_other_aggregates_use_the_paired_bootstrap_and_stopped_configurations_compare_over_their_subsets(tmp_path):
    spec = {**WINE, "search": {**WINE["search"], "scheduler": {"name": "racing", "min_subsets": 2}}}
    result = search(spec, ["objective.aggregate=cvar"], run_dir=tmp_path / "r", track=False)
    table = result.results
    assert "paired bootstrap" in result.tie_line()
    stopped = table[table["status"] == "stopped"]
    assert len(stopped) and stopped["p_vs_best"].notna().all()  # over the subsets they have
    # by the same rule as the others: racing stops what cannot beat the incumbent, and one whose scores so far equal
    # the incumbent's cannot, yet is as good over its subsets (tied); one proven worse is not
    assert (stopped["tied_with_best"] == (stopped["p_not_worse"] >= 0.95)).all()
    assert (stopped["subsets_done"] < 6).all()
    assert (~stopped["tied_with_best"] & (stopped["p_not_worse"] < 0.5)).any()  # one stopped and proven worse
    assert table.loc[0, "p_vs_best"] == 1.0 and table.loc[0, "tied_with_best"]
    assert (tmp_path / "r" / "report" / "rungs.png").is_file()  # racing's rungs, in the report of a search


def test_racing_is_given_the_overlap_correction(tmp_path, monkeypatch):
    import metaray.plan

    seen = []
    real = metaray.plan.make_scheduler

    def spy(options, **kw):
        seen.append(kw["overlap"])
        return real(options, **kw)

    monkeypatch.setattr(metaray.plan, "make_scheduler", spy)
    spec = {**WINE, "search": {**WINE["search"], "num_samples": 3, "scheduler": "racing"}}
    search(spec, run_dir=tmp_path / "r", track=False)
    n_train = round(0.6 * 178)  # wine's 178 rows, subsets of 60 %, each scored on the rest (out_of_subset)
    assert seen == [pytest.approx((178 - n_train) / n_train)] and not math.isnan(seen[0])

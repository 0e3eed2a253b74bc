"""Learning across experiments: meta-features, the choice and translation of past configurations, a warm-started
search, `metaray history`, and extending a finished search."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from metaray.cli import main
from metaray.data import Dataset
from metaray.errors import RejectedValue
from metaray.metafeatures import compute
from metaray.run import extend, resume, search
from metaray.space import Dist, parse_space
from metaray.spec import LearnerSpec
from metaray.warmstart import _translate, similar


def test_meta_features_of_a_table_with_text_missing_values_and_many_rows():
    rng = np.random.default_rng(0)
    n = 30000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(size=n),
                          "colour": pd.array(rng.choice(["red", "blue", None], n), dtype="string"),
                          "c": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))})
    y = np.where(frame["a"] + rng.normal(0, 0.5, n) > 0, "yes", "no")  # missing: a third of colour, a fifth of c
    ds = Dataset.from_arrays(frame, y)
    mf = compute(ds, seed=3)
    assert mf == compute(ds, seed=3)  # deterministic in the seed
    assert mf["rows_log10"] == pytest.approx(math.log10(n)) and mf["categorical_share"] == 0.25
    assert 0.11 < mf["missing_share"] < 0.16 and mf["classes"] == 2 and mf["class_entropy"] > 0.99
    assert mf["skewness_mean_abs"] > 0.5  # the exponential column
    assert 0.8 < mf["landmark_stump"] <= 1 and 0.6 < mf["landmark_nb"] <= 1
    regression = compute(Dataset.from_arrays(rng.normal(size=(200, 3)), rng.exponential(size=200),
                                             task="regression"))
    assert regression["target_skew"] > 1 and {"landmark_linear", "landmark_1nn"} <= set(regression)
    assert "classes" not in regression


def test_a_past_value_is_fitted_into_the_current_space():
    assert Dist("loguniform", (0.01, 10.0)).closest(500.0) == 10.0
    assert Dist("loguniform", (0.01, 10.0)).closest(None) == pytest.approx(math.sqrt(0.1))  # absent: the centre
    assert Dist("randint", (1, 20)).closest(33.7) == 19 and Dist("randint", (1, 20)).closest(4.2) == 4
    assert Dist("quniform", (0.0, 1.0, 0.25)).closest(0.3) == 0.25
    assert Dist("choice", ("l1", "l2")).closest("elasticnet") == "l1"  # not offered: the first
    assert Dist("choice", (1, 5, 10)).closest(7) == 5  # a number not offered: the nearest
    assert Dist("choice", (None, 5, 10)).closest(10) == 10 and Dist("choice", (None, 5)).closest(None) is None


def test_past_configurations_are_translated_by_learner_name_and_refused_ones_are_skipped():
    space = parse_space({"learner": {"choice": [
        {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10]}}},
        {"name": "knn", "params": {"n_neighbors": {"randint": [1, 30]}}}]}}, LearnerSpec())
    said, ok = [], lambda name, params: None
    past = {"parent": "p" * 32, "trial": "t0003", "params": {"learner": "knn", "knn.n_neighbors": 45, "gone": 1}}
    assert _translate(space, past, ok, said.append) == {"learner": "knn", "knn.n_neighbors": 29,
                                                        "logistic_regression.C": pytest.approx(math.sqrt(0.1))}
    plain = {"parent": "p" * 32, "trial": "t0001", "params": {"learner": "logistic_regression", "C": 0.5}}
    assert _translate(space, plain, ok, said.append)["logistic_regression.C"] == 0.5  # from a one-learner space
    other = {"parent": "p" * 32, "trial": "t0002", "params": {"learner": "svc", "C": 1.0}}
    assert _translate(space, other, ok, said.append) is None and not said  # another family: not this space's

    def refuse(name, params):
        raise RejectedValue("learner.params.C", "rejected by LogisticRegression", got=params["C"])

    assert _translate(space, plain, refuse, said.append) is None
    assert said and "t0001" in said[0] and "skipped" in said[0]


def test_similar_searches_are_nearest_in_standardised_meta_features():
    past = pd.DataFrame({"run_id": ["far", "near", "none"], "mf.rows_log10": [5.0, 2.1, np.nan],
                         "mf.landmark_1nn": [0.5, 0.9, 0.9]})
    found = similar(past, {"rows_log10": 2.0, "landmark_1nn": 0.95, "unknown": 1.0})
    assert found["run_id"].tolist() == ["near", "far"] and found["distance"].iloc[0] < found["distance"].iloc[1]


WINE = {"name": "ws_wine", "seed": 0, "data": {"dataset": "wine", "scale": True}, "subsets": {"k": 3},
        "search": {"num_samples": 6, "space": {"learner": {"choice": [
            {"name": "logistic_regression", "params": {"C": {"loguniform": [0.001, 100]}}},
            {"name": "knn", "params": {"n_neighbors": {"randint": [1, 40]}}}]}}}}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_search_starts_from_the_best_of_a_similar_past_search(tmp_path, monkeypatch, capsys, write_yaml):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    said = []
    cold = search({**WINE, "search": {**WINE["search"], "warm_start": "auto"}}, run_dir=tmp_path / "cold",
                  progress=said.append)
    assert any(line.startswith("warm start: no MLflow store at") and "starting cold" in line for line in said)
    assert "origin" not in cold.results  # nothing came from elsewhere
    assert json.loads((tmp_path / "cold" / "warm_start.json").read_text()) == []  # a resume stays cold
    parent = mlflow.MlflowClient(uri).get_run(cold.mlflow_run_id)
    assert {"metafeature.rows_log10", "metafeature.landmark_1nn"} <= set(parent.data.params)
    assert parent.data.tags["metric"] == "accuracy" and parent.data.tags["metaray.mode"] == "max"

    spec = {**WINE, "name": "ws_cancer", "data": {"dataset": "breast_cancer", "scale": True},
            "search": {**WINE["search"], "searcher": "optuna", "num_samples": 5,
                       "warm_start": {"source": "auto", "configs": 3}}}
    warm = search(spec, run_dir=tmp_path / "warm", progress=said.append)
    table = warm.results.sort_values("trial").reset_index(drop=True)
    past = cold.results.set_index("trial")
    assert table["origin"].tolist()[3:] == ["search", "search"]
    for _, row in table.head(3).iterrows():  # the three best of the past search, best first, as they were
        source, trial = row["origin"].removeprefix("warm ").split("/")
        assert source == cold.mlflow_run_id and row["learner"] == past.loc[trial, "learner"]
        columns = [c for c in table.columns if c.startswith(f"param.{row['learner']}.")]
        assert columns
        for column in columns:
            assert row[column] == pytest.approx(past.loc[trial, column])  # the same space: the same values
    ranked = past.loc[[o.split("/")[1] for o in table["origin"][:3]], "objective"].tolist()
    assert ranked == sorted(cold.results["objective"], reverse=True)[:3]
    saved = json.loads((tmp_path / "warm" / "warm_start.json").read_text())
    assert [p["origin"] for p in saved] == table["origin"][:3].tolist() and len(saved[0]["past_scores"]) == 3
    children = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_run(warm.mlflow_run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{warm.mlflow_run_id}'")
    assert sorted(c.data.tags["metaray.origin"] for c in children) == sorted(table["origin"])

    # a resume starts from the same points, whatever the store holds by then: it does not even look
    def unreachable(*args, **kwargs):
        raise AssertionError("a resumed search chose its warm start again")

    monkeypatch.setattr("metaray.warmstart.choose", unreachable)
    again = resume(tmp_path / "warm", track=False)
    assert again.results.equals(warm.results) and again.fits_run == 0

    # history: both searches, the new one first; --similar ranks the past search on the same data first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    search({**WINE, "name": "ws_again", "search": {**WINE["search"], "num_samples": 2}}, run_dir=tmp_path / "again")
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert out.index("ws_again") < out.index("ws_wine") and "best_objective" in out
    assert main(["history", "--similar", str(write_yaml(WINE))]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(" ") or "ws_" in line]
    assert "ws_wine" in lines[0] or "ws_again" in lines[0]  # wine's own searches, nearest first


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_extending_a_finished_search_fits_only_the_new_configurations(tmp_path, monkeypatch, write_yaml, capsys):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    first = search(WINE, run_dir=tmp_path / "run")
    path = write_yaml(WINE)
    assert main(["run", str(path), "--extend", str(tmp_path / "run"), "--num-samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "9 configurations, 9 subset fits run, 18 replayed from the journal" in out
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    assert len(table) == 9
    before = first.results.set_index("trial")
    after = table.set_index("trial").loc[before.index]
    assert np.allclose(after["objective"], before["objective"])  # never refitted: the same scores
    client = mlflow.MlflowClient(uri)
    children = client.search_runs([client.get_run(first.mlflow_run_id).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{first.mlflow_run_id}'")
    assert len(children) == 9 and client.get_run(first.mlflow_run_id).info.status == "FINISHED"
    # another spec, or no count: one line, exit 2, the folder untouched
    other = write_yaml({**WINE, "seed": 1}, "other.yaml")
    assert main(["run", str(other), "--extend", str(tmp_path / "run"), "--num-samples", "3"]) == 2
    err = capsys.readouterr().err
    assert "--extend: the run folder holds a search of another spec" in err and "'seed differs'" in err
    assert main(["run", str(path), "--extend", str(tmp_path / "run")]) == 2
    assert "--num-samples" in capsys.readouterr().err
    grid = write_yaml({**WINE, "learner": {"name": "knn"},
                       "search": {"searcher": "grid", "space": {"n_neighbors": {"grid": [3, 5]}}}}, "g.yaml")
    search(grid, run_dir=tmp_path / "g", track=False)
    assert main(["run", str(grid), "--extend", str(tmp_path / "g"), "--num-samples", "2"]) == 2
    assert "a grid is enumerated whole" in capsys.readouterr().err
    empty = write_yaml({**WINE, "subsets": {"k": 2}, "search": {"searcher": "optuna", "space": {}}}, "e.yaml")
    search(empty, run_dir=tmp_path / "e", track=False)  # nothing to search: one configuration, the learner's own
    assert main(["run", str(empty), "--extend", str(tmp_path / "e"), "--num-samples", "2"]) == 2
    assert "--extend: extends searches that draw configurations; this one's search.space has nothing to search" in \
        capsys.readouterr().err
    # HyperOpt (its random start-up depends on the number of configurations it was first given): nothing refitted
    hyperopt = {**WINE, "search": {**WINE["search"], "searcher": "hyperopt", "num_samples": 15}}
    first = search(hyperopt, run_dir=tmp_path / "h", track=False)
    more = extend(tmp_path / "h", hyperopt, 6, track=False)  # 21 would start with 7 random configurations, not 5
    assert more.fits_replayed == 15 * 3 and more.fits_run == 6 * 3
    assert more.results.set_index("trial").loc[first.results["trial"], "objective"].tolist() == pytest.approx(
        first.results["objective"].tolist())
    assert len(pd.read_csv(tmp_path / "run" / "results.csv")) == 9


def test_warm_start_keys_are_checked():
    from metaray.errors import SpecError
    from metaray.spec import load_spec

    with pytest.raises(SpecError, match="search.warm_start: not a source"):
        load_spec({**WINE, "search": {**WINE["search"], "warm_start": "best"}})
    with pytest.raises(SpecError, match="search.warm_start: a grid is searched whole"):
        load_spec({**WINE, "search": {**WINE["search"], "searcher": "grid", "warm_start": "auto"}})
    assert load_spec({**WINE, "search": {**WINE["search"], "warm_start": ["abc"]}}).search.warm_start.source == ["abc"]


@pytest.mark.usefixtures("ray_session")
def test_evaluate_json_prints_the_meta_features(write_yaml, capsys):
    assert main(["evaluate", str(write_yaml({**WINE, "learner": {"name": "knn"}, "search": {}})), "--json",
                 "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    mf = printed["metafeatures"]
    assert mf["classes"] == 3 and mf["rows_log10"] == pytest.approx(math.log10(178)) and 0.5 < mf["landmark_1nn"] <= 1

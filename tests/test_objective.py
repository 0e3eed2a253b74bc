"""The engine against a real local Ray: evaluate and prepare on bundled datasets and tables. (The runner's batching
and cancelling are tested in test_runners.py.)"""

import math

import numpy as np
import pandas as pd
import pytest

from metaray.errors import FitError, SpecError
from metaray.objective import evaluate, prepare
from metaray.spec import load_spec

pytestmark = pytest.mark.usefixtures("ray_session")


def iris(**sections):
    return {"name": "iris", "data": {"dataset": "iris"}, "learner": {"name": "logistic_regression"}, **sections}


def test_seed_protocol_on_iris_reproduces_the_seed_document():
    # the seed's 4.1: logistic regression, K=5, 80 % subsamples, scored on the whole source set
    ev = evaluate(iris(subsets={"k": 5, "fraction": 0.8, "protocol": "full"}))
    assert 0.96 <= ev.objective <= 0.99
    assert ev.aggregate == "mean" and ev.mode == "max"
    assert list(ev.subsets["subset"]) == [0, 1, 2, 3, 4]
    assert (ev.subsets["n_train"] == 120).all() and (ev.subsets["n_eval"] == 150).all()
    assert "optimistic" in ev.summary()


def test_seed_regression_on_diabetes_has_a_finite_holdout_mse():
    ev = evaluate({"name": "diabetes", "data": {"dataset": "diabetes"}, "learner": {"name": "linear_regression"}})
    assert ev.metric == "mse" and ev.mode == "min"
    assert math.isfinite(ev.objective) and 1000 < ev.objective < 10000
    assert ev.aggregates["worst"] == ev.subsets["mse"].max()


def test_same_seed_same_scores_other_seed_other_subsets():
    spec = iris(subsets={"k": 4, "fraction": 0.5}, learner={"name": "random_forest", "params": {"n_estimators": 20}})
    a, b = evaluate(spec), evaluate(spec)
    pd.testing.assert_frame_equal(a.subsets.drop(columns="fit_seconds"), b.subsets.drop(columns="fit_seconds"))
    assert a.objective == b.objective
    plan0, plan1 = prepare(load_spec(spec)).plan, prepare(load_spec({**spec, "seed": 1})).plan
    assert any(not np.array_equal(x, y) for x, y in zip(plan0.train, plan1.train, strict=True))


def test_every_aggregate_is_reported_and_one_is_the_objective():
    ev = evaluate(iris(objective={"aggregate": "cvar", "alpha": 0.4, "extra_metrics": ["balanced_accuracy"]}))
    assert ev.objective == ev.aggregates["cvar"] <= ev.aggregates["mean"]
    assert {"mean", "std", "worst", "median", "cvar", "mean_minus_std"} <= set(ev.aggregates)
    assert "balanced_accuracy" in ev.subsets.columns


def test_tables_are_preprocessed_per_subset(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n)})
    frame["y"] = np.where((frame["x"] > 0) ^ (frame["colour"] == "red"), "pos", "neg")
    frame.loc[::9, "x"] = np.nan
    frame.to_csv(tmp_path / "rows.csv", index=False)
    ev = evaluate({"name": "csv", "data": {"path": str(tmp_path / "rows.csv"), "target": "y", "scale": True},
                   "learner": {"name": "random_forest", "params": {"n_estimators": 30}},
                   "subsets": {"sampler": "stratified", "k": 3, "protocol": "out_of_subset"},
                   "objective": {"metric": "roc_auc"}})
    assert ev.objective > 0.8


def test_nan_features_for_a_learner_that_cannot_take_them(tmp_path):
    frame = pd.DataFrame({"x": [0.1, np.nan, 0.3, 0.5] * 10, "y": [0, 1, 0, 1] * 10})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    spec = {"name": "nan", "data": {"path": str(tmp_path / "rows.csv"), "target": "y", "impute": False},
            "learner": {"name": "logistic_regression"}}
    with pytest.raises(SpecError, match=r"^data.impute: features contain NaN and LogisticRegression cannot take NaN"):
        prepare(load_spec(spec))
    spec["learner"] = {"name": "hist_gradient_boosting", "params": {"max_iter": 5}}
    assert prepare(load_spec(spec)).learner.name == "hist_gradient_boosting"


def test_classification_metric_on_a_regression_task():
    with pytest.raises(SpecError, match=r"^objective.metric: a classification metric cannot score a regression task; "
                                        r"allowed: 'mae', 'mse', 'r2', 'rmse'; got: 'accuracy'"):
        prepare(load_spec({"name": "d", "data": {"dataset": "diabetes"}, "learner": {"name": "ridge"},
                           "objective": {"metric": "accuracy"}}))


def test_torch_mlp_trains_in_ray_tasks():
    ev = evaluate(iris(learner={"name": "mlp", "params": {"epochs": 60, "hidden_layer_sizes": [16]}},
                       subsets={"k": 2}))
    assert ev.objective > 0.8


def test_a_diverging_fit_fails_with_its_reason():
    spec = iris(learner={"name": "mlp", "params": {"lr": 1e6, "optimizer": "sgd", "epochs": 20}}, subsets={"k": 2})
    with pytest.raises(FitError, match=r"2 of 2 subset fits failed; subset 0: FitError: .*loss became nan"):
        evaluate(spec)


def test_unsatisfiable_resources_are_refused_up_front():
    with pytest.raises(SpecError, match=r"^ray.cpus_per_fit: no node .* has that many CPUs.*; allowed: <= 2; got: 64"):
        evaluate(iris(ray={"cpus_per_fit": 64}))


@pytest.mark.parametrize("spec", [
    {"name": "c", "data": {"dataset": "digits"}, "learner": {"name": "logistic_regression"},
     "objective": {"metric": "accuracy", "extra_metrics": ["log_loss", "roc_auc"]}},
    {"name": "r", "data": {"dataset": "diabetes"}, "learner": {"name": "ridge"},
     "objective": {"metric": "mse", "extra_metrics": ["r2"]}},
    {"name": "e", "strategy": "embedding", "data": {"dataset": "digits"},
     "learner": {"name": "pca", "params": {"n_components": 8}},
     "objective": {"extra_metrics": ["reconstruction_mse"]}},
])
def test_scoring_in_chunks_gives_the_scores_of_one_pass(spec, monkeypatch):
    import metaray.objective as objective

    prepared = prepare(load_spec(spec))
    problem = prepared.problem()
    rows = problem.plan.evaluate[0]
    est = prepared.learner.for_fit(0).fit(problem.X[problem.plan.train[0]], problem.y[problem.plan.train[0]])
    whole = objective.score_rows(problem, est, rows)
    monkeypatch.setattr(objective, "EVAL_CHUNK_BYTES", 4096)  # chunks of a few rows
    assert len(list(objective._chunks(problem.X, rows))) > 1
    chunked = objective.score_rows(problem, est, rows)
    assert whole.keys() == chunked.keys() and len(whole) >= 2
    for name in whole:
        assert chunked[name] == pytest.approx(whole[name], rel=1e-9), name


def test_gpus_per_fit_trains_torch_learners_on_cuda_and_is_refused_without_gpus():
    prepared = prepare(load_spec(iris(learner={"name": "mlp"}, ray={"gpus_per_fit": 0.25})))
    assert prepared.learner.model.device == "cuda"
    assert prepare(load_spec(iris(learner={"name": "mlp"}))).learner.model.device == "auto"
    from metaray.cluster import max_node_resource

    more = max_node_resource("GPU") + 1  # more than any node has, on a machine with GPUs too
    with pytest.raises(SpecError, match=r"^ray.gpus_per_fit: no node of this Ray cluster has that many GPUs"):
        evaluate(iris(learner={"name": "mlp"}, ray={"gpus_per_fit": more}))


def test_the_data_is_put_into_the_object_store_once_and_read_from_there():
    from metaray.objective import share

    prepared = prepare(load_spec({"name": "d", "data": {"dataset": "digits"}}))
    share(prepared)
    assert not prepared.dataset.X.flags.writeable  # the driver now reads the object store's shared, read-only buffer

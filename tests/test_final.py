"""The final model (``final:``, metaray.final): ``refit`` fits the best configuration on the training pool; ``bag``
averages the best configuration's K subset models, the very models the search scored, and is what MLflow logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from metaray.cli import main
from metaray.learners.bag import Bag
from metaray.objective import _proba, prepare, score_rows
from metaray.spec import load_spec
from tests.helpers import LABELS, user_table, write_table


def test_a_bag_averages_probabilities_with_a_column_for_a_class_a_member_never_saw():
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array(["a", "a", "b", "b", "c", "c"])
    members = [LogisticRegression().fit(X[:4], y[:4]), LogisticRegression().fit(X, y)]  # the first never saw "c"
    bag = Bag(members, "classification", np.array(["a", "b", "c"]))
    proba = bag.predict_proba(X)
    first = np.column_stack([members[0].predict_proba(X), np.zeros(len(X))])
    np.testing.assert_allclose(proba, (first + members[1].predict_proba(X)) / 2)
    assert np.allclose(proba.sum(axis=1), 1) and bag.predict(X).tolist() == np.array(["a", "b", "c"])[
        proba.argmax(axis=1)].tolist()


def test_members_without_probabilities_blend_their_decision_values_and_a_regressors_bag_is_the_mean():
    """What ensemble selection averages (objective.predictions) is what the bag averages: a member without
    probabilities gives its decision values as a softmax, mixed with others' probabilities; a regressor's bag is the
    mean of its members' predictions."""
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier

    from metaray.objective import predictions

    X = np.arange(12.0).reshape(-1, 1)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    labels = np.array([0, 1, 2])
    members = [RidgeClassifier(alpha=1.0).fit(X, y), KNeighborsClassifier(3).fit(X, y)]  # no probabilities; some
    bag = Bag(members, "classification", labels, weights=[0.25, 0.75])
    blend = 0.25 * predictions(members[0], X, "classification", labels) + 0.75 * members[1].predict_proba(X)
    assert not hasattr(bag, "predict_proba")
    np.testing.assert_allclose(bag.decision_function(X), blend, rtol=1e-6)
    assert bag.predict(X).tolist() == labels[blend.argmax(axis=1)].tolist()
    regressors = [Ridge(alpha=a).fit(X, y.astype(float)) for a in (0.1, 10.0)]
    reg = Bag(regressors, "regression")
    np.testing.assert_allclose(reg.predict(X), (regressors[0].predict(X) + regressors[1].predict(X)) / 2)
    assert not hasattr(reg, "predict_proba") and not hasattr(reg, "decision_function")
    with pytest.raises(TypeError, match="already fitted"):
        reg.fit(X, y)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("final", ["bag", "refit"])
def test_the_final_model_mlflow_logs_takes_the_users_table(final, tmp_path, capsys, mlflow_uri, monkeypatch):
    """A user's table (word labels, NA, categories) searched with ``final: bag``: best.json names the K members, the
    model MLflow logs takes the raw table and predicts the user's labels, each member scores its subset exactly as
    the search's fit did (the same model), and the bag's probabilities are the members' mean; ``refit`` is one
    member, the whole pool."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    frame = user_table("words3", missing_targets=5)
    data = write_table(frame, tmp_path, "words3")
    k = 3
    spec = {"name": f"final_{final}", "seed": 4, "final": final,
            "data": {"path": data.name, "target": "label", "scale": True},
            "subsets": {"k": k, "protocol": "holdout"}, "objective": {"extra_metrics": ["log_loss"]},
            "search": {"num_samples": 3, "space": {"C": {"loguniform": [0.1, 10.0]}}},
            "storage": str(tmp_path / "runs")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    run_dir = max((tmp_path / "runs" / f"final_{final}").glob("*"))
    best = json.loads((run_dir / "best.json").read_text())
    table = pd.read_csv(run_dir / "results.csv")
    assert best["final"]["kind"] == final and best["holdout"]

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(f"final_{final}")
    parent = client.search_runs([experiment.experiment_id], "tags.`metaray.kind` = 'search'")[0]
    assert parent.data.params["final"] == final
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    model = mlflow.sklearn.load_model(f"models:/{models[0].model_id}")
    raw = pd.read_csv(data)
    raw = raw[raw["label"].notna()]
    predicted = model.predict(raw.drop(columns="label"))
    assert set(predicted.tolist()) <= set(LABELS["words3"][1]) and len(set(predicted.tolist())) > 1

    prepared = prepare(load_spec(path), say=lambda line: None)
    problem = prepared.problem()
    estimator = model.steps[-1][1]
    if final == "refit":
        assert best["final"]["members"] == [{"trial": best["trial"], "weight": 1.0}]
        assert not isinstance(estimator, Bag)
        return
    assert "final model: bag of " in out and "the final model, on the hold-out rows: accuracy=" in out
    assert best["final"]["members"] == [{"trial": best["trial"], "subset": s, "weight": 1 / k} for s in range(k)]
    assert isinstance(estimator, Bag) and len(estimator.members) == k
    row = table.set_index("trial").loc[best["trial"]]
    for s, member in enumerate(estimator.members):  # the search's own model of subset s
        assert score_rows(problem, member, prepared.plan.evaluate[s])["accuracy"] == pytest.approx(
            row[f"score_{s}"], abs=1e-12)
    X = prepared.dataset.X
    mean = np.mean([_proba(member, X, prepared.dataset.classes) for member in estimator.members], axis=0)
    np.testing.assert_allclose(model.predict_proba(raw.drop(columns="label")), mean, atol=1e-9)
    holdout = score_rows(problem, estimator, prepared.plan.test)
    assert best["holdout"] == pytest.approx(holdout)
    report = (run_dir / "report.html").read_text()
    assert f"Final model (bag): {best['trial']} subset 0 weight 0.3333; {best['trial']} subset 1 weight" in report


@pytest.mark.usefixtures("ray_session")
def test_a_regressors_bag_predicts_the_mean_of_its_subset_models(tmp_path):
    from metaray.run import search

    spec = {"name": "bag_regression", "seed": 0, "final": "bag", "data": {"dataset": "diabetes"},
            "learner": {"name": "ridge"}, "subsets": {"k": 4, "protocol": "holdout"},
            "search": {"num_samples": 2, "space": {"alpha": {"loguniform": [0.01, 10.0]}}}}
    result = search(spec, run_dir=tmp_path / "run", track=False)
    bag = result.model
    assert isinstance(bag, Bag) and len(bag.members) == 4 and result.final_kind == "bag"
    prepared = prepare(load_spec(spec), say=lambda line: None)
    X = prepared.dataset.X
    np.testing.assert_allclose(bag.predict(X), np.mean([m.predict(X) for m in bag.members], axis=0))
    assert set(result.holdout_scores) >= {"mse"} and np.isfinite(result.holdout_scores["mse"])


ENSEMBLE = {"name": "ensemble", "seed": 3, "final": "ensemble", "data": {"dataset": "breast_cancer", "scale": True},
            "subsets": {"k": 4},
            "search": {"num_samples": 14, "space": {"learner": {"choice": [
                {"name": "logistic_regression", "params": {"C": {"loguniform": [1e-3, 10.0]}}},
                {"name": "knn", "params": {"n_neighbors": {"randint": [1, 30]}}},
                {"name": "decision_tree", "params": {"max_depth": {"randint": [1, 8]}}}]}}}}


CLASSES = {"logistic_regression": "LogisticRegression", "knn": "KNeighborsClassifier",
           "decision_tree": "DecisionTreeClassifier"}


@pytest.fixture(scope="module")
def ensembled(ray_session, tmp_path_factory):
    from metaray.run import search

    return search(ENSEMBLE, run_dir=tmp_path_factory.mktemp("ensemble") / "run", track=False)


def test_an_ensemble_is_chosen_on_the_fits_out_of_subset_predictions_and_refitted(ensembled):
    """Each fit's predictions on the rows its subset left out are kept beside the journal (not in it); the members'
    averaged predictions, with their weights, score on those rows what best.json says, no worse than any single
    candidate; the model is the members refitted on the pool and averaged with those weights."""
    from sklearn.base import clone

    from metaray import final
    from metaray.folder import PREDICTIONS
    from metaray.metrics import get_metric
    from metaray.objective import kept_rows

    run_dir, best = ensembled.run_dir, ensembled.best
    kept = sorted((run_dir / PREDICTIONS).glob("*.npy"))
    # a fit taken from an identical configuration (t0009 and t0013 are both knn with 18 neighbours) keeps none of its
    # own: out_of_subset reads that configuration's
    assert len(kept) == ensembled.fits_run == 14 * 4 - ensembled.fits_reused
    assert all("predictions" not in json.loads(line) for line in (run_dir / "fits.jsonl").read_text().splitlines())
    chosen = best["final"]
    members, pick = chosen["members"], chosen["selection"]
    assert chosen["kind"] == "ensemble" and sum(m["weight"] for m in members) == pytest.approx(1.0)
    assert {m["trial"] for m in members} <= set(pick["candidates"]) and len(pick["candidates"]) == final.CANDIDATES
    assert pick["candidates"] == ensembled.results["trial"].head(final.CANDIDATES).tolist()  # the best ten
    assert chosen["fits"] == len(members) and pick["rounds"] == final.ROUNDS and pick["bags"] == final.BAGS

    prepared = prepare(load_spec(ENSEMBLE), say=lambda line: None)
    assert not prepared.plan.test.size  # out_of_subset: the training pool is every row
    table = ensembled.results.set_index("trial")
    for s, held in enumerate(prepared.plan.evaluate):  # fewer than 10,000 rows: each fit kept all its scoring rows
        p = np.load(run_dir / PREDICTIONS / f"{int(best['trial'][1:]):04d}-0-{s}.npy")
        got = (prepared.dataset.classes[p.argmax(axis=1)] == prepared.dataset.y[held]).mean()
        assert got == pytest.approx(table.loc[best["trial"], f"score_{s}"], abs=1e-12)  # the journal's accuracy
    keep = kept_rows(prepared.plan, prepared.spec.seed)
    covered = np.unique(np.concatenate([e[np.isin(e, keep)] for e in prepared.plan.evaluate]))
    metric = get_metric(pick["metric"])
    singles, mine = {}, 0.0
    for trial in pick["candidates"]:
        index = int(trial[1:])
        total, count = np.zeros((len(keep), 2)), np.zeros(len(keep))
        for s, held in enumerate(prepared.plan.evaluate):
            p = np.load(run_dir / PREDICTIONS / f"{index:04d}-0-{s}.npy")
            at = np.searchsorted(keep, held[np.isin(held, keep)])
            np.add.at(total, at, p)
            np.add.at(count, at, 1)
        oos = total[np.isin(keep, covered)] / count[np.isin(keep, covered), None]
        singles[trial] = metric(prepared.dataset.y[covered], prepared.dataset.classes[oos.argmax(axis=1)], None)
        mine += oos * sum(m["weight"] for m in members if m["trial"] == trial)
    assert pick["rows"] == len(covered) and pick["best_single"] == pytest.approx(max(singles.values()))
    assert pick["score"] == pytest.approx(metric(prepared.dataset.y[covered],
                                                 prepared.dataset.classes[mine.argmax(axis=1)], None))

    model = ensembled.model
    assert isinstance(model, Bag) and len(model.members) == len(members)
    assert model.weights == pytest.approx([m["weight"] for m in members])
    X, y = prepared.dataset.X, prepared.dataset.y
    for m, member in zip(members, model.members, strict=True):  # each the configuration chosen, fitted on the pool
        assert type(member[-1]).__name__ == CLASSES[table.loc[m["trial"], "learner"]]
        np.testing.assert_allclose(member.predict_proba(X), clone(member).fit(X, y).predict_proba(X))
    np.testing.assert_allclose(model.predict_proba(X), np.average([m.predict_proba(X) for m in model.members], axis=0,
                                                                  weights=model.weights))


def test_a_resumed_ensemble_reads_the_kept_predictions_and_chooses_the_same(ensembled, tmp_path):
    """Resuming the finished search (every fit replayed from the journal, none run) chooses the same members with
    the same weights, from the predictions kept on disk; with the predictions gone it says so and exits 1."""
    import shutil

    from metaray.folder import PREDICTIONS
    from metaray.run import resume

    folder = tmp_path / "copy"
    shutil.copytree(ensembled.run_dir, folder)
    again = resume(folder, track=False)
    assert again.fits_run == 0 and again.best["final"]["members"] == ensembled.best["final"]["members"]
    assert again.best["final"]["selection"] == ensembled.best["final"]["selection"]
    shutil.rmtree(folder / PREDICTIONS)
    lost = resume(folder, track=False)
    assert lost.refit_error and "out-of-subset predictions" in lost.refit_error and not lost.ok


def test_an_extension_ends_with_the_final_model_its_spec_asks_for(ensembled, tmp_path):
    import shutil

    from metaray.run import extend

    folder = tmp_path / "copy"
    shutil.copytree(ensembled.run_dir, folder)
    more = extend(folder, {**ENSEMBLE, "final": "refit"}, 2, track=False)
    assert more.fits_run == 2 * 4 and more.final_kind == "refit" and load_spec(folder / "spec.yaml").final == "refit"

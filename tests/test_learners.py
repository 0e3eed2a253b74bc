"""One contract for every registered learner: fit and score, get_params round trip, pickling (Ray ships learners)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from metaray.errors import SpecError
from metaray.learners import LEARNERS, build_learner, learners_for
from metaray.spec import LearnerSpec

FAST = {"mlp": {"epochs": 5}, "nas_net": {"epochs": 5}, "autoencoder": {"epochs": 60, "bottleneck": 2},
        "pca": {"n_components": 2}, "truncated_svd": {"n_components": 2}, "kernel_pca": {"n_components": 2}, "sklearn_mlp": {"max_iter": 50}, "random_forest": {"n_estimators": 10},
        "extra_trees": {"n_estimators": 10}, "gradient_boosting": {"n_estimators": 10},
        "hist_gradient_boosting": {"max_iter": 10}}


def small(task):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    if task in ("classification", "embedding"):
        return X, (X[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    return X, X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=60)


CASES = [(name, task) for task in ("classification", "regression", "embedding") for name in learners_for(task)]


def test_every_learner_has_a_case():
    assert {name for name, _ in CASES} == set(LEARNERS.names())


@pytest.mark.parametrize("name, task", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_learner_contract(name, task):
    import warnings

    learner = build_learner(LearnerSpec(name=name, params=FAST.get(name, {})), task, probe_task="classification")
    X, y = small(task)
    est = learner.for_fit(seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of deliberately short fits
        assert est.fit(X, y) is est
    pred = est.predict(X)
    assert pred.shape == (len(X),)
    if task == "embedding":  # an embedder behind a fixed probe; it also reconstructs its input
        assert est.transform(X).shape == (len(X), 2)
        assert 0 <= est.reconstruction_error(X) < np.mean(X**2) * 1.5
    if task in ("classification", "embedding"):
        assert set(np.unique(pred)) <= {0, 1}
        assert (pred == y).mean() > 0.6
    else:
        assert np.isfinite(pred).all()
    params = est.get_params()
    assert clone(est).set_params(**params).get_params().keys() == params.keys()
    again = pickle.loads(pickle.dumps(learner))
    assert type(again.estimator) is type(learner.estimator)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict(X), pred)


def test_seeded_fits_repeat():
    X, y = small("classification")
    learner = build_learner(LearnerSpec(name="mlp", params={"epochs": 5}), "classification")
    a = learner.for_fit(3).fit(X, y).predict_proba(X)
    b = learner.for_fit(3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_import_path_learner():
    learner = build_learner(LearnerSpec(name="sklearn.ensemble.ExtraTreesClassifier", params={"n_estimators": 5}),
                            "classification")
    assert learner.seed_param == "random_state"
    X, y = small("classification")
    assert learner.for_fit(0).fit(X, y).score(X, y) > 0.9


@pytest.mark.parametrize(
    "spec, task, pattern",
    [
        (LearnerSpec(name="random_forrest"), "classification",
         r"^learner.name: unknown learner \(did you mean 'random_forest'\?\); allowed: .*got: 'random_forrest'"),
        (LearnerSpec(name="logistic_regression"), "regression",
         r"^learner.name: learner has no regression variant; allowed: .*'linear_regression'"),
        (LearnerSpec(name="random_forest", params={"n_estimator": 5}), "classification",
         r"^learner.params.n_estimator: not a parameter of RandomForestClassifier \(did you mean 'n_estimators'\?\)"),
        (LearnerSpec(name="logistic_regression", params={"C": -1}), "classification",
         r"^learner.params.C: rejected by LogisticRegression: The 'C' parameter .* Got -1 instead.; got: -1"),
        (LearnerSpec(name="mlp", params={"activation": "swish"}), "classification",
         r"^learner.params.activation: rejected by TorchMLPClassifier"),
        (LearnerSpec(name="sklearn.nope.Thing"), "classification", r"^learner.name: cannot import the estimator"),
        (LearnerSpec(name="sklearn.linear_model.LinearRegression"), "classification",
         r"^learner.name: not a classification estimator"),
    ],
)
def test_learner_errors(spec, task, pattern):
    with pytest.raises(SpecError, match=pattern):
        build_learner(spec, task)

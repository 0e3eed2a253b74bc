"""One contract for every registered learner: fit and score, get_params round trip, pickling (Ray ships learners)."""

import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from metaray.errors import SpecError
from metaray.learners import LEARNERS, build_learner, learners_for
from metaray.spec import LearnerSpec

FAST = {"mlp": {"epochs": 5}, "nas_net": {"epochs": 5}, "autoencoder": {"epochs": 60, "bottleneck": 2},
        "pca": {"n_components": 2}, "truncated_svd": {"n_components": 2}, "kernel_pca": {"n_components": 2},
        "sklearn_mlp": {"max_iter": 50}, "random_forest": {"n_estimators": 10},
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


@pytest.mark.parametrize("name, task", [("mlp", "classification"), ("nas_net", "regression"),
                                        ("autoencoder", "embedding")])
def test_a_torch_fit_leaves_torchs_global_state_as_it_found_it(name, task):
    """A fit seeds torch and sets its threads for itself only: the caller's (a notebook's) random state and thread
    count are as they were, and the fit does not depend on them."""
    import torch

    X, y = small(task)
    learner = build_learner(LearnerSpec(name=name, params=FAST[name]), task, cpus_per_fit=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(1234)
        state = torch.get_rng_state()
        first = learner.for_fit(3).fit(X, y).predict(X)
        assert torch.get_num_threads() == 1
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(99)  # another state of the caller's: the same fit
        np.testing.assert_array_equal(learner.for_fit(3).fit(X, y).predict(X), first)
    finally:
        torch.set_num_threads(threads)


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


def _own_estimators():
    """Every estimator metaray defines, as instances small enough to check quickly (fewer epochs: the instance's
    own parameters, as scikit-learn's own tests lower max_iter)."""
    from sklearn.decomposition import PCA

    from metaray.learners.embedding import EmbeddingProbe, TorchAutoencoder, default_probe
    from metaray.learners.nas import TorchNetClassifier, TorchNetRegressor
    from metaray.learners.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

    return [TorchMLPClassifier(epochs=20), TorchMLPRegressor(epochs=20), TorchNetClassifier(epochs=20),
            TorchNetRegressor(epochs=20), TorchAutoencoder(epochs=20),
            EmbeddingProbe(PCA(n_components=1), default_probe("classification"))]


@parametrize_with_checks(_own_estimators())
def test_scikit_learn_estimator_checks(estimator, check):
    """scikit-learn's whole estimator contract, with no expected failures. (check_array_api_input is skipped by
    scikit-learn itself unless SCIPY_ARRAY_API is set before SciPy loads; the next test runs it that way.)"""
    check(estimator)


@pytest.mark.slow
def test_array_api_dispatch_check_in_a_process_with_scipy_array_api():
    import os
    import subprocess
    import sys

    code = ("from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from tests.test_learners import _own_estimators\n"
            "for e in _own_estimators():\n"
            "    check_array_api_input(type(e).__name__, e, array_namespace='numpy', expect_only_array_outputs=False)\n"
            "    print('passed', type(e).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SCIPY_ARRAY_API": "1"}, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("passed") == len(_own_estimators())


def test_cpus_per_fit_sets_the_threads_of_a_fit():
    assert build_learner(LearnerSpec(name="random_forest"), "classification", cpus_per_fit=2).model.n_jobs == 2
    assert build_learner(LearnerSpec(name="mlp"), "classification", cpus_per_fit=2).model.n_threads == 2
    assert build_learner(LearnerSpec(name="random_forest"), "classification").model.n_jobs is None

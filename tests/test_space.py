"""metaray.space: a YAML search space parsed against the spec's learner, flattened for every searcher, and a sampled
configuration read back as a learner and its parameters. No Ray is started (Tune's sample objects are plain)."""

from __future__ import annotations

import pytest

from metaray.errors import SpecError
from metaray.space import Dist, parse_space
from metaray.spec import LearnerSpec

LOGISTIC = LearnerSpec(name="logistic_regression", params={"max_iter": 500, "C": 2.0})
FAMILIES = {"learner": {"choice": [
    {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10]}, "penalty": "l2"}},
    {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 30]}, "max_depth": 4}},
    "knn"]}}


def test_distributions_and_constants_of_one_learner():
    space = parse_space({"C": {"loguniform": [0.01, 10]}, "tol": {"quniform": [0.1, 1, 0.1]},
                         "class_weight": {"choice": [None, "balanced"]}, "solver": "saga"}, LOGISTIC)
    (branch,) = space.branches
    assert not space.conditional and branch.learner == "logistic_regression"
    assert branch.dists == {"C": Dist("loguniform", (0.01, 10.0)), "tol": Dist("quniform", (0.1, 1.0, 0.1)),
                            "class_weight": Dist("choice", (None, "balanced"))}
    # the learner's own parameters stay as constants unless the space searches them (C)
    assert branch.constants == {"max_iter": 500, "solver": "saga"}
    assert space.kinds() == {"loguniform", "quniform", "choice"} and not space.empty
    assert parse_space({}, LOGISTIC).empty and parse_space(None, LOGISTIC).branches[0].constants == LOGISTIC.params


def test_randint_bounds_are_integers_and_ranges_are_floats():
    space = parse_space({"n_estimators": {"randint": [5.0, 30]}, "lr": {"uniform": [0, 1]}},
                        LearnerSpec(name="random_forest"))
    dists = space.branches[0].dists
    assert dists["n_estimators"].args == (5, 30) and all(type(a) is int for a in dists["n_estimators"].args)
    assert dists["lr"].args == (0.0, 1.0) and all(type(a) is float for a in dists["lr"].args)


def test_a_conditional_space_is_flattened_under_each_learners_name():
    space = parse_space(FAMILIES, LOGISTIC)
    assert space.conditional and [b.learner for b in space.branches] == ["logistic_regression", "random_forest", "knn"]
    flat = space.param_space()
    assert list(flat) == ["learner", "logistic_regression.C", "random_forest.n_estimators"]
    assert flat["learner"].categories == ["logistic_regression", "random_forest", "knn"]
    # the base learner's parameters go to its own branch only
    assert space.branches[0].constants == {"max_iter": 500, "penalty": "l2"}
    assert space.branches[1].constants == {"max_depth": 4} and space.branches[2].constants == {}


def test_a_configuration_resolves_to_its_branch_and_drops_the_others():
    space = parse_space(FAMILIES, LOGISTIC)
    config = {"learner": "random_forest", "logistic_regression.C": 0.5, "random_forest.n_estimators": 12}
    assert space.resolve(config) == ("random_forest", {"max_depth": 4, "n_estimators": 12})
    assert space.visible(config) == {"learner": "random_forest", "random_forest.n_estimators": 12}
    linear = {**config, "learner": "logistic_regression"}
    assert space.resolve(linear) == ("logistic_regression", {"max_iter": 500, "penalty": "l2", "C": 0.5})
    assert space.resolve({**config, "learner": "knn"}) == ("knn", {})


def test_numpy_values_come_back_as_python_values():
    import numpy as np

    space = parse_space({"C": {"loguniform": [0.01, 10]}, "n": {"choice": [1, 2]}}, LOGISTIC)
    name, params = space.resolve({"C": np.float64(0.5), "n": np.int64(2)})
    assert type(params["C"]) is float and type(params["n"]) is int  # JSON and YAML take them


def test_the_order_of_the_keys_does_not_change_the_flat_space():
    forward = {"C": {"loguniform": [0.01, 10]}, "tol": {"uniform": [0, 1]}, "fit_intercept": {"choice": [True, False]}}
    backward = dict(reversed(list(forward.items())))
    assert list(parse_space(forward, LOGISTIC).param_space()) == list(parse_space(backward, LOGISTIC).param_space())
    assert list(parse_space(forward, LOGISTIC).param_space()) == ["C", "fit_intercept", "tol"]


def test_a_grid_of_learners_is_a_selector_too():
    space = parse_space({"learner": {"grid": ["knn", "logistic_regression"]}}, LOGISTIC)
    assert space.conditional and space.selector == "grid" and "grid" in space.kinds()
    assert space.param_space()["learner"] == {"grid_search": ["knn", "logistic_regression"]}


@pytest.mark.parametrize("raw, key, fragment", [
    ({"C": {"loguniform": [10, 1]}}, "search.space.C.loguniform", "low value must be smaller"),
    ({"C": {"loguniform": [0, 1]}}, "search.space.C.loguniform", "must be positive"),
    ({"C": {"uniform": [0, 1, 2]}}, "search.space.C.uniform", "needs 2 numbers"),
    ({"C": {"uniform": [0, True]}}, "search.space.C.uniform", "needs 2 numbers"),
    ({"tol": {"quniform": [0, 1, 0]}}, "search.space.tol.quniform", "quantum q must be positive"),
    ({"n": {"randint": [1, 2.5]}}, "search.space.n.randint", "must be integers"),
    ({"C": {"choice": []}}, "search.space.C.choice", "non-empty list"),
    ({"C": {"choice": [1], "grid": [2]}}, "search.space.C", "exactly one key"),
    ({"C": {"normal": [0, 1]}}, "search.space.C", "unknown distribution"),
    ({"learner": {"choice": ["knn"]}, "C": 1.0}, "search.space.C", "belong in each learner's params"),
    ({"learner": "knn"}, "search.space.learner", "must be a choice (or grid) of learners"),
    ({"learner": {"uniform": [0, 1]}}, "search.space.learner", "must be a choice (or grid) of learners"),
    ({"learner": {"choice": []}}, "search.space.learner.choice", "non-empty list of learners"),
    ({"learner": {"choice": ["knn", "knn"]}}, "search.space.learner.choice[1]", "only once"),
    ({"learner": {"choice": [{"name": "knn", "hyper": {}}]}}, "search.space.learner.choice[0]", "'name' and optional"),
    ({"learner": {"choice": [{"name": "knn", "params": [1]}]}}, "search.space.learner.choice[0].params",
     "must be a mapping"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_a_space_refuses_names_its_key(raw, key, fragment):
    with pytest.raises(SpecError) as err:
        parse_space(raw, LOGISTIC)
    assert str(err.value).startswith(f"{key}:") and fragment in str(err.value), str(err.value)

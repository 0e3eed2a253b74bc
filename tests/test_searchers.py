"""metaray.searchers: which configuration comes next. Each searcher over a parsed space, asked by index as the driver
asks: seeded draws, a grid enumerated whole, warm-start points handed out first, adaptive searchers told of
failures. No Ray is started (Tune's searchers run in this process)."""

from __future__ import annotations

import math

import pytest

from metaray.errors import SpecError
from metaray.searchers import make_searcher
from metaray.space import parse_space
from metaray.spec import LearnerSpec

SPACE = parse_space({"C": {"loguniform": [1e-3, 1e3]}, "tol": {"uniform": [0.0, 1.0]},
                     "class_weight": {"choice": [None, "balanced"]}}, LearnerSpec(name="logistic_regression"))


def draws(name: str, n: int, seed: int = 0, space=SPACE, points=(), values=None) -> list[dict]:
    """The first ``n`` suggestions, each configuration told its value (``values(config)``) before the next."""
    searcher = make_searcher(name, space, n, "max", seed, points=points)
    out = []
    for i in range(n):
        config = searcher.suggest(i)
        out.append(config)
        searcher.complete(i, values(config) if values else 0.5)
    return out


@pytest.mark.parametrize("name", ["random", "optuna", "hyperopt"])
def test_the_same_seed_draws_the_same_configurations_and_another_seed_others(name):
    a, b, other = draws(name, 12), draws(name, 12), draws(name, 12, seed=1)
    assert a == b and a != other
    for config in a:
        assert set(config) == {"C", "tol", "class_weight"}
        assert 1e-3 <= config["C"] <= 1e3 and 0.0 <= config["tol"] <= 1.0 and config["class_weight"] in (None,
                                                                                                      "balanced")
    assert len({round(c["C"], 12) for c in a}) == 12  # draws, not one value repeated


def test_random_draws_end_after_num_samples():
    searcher = make_searcher("random", SPACE, 3, "max", 0)
    assert not searcher.adaptive and searcher.total == 3
    assert [searcher.suggest(i) is None for i in range(4)] == [False, False, False, True]


@pytest.mark.parametrize("name", ["random", "grid", "optuna", "hyperopt"])
def test_a_space_with_nothing_to_search_gives_the_learners_own_configuration_once_whatever_the_searcher(name):
    """No space, or constants only (a spec without search.space: the default): Optuna and HyperOpt refused it with a
    traceback (no distribution to sample), HyperOpt also one of constants only. One configuration, then none; and
    the plan says that num_samples above one would only score it again."""
    from metaray.objective import prepare
    from metaray.plan import checked_space, plan
    from metaray.spec import load_spec

    for space in ({}, {"C": 0.5}):
        searcher = make_searcher(name, parse_space(space, LearnerSpec(name="logistic_regression")), 4, "max", 0)
        assert [searcher.suggest(i) for i in range(2)] == [{}, None]  # (constants are the branch's, not drawn)
    prepared = prepare(load_spec({"name": "s", "data": {"dataset": "iris"},
                                  "search": {"searcher": name, "num_samples": 4, "space": {"C": 0.5}}}))
    planned = plan(prepared, checked_space(prepared))
    assert planned.driver.num_samples == 1
    assert ("search.space is empty: one configuration, the learner's own, is scored; search.num_samples: 4 is capped "
            "at 1 (another would score the same configuration again)") in planned.notes


def test_a_grid_is_enumerated_whole_choices_included():
    space = parse_space({"n_neighbors": {"grid": [1, 5, 9]}, "weights": {"choice": ["uniform", "distance"]}},
                        LearnerSpec(name="knn"))
    searcher = make_searcher("grid", space, 1, "max", 0)
    assert searcher.total == 6
    points = [searcher.suggest(i) for i in range(7)]
    assert points[-1] is None
    assert sorted((p["n_neighbors"], p["weights"]) for p in points[:-1]) == sorted(
        (n, w) for n in (1, 5, 9) for w in ("uniform", "distance"))
    twice = make_searcher("grid", space, 2, "max", 0)  # num_samples passes over the grid
    assert twice.total == 12 and [twice.suggest(i) for i in range(12)] == points[:-1] * 2


def test_a_conditional_space_draws_each_branchs_parameters_under_its_name():
    space = parse_space({"learner": {"choice": [
        {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10]}}},
        {"name": "knn", "params": {"n_neighbors": {"randint": [1, 30]}}}]}}, LearnerSpec(name="logistic_regression"))
    for name in ("random", "optuna", "hyperopt"):
        configs = draws(name, 10, space=space)
        assert {c["learner"] for c in configs} == {"logistic_regression", "knn"}, name
        for c in configs:
            learner, params = space.resolve(c)
            assert (1 <= params["n_neighbors"] < 30) if learner == "knn" else (0.01 <= params["C"] <= 10)


@pytest.mark.parametrize("name", ["random", "optuna", "hyperopt"])
def test_warm_start_points_come_first_and_then_the_searchers_own(name):
    points = [{"C": 3.0, "tol": 0.25, "class_weight": "balanced"}, {"C": 0.01, "tol": 0.5, "class_weight": None}]
    configs = draws(name, 5, points=points)
    assert configs[:2] == points
    assert all(c not in points for c in configs[2:])


@pytest.mark.parametrize("name", ["optuna", "hyperopt"])
def test_an_adaptive_searcher_takes_failures_and_keeps_suggesting(name):
    told = iter([None, math.nan, math.inf] * 5)  # failed: no value, or not a finite one

    def value(config):
        return next(told) if len(configs) % 2 else -abs(math.log10(config["C"]) - 1)

    configs: list[dict] = []
    searcher = make_searcher(name, SPACE, 15, "max", 0)
    for i in range(15):
        configs.append(searcher.suggest(i))
        searcher.complete(i, value(configs[-1]))
    assert searcher.adaptive and all(c is not None for c in configs) and len({c["C"] for c in configs}) == 15


@pytest.mark.parametrize("name", ["optuna", "hyperopt"])
def test_an_adaptive_searcher_learns_from_the_values_it_is_told(name):
    """Told that the objective peaks at C = 10 (in the direction asked), its later suggestions gather there; told
    the opposite direction, they do not."""
    def near_ten(configs):
        return sum(abs(math.log10(c["C"]) - 1) < 1 for c in configs[-15:])

    def peak(config):
        return -abs(math.log10(config["C"]) - 1)

    up = draws(name, 40, values=peak)
    searcher, down = make_searcher(name, SPACE, 40, "min", 0), []
    for i in range(40):
        down.append(searcher.suggest(i))
        searcher.complete(i, peak(down[-1]))
    assert near_ten(up) > near_ten(down) + 4, (near_ten(up), near_ten(down))


def test_an_unknown_searcher_names_the_key_and_the_searchers():
    with pytest.raises(SpecError, match=r"^search.searcher: .*allowed: 'grid', 'hyperopt', 'optuna', 'random'; "
                                        r"got: 'bayes'"):
        make_searcher("bayes", SPACE, 3, "max", 0)


@pytest.mark.parametrize("name", ["optuna", "hyperopt"])
def test_a_searcher_is_built_without_a_word_from_ray_on_the_users_screen(name):
    """Ray Tune warns when a searcher is handed distributions it must convert (OptunaSearch's "unresolved search
    space definitions"): metaray converts them as Tune would, so nothing of it reaches the user's stderr."""
    import logging

    said: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    catch, ray_logger = Catch(logging.WARNING), logging.getLogger("ray")
    ray_logger.addHandler(catch)
    try:
        draws(name, 3)
    finally:
        ray_logger.removeHandler(catch)
    assert said == []

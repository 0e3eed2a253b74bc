"""Several objectives and constraints (``objective.also``, ``search.constraints``; metaray.front, metaray.measures):
what each fit measures, how the front is decided on the subsets' evidence, and what a whole search reports of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metaray.front import Evidence, Goals, Objective, compare, hypervolume, pareto_ranks
from metaray.measures import n_parameters
from metaray.spec import load_spec

MAX = Objective("accuracy", "mean", "max", True, False)
MIN = Objective("n_parameters", "mean", "min", False, True)


def test_a_front_is_not_padded_by_noise_nor_thinned_by_it():
    """Three configurations over 8 subsets. B has A's accuracy but for noise, and is clearly smaller: A is
    dominated, though by its point estimates A is on the plain Pareto front (its accuracy is a hair higher). C is a
    hair worse than B on both objectives, by noise alone: by point estimates B dominates C, but the subsets cannot
    tell them apart, so C stays on the front. D is much smaller than B but clearly less accurate (by more than the
    ROPE): a trade-off, so both stay."""
    base = np.linspace(0.88, 0.92, 8)  # the subsets differ in how hard they are
    wiggle = np.array([1, -1] * 4, dtype=float)  # zero-mean noise
    b_accuracy = base + 0.01 * wiggle
    accuracy = np.vstack([base + 0.002, b_accuracy, b_accuracy - 0.0005 + 0.01 * wiggle[::-1], base - 0.03])
    size = np.vstack([np.full(8, 5000.0), 500.0 + wiggle * 0.5, 500.2 + wiggle[::-1], np.full(8, 50.0)])
    values = np.column_stack([accuracy.mean(axis=1), size.mean(axis=1)])
    plain = pareto_ranks(values, ["max", "min"])
    test = Evidence(0.95, n_train=120, n_test=30)
    ranks = pareto_ranks(values, ["max", "min"], [compare(accuracy, MAX, test), compare(size, MIN, test)])
    assert values[0, 0] > values[1, 0] and plain[0] == 1  # A: on the plain front, by a noise-sized margin
    assert ranks[0] == 2  # ... not on the tested one: B is significantly smaller and not significantly worse
    assert plain[2] == 2 and ranks[2] == 1  # C: a hair worse on both, by noise only: on the tested front
    assert ranks[1] == 1 and ranks[3] == 1


def test_two_configurations_each_better_on_one_objective_are_a_trade_off_not_a_mutual_defeat():
    """A is significantly more accurate, within the ROPE of B's size; B significantly smaller (sizes have no spread),
    within the ROPE of A's accuracy: each would dominate the other. Neither does: both are on the front, with C,
    a much smaller and much worse one."""
    accuracy = np.array([[0.905, 0.915, 0.925, 0.935] * 2, [0.899, 0.909, 0.919, 0.929] * 2,
                         [0.79, 0.80, 0.81, 0.80] * 2])
    size = np.array([[1000.0] * 8, [980.0] * 8, [10.0] * 8])
    values = np.column_stack([accuracy.mean(axis=1), size.mean(axis=1)])
    test = Evidence(0.95, n_train=120, n_test=30)
    (better_a, good_a), (better_s, good_s) = compare(accuracy, MAX, test), compare(size, MIN, test)
    assert better_a[0, 1] and good_a[1, 0] and better_s[1, 0] and good_s[0, 1]  # each dominates, by the letter
    assert pareto_ranks(values, ["max", "min"], [(better_a, good_a), (better_s, good_s)]).tolist() == [1, 1, 1]


def test_the_final_ensemble_never_takes_an_infeasible_configuration():
    from types import SimpleNamespace

    from metaray.driver import Trial
    from metaray.final import Search

    trials = [Trial(i, {"C": i}) for i in range(3)]
    for t, objective, feasible in zip(trials, (0.9, 0.95, 0.8), (True, False, True), strict=True):
        t.status, t.objective, t.feasible = "completed", objective, feasible
    ranking = SimpleNamespace(mode="max", driver=SimpleNamespace(trials=trials))
    assert [t.index for t in Search(None, None, ranking, None).ranked()] == [0, 2]


def test_significantly_better_uses_the_bootstrap_for_other_aggregates_and_handles_constant_measures():
    worst = Objective("accuracy", "worst", "max", True, False)
    good = np.array([0.95, 0.96, 0.94, 0.95, 0.96, 0.95])
    series = np.vstack([good, good - 0.10, good[::-1] + 0.0001])  # the last: the same worst, but for a hair
    better, as_good = compare(series, worst, Evidence(0.95, n_train=100, n_test=25))
    assert better[0, 1] and not better[1, 0] and not better[0, 2] and not better[2, 0]
    assert as_good[0, 2] and as_good[2, 0] and as_good[0, 1] and not as_good[1, 0]  # within the ROPE, or not
    sizes = np.array([[10.0] * 4, [10.0] * 4, [12.0] * 4, [10.2] * 4])  # a network's weights: the same on each subset
    b, a = compare(sizes, MIN, Evidence())
    assert b[0, 2] and b[1, 2] and not b[0, 1] and not b[1, 0] and not b[2].any()
    assert a[0, 1] and a[1, 0] and not a[2, 0] and a[3, 0]  # 2 % larger is as large (the measures' 5 % ROPE)


def test_hypervolume_is_exact_in_two_and_three_objectives():
    pts = np.array([[0.9, 100.0], [0.8, 10.0], [0.85, 50.0], [0.7, 60.0]])  # the last is dominated
    # by hand: slices in accuracy from the reference 0.5
    exact = (0.9 - 0.85) * (200 - 100) + (0.85 - 0.8) * (200 - 50) + (0.8 - 0.5) * (200 - 10)
    assert hypervolume(pts, ["max", "min"], [0.5, 200.0]) == pytest.approx(exact)
    rng = np.random.default_rng(1)
    cube = rng.uniform(0, 1, (6, 3))
    probe = rng.uniform(0, 1, (200_000, 3))
    covered = (probe[:, None, :] <= cube[None, :, :]).all(axis=2).any(axis=1).mean()
    assert hypervolume(cube, ["max"] * 3, [0, 0, 0]) == pytest.approx(covered, abs=0.01)


def test_n_parameters_counts_what_each_kind_of_model_learns():
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    assert n_parameters(tree) == tree.tree_.node_count
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    assert n_parameters(forest) == sum(t.tree_.node_count for t in forest.estimators_)
    mlp = MLPClassifier(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X, y)
    assert n_parameters(mlp) == 4 * 5 + 5 + 5 * 3 + 3
    piped = make_pipeline(StandardScaler(), mlp)  # the model's own numbers, not the scaler's
    piped.fit(X, y)
    assert n_parameters(piped) == 4 * 5 + 5 + 5 * 3 + 3
    assert math.isnan(n_parameters(KNeighborsClassifier().fit(X, y)))  # keeps its rows privately: undefined
    from sklearn.ensemble import HistGradientBoostingClassifier

    boosted = HistGradientBoostingClassifier(max_iter=3, max_depth=2, random_state=0).fit(X, y)
    assert n_parameters(boosted) == sum(len(p.nodes) for stage in boosted._predictors for p in stage) >= 3 * 3 * 3


def test_a_torch_networks_parameters_are_its_weights():
    from metaray.learners import build_learner
    from metaray.spec import LearnerSpec

    learner = build_learner(LearnerSpec(name="nas_net", params={"n_layers": 1, "width_1": 7, "epochs": 1}),
                            "classification")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)).astype(np.float32), np.repeat([0, 1], 20)
    est = learner.for_fit(0).fit(X, y)
    assert n_parameters(est) == 4 * 7 + 7 + 7 * 2 + 2


def test_goals_label_judge_and_check_constraints():
    goals = Goals("accuracy", "mean", ["n_parameters", {"metric": "f1_macro", "aggregate": "worst"}, "spread"],
                  ["n_parameters <= 100", "worst(accuracy) > 0.9"], direction=lambda name: True)
    assert [o.label for o in goals.objectives] == ["mean_accuracy", "n_parameters", "worst_f1_macro", "std_accuracy"]
    assert [o.mode for o in goals.objectives] == ["max", "min", "max", "min"]
    series = {"n_parameters": [80.0, 90.0], "f1_macro": [0.8, 0.7], "accuracy": [0.95, 0.91]}
    values, violations = goals.judge(series.__getitem__)
    assert values["n_parameters"] == 85.0 and values["worst_f1_macro"] == 0.7 and values["worst_accuracy"] == 0.91
    assert goals.feasible(values) and all(v <= 0 for v in violations)
    values["worst_accuracy"] = 0.9  # "> 0.9" is strict: at the bound, a hair over for Optuna too
    assert not goals.feasible(values) and goals.constraints[1].violation(0.9) > 0
    with pytest.raises(Exception, match=r"objective.also\[0\].*the same objective twice"):
        Goals("accuracy", "mean", [{"metric": "accuracy"}], direction=lambda name: True)


@pytest.mark.parametrize("patch, key, fragments", [
    ({"objective": {"also": ["latency"]}}, "objective.also[0]", ["unknown objective", "'n_parameters'",
                                                                 "got: 'latency'"]),
    ({"objective": {"also": [{"metric": "f1_macro", "aggregate": "average"}]}}, "objective.also[0].aggregate",
     ["'worst'", "got: 'average'"]),
    ({"objective": {"also": [{"metric": "f1_macro", "weight": 2}]}}, "objective.also[0]",
     ["{metric: NAME, aggregate: AGGREGATE}"]),
    ({"search": {"constraints": ["n_parameters << 5"]}}, "search.constraints[0]",
     ["OP one of <=, <, >=, >", "got: 'n_parameters << 5'"]),
    ({"search": {"constraints": ["latency_ms <= 5"]}}, "search.constraints[0]",
     ["unknown metric or measure", "got: 'latency_ms'"]),
    ({"search": {"constraints": ["average(accuracy) >= 0.9"]}}, "search.constraints[0]",
     ["unknown aggregate", "got: 'average'"]),
    ({"objective": {"also": ["n_parameters"]}, "search": {"searcher": "hyperopt"}}, "search.searcher",
     ["HyperOpt optimises one objective", "'optuna'", "got: 'hyperopt'"]),
    ({"objective": {"also": ["fit_seconds"]}, "search": {"scheduler": "racing"}}, "search.scheduler",
     ["cannot beat the best on one objective", "allowed: 'none', 'asha'", "got: 'racing'"]),
])
def test_bad_objectives_and_constraints_name_the_key(patch, key, fragments):
    from metaray.errors import SpecError

    spec = {"name": "t", "data": {"dataset": "iris"}, **patch}
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    message = str(err.value)
    assert message.startswith(f"{key}:"), message
    for fragment in fragments:
        assert fragment in message, message


def test_a_metric_of_another_task_in_also_is_refused_before_any_fit():
    from metaray.errors import SpecError
    from metaray.objective import prepare

    with pytest.raises(SpecError, match=r"^objective.also\[0\]: a regression metric cannot score a classification"):
        prepare(load_spec({"name": "t", "data": {"dataset": "iris"}, "objective": {"also": ["mse"]}}))
    with pytest.raises(SpecError, match=r"^search.constraints\[0\]: a regression metric"):
        prepare(load_spec({"name": "t", "data": {"dataset": "iris"}, "search": {"constraints": ["mae < 1"]}}))
    with pytest.raises(SpecError, match=r"^objective.also\[1\]: the same objective twice"):
        prepare(load_spec({"name": "t", "data": {"dataset": "iris"},
                           "objective": {"also": ["fit_seconds", {"metric": "accuracy"}]}}))


def test_multi_objective_asha_promotes_by_non_dominated_sorting():
    """At a rung, a small network far behind on accuracy continues when it is on the rung's front, where ASHA of the
    primary alone stops it; one dominated by the rung's others stops."""
    from types import SimpleNamespace

    from metaray.schedulers.asha import Asha

    options = SimpleNamespace(grace_period=1, reduction_factor=2, fidelity="subsets")
    several, one = Asha(options, mode=["max", "min"], total=4), Asha(options, mode="max", total=4)
    for i, (accuracy, size) in enumerate([(0.9, 100.0), (0.89, 100.0), (0.88, 100.0)]):
        several.decide(i, 1, (accuracy, size), [])
        one.decide(i, 1, accuracy, [])
    assert several.decide(3, 1, (0.7, 1.0), []) is False and one.decide(3, 1, 0.7, []) is True
    assert several.decide(4, 1, (0.85, 150.0), []) is True  # dominated by all but the small one
    assert several.decide(5, 1, (0.95, 1.0), []) is False


def test_optuna_is_told_every_objective_and_samples_by_the_constraints():
    """Through Tune's OptunaSearch: one value per objective (a multi-objective study), and each configuration's
    constraints set on its Optuna trial before it is told, so that Optuna's sampler knows the infeasible ones."""
    from metaray.searchers import make_searcher
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec

    space = parse_space({"C": {"loguniform": [0.01, 10.0]}}, LearnerSpec(name="logistic_regression"))
    searcher = make_searcher("optuna", space, 4, ["max", "min"], 0)
    for i in range(4):
        assert searcher.suggest(i) is not None
        searcher.complete(i, (0.9 + i / 100, 10.0 * i), (i - 1.5,))
    study = searcher.searcher._s._ot_study
    assert study.directions[1].name == "MINIMIZE" and len(study.directions) == 2
    done = study.get_trials()
    assert [t.values for t in done] == [[0.9 + i / 100, 10.0 * i] for i in range(4)]
    assert [list(t.constraints.values()) for t in done] == [[i - 1.5] for i in range(4)]


# a whole search --------------------------------------------------------------------------------------------------


FOREST = {"name": "front", "seed": 3, "data": {"dataset": "breast_cancer"}, "subsets": {"k": 3},
          "learner": {"name": "random_forest"},
          "objective": {"also": ["n_parameters", "model_bytes"]},
          "search": {"num_samples": 8, "constraints": ["n_parameters <= 150"],
                     "space": {"n_estimators": {"randint": [3, 40]}, "max_depth": {"randint": [1, 8]}}}}


@pytest.fixture(scope="module")
def fronted(ray_session, tmp_path_factory, mlflow_uri):
    import os

    import metaray

    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    try:
        lines: list[str] = []
        result = metaray.search(FOREST, run_dir=tmp_path_factory.mktemp("front") / "run", progress=lines.append)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return result, lines


def test_a_search_of_several_objectives_ranks_marks_and_reports_its_front(fronted):
    result, lines = fronted
    table = result.results
    done = table[table["status"] == "completed"]
    for column in ("n_parameters", "model_bytes", "n_parameters_std", "feasible", "pareto_rank", "on_front"):
        assert column in table, column
    assert (done["n_parameters"] > 0).all() and (done["model_bytes"] > 1000).all()
    infeasible = done[done["n_parameters"] > 150]
    assert len(infeasible) and not infeasible["feasible"].any() and not infeasible["on_front"].any()
    assert infeasible["pareto_rank"].isna().all()
    feasible = done[done["feasible"]]
    assert infeasible["objective"].max() > feasible["objective"].max()  # the constraint binds: it costs accuracy
    first = feasible.sort_values(["objective", "trial"], ascending=[False, True])["trial"].iloc[0]
    assert result.best["trial"] == first
    assert feasible["pareto_rank"].min() == 1 and feasible["on_front"].eq(feasible["pareto_rank"] == 1).all()
    best = json.loads((result.run_dir / "best.json").read_text())
    members = [m["trial"] for m in best["front"]["members"]]
    assert sorted(members) == sorted(done.loc[done["on_front"].astype(bool), "trial"])
    assert [o["label"] for o in best["front"]["objectives"]] == ["mean_accuracy", "n_parameters", "model_bytes"]
    assert best["front"]["simplest"] in members and "significantly" in best["front"]["method"]
    summary = result.summary()
    assert f"front: {len(members)} configuration" in summary and "simplest on the front: " in summary
    assert f"constraints (n_parameters <= 150): {len(infeasible)} of {len(done)}" in summary
    assert any(" infeasible " in line for line in lines)
    # the table's files carry the same columns
    import pandas as pd

    assert pd.read_parquet(result.run_dir / "results.parquet")["on_front"].tolist() == table["on_front"].tolist()
    assert (result.run_dir / "report" / "front.png").is_file()
    assert "Pareto front (mean_accuracy, n_parameters, model_bytes)" in (result.run_dir / "report.html").read_text()


def test_mlflow_marks_every_child_on_the_front_or_not(fronted, mlflow_uri):
    from mlflow.tracking import MlflowClient

    result, _ = fronted
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.data.metrics["front_size"] == len(result.front["members"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'")
    by_trial = {c.data.tags["metaray.trial"]: c for c in children}
    table = result.results.set_index("trial")
    for trial, child in by_trial.items():
        row = table.loc[trial]
        assert child.data.tags["on_front"] == str(bool(row["on_front"])).lower()
        assert child.data.metrics["n_parameters"] == pytest.approx(row["n_parameters"])
        assert ("metaray.feasible" in child.data.tags) == (not row["feasible"])
        if row["on_front"]:
            assert child.data.metrics["pareto_rank"] == 1


@pytest.mark.usefixtures("ray_session")
def test_the_same_spec_gives_the_same_front_and_optuna_searches_several_objectives(fronted, tmp_path):
    """Sizes are deterministic, so the same spec and seed give the same front; Optuna's multi-objective TPE runs the
    same search (its table has every column) and never picks an infeasible best."""
    import metaray

    result, _ = fronted
    again = metaray.search(FOREST, run_dir=tmp_path / "again", track=False)
    columns = ["trial", "n_parameters", "model_bytes", "feasible", "pareto_rank", "on_front"]
    assert again.results[columns].equals(result.results[columns])
    spec = json.loads(json.dumps(FOREST))
    spec["search"].update(searcher="optuna", num_samples=8, max_concurrent=2)
    tuned = metaray.search(spec, run_dir=tmp_path / "optuna", track=False)
    done = tuned.results[tuned.results["status"] == "completed"]
    assert done["on_front"].any() and tuned.best["trial"] in set(done.loc[done["feasible"], "trial"])


def test_a_networks_unused_block_parameters_are_not_drawn_shown_logged_or_weighed():
    """The NAS space is conditional: width_2 exists only for networks of two dense layers or more, channels_2 and
    kernel_2 only for two convolutional blocks. Optuna draws it define-by-run, a block's parameters only where the
    block exists; the table, MLflow's params and the importances read a configuration's parameters through
    ``Ranking.visible``, which leaves the others out whichever searcher drew them."""
    from metaray.driver import Trial
    from metaray.learners import build_learner
    from metaray.results import Ranking
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec

    space = parse_space({"n_layers": {"randint": [1, 3]}, "width_1": {"choice": [8, 16]},
                         "width_2": {"choice": [8, 16]}, "conv_blocks": {"choice": [0, 1, 2]},
                         "channels_1": {"choice": [4]}, "channels_2": {"choice": [8]}, "kernel_2": {"choice": [3]}},
                        LearnerSpec(name="nas_net"))
    ranking = Ranking(None, space, metric="accuracy", greater_is_better=True, aggregate="mean", mode="max",
                      num_samples=1)

    def shown(**config):
        trial = Trial(0, config)
        trial.learner = build_learner(LearnerSpec(name="nas_net", params=config), "classification")
        return set(ranking.visible(trial))

    config = dict(n_layers=1, width_1=8, width_2=16, conv_blocks=1, channels_1=4, channels_2=8, kernel_2=3)
    assert shown(**config) == {"n_layers", "width_1", "conv_blocks", "channels_1"}
    assert shown(**{**config, "n_layers": 2, "conv_blocks": 2}) == set(config)
    assert shown(**{**config, "conv_blocks": 0}) == {"n_layers", "width_1", "conv_blocks"}

    from metaray.searchers import make_searcher

    optuna = make_searcher("optuna", space, 12, "max", 0)
    drawn = [optuna.suggest(i) for i in range(12)]
    for i, config in enumerate(drawn):
        assert ("width_2" in config) == (config["n_layers"] >= 2), config
        assert ("channels_2" in config) == ("kernel_2" in config) == (config["conv_blocks"] >= 2), config
        assert ("channels_1" in config) == (config["conv_blocks"] >= 1), config
        assert shown(**space.resolve(config)[1]) == set(config)  # what is drawn is what is shown
        optuna.complete(i, 0.5 + i / 100)
    assert {c["n_layers"] for c in drawn} == {1, 2} and {c["conv_blocks"] for c in drawn} >= {0, 2}


@pytest.mark.usefixtures("ray_session")
def test_a_search_no_configuration_of_which_meets_the_constraints_has_no_answer(tmp_path, capsys):
    import metaray
    from metaray.cli import _print_search

    spec = {"name": "none_fit", "data": {"dataset": "iris"}, "subsets": {"k": 2},
            "search": {"num_samples": 3, "constraints": ["n_parameters < 1"],
                       "space": {"C": {"loguniform": [0.1, 10.0]}}}}
    result = metaray.search(spec, run_dir=tmp_path / "run", track=False)
    assert result.best is None and not result.ok and not (result.run_dir / "best.json").exists()
    assert not result.results["feasible"].any() and (result.results["status"] == "completed").all()
    assert _print_search(result) == 1
    out, err = capsys.readouterr()
    assert "no completed configuration met the constraints" in out
    assert err.startswith("metaray: no configuration met the constraints: constraints (n_parameters < 1): 3 of 3 ")


def test_the_random_searcher_leaves_out_a_networks_unused_block_parameters_too():
    from metaray.searchers import make_searcher
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec

    space = parse_space({"n_layers": {"randint": [1, 3]}, "width_2": {"choice": [8, 16]},
                         "conv_blocks": {"choice": [0, 2]}, "kernel_2": {"choice": [3, 5]}},
                        LearnerSpec(name="nas_net"))
    searcher = make_searcher("random", space, 16, "max", 0)
    drawn = [searcher.suggest(i) for i in range(16)]
    assert all(("width_2" in c) == (c["n_layers"] >= 2) and ("kernel_2" in c) == (c["conv_blocks"] >= 2)
               for c in drawn)
    assert {c["n_layers"] for c in drawn} == {1, 2}

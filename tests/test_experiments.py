"""Every experiment YAML loads, validates and runs through `metaray run` on a reduced budget; the four
strategies' promises are checked on small budgets (the full-budget numbers are in the README)."""

import pytest

from metaray.cli import main
from metaray.objective import evaluate, prepare
from metaray.run import search as run_search
from metaray.spec import load_spec
from tests.conftest import EXPERIMENTS

SPECS = sorted(EXPERIMENTS.glob("*.yaml"))
SMALL = ["subsets.k=2", "search.num_samples=2", "search.scheduler=none"]


def test_there_are_experiments_for_every_strategy():
    assert {load_spec(p).strategy for p in SPECS} >= {"classification", "regression", "embedding", "nas"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_experiment_loads_and_prepares(path):
    """Each file's subsets keep the hold-out rows out of every fit, and the first configurations its space draws
    are ones its learner accepts on its data."""
    import numpy as np

    from metaray.searchers import make_searcher
    from metaray.space import parse_space
    from metaray.spec import LearnerSpec

    spec = load_spec(path)
    prepared = prepare(spec)
    plan = prepared.plan
    assert len(plan.train) == spec.subsets.k and plan.test.size > 0  # the experiments keep holdout
    assert all(t.size and not np.intersect1d(t, plan.test).size for t in plan.train)
    space = parse_space(spec.search.space, LearnerSpec(name=prepared.learner.name, params=spec.learner.params))
    searcher = make_searcher("random", space, 3, prepared.mode, spec.seed)
    for index in range(3):
        name, params = space.resolve(searcher.suggest(index))
        prepared.learner_for(LearnerSpec(name=name, params=params))  # SpecError if the learner refuses them


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_experiment_runs_small(path, tmp_path, capsys):
    overrides = SMALL + (["search.space.epochs={choice: [3]}"] if load_spec(path).strategy == "nas" else [])
    args = ["run", str(path), "--set", f"storage={tmp_path}"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best configuration" in out


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_tuned_regression_beats_plain_linear_regression(tmp_path):
    path = EXPERIMENTS / "meta_regression_diabetes.yaml"
    searched = run_search(path, run_dir=tmp_path / "s", track=False)
    plain = evaluate(path, ["learner.name=linear_regression"])  # the same subsets: same seed
    assert searched.best["objective"] < plain.objective


@pytest.mark.usefixtures("ray_session")
def test_best_embedding_beats_the_seeds_two_component_pca(tmp_path):
    path = EXPERIMENTS / "meta_embedding_digits.yaml"
    searched = run_search(path, ["search.num_samples=3", "subsets.k=2"], run_dir=tmp_path / "s", track=False)
    seed_choice = evaluate(path, ["subsets.k=2", "learner.name=pca", "learner.params.n_components=2"])
    assert {"accuracy", "reconstruction_mse"} <= set(seed_choice.subsets.columns)  # both are reported
    assert searched.best["objective"] > seed_choice.objective + 0.1
    assert "reconstruction_mse" in searched.holdout_scores


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_nas_prints_the_architecture_and_logs_its_weights(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'nas.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    path = EXPERIMENTS / "meta_nas_digits.yaml"
    result = run_search(path, ["search.num_samples=2", "subsets.k=2", "search.scheduler=none",
                               "search.space.epochs={choice: [4]}", "search.space.conv_blocks={choice: [1]}"],
                        run_dir=tmp_path / "s")
    assert "total:" in result.best["architecture"] and "Conv2d" in result.best["architecture"]
    assert result.holdout_scores["accuracy"] > 0.85
    assert "architecture:" in result.summary()
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(result.mlflow_run_id)}
    assert {"best_weights.pt", "best_architecture.txt"} <= artifacts
    report = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(result.mlflow_run_id, "report")}
    assert {"report/report.html", "report/architecture.png"} <= report  # the best network, drawn
    assert result.best["layers"][0]["layer"].startswith("Unflatten") and sum(
        row["parameters"] for row in result.best["layers"]) == int(
        result.best["architecture"].rsplit("total: ", 1)[1].split()[0].replace(",", ""))


def test_strategies_are_presets_over_one_engine():
    said: list[str] = []
    emb = prepare(load_spec({"name": "e", "strategy": "embedding", "data": {"dataset": "iris"}}), said.append)
    assert emb.learner.name == "pca" and emb.metrics == ("accuracy", "reconstruction_mse") and not said
    # the reconstruction as the meta-objective, in the features' own units: said, unless the features are scaled
    for scale, lines in ((False, 1), (True, 0)):
        said = []
        prepare(load_spec({"name": "e", "strategy": "embedding", "data": {"dataset": "iris", "scale": scale},
                           "objective": {"metric": "reconstruction_mse"}}), said.append)
        assert len([line for line in said if line.startswith("objective.metric: reconstruction_mse is in the "
                                                              "features' own units")]) == lines, said
    nas = prepare(load_spec({"name": "n", "strategy": "nas", "data": {"dataset": "diabetes"}}))
    assert nas.learner.name == "nas_net" and nas.metrics == ("mse",)
    reg = prepare(load_spec({"name": "r", "data": {"dataset": "diabetes"}}))
    assert reg.learner.name == "ridge" and reg.metrics == ("mse",)
    from metaray.errors import SpecError

    with pytest.raises(SpecError, match=r"^data.task: task 'classification' needs discrete class labels"):
        prepare(load_spec({"name": "c", "strategy": "classification", "data": {"dataset": "diabetes"}}))
    with pytest.raises(SpecError, match=r"^learner.name: not an embedder.*got: 'random_forest'"):
        prepare(load_spec({"name": "e", "strategy": "embedding", "data": {"dataset": "iris"},
                           "learner": {"name": "random_forest"}}))
    with pytest.raises(SpecError, match=r"^objective.metric: 'reconstruction_mse' scores embedders"):
        prepare(load_spec({"name": "x", "data": {"dataset": "iris"}, "objective": {"metric": "reconstruction_mse"}}))

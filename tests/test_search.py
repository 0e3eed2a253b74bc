"""Whole searches against the shared local Ray, logging to one MLflow SQLite store for the module. (A search killed
with SIGKILL and resumed: test_reproducible.py; the searchers, schedulers and space alone: their own test files.)"""

import pandas as pd
import pytest

from metaray.cli import main
from metaray.run import search as run_search
from metaray.tensorboard import read_scalars
from tests.conftest import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("ray_session", "shared_store")

WINE = {"name": "wine_race", "seed": 0, "data": {"dataset": "wine", "scale": True},
        "learner": {"name": "logistic_regression"}, "subsets": {"k": 10, "fraction": 0.5, "protocol": "holdout"},
        "search": {"num_samples": 32, "space": {"C": {"loguniform": [1e-4, 100]}}}}


def search(spec, tmp_path, name="run", **kw):
    return run_search(spec, run_dir=tmp_path / name, **kw)


def test_iris_experiment_logs_a_parent_and_a_child_per_configuration(tmp_path, mlflow_uri):
    import mlflow

    result = search(EXPERIMENTS / "meta_classification_iris.yaml", tmp_path)
    assert len(result.results) >= 16 and (result.results["status"] == "completed").all()
    assert result.best["objective"] >= 0.95 and result.holdout_scores["accuracy"] > 0.9
    assert (tmp_path / "run" / "results.csv").is_file() and (tmp_path / "run" / "results.parquet").is_file()
    events = list((tmp_path / "run" / "tensorboard").glob("*/events.out.tfevents.*"))
    assert len(events) == len(result.results)
    assert [tag for tag, _, _ in read_scalars(events[0])].count("score/subset") == 5

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("meta_classification_iris")
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["metaray.kind"] == "search"
    assert parent.data.metrics["best_objective"] == pytest.approx(result.best["objective"])
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == len(result.results)
    child = children[0]
    assert {"objective", "mean", "std", "worst", "cvar", "fit_seconds_total"} <= set(child.data.metrics)
    assert {"C", "class_weight", "learner"} <= set(child.data.params)
    assert {"dataset", "protocol", "seed", "metaray.version", "strategy"} <= set(child.data.tags)
    assert len(client.get_metric_history(child.info.run_id, "accuracy")) == 5  # per-subset step series
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"spec.yaml", "results.csv"} <= artifacts
    assert mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")


def test_same_spec_and_seed_give_identical_tables(tmp_path):
    spec = {**WINE, "search": {**WINE["search"], "num_samples": 12, "scheduler": "asha"}}
    a, b = search(spec, tmp_path, "a", track=False), search(spec, tmp_path, "b", track=False)
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    pd.testing.assert_frame_equal(a.results, b.results)


def test_optuna_is_reproducible_too(tmp_path):
    spec = {**WINE, "subsets": {"k": 3}, "search": {**WINE["search"], "num_samples": 10, "searcher": "optuna"}}
    a, b = search(spec, tmp_path, "a", track=False), search(spec, tmp_path, "b", track=False)
    pd.testing.assert_frame_equal(a.results, b.results)


@pytest.mark.parametrize("searcher", ["random", "optuna"])
def test_the_order_of_the_space_keys_does_not_matter(searcher, tmp_path):
    """A YAML mapping has no order: the same space with its keys reversed samples the same configurations."""
    dists = {"C": {"loguniform": [0.01, 10.0]}, "class_weight": {"choice": [None, "balanced"]},
             "tol": {"loguniform": [1e-5, 1e-3]}}
    tables = []
    for name, order in (("sorted", list(dists)), ("reversed", list(reversed(dists)))):
        spec = {**WINE, "subsets": {"k": 2},
                "search": {"num_samples": 6, "searcher": searcher, "space": {k: dists[k] for k in order}}}
        tables.append(search(spec, tmp_path, name, track=False).results)
    pd.testing.assert_frame_equal(tables[0][sorted(tables[0].columns)], tables[1][sorted(tables[1].columns)])


@pytest.fixture(scope="module")
def full_wine(ray_session, tmp_path_factory):
    """WINE without early stopping: every configuration on every subset (searched once for the module)."""
    return search(WINE, tmp_path_factory.mktemp("full"), track=False)


@pytest.mark.parametrize("scheduler", ["asha", "racing"])
def test_early_stopping_spends_fewer_fits_and_finds_the_same_best(scheduler, full_wine, tmp_path):
    full = full_wine
    assert full.fits_run == 320
    early = search({**WINE, "search": {**WINE["search"], "scheduler": scheduler}}, tmp_path, scheduler, track=False)
    assert early.fits_run < 0.7 * full.fits_run
    assert (early.results["status"] == "stopped").sum() > 0
    assert early.best["objective"] >= full.best["objective"] * (1 - 0.005)


def test_conditional_space_over_learner_families(tmp_path):
    spec = {"name": "families", "data": {"dataset": "breast_cancer", "scale": True}, "subsets": {"k": 3},
            "search": {"searcher": "hyperopt", "num_samples": 8, "space": {"learner": {"choice": [
                {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10]}}},
                {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 30]}, "max_depth": 4}},
                {"name": "knn", "params": {"n_neighbors": {"randint": [1, 15]}}}]}}}}
    result = search(spec, tmp_path, track=False)
    assert len(result.results) == 8 and (result.results["status"] == "completed").all()
    table = result.results
    assert set(table["learner"]) == {"logistic_regression", "random_forest", "knn"}  # this seed draws every family
    for learner, column, low, high in (("random_forest", "n_estimators", 5, 29), ("knn", "n_neighbors", 1, 14),
                                       ("logistic_regression", "C", 0.01, 10)):
        mine = table["learner"] == learner
        assert table.loc[mine, f"param.{learner}.{column}"].between(low, high).all()
        assert table.loc[~mine, f"param.{learner}.{column}"].isna().all()  # another family's parameters are unset


def test_a_failing_configuration_fails_alone(tmp_path):
    spec = {"name": "nan", "data": {"dataset": "iris"}, "learner": {"name": "mlp", "params": {"epochs": 5}},
            "subsets": {"k": 2}, "search": {"searcher": "grid", "space": {
                "lr": {"grid": [0.01, 1e6]}, "optimizer": "sgd"}}}
    result = search(spec, tmp_path, track=False)
    status = dict(zip(result.results["param.lr"], result.results["status"], strict=True))
    assert status == {0.01: "completed", 1e6: "failed"}
    assert "loss became" in result.results.loc[result.results["status"] == "failed", "error"].iloc[0]


def test_epochs_are_a_fidelity_for_asha(tmp_path):
    spec = {"name": "epochs", "strategy": "nas", "data": {"dataset": "digits"}, "subsets": {"k": 2},
            "learner": {"params": {"epochs": 9, "n_layers": 1}},
            "search": {"num_samples": 6, "scheduler": {"name": "asha", "fidelity": "epochs"},
                       "space": {"lr": {"loguniform": [1e-4, 1e-1]}, "width_1": {"choice": [16, 64]}}}}
    result = search(spec, tmp_path, track=False)
    table = result.results
    assert set(table.loc[table["status"] == "completed", "epochs_done"]) == {9}
    stopped = table[table["status"] == "stopped"]
    assert len(stopped) and (stopped["epochs_done"] < 9).all()  # stopped at a rung: 1 or 3 epochs
    assert result.fits_run < 6 * 2 * 3  # three stages (1, 3, 9 epochs) of 2 subsets each, for all six
    with pytest.raises(Exception, match="needs a learner trained in epochs"):
        search({**spec, "strategy": "classification", "data": {"dataset": "iris"}, "learner": {},
                "search": {**spec["search"], "space": {"C": {"loguniform": [0.1, 1]}}}}, tmp_path, "lr", track=False)


BAD_SEARCH = {
    "inverted loguniform": ({"C": {"loguniform": [10, 1]}}, {}, "search.space.C.loguniform",
                            "the low value must be smaller than the high value (low=10, high=1)"),
    "non-positive loguniform": ({"C": {"loguniform": [0, 1]}}, {}, "search.space.C.loguniform", "must be positive"),
    "unknown distribution": ({"C": {"normal": [0, 1]}}, {}, "search.space.C", "unknown distribution; allowed: "),
    "empty choice": ({"penalty": {"choice": []}}, {}, "search.space.penalty.choice", "non-empty list"),
    "misspelled hyperparameter": ({"CC": {"uniform": [0.1, 1]}}, {}, "search.space.CC",
                                  "not a parameter of LogisticRegression (did you mean 'C'?)"),
    "unknown searcher": ({}, {"searcher": "bayes"}, "search.searcher", "allowed: 'grid', 'hyperopt', 'optuna'"),
    "unknown scheduler": ({}, {"scheduler": "hyperband"}, "search.scheduler.name", "allowed: 'asha', 'none', 'racing'"),
    "epochs fidelity without asha": ({}, {"scheduler": {"name": "racing", "fidelity": "epochs"}},
                                     "search.scheduler.fidelity", "not an option of the 'racing' scheduler"),
    "grid with optuna": ({"C": {"grid": [1, 2]}}, {"searcher": "optuna"}, "search.space", "random or grid searcher"),
}


@pytest.mark.parametrize("case", sorted(BAD_SEARCH))
def test_bad_search_specs_exit_2(case, write_yaml, capsys, tmp_path):
    space, extra, key, fragment = BAD_SEARCH[case]
    path = write_yaml({"name": "bad", "data": {"dataset": "iris"}, "storage": str(tmp_path / "out"),
                       "search": {"space": space, **extra}})
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert out == "" and line.startswith(f"metaray: error: {key}:") and fragment in line, err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_run_prints_progress_table_and_best(capsys, tmp_path):
    code = main(["run", str(EXPERIMENTS / "meta_classification_iris.yaml"), "--num-samples", "4",
                 "--set", f"storage={tmp_path}"])
    out, err = capsys.readouterr()
    assert code == 0
    assert err.count(" completed ") == 4 and "[  4/4]" in err
    assert "best configuration (mean accuracy" in out and "objective" in out
    assert main(["compare", "meta_classification_iris", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "== meta_classification_iris" in out and (tmp_path / "p.png").stat().st_size > 0


def test_no_tracking_runs_and_resumes_without_mlflow(capsys, tmp_path, monkeypatch):
    """`run --no-tracking` and `resume --no-tracking`: the search, its table and its run folder as always, and nothing
    logged to MLflow: no store made where MLFLOW_TRACKING_URI points, no line naming an MLflow run."""
    store = tmp_path / "store" / "mlflow.db"  # (not the suite's store of every test: tmp_path/mlflow.db)
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    code = main(["run", str(EXPERIMENTS / "meta_classification_iris.yaml"), "--num-samples", "3", "--set",
                 "subsets.k=2", "--set", f"storage={tmp_path}", "--no-tracking"])
    out, err = capsys.readouterr()
    assert code == 0 and "best configuration (mean accuracy" in out and "[  3/3]" in err
    assert "mlflow:" not in out and not store.exists()
    (run_dir,) = tmp_path.glob("meta_classification_iris/*/")
    assert (run_dir / "results.csv").is_file() and (run_dir / "report.html").is_file()
    assert main(["resume", str(run_dir), "--no-tracking"]) == 0
    out, _ = capsys.readouterr()
    assert "best configuration (mean accuracy" in out and "mlflow:" not in out and not store.exists()


def test_fit_warnings_are_said_once_by_the_driver(tmp_path):
    lines = []
    spec = {"name": "warn", "data": {"dataset": "digits"}, "learner": {"name": "logistic_regression",
                                                                        "params": {"max_iter": 5}},
            "subsets": {"k": 3}, "search": {"num_samples": 3, "space": {"C": {"loguniform": [0.1, 1]}}}}
    search(spec, tmp_path, track=False, progress=lines.append)
    said = [line for line in lines if line.startswith("warning")]
    assert len(said) == 1 and "ConvergenceWarning" in said[0]
    assert not said[0].endswith(":")  # sklearn's "lbfgs failed to converge ...:" goes on with what stopped it


def test_warnings_that_differ_only_in_their_numbers_are_said_once(tmp_path):
    """Each fit warns with its own number (as an ill-conditioned matrix's rcond): one line for the kind, and one for
    the other warning, not one a fit. The refit of the best on the whole pool warns of those and of a third kind (it
    has more rows than any subset): the third is said once more, as the refit's, and the others not again (the
    refit's worker printed them in full, nine lines for a ConvergenceWarning, with Ray's prefix on each)."""
    from ray import cloudpickle

    import tests.helpers

    lines = []
    spec = {"name": "warn_numbers", "data": {"dataset": "wine"},
            "learner": {"name": "tests.helpers.WarningClassifier", "params": {"pool_rows": 150}},
            "subsets": {"k": 3, "fraction": 0.8}, "search": {"num_samples": 3, "space": {"shift": {"uniform": [0, 1]}}}}
    cloudpickle.register_pickle_by_value(tests.helpers)  # Ray's workers cannot import tests.helpers by name
    try:
        search(spec, tmp_path, track=False, progress=lines.append)
    finally:
        cloudpickle.unregister_pickle_by_value(tests.helpers)
    said = [line for line in lines if line.startswith("warning")]
    assert len(said) == 3 and sum("rcond = " in line for line in said) == 1, said
    assert said[2] == ("warning (first seen in the refit on the training pool, said once): FutureWarning: fitted on "
                       "178 rows, more than 150"), said


def test_tracking_experiment_names_the_mlflow_experiment(tmp_path, mlflow_uri):
    import mlflow

    spec = {**WINE, "subsets": {"k": 2}, "search": {"num_samples": 1, "space": {}},
            "tracking": {"experiment": "renamed"}}
    result = search(spec, tmp_path)
    exp = mlflow.MlflowClient(mlflow_uri).get_experiment_by_name("renamed")
    assert mlflow.MlflowClient(mlflow_uri).get_run(result.mlflow_run_id).info.experiment_id == exp.experiment_id


@pytest.mark.usefixtures("ray_session")
def test_max_concurrent_auto_is_resolved_from_the_clusters_cpus_into_the_run_folders_spec(tmp_path):
    import yaml

    import metaray
    from metaray.objective import prepare
    from metaray.plan import checked_space, in_flight, plan
    from metaray.spec import load_spec

    spec = {"name": "auto_in_flight", "data": {"dataset": "iris"}, "subsets": {"k": 4},
            "search": {"searcher": "optuna", "num_samples": 3, "max_concurrent": "auto",
                       "space": {"C": {"loguniform": [0.1, 10.0]}}}}
    prepared = prepare(load_spec(spec))
    planned = plan(prepared, checked_space(prepared))
    assert in_flight(planned, 1024) == 1024 == planned.driver.max_concurrent  # 4 x 1,024 CPUs / 4 subsets
    assert in_flight(planned, 2) == 8 and planned.spec.search.max_concurrent == 8  # never below the default
    asha = prepare(load_spec({**spec, "search": {**spec["search"], "scheduler": "asha"}}))
    assert in_flight(plan(asha, checked_space(asha)), 1024) == 4096  # 4 x 1,024 first-rung fits of one subset
    racing = prepare(load_spec({**spec, "search": {**spec["search"], "scheduler": "racing"}}))
    assert in_flight(plan(racing, checked_space(racing)), 1024) == 4096  # a decision after each subset past three
    assert prepared.spec.search.max_concurrent == "auto"  # the plan's spec is a copy
    lines: list[str] = []
    result = metaray.search(spec, run_dir=tmp_path / "run", progress=lines.append, track=False)
    assert "search.max_concurrent: auto -> 8 (2 CPUs)" in lines and len(result.results) == 3
    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["search"]["max_concurrent"] == 8
    random = prepare(load_spec({**spec, "search": {**spec["search"], "searcher": "random"}}))
    assert in_flight(plan(random, checked_space(random)), 1024) is None  # random keeps every CPU busy anyway


def test_a_searcher_that_sets_the_pace_is_said_and_one_that_does_not_is_not(tmp_path, monkeypatch):
    """The driver is one thread: while the searcher suggests a configuration no fit is given out. A search whose
    searcher took a quarter of its time or more and at least SEARCHER_PACE_MIN_S (both lowered here) says so once; the
    same search with a quick searcher says nothing of it."""
    import time

    import metaray.driver
    from metaray.searchers import TuneSearcher

    monkeypatch.setattr(metaray.driver, "SEARCHER_PACE_MIN_S", 1.0)  # (and a tenth of the search: a slow CI's too)
    monkeypatch.setattr(metaray.driver, "SEARCHER_PACE", 0.1)
    spec = {**WINE, "search": {"searcher": "optuna", "num_samples": 6, "max_concurrent": 2,
                               "space": {"C": {"loguniform": [1e-4, 100]}}}, "subsets": {"k": 2}}
    quick: list[str] = []
    search(spec, tmp_path, "quick", progress=quick.append)
    assert not [line for line in quick if "searcher took" in line], quick
    suggest = TuneSearcher.suggest

    def slow(self, index):
        time.sleep(0.5)
        return suggest(self, index)

    monkeypatch.setattr(TuneSearcher, "suggest", slow)
    lines: list[str] = []
    result = search(spec, tmp_path, "slow", progress=lines.append)
    assert (result.results["status"] == "completed").all()
    said = [line for line in lines if "searcher took" in line]
    assert len(said) == 1 and said[0].startswith("the optuna searcher took 3 s of the"), lines

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from metaray.cli import main
from tests.conftest import EXPERIMENTS

IRIS = {"name": "t", "data": {"dataset": "iris"}}


def with_(base, **sections):
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


@pytest.fixture
def csv_files(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30), "label": [0, 1, 2] * 10}).to_csv(
        tmp_path / "rows.csv", index=False)
    pd.DataFrame({"a": [1.0, np.inf, 2.0, 3.0] * 5, "label": [0, 1] * 10}).to_csv(tmp_path / "inf.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    return tmp_path


# each of the foundation issue's bad inputs: (spec, the key the message must start with, fragments it must hold)
BAD = {
    "unknown dataset": (with_(IRIS, data={"dataset": "boston"}), "data.dataset",
                        ["allowed:", "'iris'", "got: 'boston'"]),
    "unknown learner": (with_(IRIS, learner={"name": "xgboost"}), "learner.name",
                        ["allowed:", "'random_forest'", "got: 'xgboost'"]),
    "unknown metric": (with_(IRIS, objective={"metric": "auc"}), "objective.metric",
                       ["allowed:", "'roc_auc'", "got: 'auc'"]),
    "unknown sampler": (with_(IRIS, subsets={"sampler": "jackknife"}), "subsets.sampler",
                        ["allowed:", "'stratified'", "got: 'jackknife'"]),
    "unknown aggregate": (with_(IRIS, objective={"aggregate": "average"}), "objective.aggregate",
                          ["allowed:", "'mean'", "got: 'average'"]),
    "unknown key": (with_(IRIS, learner={"name": "ridge", "hyperparams": {}}), "learner.hyperparams",
                    ["unknown key", "allowed: 'name', 'params'", "got: 'hyperparams'"]),
    "k below 1": (with_(IRIS, subsets={"k": 0}), "subsets.k", ["allowed: >= 1", "got: 0"]),
    "unknown final model": (with_(IRIS, final="bagging"), "final",
                            ["unknown final model", "allowed: 'bag', 'ensemble', 'refit'", "got: 'bagging'"]),
    "a bag of embeddings": (with_(IRIS, strategy="embedding", final="bag"), "final",
                            ["cannot be averaged", "allowed: 'refit'", "got: 'bag'"]),
    "an ensemble chosen on the hold-out rows": (with_(IRIS, final="ensemble", subsets={"protocol": "holdout"}),
                                                "final", ["rows their fits left out", "'refit', 'bag'",
                                                          "'subsets.protocol': 'holdout'"]),
    "unknown further objective": (with_(IRIS, objective={"also": ["latency"]}), "objective.also[0]",
                                  ["unknown objective", "'predict_ms_per_1000_rows'", "got: 'latency'"]),
    "a constraint that is not one": (with_(IRIS, search={"constraints": ["n_parameters =< 5"]}),
                                     "search.constraints[0]", ["OP one of", "got: 'n_parameters =< 5'"]),
    "a regression metric among the objectives": (with_(IRIS, objective={"also": ["mse"]}), "objective.also[0]",
                                                 ["regression metric cannot score", "got: 'mse'"]),
    "several objectives with hyperopt": (with_(IRIS, objective={"also": ["fit_seconds"]},
                                               search={"searcher": "hyperopt"}), "search.searcher",
                                         ["one objective", "allowed: 'random', 'grid', 'optuna'", "got: 'hyperopt'"]),
    "a bad tracking.children": (with_(IRIS, tracking={"children": "top:0"}), "tracking.children",
                                ["allowed: 'all', 'none', 'top:N with N >= 1'", "got: 'top:0'"]),
    "a tracking URI MLflow has no store for": (with_(IRIS, tracking={"uri": "ftp://mlflow.example.com"}),
                                               "tracking.uri", ["no tracking store", "postgresql",
                                                                "got: 'ftp://mlflow.example.com'"]),
    "a bad max_concurrent": (with_(IRIS, search={"max_concurrent": "many"}), "search.max_concurrent",
                             ["allowed: '>= 1', 'auto (from the CPUs of the cluster", "got: 'many'"]),
    "fraction above 1": (with_(IRIS, subsets={"fraction": 1.2}), "subsets.fraction", ["allowed: (0, 1]", "got: 1.2"]),
    "fraction of 0": (with_(IRIS, subsets={"fraction": 0.0}), "subsets.fraction", ["allowed: (0, 1]", "got: 0.0"]),
    "stratified too small": (with_(IRIS, subsets={"sampler": "stratified", "fraction": 0.01}), "subsets.fraction",
                             ["cannot hold all 3 classes", "got: 0.01"]),
    "nan features, learner without nan": (
        {"name": "t", "data": {"path": "nan.csv", "target": "label", "impute": False}}, "data.impute",
        ["cannot take NaN", "allowed: True", "got: False"]),
    "inf features": ({"name": "t", "data": {"path": "inf.csv", "target": "label"}}, "data.features", ["inf"]),
    "target column missing": ({"name": "t", "data": {"path": "rows.csv", "target": "y"}}, "data.target",
                              ["no such column", "allowed: 'a', 'b', 'label'", "got: 'y'"]),
    "classification metric on regression": (
        {"name": "t", "data": {"dataset": "diabetes"}, "learner": {"name": "ridge"},
         "objective": {"metric": "f1_macro"}},
        "objective.metric", ["classification metric", "allowed: 'mae'", "got: 'f1_macro'"]),
    "empty file": ({"name": "t", "data": {"path": "empty.csv", "target": "label"}}, "data.path", ["empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_clear_line_and_exit_2(case, csv_files, write_yaml, capsys):
    spec, key, fragments = BAD[case]
    pd.DataFrame({"a": [1.0, np.nan, 2.0, 3.0] * 5, "label": [0, 1] * 10}).to_csv(csv_files / "nan.csv", index=False)
    path = write_yaml(spec)
    assert main(["evaluate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing half-written
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"metaray: error: {key}:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in message, message


def test_empty_experiment_file(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    assert main(["evaluate", str(tmp_path / "empty.yaml")]) == 2
    assert "is empty" in capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [
    (["evaluate", "missing.yaml"], "no such experiment file"),
    (["evaluate", str(EXPERIMENTS / "meta_classification_iris.yaml"), "--set", "subsets.k=-3"], "subsets.k"),
])
def test_cli_process_exits_2_without_traceback(args, needle):
    proc = subprocess.run([sys.executable, "-m", "metaray", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys\nfrom metaray.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'ray', 'sklearn', 'mlflow', 'pandas', 'pydantic') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "evaluate" in proc.stdout and "HEAVY []" in proc.stdout


@pytest.mark.usefixtures("ray_session")
def test_evaluate_prints_scores_and_the_meta_objective(capsys):
    assert main(["evaluate", str(EXPERIMENTS / "meta_classification_iris.yaml"), "--set", "subsets.k=3"]) == 0
    out, err = capsys.readouterr()
    assert "meta-objective (mean accuracy, maximise):" in out and "subset 3/3" in err
    assert main(["evaluate", str(EXPERIMENTS / "meta_classification_iris.yaml"), "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metric"] == "accuracy" and len(data["subsets"]) == 5 and data["objective"] >= 0.95


def test_a_bad_spec_raises_spec_error_before_ray_starts():
    code = ("import metaray, ray\n"
            "try:\n"
            "    metaray.evaluate({'name': 'x', 'data': {'dataset': 'iris'}, 'learner': {'params': {'C': -1}}})\n"
            "except metaray.SpecError as exc:\n"
            "    print('SPEC', exc)\n"
            "print('RAY', ray.is_initialized())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "SPEC learner.params.C: rejected by LogisticRegression" in proc.stdout and "RAY False" in proc.stdout


@pytest.mark.slow
def test_the_readme_demo_command_runs_the_iris_search(tmp_path):
    """`./dev.sh demo` as the README gives it (the venv already set up, so the run is quick)."""
    import os
    from pathlib import Path

    env = {**os.environ, "METARAY_VENV": str(Path(sys.executable).parents[1]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([str(EXPERIMENTS.parent / "dev.sh"), "demo", "--set", f"storage={tmp_path}"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[ 16/16]" in done.stderr and "best configuration (mean accuracy" in done.stdout
    assert "refitted on the training pool, on the hold-out rows: accuracy=" in done.stdout
    assert "p_vs_best" in done.stdout and "tied_with_best" in done.stdout  # the README's columns
    assert "tied with the best: 1 of 16 configurations (Bayesian correlated t-test" in done.stdout
    assert "simplest tied: " in done.stdout
    assert len(list(tmp_path.glob("meta_classification_iris/*/report.html"))) == 1

"""The bad-input matrix of `metaray run`: each case gives one clear line naming the key, exit status 2, nothing on
stdout, no traceback, and no MLflow run marked successful. Runs in this process, on the session's Ray."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaray.cli import main
from tests.test_cli import with_

IRIS = {"name": "bad", "seed": 0, "data": {"dataset": "iris"}, "learner": {"name": "logistic_regression"},
        "subsets": {"k": 2}, "search": {"num_samples": 2}}


def spec(**sections) -> dict:
    return with_(IRIS, **sections)


def space(**dists) -> dict:
    return {"num_samples": 2, "space": dists}


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": [], "label": []}).to_csv(tmp_path / "header_only.csv", index=False)
    pd.DataFrame({"a": rng.normal(size=20), "label": [0, 1] * 10}).assign(
        a=lambda f: f.a.where(f.index != 3, np.nan)).to_csv(tmp_path / "nan.csv", index=False)
    pd.DataFrame({"a": [1.0, np.inf] * 10, "label": [0, 1] * 10}).to_csv(tmp_path / "inf.csv", index=False)
    np.save(tmp_path / "X.npy", rng.normal(size=(30, 3)))
    np.save(tmp_path / "y29.npy", np.arange(29) % 2)
    pd.DataFrame({"a": rng.normal(size=60), "label": ["a"] * 57 + ["rare"] * 3}).to_csv(tmp_path / "rare.csv",
                                                                                       index=False)
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path


# (spec, the key the message starts with, fragments it must hold); paths are relative to the spec's folder
BAD = {
    "empty dataset": (spec(data={"dataset": None, "path": "header_only.csv", "target": "label"}), "data.path",
                      ["no rows"]),
    "nan features, no imputation": (spec(data={"dataset": None, "path": "nan.csv", "target": "label",
                                                "impute": False}), "data.impute", ["NaN", "got: False"]),
    "inf features": (spec(data={"dataset": None, "path": "inf.csv", "target": "label"}), "data.features", ["inf"]),
    "features and target of different lengths": (
        spec(data={"dataset": None, "path": "X.npy", "target": "y29.npy"}), "data",
        ["different numbers of rows", "'features': 30", "'target': 29"]),
    "subset size 0": (spec(subsets={"fraction": 0.0}), "subsets.fraction", ["allowed: (0, 1]", "got: 0.0"]),
    "subset larger than the data": (spec(subsets={"fraction": 1.5}), "subsets.fraction", ["got: 1.5"]),
    "k = 0": (spec(subsets={"k": 0}), "subsets.k", ["allowed: >= 1", "got: 0"]),
    "a subset cannot hold every class": (
        spec(data={"dataset": None, "path": "rare.csv", "target": "label"}, subsets={"fraction": 0.02}),
        "subsets.fraction", ["class"]),
    "continuous target for a classifier": (
        spec(data={"dataset": "diabetes"}, learner={"name": "sklearn.ensemble.RandomForestClassifier"}),
        "learner.name", ["regression", "got: 'sklearn.ensemble.RandomForestClassifier'"]),
    "unknown learner": (spec(learner={"name": "xgboost"}), "learner.name", ["allowed:", "got: 'xgboost'"]),
    "unknown metric": (spec(objective={"metric": "auc"}), "objective.metric", ["'roc_auc'", "got: 'auc'"]),
    "unknown searcher": (spec(search={"searcher": "bayesopt"}), "search.searcher", ["'optuna'", "got: 'bayesopt'"]),
    "misspelled hyperparameter": (spec(search=space(Cc={"loguniform": [0.01, 1.0]})), "search.space.Cc",
                                  ["'C'", "got: 'Cc'"]),
    "inverted loguniform bounds": (spec(search=space(C={"loguniform": [10.0, 0.1]})), "search.space.C.loguniform",
                                   ["got: [10.0, 0.1]"]),
    "non-positive loguniform bound": (spec(search=space(C={"loguniform": [0.0, 1.0]})),
                                      "search.space.C.loguniform",
                                      ["0 < low < high", "got: [0.0, 1.0]"]),
    "empty choice": (spec(search=space(penalty={"choice": []})), "search.space.penalty.choice",
                     ["non-empty", "got: []"]),
    "a value the learner rejects": (spec(learner={"params": {"C": -1.0}}), "learner.params.C",
                                    ["rejected by", "got: -1.0"]),
    "a resource the cluster can never give": (spec(ray={"cpus_per_fit": 64}), "ray.cpus_per_fit",
                                              ["64", "allowed: <= 2"]),
    "unwritable storage folder": (spec(storage="a_file/runs"), "storage", ["a_file"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_to_run(case, files, ray_session, capsys):
    import yaml

    bad, key, fragments = BAD[case]
    bad = {**bad, "storage": str(files / bad["storage"]) if "storage" in bad else str(files / "runs")}
    path = files / "spec.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "", out  # no table, nothing half-written
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"metaray: error: {key}:"), err
    for fragment in fragments:
        assert fragment in message, message
    # the test's own store (conftest): read with sqlite3, so that a store nothing was written to is not created here
    store = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    if store.exists():
        with contextlib.closing(sqlite3.connect(store)) as db:
            finished = db.execute("select run_uuid from runs where status = 'FINISHED'").fetchall()
        assert not finished, finished


@pytest.mark.slow
def test_a_diverging_model_fails_its_trial_and_the_search_goes_on(ray_session, tmp_path, capsys):
    """lr = 1e6 makes the MLP's loss NaN: that configuration fails with its reason, the others complete."""
    import yaml

    bad = spec(learner={"name": "mlp", "params": {"epochs": 5, "hidden_layer_sizes": [8], "optimizer": "sgd"}},
               search={"searcher": "grid", "num_samples": 1, "space": {"lr": {"grid": [0.01, 1.0e12]}}},
               storage=str(tmp_path / "runs"))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["run", str(path)]) == 0
    out, err = capsys.readouterr()
    run_dir = next((tmp_path / "runs").glob("*/*"))
    table = pd.read_csv(run_dir / "results.csv")
    assert sorted(table["status"]) == ["completed", "failed"]
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["param.lr"] == 1.0e12 and "training loss became" in failed["error"]
    assert "failed" in err and "Traceback" not in err

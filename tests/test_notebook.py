"""A library that behaves in a notebook: the public API leaves the process as it found it (``os.environ``,
matplotlib's backend, Optuna's and MLflow's log levels, the spec object it is given), and loading a spec stays light.

Each check runs in a fresh interpreter, as a notebook's kernel is: nothing imported, no Ray running, none of the
variables the test session sets for Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from metaray.cluster import LOOPBACK_SWITCH
from tests.conftest import EXPERIMENTS, ROOT

#: what a fresh kernel would not have: the variables this test session sets for its own Ray and MLflow
SESSION_ONLY = (LOOPBACK_SWITCH, "RAY_AUTH_MODE", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")

#: the notebook: two searches of one spec object, then its report; what changed after each step, as JSON
NOTEBOOK = textwrap.dedent("""
    import json, logging, os, sys
    from pathlib import Path

    import matplotlib
    matplotlib.use("svg")  # the notebook's own backend (Jupyter's inline one, say): metaray must not switch it
    import mlflow, optuna, sklearn  # their imports set what they set (sklearn: KMP_*), as for any of their users
    optuna.logging.set_verbosity(optuna.logging.INFO)
    import metaray

    tmp = Path(sys.argv[1])
    spec = metaray.load_spec({
        "name": "notebook", "data": {"dataset": "iris"}, "subsets": {"k": 2},
        "learner": {"name": "logistic_regression", "params": {"max_iter": 200}},
        "search": {"searcher": "optuna", "num_samples": 4,
                   "space": {"C": {"loguniform": [0.01, 10.0]}, "tol": {"loguniform": [1e-5, 1e-2]}}},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}, "storage": str(tmp / "runs"), "ray": {"num_cpus": 2}})

    def state():
        return {"environ": dict(os.environ), "spec": spec.model_dump(mode="json"), "backend": matplotlib.get_backend(),
                "optuna": optuna.logging.get_verbosity(), "mlflow": logging.getLogger("mlflow").level}

    def changed(before, after):
        out = {k: [before[k], after[k]] for k in before if k != "environ" and before[k] != after[k]}
        env = {k: [before["environ"].get(k), after["environ"].get(k)]
               for k in set(before["environ"]) | set(after["environ"])
               if before["environ"].get(k) != after["environ"].get(k)}
        return out | ({"environ": env} if env else {})

    steps, before = {}, state()
    for name in ("first search", "second search"):
        result = metaray.search(spec, run_dir=tmp / name.replace(" ", "_"))
        assert (result.results["status"] == "completed").all(), result.results
        steps[name] = changed(before, state())
    made = metaray.report(result.run_dir, tmp / "again.html")
    steps["report"] = changed(before, state())
    steps["figures"] = sorted(made.figures)
    print("STEPS " + json.dumps(steps))
    import ray
    ray.shutdown()
""")


@pytest.mark.slow  # starts a Ray of its own, as a notebook does
def test_two_searches_and_a_report_leave_the_notebook_as_they_found_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
    done = subprocess.run([sys.executable, "-c", NOTEBOOK, str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("STEPS "))[6:])
    assert "importance" in steps.pop("figures")  # the report drew its Optuna figure too
    assert steps == {"first search": {}, "second search": {}, "report": {}}


def test_loading_every_experiment_imports_neither_pandas_nor_scikit_learn():
    code = ("import sys\nfrom metaray.spec import load_spec\nfor path in sys.argv[1:]:\n    load_spec(path)\n"
            "print(sorted(m for m in ('pandas', 'sklearn', 'scipy', 'ray', 'torch', 'mlflow', 'matplotlib', 'optuna')"
            " if m in sys.modules))")
    paths = sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    assert len(paths) >= 5
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "[]"


def _run_folder(path):
    """A run folder as a search of 8 configurations of two log-uniform parameters over 3 subsets leaves it."""
    import numpy as np
    import pandas as pd
    import yaml

    from metaray.spec import load_spec

    spec = load_spec({"name": "notebook", "data": {"dataset": "iris"}, "subsets": {"k": 3},
                      "search": {"num_samples": 8, "space": {"C": {"loguniform": [0.01, 10.0]},
                                                             "tol": {"loguniform": [1e-5, 1e-2]}}}})
    path.mkdir()
    (path / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.8, 1.0, size=(8, 3))
    table = pd.DataFrame({"trial": [f"t{i:04d}" for i in range(8)], "status": "completed",
                          "objective": scores.mean(axis=1), "std": scores.std(axis=1, ddof=1),
                          "param.C": np.exp(rng.uniform(np.log(0.01), np.log(10.0), 8)),
                          "param.tol": np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), 8)),
                          **{f"score_{j}": scores[:, j] for j in range(3)}, "tied_with_best": False})
    table.sort_values("objective", ascending=False).to_csv(path / "results.csv", index=False)
    (path / "state.json").write_text(json.dumps({"metric": "accuracy", "mode": "max"}))
    return path


def test_a_report_draws_its_figures_without_switching_the_backend_or_optuna_s_level(tmp_path):
    import matplotlib
    import optuna

    import metaray

    backend, level = matplotlib.get_backend(), optuna.logging.get_verbosity()
    matplotlib.use("svg")  # a notebook's own backend
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        made = metaray.report(_run_folder(tmp_path / "run"))
        assert matplotlib.get_backend() == "svg" and optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        matplotlib.use(backend)
        optuna.logging.set_verbosity(level)
    assert {"objective", "subsets", "parameters", "parallel", "importance"} <= set(made.figures)
    assert "Optuna" in made.importance_method  # the figure that sets Optuna's level for its own study

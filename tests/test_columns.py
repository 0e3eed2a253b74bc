"""Column roles (metaray.columns), the per-subset encoding shared by every configuration, and the memory each fit
reserves (metaray.memory): what a user's table becomes, that sharing the encoding changes no score, and that a fit
no node could hold fails its configuration with a line that names the columns, while the search goes on."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from metaray.cli import main
from metaray.columns import MAX_ONEHOT, TEXT_COMPONENTS, assign_roles
from metaray.errors import SpecError
from metaray.fits import Unit
from metaray.objective import deployable, encode_subset, fit_final, prepare, score_fit
from metaray.spec import load_spec

WORDS = np.array("red green blue cat dog bird river stone cloud light dark night day sun moon star tree leaf".split())


def dirty_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Numbers with gaps, a low-cardinality category, a free-text title distinct on every row, dates as text, an
    identifier, a constant and an empty column; the label depends on the number, the category and the date."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "blue", "green", None], size=n)
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, size=n), unit="D")
    title = [" ".join(rng.choice(WORDS, size=4)) + f" no {i}" for i in range(n)]
    signal = x + (colour == "red") * 1.5 + (when.month.to_numpy() > 6) * 1.0
    frame = pd.DataFrame({"order_id": [f"A{100000 + i}" for i in range(n)], "title": title, "colour": colour,
                          "x": np.where(rng.random(n) < 0.1, np.nan, x), "when": when.strftime("%Y-%m-%d"),
                          "constant": "same", "empty": np.nan,
                          "label": np.where(signal + rng.normal(scale=0.5, size=n) > 0.8, "yes", "no")})
    return frame


def test_every_column_gets_the_role_a_person_would_give_it():
    roles = {r.column: r for r in assign_roles(dirty_table().drop(columns="label"))}
    assert {c: r.role for c, r in roles.items()} == {
        "order_id": "drop", "title": "text", "colour": "category", "x": "numeric", "when": "datetime",
        "constant": "drop", "empty": "drop"}
    assert "identifier" in roles["order_id"].reason and "constant" in roles["constant"].reason
    assert roles["title"].width == TEXT_COMPONENTS  # bounded, whatever the number of distinct titles


def test_row_numbers_are_identifiers_but_years_days_and_measurements_distinct_on_every_row_are_not():
    n = 300
    days = pd.date_range("2021-01-01", periods=n, freq="D")
    frame = pd.DataFrame({"row": np.arange(1, n + 1), "weight": np.random.default_rng(0).normal(70, 10, n),
                          "count": np.random.default_rng(1).integers(0, 10**9, n), "patient_id": np.arange(n) * 7,
                          "year": np.arange(1700, 1700 + n), "day": days, "day_text": days.strftime("%Y-%m-%d")})
    roles = {r.column: r.role for r in assign_roles(frame)}
    assert roles == {"row": "drop", "weight": "numeric", "count": "numeric", "patient_id": "drop",
                     "year": "numeric", "day": "datetime", "day_text": "datetime"}


def test_the_user_overrides_roles_and_bad_overrides_name_the_key():
    frame = dirty_table().drop(columns="label")
    roles = {r.column: r.role for r in assign_roles(frame, {"order_id": "text", "colour": "text"}, ["x"])}
    assert roles["order_id"] == "text" and roles["colour"] == "text" and roles["x"] == "drop"
    with pytest.raises(SpecError, match=r"data\.columns\.nope: no such feature column"):
        assign_roles(frame, {"nope": "text"})
    with pytest.raises(SpecError, match=r"data\.drop: no such feature column.*got: 'ghost'"):
        assign_roles(frame, drop=["ghost"])
    with pytest.raises(SpecError, match=r"data\.columns\.title: unknown column role; allowed: .*'text'.*got: 'words'"):
        load_spec({"name": "t", "data": {"path": "t.csv", "target": "label", "columns": {"title": "words"}}})
    with pytest.raises(SpecError, match="every feature column is left out"):
        assign_roles(frame[["order_id", "constant"]])


@pytest.fixture
def table_spec(tmp_path):
    def make(frame: pd.DataFrame | None = None, **data) -> dict:
        path = tmp_path / "table.csv"
        (dirty_table() if frame is None else frame).to_csv(path, index=False)
        return {"name": "dirty", "seed": 0, "data": {"path": str(path), "target": "label", **data},
                "subsets": {"k": 3}, "storage": str(tmp_path / "runs")}

    return make


def test_a_date_column_that_does_not_parse_cannot_be_forced_to_datetime(table_spec):
    with pytest.raises(SpecError, match=r"data\.columns\.title: not dates"):
        prepare(load_spec(table_spec(columns={"title": "datetime"})))


@pytest.mark.parametrize("learner", [{"name": "logistic_regression"}, {"name": "knn"},
                                     {"name": "hist_gradient_boosting", "params": {"max_iter": 10}}])
def test_a_shared_encoding_gives_the_scores_of_a_fit_that_encodes_its_own_subset(table_spec, learner):
    prepared = prepare(load_spec(table_spec() | {"learner": learner}))
    problem = prepared.problem()
    encoder = prepared.dataset.preprocessor(scale=False, impute=True)
    for k in range(prepared.plan.k):
        encoded = encode_subset(problem, encoder, k)
        assert encoded.error is None
        shared = score_fit(problem.__class__(**{**problem.__dict__, "encoded": {k: encoded}}), prepared.learner,
                           Unit(0, 0, k), seed=0)
        own = score_fit(problem, prepared.learner, Unit(0, 0, k), seed=0)
        assert shared.error is None and own.error is None
        assert shared.scores == pytest.approx(own.scores, abs=1e-12)


def test_an_encoder_that_fails_on_a_subset_fails_the_fits_on_it_with_its_reason(table_spec):
    prepared = prepare(load_spec(table_spec()))
    problem = prepared.problem()

    class Broken:
        def fit(self, X, y=None):
            raise ValueError("no columns to encode")

    from sklearn.base import BaseEstimator

    encoded = encode_subset(problem, type("B", (Broken, BaseEstimator), {})(), 0)
    assert encoded.error.startswith("ValueError while encoding the table's columns: no columns to encode")
    r = score_fit(problem.__class__(**{**problem.__dict__, "encoded": {0: encoded}}), prepared.learner,
                  Unit(0, 0, 0), seed=0)
    assert "while encoding the table's columns" in r.error


def test_one_hot_stays_sparse_for_a_learner_that_takes_it_and_bounded_for_one_that_does_not(table_spec):
    n = 3000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{j}": rng.integers(0, 30, n).astype(str) for j in range(12)})
    frame["zip"] = rng.integers(0, 2000, n).astype(str)  # forced to a category: thousands of values
    frame["label"] = np.where(frame["c0"].astype(int) > 14, "a", "b")
    spec = table_spec(frame, columns={"zip": "category"})
    sparse = prepare(load_spec(spec | {"learner": {"name": "logistic_regression"}}))
    dense = prepare(load_spec(spec | {"learner": {"name": "hist_gradient_boosting"}}))
    X, y = sparse.dataset.X, sparse.dataset.y
    Z = sparse.learner.for_fit(0).fit(X, y)[:-1].transform(X)
    assert hasattr(Z, "tocsr")  # one-hot kept sparse for logistic regression
    Z = dense.learner.for_fit(0).fit(X, y)[:-1].transform(X)
    assert isinstance(Z, np.ndarray) and Z.shape[1] <= 12 * 31 + MAX_ONEHOT  # the zip column capped


def test_the_logged_model_takes_the_users_raw_table_with_its_dates_as_text(table_spec):
    prepared = prepare(load_spec(table_spec() | {"learner": {"name": "random_forest", "params": {"n_estimators": 20}}}))
    est, _, _ = fit_final(prepared.problem(), prepared.learner, seed=0)
    model = deployable(est, prepared.dataset.cleaner)
    raw = dirty_table(50, seed=3)
    predicted = model.predict(raw.drop(columns="label"))
    assert set(predicted) <= {"yes", "no"} and len(predicted) == 50


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session", "shared_store")
def test_evaluate_prints_and_returns_what_each_column_became(table_spec, tmp_path, capsys):
    path = tmp_path / "dirty.yaml"
    path.write_text(yaml.safe_dump(table_spec()))
    assert main(["evaluate", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["dataset"]["columns"]["title"] == "text" and data["dataset"]["columns"]["order_id"] == "drop"
    assert "data: column 'order_id' left out: an identifier" in err
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "columns (role, why):" in out and "text that parses as dates" in out
    assert float(out.rsplit("meta-objective (mean accuracy, maximise): ", 1)[1].split()[0]) > 0.75  # the signal


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_the_mlflow_parent_run_records_each_columns_role(table_spec, mlflow_uri, monkeypatch):
    import mlflow

    from metaray.run import search

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    result = search(table_spec() | {"search": {"num_samples": 2, "space": {"C": {"loguniform": [0.1, 10.0]}}}})
    params = mlflow.MlflowClient(mlflow_uri).get_run(result.mlflow_run_id).data.params
    assert params["column.title"] == "text" and params["column.when"] == "datetime"
    assert params["column.order_id"] == "drop"


def _worker_peak(stop: threading.Event, peak: list[float]) -> None:
    import os

    import psutil

    from tests.conftest import SESSION_MARK

    mark = os.environ[SESSION_MARK]
    while not stop.is_set():
        for p in psutil.process_iter(["cmdline"]):
            try:
                if "ray::" in " ".join(p.info["cmdline"] or []) and p.environ().get(SESSION_MARK) == mark:
                    peak[0] = max(peak[0], p.memory_info().rss)
            except psutil.Error:
                continue
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_title_whose_one_hot_would_not_fit_in_this_machine_is_searched_in_bounded_memory(table_spec, tmp_path):
    """30,000 titles, distinct on every row: one-hot, a dense fit would hold 30,000 x 30,000 floats (7 GB) a few
    times over, more than the machine's 24 GB; as text it is 30 columns, and every worker stays small."""
    from metaray.run import search

    frame = dirty_table(30_000)
    spec = table_spec(frame) | {"learner": {"name": "hist_gradient_boosting", "params": {"max_iter": 20}},
                                "search": {"num_samples": 2, "space": {"learning_rate": {"choice": [0.1, 0.3]}}}}
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=_worker_peak, args=(stop, peak), daemon=True)
    watcher.start()
    try:
        result = search(spec, track=False)
    finally:
        stop.set()
        watcher.join()
    assert (result.results["status"] == "completed").all()
    assert result.best["objective"] > 0.7  # the label's signal is found through the encoded columns
    assert 0 < peak[0] < 2e9, f"a worker grew to {peak[0] / 1e9:.1f} GB"


@pytest.mark.usefixtures("ray_session")
def test_a_fit_no_node_could_hold_fails_its_configuration_and_the_search_goes_on(table_spec, monkeypatch):
    """A node with little memory (the estimate is compared with the largest node's): the dense learner's fits would
    need more, so its configurations fail with one line naming the widest columns and the fix; the sparse
    learner's run."""
    from metaray import memory
    from metaray.run import search

    n = 4000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{j}": rng.integers(0, 60, n).astype(str) for j in range(60)})
    frame["label"] = np.where(frame["c0"].astype(int) > 29, "a", "b")
    monkeypatch.setattr(memory, "node_memory", lambda: 0.6e9)
    space = {"learner": {"choice": [{"name": "logistic_regression"},
                                    {"name": "hist_gradient_boosting", "params": {"max_iter": 10}}]}}
    spec = table_spec(frame, columns={f"c{j}": "category" for j in range(60)}) | {
        "search": {"searcher": "grid", "space": space}}
    result = search(spec, track=False)
    table = result.results.set_index("learner")
    assert table.loc["logistic_regression", "status"] == "completed"
    failed = table.loc["hist_gradient_boosting"]
    assert failed["status"] == "failed"
    assert "more than any node offers" in failed["error"] and "c0 (" in failed["error"]
    assert "data.drop" in failed["error"] and "\n" not in failed["error"]


def test_the_estimate_and_an_impossible_override_are_refused_with_the_key(table_spec):
    from metaray.memory import estimate, reserve

    prepared = prepare(load_spec(table_spec()))
    need = estimate(prepared.dataset, prepared.plan, prepared.learner.model)
    assert need.rows == max(len(t) for t in prepared.plan.train) and need.width >= 1 + 4 + TEXT_COMPONENTS
    assert reserve(need, "x", available=64e9) == pytest.approx(need.bytes, rel=1e-6)
    assert reserve(need, "x", available=64e9, override=1e9) == 1e9
    with pytest.raises(SpecError, match=r"ray\.memory_per_fit: more than any node"):
        reserve(need, "x", available=2e9, override=3e9)
    with pytest.raises(SpecError, match=r"ray\.memory_per_fit: not a quantity.*got: 'lots'"):
        load_spec({"name": "t", "data": {"dataset": "iris"}, "ray": {"memory_per_fit": "lots"}})
    assert load_spec({"name": "t", "data": {"dataset": "iris"}, "ray": {"memory_per_fit": "2GB"}}
                     ).ray.memory_per_fit == 2e9


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_a_resume_whose_columns_were_encoded_otherwise_is_refused(table_spec, tmp_path, capsys):
    """A run folder of a search that began before columns had roles (its state has none), or whose table changed:
    its journaled fits saw other features, so it is not resumed into the same table."""
    from metaray.run import search

    result = search(table_spec() | {"search": {"num_samples": 2, "space": {"C": {"loguniform": [0.1, 10.0]}}}},
                    track=False)
    state_file = result.run_dir / "state.json"
    state = json.loads(state_file.read_text())
    assert state["columns"]["title"] == "text"
    assert main(["resume", str(result.run_dir)]) == 0  # the same roles: resumed, nothing refitted
    capsys.readouterr()
    del state["columns"]
    state_file.write_text(json.dumps(state))
    assert main(["resume", str(result.run_dir)]) == 2
    err = capsys.readouterr().err
    assert "storage: the run folder's fits saw other columns" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_the_refit_reserves_memory_for_the_whole_pool(table_spec, monkeypatch):
    """The refit trains on the whole pool (a fifth more rows than a subset here): a node that holds a subset's fit but
    not the pool's leaves the search's results standing and says why the refit failed."""
    from metaray import memory
    from metaray.run import search

    n = 4000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{j}": rng.integers(0, 60, n).astype(str) for j in range(60)})
    frame["label"] = np.where(frame["c0"].astype(int) > 29, "a", "b")
    spec = table_spec(frame, columns={f"c{j}": "category" for j in range(60)}) | {
        "learner": {"name": "hist_gradient_boosting", "params": {"max_iter": 10}}, "search": {"num_samples": 1}}
    prepared = prepare(load_spec(spec))
    subset = memory.estimate(prepared.dataset, prepared.plan, prepared.learner.model).bytes
    pool = memory.estimate(prepared.dataset, prepared.plan, prepared.learner.model, rows=n).bytes
    assert subset < pool
    monkeypatch.setattr(memory, "node_memory", lambda: (subset + pool) / 2)
    result = search(spec, track=False)
    assert (result.results["status"] == "completed").all()
    assert "more than any node offers" in result.best["refit_error"]

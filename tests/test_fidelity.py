"""The fidelity benchmark (does the meta-objective predict generalisation?) at quick size, and its ranking helper.

The quick run's numbers are checked against computations that do not go through the benchmark: the test scores
against plain scikit-learn pipelines on a split made here, the K = 1 and K = 3 Spearman values against SciPy on
the per-subset scores, the regrets against the test scores of the configurations the cells name."""

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from tests.helpers import load_benchmark

AGGREGATES = ("mean", "median", "mean_minus_std", "cvar")


@pytest.fixture(scope="module")
def fidelity():
    return load_benchmark("fidelity")


# --- the ranking helper on hand-made examples -----------------------------------------------------------------


def test_rank_quality_perfect_and_reversed(fidelity):
    test = [0.5, 0.6, 0.7, 0.9]
    rho, regret, chosen = fidelity.rank_quality([0.1, 0.2, 0.3, 0.4], test, greater_is_better=True)
    assert (rho, regret, chosen) == (pytest.approx(1.0), 0.0, 3)
    rho, regret, chosen = fidelity.rank_quality([0.4, 0.3, 0.2, 0.1], test, greater_is_better=True)
    assert rho == pytest.approx(-1.0) and chosen == 0 and regret == pytest.approx(0.9 - 0.5)


def test_rank_quality_for_a_loss_and_ties(fidelity):
    # a loss: the meta-objective picks its smallest (index 0, test loss 3); the best test loss is 1: regret 2, not -2
    rho, regret, chosen = fidelity.rank_quality([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], greater_is_better=False)
    assert rho == pytest.approx(-1.0) and chosen == 0 and regret == pytest.approx(2.0)
    rho, regret, chosen = fidelity.rank_quality([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], greater_is_better=False)
    assert rho == pytest.approx(1.0) and (regret, chosen) == (0.0, 0)
    # equal meta-objectives: the earliest configuration is picked, as metaray picks its best
    _, regret, chosen = fidelity.rank_quality([0.5, 0.5, 0.1], [0.1, 0.9, 0.0], greater_is_better=True)
    assert chosen == 0 and regret == pytest.approx(0.8)
    # no order on one side: no Spearman, but a regret
    rho, regret, _ = fidelity.rank_quality([0.3, 0.3, 0.3], [0.1, 0.9, 0.0], greater_is_better=True)
    assert math.isnan(rho) and regret == pytest.approx(0.8)
    with pytest.raises(ValueError):
        fidelity.rank_quality([0.1, 0.2], [0.1], greater_is_better=True)


# --- the quick benchmark, in process ---------------------------------------------------------------------------


PROTOCOLS = ("holdout", "full")


@pytest.fixture(scope="module")
def quick(fidelity, ray_session, tmp_path_factory):
    """One quick run (wine, 8 configurations, K = 1 and 3) of two protocols: its printed output and its JSON."""
    path = tmp_path_factory.mktemp("fidelity") / "quick.json"
    capture = tmp_path_factory.mktemp("fidelity") / "stdout.txt"
    import contextlib

    with open(capture, "w") as out, contextlib.redirect_stdout(out):
        assert fidelity.main(["--quick", "--markdown", "--protocols", ",".join(PROTOCOLS), "--json", str(path)]) == 0
    return capture.read_text(), json.loads(path.read_text())


def _independent_test_scores(data) -> list[float]:
    """Every configuration of the quick run in a plain scikit-learn pipeline: scaled features, the learner's
    parameters, fitted on the 60 % training split and scored by accuracy on the 40 % test split."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    from metaray.objective import fit_seed

    classes = {"logistic_regression": (LogisticRegression, {"max_iter": 1000}), "knn": (KNeighborsClassifier, {}),
               "decision_tree": (DecisionTreeClassifier, {}), "random_forest": (RandomForestClassifier, {}),
               "svc": (SVC, {})}
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=data["seeds"][0], stratify=y)
    run = data["datasets"][0]
    assert run["n_train"] == len(y_train) and run["n_test"] == len(y_test)
    out = []
    for name, params in zip(run["learners"], run["params"], strict=True):
        cls, defaults = classes[name]
        model = cls(**defaults, **params)
        if "random_state" in model.get_params():  # the seed of metaray's refit on the whole training pool
            model.set_params(random_state=fit_seed(data["seeds"][0], 1 << 20))
        fitted = make_pipeline(StandardScaler(), model).fit(X_train, y_train)
        out.append(accuracy_score(y_test, fitted.predict(X_test)))
    return out


@pytest.mark.slow
def test_quick_has_every_cell_in_range(quick):
    text, data = quick
    assert data["ks"] == [1, 3] and data["protocols"] == list(PROTOCOLS) and data["samples"] == 8
    assert [d["name"] for d in data["datasets"]] == ["wine"] and data["seeds"] == [0]
    cells = {(c["protocol"], c["k"], c["aggregate"]): c for c in data["cells"]}
    assert len(cells) == len(data["cells"]) == 2 * 2 * len(AGGREGATES)
    assert set(cells) == {(p, k, a) for p in PROTOCOLS for k in (1, 3) for a in AGGREGATES}
    for c in cells.values():  # NaN fails the comparison; each regret's value is checked in the next tests
        assert -1.0 <= c["spearman"] <= 1.0 and c["chosen"] in data["datasets"][0]["trials"]
    summary = {(s["protocol"], s["k"], s["aggregate"]): s for s in data["summary"]}
    assert set(summary) == set(cells)
    for key, s in summary.items():  # one dataset: the mean over datasets is its own value
        assert s["spearman"] == pytest.approx(cells[key]["spearman"])
        assert s["regret"] == pytest.approx(cells[key]["regret"])
    assert "| protocol | K | mean: Spearman / regret |" in text and "| holdout | 3 |" in text and "| full | 3 |" in text
    assert "best mean Spearman: protocol=" in text and "lowest mean regret: protocol=" in text
    assert data["best"][0] in text


@pytest.mark.slow
def test_quick_test_scores_are_sklearns(quick):
    _, data = quick
    run = data["datasets"][0]
    assert run["trials"] == [f"t{i:04d}" for i in range(8)]
    assert len(set(run["learners"])) >= 2  # a space of several learners was searched
    assert run["test_scores"] == pytest.approx(_independent_test_scores(data), abs=1e-12)
    assert len(set(run["test_scores"])) > 1  # something to rank


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_quick_cells_follow_the_subset_scores(quick, protocol):
    """K = 1 ranks by the first subset's score, K = 3 by an aggregate of the first three: checked with SciPy, and
    each regret against the test score of the configuration its cell names."""
    _, data = quick
    run = data["datasets"][0]
    scores = np.array(run["scores"][protocol])
    test = np.array(run["test_scores"])
    assert scores.shape == (8, 3) and np.isfinite(scores).all()
    cells = {(c["k"], c["aggregate"]): c for c in data["cells"] if c["protocol"] == protocol}
    # every aggregate of a single score is that score
    for a in AGGREGATES:
        assert cells[1, a]["spearman"] == pytest.approx(spearmanr(scores[:, 0], test).statistic)
        assert cells[1, a]["chosen"] == run["trials"][int(np.argmax(scores[:, 0]))]
    mean3 = scores.mean(axis=1)
    assert cells[3, "mean"]["spearman"] == pytest.approx(spearmanr(mean3, test).statistic)
    assert cells[3, "mean"]["chosen"] == run["trials"][int(np.argmax(mean3))]
    worst3 = scores.min(axis=1)  # cvar at alpha 0.2 of 3 scores: the worst one
    assert cells[3, "cvar"]["spearman"] == pytest.approx(spearmanr(worst3, test).statistic)
    mms3 = mean3 - scores.std(axis=1, ddof=1)
    assert cells[3, "mean_minus_std"]["spearman"] == pytest.approx(spearmanr(mms3, test).statistic)
    assert cells[1, "mean"]["spearman"] != pytest.approx(cells[3, "mean"]["spearman"])  # K changes the ranking
    for c in cells.values():
        picked = test[run["trials"].index(c["chosen"])]
        assert c["regret"] == pytest.approx(test.max() - picked, abs=1e-12)


@pytest.mark.slow
def test_protocols_search_the_same_configurations(quick):
    """Two protocols of one dataset: the same configurations (checked inside the run), their own subset scores,
    one set of test scores."""
    _, data = quick
    run = data["datasets"][0]
    assert set(run["scores"]) == set(PROTOCOLS) and len(run["test_scores"]) == len(run["trials"]) == 8
    assert run["scores"]["holdout"] != run["scores"]["full"]  # scored on other rows
    assert {(c["protocol"], c["k"]) for c in data["cells"]} == {(p, k) for p in PROTOCOLS for k in (1, 3)}

import math

import numpy as np
import pytest

from metaray.aggregates import objective_mode
from metaray.metrics import METRICS, get_metric


def test_directions():
    assert {m for m in METRICS.names() if METRICS.get(m).greater_is_better} == {
        "accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2"}
    assert objective_mode("mean", get_metric("log_loss").greater_is_better) == "min"
    assert objective_mode("mean", get_metric("accuracy").greater_is_better) == "max"


def test_metric_values():
    y, p = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert get_metric("accuracy")(y, p) == 0.75
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    assert get_metric("roc_auc")(y, proba, np.array([0, 1])) == 1.0
    assert get_metric("log_loss")(y, proba, np.array([0, 1])) > 0
    assert get_metric("rmse")(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert get_metric("roc_auc")(np.array([0, 1, 2]), three, np.array([0, 1, 2])) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_numpy_metrics_equal_scikit_learns(seed):
    """accuracy, mse, rmse, mae and r2 are computed in NumPy (scikit-learn validates at length, most of a short
    fit's cost): they must give scikit-learn's values, labels of any type and constant targets included."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    words = np.array(["cat", "dog", "émeu"])[rng.integers(0, 3, n)]
    guess = np.array(["cat", "dog", "émeu"])[rng.integers(0, 3, n)]
    for y, p in ((words, guess), (rng.integers(0, 2, n).astype(bool), rng.integers(0, 2, n).astype(bool)),
                 (rng.integers(0, 4, n), rng.integers(0, 4, n))):
        assert get_metric("accuracy")(y, p) == pytest.approx(sk.accuracy_score(y, p))
    y, p = rng.normal(size=n) * 10, rng.normal(size=n) * 10
    constant = np.full(n, 3.0)
    for yy, pp in ((y, p), (constant, p), (constant, constant), (y, y), (y.astype(np.float32), p.astype(int))):
        assert get_metric("mse")(yy, pp) == pytest.approx(sk.mean_squared_error(yy, pp))
        assert get_metric("rmse")(yy, pp) == pytest.approx(math.sqrt(sk.mean_squared_error(yy, pp)))
        assert get_metric("mae")(yy, pp) == pytest.approx(sk.mean_absolute_error(yy, pp))
        assert get_metric("r2")(yy, pp) == pytest.approx(sk.r2_score(yy, pp))

"""Metrics with their direction and the prediction they need; looked up by name from the spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metaray.registry import Registry


@dataclass(frozen=True)
class Metric:
    """A scoring rule.

    Attributes:
        name: registry name.
        task: "classification", "regression", or "any" (scores the features, not the target).
        greater_is_better: the metric's direction (an objective's "max" or "min": metaray.aggregates.objective_mode).
        needs: "predict" (labels or values), "proba" (class probabilities, columns in ``labels`` order),
            "score" (probabilities, or a softmax of decision_function for a ranking metric), or
            "reconstruct" (an embedder's ``reconstruction_error`` of the rows; ``fn`` takes that error).
        fn: ``fn(y_true, y_pred_or_proba, labels)`` -> float.
    """

    name: str
    task: str
    greater_is_better: bool
    needs: str
    fn: Callable[..., float]

    def __call__(self, y_true, y_pred, labels=None) -> float:
        return float(self.fn(y_true, y_pred, labels))


# The simple metrics are computed here in NumPy: scikit-learn's versions validate their inputs at length (about
# 0.3 ms a call), which is most of a short fit's cost. tests/test_metrics.py holds them equal to scikit-learn's.


def _accuracy(y, p, labels):
    return np.mean(np.asarray(y) == np.asarray(p))


def _balanced_accuracy(y, p, labels):
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # a class absent from a small evaluation set is not the user's error
        warnings.simplefilter("ignore")
        return balanced_accuracy_score(y, p)


def _f1_macro(y, p, labels):
    from sklearn.metrics import f1_score

    return f1_score(y, p, average="macro", labels=labels, zero_division=0)


def _log_loss(y, proba, labels):
    from sklearn.metrics import log_loss

    return log_loss(y, proba, labels=labels)


def _roc_auc(y, proba, labels):
    from sklearn.metrics import roc_auc_score

    if len(labels) == 2:
        return roc_auc_score(np.asarray(y) == labels[1], proba[:, 1])
    present = np.isin(labels, np.unique(y))
    if present.sum() < 2:
        return float("nan")
    # one-vs-rest over the classes present in this evaluation set, renormalised over them
    sub = proba[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    return roc_auc_score(y, sub, multi_class="ovr", labels=np.asarray(labels)[present])


def _errors(y, p) -> np.ndarray:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"predictions of shape {p.shape} for targets of shape {y.shape}")
    return y - p


def _mse(y, p, labels):
    return np.mean(_errors(y, p) ** 2)


def _rmse(y, p, labels):
    return np.sqrt(_mse(y, p, labels))


def _mae(y, p, labels):
    return np.mean(np.abs(_errors(y, p)))


def _r2(y, p, labels):
    """1 - SSE / SST; with constant targets, scikit-learn's convention: 1.0 for a perfect fit, else 0.0."""
    sse = np.sum(_errors(y, p) ** 2)
    y = np.asarray(y, dtype=float)
    sst = np.sum((y - y.mean()) ** 2)
    if sst == 0:
        return 1.0 if sse == 0 else 0.0
    return 1.0 - sse / sst


def _reconstruction(error, _unused, labels):
    return error


METRICS: Registry[Metric] = Registry("metric", "objective.metric")
for _m in (
    Metric("accuracy", "classification", True, "predict", _accuracy),
    Metric("balanced_accuracy", "classification", True, "predict", _balanced_accuracy),
    Metric("f1_macro", "classification", True, "predict", _f1_macro),
    Metric("log_loss", "classification", False, "proba", _log_loss),
    Metric("roc_auc", "classification", True, "score", _roc_auc),
    Metric("mse", "regression", False, "predict", _mse),
    Metric("rmse", "regression", False, "predict", _rmse),
    Metric("mae", "regression", False, "predict", _mae),
    Metric("r2", "regression", True, "predict", _r2),
    Metric("reconstruction_mse", "any", False, "reconstruct", _reconstruction),
):
    METRICS.register(_m.name, _m)


def get_metric(name: str, key: str = "objective.metric") -> Metric:
    return METRICS.get(name, key)

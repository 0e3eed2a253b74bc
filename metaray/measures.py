"""What metaray measures of a subset fit besides its scores: its cost in time and size, each a number a deployment
limits. Objectives (``objective.also``) and constraints (``search.constraints``) name them as they name metrics;
every one is minimised. A fit measures only those its search asks for (``Problem.measures``).

Where the table's encoding is shared (metaray.objective: the encoder is fitted once per subset for every
configuration), they are measured on the fit's model after it: the encoder's own cost, the same for every
configuration, is left out. Otherwise they are measured on the whole fitted pipeline.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: the rows whose prediction ``predict_ms_per_1000_rows`` times: the fit's scoring rows, repeated or cut to this many
TIMED_ROWS = 1000


@dataclass(frozen=True)
class Measure:
    """A measured quantity of a fit: ``unit`` for tables and plots, ``about`` for the documentation."""

    name: str
    unit: str
    about: str


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("fit_seconds", "s", "wall seconds of the fit"),
    Measure("predict_ms_per_1000_rows", "ms", "milliseconds to predict 1,000 of the fit's scoring rows (repeated "
            "or cut to 1,000), one call"),
    Measure("model_bytes", "bytes", "the fitted model's pickled size"),
    Measure("n_parameters", "", "a network's weights; a fitted scikit-learn model's learned numbers (coefficients, "
            "tree nodes, support vectors...); NaN where the model defines none"),
)}


def measure(names, est, X_scored, fit_seconds: float, rows=None) -> dict[str, float]:
    """The measures ``names`` of a fitted estimator. ``X_scored``: its scoring rows (or a callable taking row
    positions to rows: the rows a prediction is timed on); ``rows``: how many there are."""
    out: dict[str, float] = {}
    for name in names:
        if name == "fit_seconds":
            out[name] = float(fit_seconds)
        elif name == "model_bytes":
            out[name] = float(len(pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL)))
        elif name == "n_parameters":
            out[name] = n_parameters(est)
        elif name == "predict_ms_per_1000_rows":
            out[name] = _predict_ms(est, X_scored, rows)
    return out


def _predict_ms(est, take: Callable, rows: int) -> float:
    if not rows:
        return math.nan
    X = take(np.resize(np.arange(rows), TIMED_ROWS))
    call = est.predict if hasattr(est, "predict") else est.transform
    t0 = time.perf_counter()
    call(X)
    return (time.perf_counter() - t0) * 1000.0


def n_parameters(est) -> float:
    """The learned numbers of a fitted model's last step: a torch network's weights (``net_``); a tree's nodes, a
    forest's or boosting's over its trees (histogram gradient boosting's too); else every public fitted array of
    numbers (``coef_``, ``intercept_``, ``coefs_``, ``support_vectors_``...). NaN when there are none (a model that
    keeps them privately, such as k-nearest neighbours).

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> n_parameters(LogisticRegression().fit([[0, 1], [1, 0], [1, 1], [0, 0]], [0, 1, 1, 0]))
        3.0
    """
    from metaray.learners import final_estimator

    model = final_estimator(est)
    net = getattr(model, "net_", None)
    if net is not None and hasattr(net, "parameters"):
        return float(sum(p.numel() for p in net.parameters()))
    total = _count(model, depth=0)
    return float(total) if total else math.nan


def _count(model, depth: int) -> int:
    if depth > 3:
        return 0
    tree = getattr(model, "tree_", None)
    if tree is not None and hasattr(tree, "node_count"):
        return int(tree.node_count)
    predictors = getattr(model, "_predictors", None)  # histogram gradient boosting keeps its trees privately
    if predictors is not None:
        return sum(len(p.nodes) for stage in predictors for p in stage)
    members = getattr(model, "estimators_", None)
    if members is not None:
        flat = np.ravel(np.asarray(members, dtype=object)) if not isinstance(members, list) else members
        return sum(_count(m, depth + 1) for m in flat)
    total = 0
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_") or name in ("classes_", "feature_names_in_"):
            continue
        for part in value if isinstance(value, list) else (value,):
            if isinstance(part, np.ndarray) and part.dtype.kind in "fc":
                total += part.size
    return total

"""Aggregates of the K subset scores: the meta-objective is one of them, every one is reported."""

from __future__ import annotations

import math

import numpy as np

#: aggregate name -> direction relative to the metric: "same" follows the metric, "min" is always minimised.
AGGREGATES = {
    "mean": "same",
    "median": "same",
    "worst": "same",
    "best": "same",
    "min": "same",
    "max": "same",
    "cvar": "same",
    "mean_minus_std": "same",
    "std": "min",
}

#: the aggregates every results table, MLflow child run and report shows, in this order
COLUMNS = ("mean", "std", "worst", "median", "cvar", "mean_minus_std")


def aggregate(scores, *, greater_is_better: bool, alpha: float = 0.2, lam: float = 1.0) -> dict[str, float]:
    """Summarise K scores.

    ``worst``/``best`` and ``cvar`` follow the metric's direction: for a loss, the worst score is the
    largest and CVaR at ``alpha`` is the mean of the largest ``ceil(alpha*K)`` scores.
    ``mean_minus_std`` is the pessimistic side, ``mean - lam*std`` for a score and ``mean + lam*std`` for a loss.

    Example:
        >>> a = aggregate([0.9, 0.8, 1.0], greater_is_better=True, alpha=0.3)
        >>> round(a["mean"], 3), a["worst"], round(a["cvar"], 3)
        (0.9, 0.8, 0.8)
    """
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return {name: math.nan for name in AGGREGATES} | {"n": 0}
    sign = 1.0 if greater_is_better else -1.0
    ordered = np.sort(s * sign) * sign  # worst first
    tail = max(1, math.ceil(alpha * s.size))
    std = float(s.std(ddof=1)) if s.size > 1 else 0.0
    mean = float(s.mean())
    return {
        "mean": mean,
        "median": float(np.median(s)),
        "worst": float(ordered[0]),
        "best": float(ordered[-1]),
        "min": float(s.min()),
        "max": float(s.max()),
        "cvar": float(ordered[:tail].mean()),
        "mean_minus_std": mean - sign * lam * std,
        "std": std,
        "n": int(s.size),
    }


def running(scores, name: str, *, greater_is_better: bool, alpha: float = 0.2, lam: float = 1.0) -> list[float]:
    """The aggregate ``name`` of the first 1, 2, ..., K scores (the running objective, a step series in MLflow).

    Example:
        >>> running([1.0, 0.0, 0.5], "mean", greater_is_better=True)
        [1.0, 0.5, 0.5]
    """
    if name == "mean" and not any(math.isnan(v) for v in scores):  # the usual case, without K calls to aggregate
        return (np.cumsum(np.asarray(scores, dtype=float)) / np.arange(1, len(scores) + 1)).tolist()
    return [aggregate(scores[:m], greater_is_better=greater_is_better, alpha=alpha, lam=lam)[name]
            for m in range(1, len(scores) + 1)]


def objective_mode(aggregate_name: str, greater_is_better: bool) -> str:
    """Tune's ``mode`` ("max"/"min") for optimising ``aggregate_name`` of a metric."""
    if AGGREGATES[aggregate_name] == "min":
        return "min"
    return "max" if greater_is_better else "min"


def rows(scores, name: str, *, greater_is_better: bool, alpha: float = 0.2, lam: float = 1.0):
    """The aggregate ``name`` of every row of a 2-D array of scores without NaN (the bootstrap's draws, one per
    row), as ``aggregate`` computes it for one row.

    Example:
        >>> rows([[0.9, 0.8, 1.0], [0.5, 0.7, 0.6]], "worst", greater_is_better=True).tolist()
        [0.8, 0.5]
    """
    s = np.asarray(scores, dtype=float)
    k = s.shape[1]
    sign = 1.0 if greater_is_better else -1.0
    if name in ("mean", "median", "min", "max"):
        return getattr(np, name)(s, axis=1)
    if name in ("std", "mean_minus_std"):
        std = s.std(axis=1, ddof=1) if k > 1 else np.zeros(len(s))
        return std if name == "std" else s.mean(axis=1) - sign * lam * std
    ordered = np.sort(s * sign, axis=1) * sign  # worst first
    if name == "worst":
        return ordered[:, 0]
    if name == "best":
        return ordered[:, -1]
    if name == "cvar":
        return ordered[:, : max(1, math.ceil(alpha * k))].mean(axis=1)
    raise KeyError(name)

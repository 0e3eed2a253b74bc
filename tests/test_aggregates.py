"""metaray.aggregates: the K subset scores summed up (the meta-objective is one aggregate, every one is reported), in
the metric's direction; the running objective; the row-wise aggregates the bootstrap draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metaray.aggregates import AGGREGATES, COLUMNS, aggregate, objective_mode, rows, running


def test_aggregates_follow_the_metric_direction():
    scores = [0.9, 0.7, 0.8, 1.0]
    up = aggregate(scores, greater_is_better=True, alpha=0.5, lam=2.0)
    assert up["mean"] == pytest.approx(0.85) and up["worst"] == 0.7 and up["best"] == 1.0
    assert up["cvar"] == pytest.approx(0.75)  # mean of the two lowest
    assert up["mean_minus_std"] == pytest.approx(0.85 - 2 * np.std(scores, ddof=1))
    down = aggregate(scores, greater_is_better=False, alpha=0.5, lam=2.0)
    assert down["worst"] == 1.0 and down["cvar"] == pytest.approx(0.95)
    assert down["mean_minus_std"] == pytest.approx(0.85 + 2 * np.std(scores, ddof=1))
    assert aggregate([0.5], greater_is_better=True)["std"] == 0.0
    assert set(AGGREGATES) <= set(up) and set(COLUMNS) <= set(AGGREGATES)
    assert objective_mode("std", True) == "min" and objective_mode("mean", False) == "min"
    assert objective_mode("cvar", True) == "max" and objective_mode("std", False) == "min"


def test_missing_scores_are_left_out_and_no_score_is_nan():
    some = aggregate([0.9, math.nan, 0.7], greater_is_better=True)
    assert some["n"] == 2 and some["mean"] == pytest.approx(0.8) and some["worst"] == 0.7
    none = aggregate([math.nan, math.nan], greater_is_better=True)
    assert none["n"] == 0 and all(math.isnan(none[name]) for name in AGGREGATES)
    assert aggregate([], greater_is_better=False)["n"] == 0


@pytest.mark.parametrize("k, alpha, tail", [(10, 0.2, 2), (10, 0.25, 3), (3, 0.2, 1), (5, 1.0, 5)])
def test_cvar_is_the_mean_of_the_worst_ceil_alpha_k_scores(k, alpha, tail):
    scores = np.random.default_rng(k).normal(0.8, 0.05, k)
    worst_first = np.sort(scores)
    assert aggregate(scores, greater_is_better=True, alpha=alpha)["cvar"] == pytest.approx(worst_first[:tail].mean())
    assert aggregate(scores, greater_is_better=False, alpha=alpha)["cvar"] == pytest.approx(
        np.sort(scores)[::-1][:tail].mean())


@pytest.mark.parametrize("name", ["mean", "cvar", "worst", "std"])
def test_the_running_objective_is_the_aggregate_of_the_first_m_scores(name):
    scores = [0.9, 0.6, 0.8, math.nan, 0.7] if name != "mean" else [0.9, 0.6, 0.8, 0.7]
    got = running(scores, name, greater_is_better=True, alpha=0.5)
    want = [aggregate(scores[:m], greater_is_better=True, alpha=0.5)[name] for m in range(1, len(scores) + 1)]
    assert got == pytest.approx(want)
    assert running([1.0, 0.0, 0.5], "mean", greater_is_better=True) == [1.0, 0.5, 0.5]


@pytest.mark.parametrize("name", sorted(AGGREGATES))
def test_the_bootstraps_aggregates_are_the_tables(name):
    S = np.random.default_rng(1).normal(0.8, 0.05, (6, 7))
    for gib in (True, False):
        want = [aggregate(s, greater_is_better=gib, alpha=0.3, lam=0.5)[name] for s in S]
        assert rows(S, name, greater_is_better=gib, alpha=0.3, lam=0.5) == pytest.approx(want)

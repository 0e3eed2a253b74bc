"""Comparing two configurations over the subsets they share.

The K scores of a configuration come from overlapping subsets, so they are correlated: both tests correct the
variance by ``1/K + n_test/n_train`` (Nadeau and Bengio 2003) instead of ``1/K``, and the Bayesian one adds a region
of practical equivalence so that "equivalent" can be shown. ``VersusBest`` applies them to a results table
(docs/statistics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def paired_t(a, b, *, n_train: int | None = None, n_test: int | None = None,
             greater_is_better: bool = True) -> tuple[float, float]:
    """One-sided paired t-test of "``a`` is worse than ``b``" over their common subsets (aligned arrays of scores).

    With ``n_train`` and ``n_test`` (the rows each fit was trained and scored on), the variance is corrected for
    the subsets' overlap (Nadeau and Bengio); without, it is the plain paired t-test. Returns ``(t, p)``: p is the
    probability of a difference at least this much in ``b``'s favour if the two were equally good. A frequentist
    test cannot show equivalence: a large p means "not significantly worse", nothing more.

    Example:
        >>> a, b = [0.90, 0.91, 0.89, 0.92, 0.90], [0.92, 0.93, 0.91, 0.94, 0.92]
        >>> round(paired_t(a, b)[1], 6) < 0.001                              # every subset says b is better
        True
        >>> round(paired_t(a, b, n_train=120, n_test=30)[1], 3) < 0.05       # still, with the overlap corrected
        True
    """
    from scipy import stats

    d = -_differences(a, b, greater_is_better)  # > 0 where b is better
    k = d.size
    if k < 2:
        return math.nan, math.nan
    mean, var = float(d.mean()), float(d.var(ddof=1))
    factor = 1.0 / k + _ratio(n_train, n_test)
    if var == 0.0:  # the same difference on every subset
        return (math.inf, 0.0) if mean > 0 else (-math.inf if mean < 0 else 0.0, 1.0)
    t = mean / math.sqrt(var * factor)
    return t, float(stats.t.sf(t, df=k - 1))


def bayesian_correlated_t(a, b, *, rope: float, n_train: int | None = None, n_test: int | None = None,
                          greater_is_better: bool = True) -> tuple[float, float, float]:
    """Bayesian correlated t-test (Corani and Benavoli 2015; Benavoli et al. 2017, "Time for a change") of ``a``
    against ``b`` over their common subsets, with a region of practical equivalence of half-width ``rope`` in the
    metric's units.

    The posterior of the mean difference is a Student t with K - 1 degrees of freedom, centred on the observed mean
    difference, with scale ``sd * sqrt(1/K + n_test/n_train)``: the same overlap correction as ``paired_t``.
    Returns ``(P(a worse), P(equivalent), P(a better))``, summing to 1.

    Example:
        >>> a, b = [0.900, 0.905, 0.895, 0.902], [0.901, 0.903, 0.897, 0.900]
        >>> worse, same, better = bayesian_correlated_t(a, b, rope=0.01, n_train=120, n_test=30)
        >>> same > 0.95                                      # within a point of accuracy of each other
        True
    """
    from scipy import stats

    d = _differences(a, b, greater_is_better)  # > 0 where a is better
    k = d.size
    if k < 2:
        return math.nan, math.nan, math.nan
    mean, var = float(d.mean()), float(d.var(ddof=1))
    if var == 0.0:  # the same difference on every subset: the posterior is that difference
        return float(mean < -rope), float(-rope <= mean <= rope), float(mean > rope)
    scale = math.sqrt(var * (1.0 / k + _ratio(n_train, n_test)))
    below, above = stats.t.cdf([-rope, rope], df=k - 1, loc=mean, scale=scale)
    return float(below), float(above - below), float(1.0 - above)


def paired_bootstrap(a, b, aggregate: str, *, rope: float, n_train: int | None = None, n_test: int | None = None,
                     greater_is_better: bool = True, better: str = "max", alpha: float = 0.2, lam: float = 1.0,
                     draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap of the difference in ``aggregate`` (any of metaray.aggregates; for those that are not means,
    where no t-test applies) over the common subsets, the same resampled subsets for ``a`` and ``b``. Resampling
    overlapping subsets is over-confident, so the spread is widened by the overlap correction's
    ``sqrt(1 + K * n_test/n_train)``. ``better``: the aggregate's own direction ("max"/"min"; ``std`` is minimised
    whatever the metric).

    Returns ``(p, P(equivalent or better))``: the shares of draws in which ``a`` is at least as good as ``b``, and
    worse by no more than ``rope``.
    """
    from metaray.aggregates import rows
    from metaray.subsets import rng_for

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    k = a.size
    if k < 2:
        return math.nan, math.nan
    sign = 1.0 if better == "max" else -1.0
    agg = dict(greater_is_better=greater_is_better, alpha=alpha, lam=lam)
    observed = sign * float(rows(a[None], aggregate, **agg)[0] - rows(b[None], aggregate, **agg)[0])
    idx = rng_for(seed, _BOOTSTRAP).integers(0, k, size=(draws, k))
    diff = sign * (rows(a[idx], aggregate, **agg) - rows(b[idx], aggregate, **agg))
    diff = observed + math.sqrt(1.0 + k * _ratio(n_train, n_test)) * (diff - diff.mean())
    return float(np.mean(diff >= -1e-12)), float(np.mean(diff >= -rope))


_BOOTSTRAP = 0xB007


def _differences(a, b, greater_is_better: bool) -> np.ndarray:
    """``a - b`` on the subsets both have scores for, signed so that > 0 is where ``a`` is better."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    return (a - b)[keep] * (1.0 if greater_is_better else -1.0)


def _ratio(n_train, n_test) -> float:
    return n_test / n_train if n_train and n_test else 0.0


#: the tests ``objective.tie_test`` chooses between
TIE_TESTS = ("bayesian", "t_test")


@dataclass(frozen=True)
class VersusBest:
    """Which configurations are tied with the best, from their per-subset scores (the same subsets and seeds).

    For the mean, ``p_vs_best`` is the corrected resampled t-test's one-sided p that a configuration is worse than
    the best, and ``p_not_worse`` the Bayesian correlated t-test's P(equivalent or better) within ``rope``. For
    the other aggregates both come from the paired bootstrap. Tied: ``p_not_worse >= confidence`` (``bayesian``),
    or not significantly worse, ``p_vs_best >= 1 - confidence`` (``t_test``: a frequentist test cannot show
    equivalence, only the lack of evidence of a difference).

    Args:
        aggregate: the meta-objective's aggregate; better: its direction ("max"/"min").
        greater_is_better: the metric's direction; alpha, lam: the aggregate's options.
        n_train, n_test: rows a fit trains on and is scored on (the overlap correction).
    """

    aggregate: str
    better: str
    greater_is_better: bool
    n_train: int
    n_test: int
    rope: float = 0.01
    confidence: float = 0.95
    test: str = "bayesian"
    alpha: float = 0.2
    lam: float = 1.0
    seed: int = 0

    @property
    def method(self) -> str:
        """How ties are decided, in words, for the end of a search and the report."""
        if self.aggregate != "mean":
            how = (f"P(equivalent within ROPE {self.rope:g} or better) >= {self.confidence:g}" if self.test ==
                   "bayesian" else f"not significantly worse at {self.confidence:g}")
            return (f"paired bootstrap over subsets of the {self.aggregate} (spread widened by the overlap "
                    f"correction), {how}")
        if self.test == "bayesian":
            return (f"Bayesian correlated t-test, P(equivalent within ROPE {self.rope:g} or better) >= "
                    f"{self.confidence:g}")
        return f"corrected resampled t-test (Nadeau-Bengio), not significantly worse at {self.confidence:g}"

    def compare(self, scores, best: int, comparable=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_vs_best, p_not_worse, tied)`` of every row of ``scores`` (configurations x subsets, NaN where a
        subset was not fitted) against row ``best``, over the subsets each shares with it. Rows not
        ``comparable`` (failed, or stopped at a lower fidelity) get NaN and are not tied; the best is tied."""
        scores = np.asarray(scores, dtype=float)
        n = len(scores)
        comparable = np.ones(n, bool) if comparable is None else np.asarray(comparable, bool)
        p, sure = np.full(n, math.nan), np.full(n, math.nan)
        sizes = dict(n_train=self.n_train, n_test=self.n_test, greater_is_better=self.greater_is_better)
        for i in np.flatnonzero(comparable):
            a, b = scores[i], scores[best]
            if self.aggregate == "mean":
                p[i] = paired_t(a, b, **sizes)[1]
                worse, same, better = bayesian_correlated_t(a, b, rope=self.rope, **sizes)
                sure[i] = same + better
            else:
                p[i], sure[i] = paired_bootstrap(a, b, self.aggregate, rope=self.rope, better=self.better,
                                                 alpha=self.alpha, lam=self.lam, seed=self.seed, **sizes)
        with np.errstate(invalid="ignore"):
            tied = sure >= self.confidence if self.test == "bayesian" else p >= 1.0 - self.confidence
        tied[best] = True
        return p, sure, tied

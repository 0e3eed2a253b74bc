"""Comparing two configurations over the subsets they share.

Subsets of 80 % of the rows overlap heavily, so the K scores of one configuration are correlated and a plain paired
t-test over them is over-confident. The corrected resampled t-test of Nadeau and Bengio (2003, "Inference for the
Generalization Error") multiplies the variance term by ``1/K + n_test/n_train`` instead of ``1/K``.
"""

from __future__ import annotations

import math

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

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = (b - a)[keep] * (1.0 if greater_is_better else -1.0)  # > 0 where b is better
    k = d.size
    if k < 2:
        return math.nan, math.nan
    mean, var = float(d.mean()), float(d.var(ddof=1))
    factor = 1.0 / k + (n_test / n_train if n_train and n_test else 0.0)
    if var == 0.0:  # the same difference on every subset
        return (math.inf, 0.0) if mean > 0 else (-math.inf if mean < 0 else 0.0, 1.0)
    t = mean / math.sqrt(var * factor)
    return t, float(stats.t.sf(t, df=k - 1))

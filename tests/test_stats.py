import math

import numpy as np
import pytest
from scipy import stats as sp

from metaray.stats import paired_t


@pytest.mark.parametrize("seed", range(4))
def test_the_plain_paired_t_test_is_scipys_and_the_correction_only_widens_it(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.90, 0.02, 10)
    b = a + rng.normal(0.01, 0.01, 10)
    t, p = paired_t(a, b)
    ref = sp.ttest_rel(b, a, alternative="greater")
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    t_corr, p_corr = paired_t(a, b, n_train=120, n_test=30)
    assert abs(t_corr) < abs(t) and (p_corr > p if t > 0 else p_corr < p)
    # the factor 1/K + n_test/n_train of Nadeau and Bengio
    assert t_corr == pytest.approx(t * math.sqrt((1 / 10) / (1 / 10 + 30 / 120)))


def test_direction_missing_scores_and_identical_configurations():
    a, b = [0.2, 0.3, 0.25, 0.28], [0.1, 0.2, 0.16, 0.2]  # losses: b is better
    assert paired_t(a, b, greater_is_better=False)[1] < 0.05 and paired_t(a, b)[1] > 0.95
    assert paired_t([0.9, math.nan, 0.8], [0.95, 0.9, 0.85])[0] == math.inf  # the common subsets only
    assert paired_t([0.9, 0.8], [0.9, 0.8]) == (0.0, 1.0) and math.isnan(paired_t([0.9], [0.8])[1])

"""metaray.stats: the paired t-test with the overlap correction, the Bayesian correlated t-test, the paired bootstrap
and the comparison of every configuration with the best. (Racing's use of the bound is tested in test_schedulers.py,
the bootstrap's row-wise aggregates in test_aggregates.py.)"""

import math

import numpy as np
import pytest
from scipy import stats as sp

from metaray.stats import VersusBest, bayesian_correlated_t, paired_bootstrap, paired_t


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


# the Bayesian correlated t-test, the paired bootstrap and the comparison with the best ------------------------


@pytest.mark.parametrize("seed", range(3))
def test_the_bayesian_test_is_the_corrected_t_posterior(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.90, 0.02, 8)
    b = a + rng.normal(0.005, 0.01, 8)
    worse, same, better = bayesian_correlated_t(a, b, rope=0.01, n_train=100, n_test=25)
    assert worse + same + better == pytest.approx(1.0) and min(worse, same, better) >= 0
    # without a ROPE, P(a worse) is the corrected one-sided p of "b worse than a": the same t, read the other way
    assert bayesian_correlated_t(a, b, rope=0.0, n_train=100, n_test=25)[0] == pytest.approx(
        paired_t(b, a, n_train=100, n_test=25)[1])
    # the posterior's scale, by hand
    d = a - b
    scale = d.std(ddof=1) * math.sqrt(1 / 8 + 25 / 100)
    assert worse == pytest.approx(sp.t.cdf(-0.01, 7, loc=d.mean(), scale=scale))


def test_equivalence_needs_evidence_and_the_rope_gives_it():
    a = np.array([0.900, 0.905, 0.895, 0.902, 0.899, 0.901])
    b = a + np.array([0.001, -0.002, 0.002, 0.0, -0.001, 0.001])  # the same configuration, within noise
    assert bayesian_correlated_t(a, b, rope=0.01, n_train=120, n_test=30)[1] > 0.95
    assert bayesian_correlated_t(a, b, rope=0.0001, n_train=120, n_test=30)[1] < 0.5  # a tiny ROPE: no evidence
    worse, same, better = bayesian_correlated_t(a - 0.05, b, rope=0.01)
    assert worse > 0.99  # five points worse on every subset
    assert bayesian_correlated_t(a, a, rope=0.01) == (0.0, 1.0, 0.0)
    assert bayesian_correlated_t([0.2, 0.3, 0.25], [0.1, 0.2, 0.15], rope=0.01, greater_is_better=False)[0] > 0.9


def test_paired_bootstrap_for_aggregates_that_are_not_means():
    rng = np.random.default_rng(2)
    a = rng.normal(0.9, 0.02, 10)
    assert paired_bootstrap(a, a, "worst", rope=0.01) == (1.0, 1.0)
    p, sure = paired_bootstrap(a - 0.05, a, "cvar", rope=0.01, n_train=100, n_test=25)
    assert p < 0.01 and sure < 0.01
    # a loss, minimised: lower scores are better
    p, _ = paired_bootstrap(a - 0.05, a, "median", rope=0.01, greater_is_better=False, better="min")
    assert p == 1.0
    # std is minimised whatever the metric: a steadier configuration is not worse
    steady = np.full(10, 0.9) + rng.normal(0, 0.001, 10)
    assert paired_bootstrap(steady, a, "std", rope=0.001, better="min")[0] > 0.9
    # the overlap correction widens the draws: a small difference is less sure
    b = a + rng.normal(0.004, 0.004, 10)
    assert paired_bootstrap(a, b, "median", rope=0.0, n_train=100, n_test=25)[0] > \
        paired_bootstrap(a, b, "median", rope=0.0)[0]


@pytest.mark.parametrize("test", ["bayesian", "t_test"])
def test_versus_best_marks_the_tied_set(test):
    rng = np.random.default_rng(3)
    best = rng.normal(0.9, 0.01, 8)
    scores = np.vstack([best, best + rng.normal(0, 0.001, 8), best - 0.08, np.full(8, np.nan),
                        np.r_[best[:3] + 0.0005, [np.nan] * 5]])  # the last: stopped after 3 subsets
    vs = VersusBest("mean", "max", True, n_train=100, n_test=25, rope=0.01, test=test)
    p, sure, tied = vs.compare(scores, 0, comparable=[True, True, True, False, True])
    assert tied.tolist() == [True, True, False, False, True]
    assert p[0] == 1.0 and p[2] < 0.01 and math.isnan(p[3]) and math.isnan(sure[3])
    assert ("Bayesian" in vs.method) == (test == "bayesian")
    boot = VersusBest("worst", "max", True, n_train=100, n_test=25, rope=0.01, test=test)
    assert boot.compare(scores, 0)[2].tolist()[:3] == [True, True, False] and "bootstrap" in boot.method

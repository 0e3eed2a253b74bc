import numpy as np
import pytest

from metaray.errors import SpecError
from metaray.spec import SubsetSpec, load_spec
from metaray.subsets import make_plan

Y = np.repeat([0, 1, 2], 40)


def plan(y=Y, task="classification", seed=0, **subsets):
    return make_plan(y, task, SubsetSpec(**subsets), seed=seed)


def test_subsets_are_deterministic_in_seed_and_k():
    a, b = plan(k=5), plan(k=5)
    for x, y in zip(a.train, b.train, strict=True):
        np.testing.assert_array_equal(x, y)
    longer = plan(k=8)  # subset k does not depend on how many subsets there are
    for k in range(5):
        np.testing.assert_array_equal(a.train[k], longer.train[k])
    other = plan(k=5, seed=1)
    assert any(not np.array_equal(x, y) for x, y in zip(a.train, other.train, strict=True))


def test_holdout_rows_are_never_trained_on():
    p = plan(k=6, protocol="holdout")
    assert len(p.test) == 24
    for train, held in zip(p.train, p.evaluate, strict=True):
        assert not np.intersect1d(train, p.test).size
        np.testing.assert_array_equal(held, p.test)
    assert set(np.unique(Y[p.test])) == {0, 1, 2}  # stratified split


def test_out_of_subset_scores_on_the_complement():
    p = plan(k=3, protocol="out_of_subset", fraction=0.5)
    for train, held in zip(p.train, p.evaluate, strict=True):
        assert len(train) == 60 and len(held) == 60
        assert not np.intersect1d(train, held).size


def test_full_protocol_scores_on_every_row():
    p = plan(k=2, protocol="full")
    assert all(len(e) == len(Y) for e in p.evaluate)


def test_bootstrap_draws_with_replacement():
    p = plan(k=3, sampler="bootstrap", protocol="out_of_subset")
    assert all(len(t) == len(Y) and len(np.unique(t)) < len(t) for t in p.train)
    assert all(len(e) > 0 for e in p.evaluate)


def test_stratified_keeps_every_class_in_proportion():
    y = np.array([0] * 90 + [1] * 10)
    p = plan(y=y, k=4, sampler="stratified", fraction=0.3, protocol="full")
    for t in p.train:
        assert np.bincount(y[t]).tolist() == [27, 3]


def test_kfold_partitions_the_pool():
    p = plan(k=4, sampler="kfold", protocol="out_of_subset")
    folds = np.concatenate(p.evaluate)
    assert sorted(folds.tolist()) == list(range(len(Y)))
    for t, e in zip(p.train, p.evaluate, strict=True):
        assert len(np.union1d(t, e)) == len(Y)
        assert set(Y[e]) == {0, 1, 2}


def test_plain_subsample_keeps_every_class():
    y = np.array([0] * 57 + [1] * 3)
    p = plan(y=y, k=10, fraction=0.2, protocol="full")
    assert all(set(y[t]) == {0, 1} for t in p.train)


def test_errors():
    with pytest.raises(SpecError, match=r"^subsets.fraction: stratified subsets of 2 rows cannot hold all 3 classes"):
        plan(y=np.repeat([0, 1, 2], 5), sampler="stratified", fraction=0.1, protocol="full")
    with pytest.raises(SpecError, match=r"^subsets.fraction: .*gives empty subsets"):
        plan(fraction=0.001)
    with pytest.raises(SpecError, match=r"^subsets.fraction: protocol 'out_of_subset' needs rows left out"):
        plan(fraction=1.0, protocol="out_of_subset")
    with pytest.raises(SpecError, match=r"^subsets.sampler: the stratified sampler needs a classification task"):
        plan(y=np.linspace(0, 1, 50), task="regression", sampler="stratified")
    with pytest.raises(SpecError, match=r"^subsets.fraction: subsample subsets of 1 rows cannot hold all 2 classes"):
        plan(y=np.array([0] * 98 + [1] * 2), fraction=0.01, protocol="full")
    with pytest.raises(SpecError, match=r"^subsets.sampler: subsets of 2 rows keep missing a class.*stratified"):
        plan(y=np.array([0] * 9999 + [1]), fraction=0.0002, protocol="full")
    with pytest.raises(SpecError, match=r"^subsets.k: kfold needs at least 2 folds"):
        load_spec({"name": "t", "data": {"dataset": "iris"}, "subsets": {"sampler": "kfold", "k": 1}})


def test_plain_subsamples_that_miss_a_class_are_redrawn_from_the_same_stream():
    y = np.array([0] * 97 + [1] * 3)  # a 20-row subsample misses class 1 about half the time
    a, b = plan(y=y, k=10, fraction=0.2, protocol="full"), plan(y=y, k=10, fraction=0.2, protocol="full")
    assert all(set(y[t]) == {0, 1} for t in a.train)
    assert all(np.array_equal(x, z) for x, z in zip(a.train, b.train, strict=True))  # still deterministic

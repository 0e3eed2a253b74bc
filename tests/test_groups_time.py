"""Groups kept on one side of every fit, and the time sampler (forward chaining): metaray.subsets.make_plan's
``groups`` and ``order``. No Ray: plans are checked as index arrays, and the leak test fits scikit-learn directly."""

import hashlib

import numpy as np
import pytest

from metaray.errors import SpecError
from metaray.spec import SubsetSpec, load_spec
from metaray.subsets import holdout_split, make_plan

# -- the None defaults change nothing -------------------------------------------------------------------------------

#: digests of the plans make_plan drew before groups and order existed (computed with that code, 12 digests over
#: 3 targets x 3 seeds each). A change here changes every user's subsets; so does a NumPy or scikit-learn release that
#: changes Generator streams or train_test_split (then recompute these and say so in the release notes).
BEFORE_GROUPS = {
    "subsample/holdout": "36e0dbaa9f287e25",
    "subsample/out_of_subset": "2476eaa922b78f5e",
    "subsample/full": "faa91018c16176db",
    "bootstrap/holdout": "7aa8aa3e32f5adc2",
    "bootstrap/out_of_subset": "e6001840fea9bf6e",
    "bootstrap/full": "98502ba54e49328d",
    "stratified/holdout": "7fb765958e8377ec",
    "stratified/out_of_subset": "f7076f93d7381460",
    "stratified/full": "ae2b8394fdb95ce9",
    "kfold/holdout": "6b2c83a4c51e60bf",
    "kfold/out_of_subset": "5b91175403e79198",
    "kfold/full": "ca3749247b367280",
}
TARGETS = {"balanced": (np.repeat([0, 1, 2], 40), "classification"),
           "imbalanced": (np.array([0] * 90 + [1] * 10), "classification"),
           "regression": (np.linspace(0, 1, 77), "regression")}


def _digest(sampler, protocol, **extra):
    h = hashlib.sha256()
    for y, task in TARGETS.values():
        if sampler == "stratified" and task == "regression":
            continue
        for seed in (0, 1, 7):
            p = make_plan(y, task, SubsetSpec(sampler=sampler, k=4, protocol=protocol), seed=seed, test_size=0.25,
                          **extra)
            assert p.sampler == sampler and p.protocol == protocol
            for a in (*p.train, *p.evaluate, p.test):
                h.update(np.asarray(a, dtype=np.int64).tobytes())
                h.update(b"|")
    return h.hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(BEFORE_GROUPS))
def test_without_groups_and_order_every_plan_is_the_one_drawn_before(case):
    sampler, protocol = case.split("/")
    assert _digest(sampler, protocol) == BEFORE_GROUPS[case]
    assert _digest(sampler, protocol, groups=None, order=None) == BEFORE_GROUPS[case]


def test_order_is_not_read_by_other_samplers():
    y = TARGETS["balanced"][0]
    a = make_plan(y, "classification", SubsetSpec(k=3), seed=2)
    b = make_plan(y, "classification", SubsetSpec(k=3), seed=2, order=np.arange(len(y))[::-1])
    assert all(np.array_equal(x, z) for x, z in zip(a.train + a.evaluate, b.train + b.evaluate, strict=False))


# -- groups -----------------------------------------------------------------------------------------------------------


def _grouped_table(seed=0, n_groups=40):
    """Groups of 1 to 12 rows with text labels, three classes that mostly follow the group."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 13, n_groups)
    labels = np.array([f"g{i:02d}" for i in range(n_groups)])
    groups = np.repeat(labels, sizes)
    base = rng.integers(0, 3, n_groups)
    y = np.repeat(base, sizes)
    flip = rng.random(len(y)) < 0.2
    y[flip] = rng.integers(0, 3, flip.sum())
    perm = rng.permutation(len(y))  # groups need not be contiguous
    return y[perm], groups[perm]


def _groups_of(groups, rows):
    return set(groups[rows].tolist())


SAMPLER_TASKS = [("subsample", "classification"), ("subsample", "regression"), ("stratified", "classification"),
                 ("kfold", "classification"), ("kfold", "regression")]


@pytest.mark.parametrize("protocol", ["holdout", "out_of_subset"])
@pytest.mark.parametrize("sampler,task", SAMPLER_TASKS)
def test_no_group_is_on_both_sides_of_a_fit_or_of_the_holdout_split(sampler, task, protocol):
    y, groups = _grouped_table()
    if task == "regression":
        y = y + np.random.default_rng(1).normal(size=len(y))
    n, biggest = len(y), max(np.unique(groups, return_counts=True)[1])
    for seed in (0, 1, 2):
        p = make_plan(y, task, SubsetSpec(sampler=sampler, k=4, protocol=protocol), seed=seed, test_size=0.25,
                      groups=groups)
        assert p.k == 4 and p.sampler == sampler
        pool = np.setdiff1d(np.arange(n), p.test)
        if protocol == "holdout":
            assert not _groups_of(groups, pool) & _groups_of(groups, p.test)
            assert abs(len(p.test) - 0.25 * n) <= biggest  # nearest test_size in rows, whole groups
            if task == "classification":
                assert set(y[p.test]) == set(y[pool]) == {0, 1, 2}
        for train, held in zip(p.train, p.evaluate, strict=False):
            assert not _groups_of(groups, train) & _groups_of(groups, held)
            assert np.isin(train, pool).all() and len(np.unique(train)) == len(train)
            if protocol == "holdout":
                np.testing.assert_array_equal(held, p.test)
            else:  # scored on every pool row whose group the subset does not hold
                np.testing.assert_array_equal(np.union1d(train, held), pool)
            if task == "classification":
                assert set(y[train]) == {0, 1, 2}
            if sampler != "kfold":
                assert abs(len(train) - 0.8 * len(pool)) <= biggest * (3 if sampler == "stratified" else 1)


def test_grouped_kfold_puts_each_group_in_one_fold_and_balances_rows_and_classes():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, 60)
    groups = np.repeat(np.arange(60), sizes)
    y = np.repeat(np.arange(60) % 2, sizes)  # pure groups, half of each class
    p = make_plan(y, "classification", SubsetSpec(sampler="kfold", k=5), seed=0, groups=groups)
    folds = p.evaluate
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(y)))
    assert all(not _groups_of(groups, a) & _groups_of(groups, b) for i, a in enumerate(folds) for b in folds[i + 1:])
    rows = [len(f) for f in folds]
    assert max(rows) - min(rows) <= 2 * sizes.max(), rows  # greedy per class: within a group per class
    for c in (0, 1):
        per_class = [int((y[f] == c).sum()) for f in folds]
        assert max(per_class) - min(per_class) <= sizes.max(), per_class
    with pytest.raises(SpecError, match=r"^subsets.k: more folds than the 60 groups in the pool; allowed: \[2, 60\]"):
        make_plan(y, "classification", SubsetSpec(sampler="kfold", k=61), seed=0, groups=groups)


def test_grouped_plans_are_deterministic_in_seed_and_subset_index():
    y, groups = _grouped_table()
    for sampler in ("subsample", "stratified", "kfold"):
        def plan(k=4, seed=0, s=sampler):
            return make_plan(y, "classification", SubsetSpec(sampler=s, k=k, protocol="holdout"), seed=seed,
                             groups=groups)

        a, b, other = plan(), plan(), plan(seed=1)
        assert all(np.array_equal(x, z) for x, z in zip(a.train + (a.test,), b.train + (b.test,), strict=False))
        assert any(not np.array_equal(x, z) for x, z in zip(a.train, other.train, strict=False))
        if sampler != "kfold":  # subset i depends on (seed, i) only, as without groups
            longer = plan(k=7)
            assert all(np.array_equal(a.train[i], longer.train[i]) for i in range(4))


def test_group_labels_of_any_type_give_the_plan_of_their_partition():
    y, groups = _grouped_table()
    as_int = np.unique(groups, return_inverse=True)[1] * 7 + 100
    as_obj = np.array([None if g == "g03" else (float(g[1:]) if g < "g10" else g) for g in groups], dtype=object)
    plans = [make_plan(y, "classification", SubsetSpec(k=3, protocol="holdout"), seed=4, groups=g)
             for g in (groups, as_int, as_obj, groups.astype(object))]
    for q in plans[1:]:
        for x, z in zip(plans[0].train + (plans[0].test,), q.train + (q.test,), strict=False):
            np.testing.assert_array_equal(x, z)
    # a missing label (None, NaN) is a group of its own: its rows move together
    p = make_plan(y, "classification", SubsetSpec(k=3), seed=4, groups=as_obj)
    missing = np.flatnonzero([g is None for g in as_obj])
    assert all(np.isin(missing, t).all() or not np.isin(missing, t).any() for t in p.train)


def test_grouped_subsets_that_miss_a_class_are_redrawn_from_the_same_stream():
    groups = np.repeat(np.arange(50), 4)
    y = np.zeros(200, dtype=int)
    y[groups == 7] = 1  # class 1 lives in one group of 50: a 20 % draw of groups misses it most of the time
    y[groups == 31] = 1
    spec = SubsetSpec(k=10, fraction=0.2, protocol="out_of_subset")
    a = make_plan(y, "classification", spec, seed=0, groups=groups)
    b = make_plan(y, "classification", spec, seed=0, groups=groups)
    assert all(set(y[t]) == {0, 1} for t in a.train)
    assert all(np.array_equal(x, z) for x, z in zip(a.train, b.train, strict=False))
    assert all(len(t) == 40 for t in a.train)


def test_what_groups_refuse():
    y, groups = _grouped_table()

    def plan(g=groups, yy=y, task="classification", **subsets):
        return make_plan(yy, task, SubsetSpec(**subsets), seed=0, groups=g)

    with pytest.raises(SpecError, match=r"^subsets.groups: protocol 'full' scores every fit on its own training rows "
                       r"too, so it cannot keep a group off both sides; allowed: 'protocol: out_of_subset', "
                       r"'protocol: holdout'; got: \{'subsets.groups': None, 'subsets.protocol': 'full'\}$"):
        plan(protocol="full")
    for sampler in ("bootstrap", "time"):
        with pytest.raises(SpecError, match=r"^subsets.sampler: groups are kept together by drawing whole groups; "
                           rf"allowed: 'subsample', 'stratified', 'kfold'; got: '{sampler}'$"):
            plan(sampler=sampler)
    one = np.array(["a"] * len(y))
    with pytest.raises(SpecError, match=r"^subsets.groups: a hold-out split of whole groups needs at least 2 groups, "
                       r"but there are 1; allowed: >= 2 groups; got: '1 group'$"):
        plan(g=one, protocol="holdout")
    with pytest.raises(SpecError, match=r"^subsets.groups: scoring each fit on groups out of its subset needs at least "
                       r"2 groups, but there are 1"):
        plan(g=one)
    two = np.array(["a", "b"] * (len(y) // 2) + ["a"] * (len(y) % 2))
    with pytest.raises(SpecError, match=r"^subsets.k: more folds than the 2 groups in the pool; allowed: \[2, 2\]; "
                       r"got: 3$"):
        plan(g=two, sampler="kfold", k=3)
    with pytest.raises(SpecError, match=r"^subsets.k: more folds than the 1 groups in the pool"):
        plan(g=two, sampler="kfold", k=2, protocol="holdout")  # the hold-out took one of the two groups
    with pytest.raises(SpecError, match=r"^subsets.groups: needs one group label per row of the \d+ rows"):
        plan(g=groups[:-1])
    with pytest.raises(SpecError, match=r"^subsets.sampler: the stratified sampler needs a classification task"):
        plan(yy=np.linspace(0, 1, len(y)), task="regression", sampler="stratified")
    yk = np.repeat([0, 1], [90, 10])  # class 1 lives in one group: the fold holding it trains without it
    gk = np.concatenate([np.repeat(np.arange(9), 10), [9] * 10])
    with pytest.raises(SpecError, match=r"^subsets.groups: every group of class 1 falls in fold \d, so fit "
                       r"\d never trains on it; allowed: each class in groups of 2 folds or more"):
        make_plan(yk, "classification", SubsetSpec(sampler="kfold", k=3), seed=0, groups=gk)
    pure = np.repeat([0, 1], 50)  # two groups, one class each: a half of the groups is one class
    with pytest.raises(SpecError, match=r"^subsets.groups: subsample subsets of whole groups keep missing a class "
                       r"after 100 draws; use the stratified sampler or a larger fraction"):
        make_plan(pure, "classification", SubsetSpec(fraction=0.5), seed=0, groups=pure)
    with pytest.raises(SpecError, match=r"^subsets.groups: protocol 'out_of_subset' needs groups left out of each "
                       r"subset, but subset 0 takes every group"):
        plan(fraction=1.0)


def test_grouped_holdout_split_keeps_groups_whole_and_every_class_on_both_sides():
    y, groups = _grouped_table(seed=5)
    pool, test = holdout_split(y, "classification", 0.3, seed=2, groups=groups)
    assert not _groups_of(groups, pool) & _groups_of(groups, test)
    assert len(pool) + len(test) == len(y) and set(y[pool]) == set(y[test]) == {0, 1, 2}
    again = holdout_split(y, "classification", 0.3, seed=2, groups=groups)
    np.testing.assert_array_equal(test, again[1])
    plain = holdout_split(y, "classification", 0.3, seed=2)  # without groups: the split it always was
    assert len(plain[1]) == round(0.3 * len(y))


# -- time -------------------------------------------------------------------------------------------------------------


def _time_plan(order, k=4, protocol="out_of_subset", y=None, task="regression", seed=0, test_size=0.2):
    y = np.arange(len(order), dtype=float) if y is None else y
    return make_plan(y, task, SubsetSpec(sampler="time", k=k, protocol=protocol), seed=seed, test_size=test_size,
                     order=order)


def _check_chain(p, order):
    """Fit i trains on blocks 0..i and is scored on block i + 1, every block strictly later than the ones before."""
    for i, (train, held) in enumerate(zip(p.train, p.evaluate, strict=False)):
        assert order[train].max() < order[held].min()
        if i:
            np.testing.assert_array_equal(train, np.union1d(p.train[i - 1], p.evaluate[i - 1]))
            assert order[p.evaluate[i - 1]].max() < order[held].min()


def test_time_trains_strictly_on_the_past_and_scores_on_the_next_block():
    rng = np.random.default_rng(0)
    order = rng.normal(size=203)  # rows in no particular order
    p = _time_plan(order)
    assert p.sampler == "time" and p.protocol == "out_of_subset" and p.k == 4 and p.test.size == 0
    _check_chain(p, order)
    assert [len(e) for e in p.evaluate] == [41, 41, 40, 40] and len(p.train[0]) == 41  # np.array_split's 5 blocks
    np.testing.assert_array_equal(np.union1d(p.train[-1], p.evaluate[-1]), np.arange(203))
    np.testing.assert_array_equal(p.train[0], np.sort(np.argsort(order)[:41]))


def test_time_blocks_are_scikit_learns_timeseriessplit_when_they_divide_evenly():
    from sklearn.model_selection import TimeSeriesSplit

    order = np.random.default_rng(1).permutation(120).astype(float)
    by_time = np.argsort(order)
    p = _time_plan(order, k=5)
    splits = TimeSeriesSplit(n_splits=5).split(by_time)
    for (train, test), ours_train, ours_eval in zip(splits, p.train, p.evaluate, strict=True):
        np.testing.assert_array_equal(np.sort(by_time[train]), ours_train)
        np.testing.assert_array_equal(np.sort(by_time[test]), ours_eval)


def test_a_time_is_never_cut_in_two_and_ties_keep_row_order():
    rng = np.random.default_rng(2)
    days = np.repeat(np.arange(30), rng.integers(1, 15, 30))
    order = rng.permutation(days).astype(float)
    for k in (1, 3, 7, 29):
        p = _time_plan(order, k=k)
        _check_chain(p, order)
        assert p.k == k
    p = _time_plan(np.datetime64("2024-01-01") + days.astype("timedelta64[D]"), k=3)
    _check_chain(p, days)
    q = _time_plan(np.zeros(10) + np.repeat([0, 1], 5), k=1)  # two times: block 0 is time 0, in row order
    np.testing.assert_array_equal(q.train[0], np.arange(5))


def test_time_holdout_is_the_latest_rows_and_the_chain_is_built_before_them():
    order = np.random.default_rng(3).permutation(100).astype(float) * 3600e9  # hours as ns, say
    p = _time_plan(order, k=4, protocol="holdout", test_size=0.2)
    assert sorted(p.test.tolist()) == sorted(np.argsort(order)[80:].tolist())
    pool = np.setdiff1d(np.arange(100), p.test)
    assert order[pool].max() < order[p.test].min()
    assert [len(t) for t in p.train] == [20, 40, 60, 80]  # 4 blocks of the pool; the last fit trains on all of it
    np.testing.assert_array_equal(p.train[-1], pool)
    for train, held in zip(p.train, p.evaluate, strict=False):
        np.testing.assert_array_equal(held, p.test)
        assert order[train].max() < order[held].min()


def test_the_time_sampler_is_deterministic_and_ignores_the_seed():
    order = np.random.default_rng(4).normal(size=90)
    for protocol in ("out_of_subset", "holdout"):
        a, b = _time_plan(order, protocol=protocol, seed=0), _time_plan(order, protocol=protocol, seed=9)
        assert all(np.array_equal(x, z) for x, z in zip(a.train + a.evaluate, b.train + b.evaluate, strict=False))


def test_the_time_sampler_has_no_fraction():
    raw = {"name": "t", "data": {"path": "rows.csv", "target": "y", "order": "day"}, "subsets": {"sampler": "time"}}
    spec = load_spec(raw)
    assert spec.subsets.fraction is None
    assert load_spec(spec.to_dict()).subsets.fraction is None  # the spec a run folder keeps loads again (resume)
    with pytest.raises(SpecError, match=r"^subsets.fraction: the time sampler trains each fit on every row before the "
                       r"ones it is scored on \(forward chaining\); leave fraction unset; allowed: None; got: 0.5$"):
        load_spec(raw, overrides=["subsets.fraction=0.5"])


def test_what_the_time_sampler_refuses():
    order = np.arange(50.0)
    with pytest.raises(SpecError, match=r"^subsets.protocol: the time sampler scores each fit on the rows that follow "
                       r"its training rows; 'full' would score it on them; allowed: 'out_of_subset', 'holdout'"):
        _time_plan(order, protocol="full")
    with pytest.raises(SpecError, match=r"^data.order: the time sampler needs a time per row to order the rows by; "
                       r"allowed: data.order: COLUMN; got: None$"):
        make_plan(np.arange(5.0), "regression", SubsetSpec(sampler="time", k=2), seed=0)
    with pytest.raises(SpecError, match=r"^data.order: 2 of the 50 rows have no time \(NaN or NaT\); the time sampler "
                       r"cannot put them before or after the others: drop or fill them"):
        _time_plan(np.where(np.isin(np.arange(50), [3, 9]), np.nan, order))
    nat = (np.datetime64("2024-01-01") + np.arange(50).astype("timedelta64[h]")).astype("datetime64[ns]")
    nat[4] = np.datetime64("NaT")
    with pytest.raises(SpecError, match=r"^data.order: 1 of the 50 rows have no time"):
        _time_plan(nat)
    with pytest.raises(SpecError, match=r"^subsets.k: the time sampler cuts the pool into 5 blocks of distinct times, "
                       r"but the pool has 3 distinct times; allowed: \[1, 2\]; got: 4$"):
        _time_plan(np.repeat([1.0, 2.0, 3.0], [10, 20, 20]))
    with pytest.raises(SpecError, match=r"^data.order: every row has the same time: nothing follows to hold out"):
        _time_plan(np.ones(50), protocol="holdout")
    with pytest.raises(SpecError, match=r"^data.order: needs one time per row of the 50 rows"):
        _time_plan(order[:-1], y=np.arange(50.0))
    with pytest.raises(SpecError, match=r"^data.order: must be numbers or times"):
        _time_plan(order.astype(str))
    y = np.r_[np.zeros(40, int), np.ones(10, int)]  # class 1 only in the latest rows
    with pytest.raises(SpecError, match=r"^subsets.k: the time sampler's first fit trains on the 10 earliest rows, "
                       r"which miss class 1; fewer blocks make it longer; allowed: a smaller k than 4"):
        _time_plan(order, y=y, task="classification")
    with pytest.raises(SpecError, match=r"^data.test_size: the training pool lost a class to the hold-out split"):
        _time_plan(order, y=y, task="classification", protocol="holdout")


# -- the leak the groups close --------------------------------------------------------------------------------------


def _repeated_groups(seed, n_groups=300, rows=8):
    """Each group: a tight cluster in 3 'fingerprint' features and an offset that sets most of its labels; one
    feature of weak real signal. A nearest-neighbours model recognises a group it has seen and predicts its label."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rows)
    centre, offset = rng.normal(0, 3, (n_groups, 3)), rng.normal(0, 2, n_groups)
    signal = rng.normal(0, 1, len(g))
    X = np.column_stack([centre[g] + rng.normal(0, 0.3, (len(g), 3)), 1.5 * signal])
    y = (offset[g] + signal + rng.normal(0, 0.5, len(g)) > 0).astype(int)
    return X, y, g


@pytest.mark.parametrize("sampler", ["subsample", "stratified", "kfold"])
def test_the_ungrouped_meta_objective_is_optimistic_against_a_grouped_test_and_the_grouped_one_is_not(sampler):
    from sklearn.neighbors import KNeighborsClassifier

    def meta(X, y, plan):  # the meta-objective: mean accuracy of the K fits, each on its own scoring rows
        return np.mean([KNeighborsClassifier(5).fit(X[t], y[t]).score(X[e], y[e])
                        for t, e in zip(plan.train, plan.evaluate, strict=False)])

    truth, ungrouped, grouped = [], [], []
    for seed in range(6):  # one grouped test holds ~75 groups: its accuracy is noisy, so average six tables
        X, y, g = _repeated_groups(seed)
        pool, test = holdout_split(y, "classification", 0.25, seed, groups=g)  # new groups: what deployment sees
        truth.append(KNeighborsClassifier(5).fit(X[pool], y[pool]).score(X[test], y[test]))
        spec = SubsetSpec(sampler=sampler, k=5, protocol="out_of_subset")
        ungrouped.append(meta(X[pool], y[pool], make_plan(y[pool], "classification", spec, seed=seed)))
        grouped.append(meta(X[pool], y[pool], make_plan(y[pool], "classification", spec, seed=seed, groups=g[pool])))
        assert ungrouped[-1] > truth[-1] + 0.10, (seed, ungrouped[-1], truth[-1])
    truth_, ungrouped_, grouped_ = np.mean(truth), np.mean(ungrouped), np.mean(grouped)
    # measured: truth 0.57, ungrouped 0.77 (+0.20), grouped 0.55-0.56 (-0.01 to -0.02)
    assert ungrouped_ > truth_ + 0.12, (ungrouped_, truth_)
    assert abs(grouped_ - truth_) < 0.05, (grouped_, truth_)

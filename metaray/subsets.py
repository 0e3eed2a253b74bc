"""K subsets of the data, deterministic in (seed, k), and the rows each subset's fit is scored on.

Protocols:
    holdout: a fixed, seeded test split is carved off first; subsets come from the rest and every fit is
        scored on the same test rows, which no fit ever sees.
    out_of_subset: subsets come from all rows; each fit is scored on the rows its subset left out.
    full: the seed document's protocol, scored on all rows, the subset's own included (optimistic).

Groups (``subsets.groups``, ``make_plan(..., groups=labels)``): rows that share a label (a patient, a user, a
site) move together, so that no group is on a fit's training side and on its scoring side at once. Each sampler
draws whole groups (rules: ``_holdout_groups``, ``_group_draws``, ``_group_folds``); out_of_subset scores a fit
on the pool's groups not in its subset. The bootstrap (a group drawn twice has no out-of-bag side) and protocol
full (it scores a fit on its own training rows) are refused with groups.

The time sampler (``subsets.sampler: time``, ``make_plan(..., order=keys)``) is forward chaining as
scikit-learn's TimeSeriesSplit: fits train on the past and are scored on what follows (rules: ``_time_plan``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metaray.errors import SpecError

#: independent random streams derived from the spec's seed
_HOLDOUT, _SUBSET, _KFOLD = 0x401D, 0x5B5E, 0xF01D
_MAX_REDRAWS = 100


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``stream``, not on how many others were drawn before."""
    return np.random.default_rng([seed, *stream])


@dataclass(frozen=True)
class SubsetPlan:
    """Which rows each of the K fits trains on and is scored on.

    Attributes:
        train: K arrays of row indices (with repeats for the bootstrap).
        evaluate: K arrays of row indices to score on; holdout and full share one array.
        test: the hold-out rows under the holdout protocol, else empty.
    """

    protocol: str
    sampler: str
    train: tuple[np.ndarray, ...]
    evaluate: tuple[np.ndarray, ...]
    test: np.ndarray

    @property
    def k(self) -> int:
        return len(self.train)

    def sizes(self, k: int) -> tuple[int, int]:
        return len(self.train[k]), len(self.evaluate[k])


def holdout_split(y: np.ndarray, task: str, test_size: float, seed: int,
                  groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (pool, test), stratified by class where every class has two rows or more.

    Args:
        groups: a label per row, or None; with labels, whole groups go to the test set (``_holdout_groups``).

    Raises:
        SpecError: ``data.test_size`` when a side would be empty; ``subsets.groups`` with fewer than 2 groups.
    """
    from sklearn.model_selection import train_test_split

    n_test = _n_test(test_size, len(y))
    if groups is not None:
        return _holdout_groups(y, task, _group_codes(groups, len(y)), n_test, seed)
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
            stratify = y
    seed_int = int(rng_for(seed, _HOLDOUT).integers(2**31 - 1))
    pool, test = train_test_split(np.arange(len(y)), test_size=n_test, random_state=seed_int, stratify=stratify)
    return np.sort(pool), np.sort(test)


def _n_test(test_size: float, n: int) -> int:
    """The hold-out split's number of rows, refused when it leaves a side empty."""
    n_test = int(round(test_size * n))
    if n_test < 1 or n_test >= n:
        raise SpecError("data.test_size", f"leaves no rows on one side of the split of {n} rows",
                        allowed="(0, 1) with rows on both sides", got=test_size)
    return n_test


def make_plan(y: np.ndarray, task: str, subsets, *, seed: int, test_size: float = 0.2, groups=None,
              order=None) -> SubsetPlan:
    """Draw the K subsets of a spec's ``subsets`` section.

    Args:
        y: the target, one value per row.
        task: ``classification`` or ``regression``.
        subsets: the spec's ``subsets`` section (a SubsetSpec).
        seed: the spec's seed; subset i depends on (seed, i) only.
        test_size: the hold-out fraction of the rows under the holdout protocol.
        groups: a group label per row (any type), or None. Rows that share a label stay on one side of every fit:
            its training side or its scoring side, the hold-out split included (see the module's notes).
        order: a time per row (numbers or datetime64, sorted as they are), for the time sampler; other samplers
            do not read it. None keeps every plan exactly as it was without these arguments.

    Raises:
        SpecError: one line naming the key, the allowed values and the bad value.

    Example:
        >>> from metaray.spec import SubsetSpec
        >>> y = np.array([0, 1] * 50)
        >>> plan = make_plan(y, "classification", SubsetSpec(k=3, fraction=0.5, protocol="full"), seed=1)
        >>> plan.k, plan.sizes(0)
        (3, (50, 100))

        Twenty groups of five rows: every fit trains on whole groups and is scored on the others.

        >>> groups = np.repeat([f"patient{i}" for i in range(20)], 5)
        >>> plan = make_plan(y, "classification", SubsetSpec(k=3, fraction=0.5), seed=1, groups=groups)
        >>> plan.sizes(0), any(set(groups[t]) & set(groups[e]) for t, e in zip(plan.train, plan.evaluate))
        ((50, 50), False)

        The time sampler trains on the past and scores on what follows, here with the newest row first:

        >>> plan = make_plan(y, "classification", SubsetSpec(sampler="time", k=3), seed=1, order=np.arange(100)[::-1])
        >>> [plan.sizes(i) for i in range(3)], plan.train[0].min(), plan.evaluate[0].max()
        ([(25, 25), (50, 25), (75, 25)], np.int64(75), np.int64(74))
    """
    codes = None if groups is None else _checked_groups(subsets, groups, len(y))
    if subsets.sampler == "time":
        return _time_plan(y, task, subsets, _checked_order(subsets, order, len(y)), test_size)
    pool, test, classes = _pool(y, task, subsets, seed, test_size, codes)
    if codes is not None:
        train, held = _grouped(pool, y, codes, classes, subsets, seed)
    elif subsets.sampler == "kfold":
        train, held = _folds(pool, y, classes, subsets.k, seed)
    else:
        train, held = _draws(pool, y, classes, subsets, seed)
    evaluate = _evaluate(subsets, pool, test, held, grouped=codes is not None)
    return SubsetPlan(subsets.protocol, subsets.sampler, tuple(train), tuple(evaluate), test)


def _checked_groups(subsets, groups, n: int) -> np.ndarray:
    """The group labels as codes, once the sampler and protocol are known to keep groups apart."""
    if subsets.sampler in ("bootstrap", "time"):
        raise SpecError("subsets.sampler", "groups are kept together by drawing whole groups",
                        allowed=["subsample", "stratified", "kfold"], got=subsets.sampler)
    if subsets.protocol == "full":
        raise SpecError("subsets.groups", "protocol 'full' scores every fit on its own training rows too, so it "
                        "cannot keep a group off both sides",
                        allowed=["protocol: out_of_subset", "protocol: holdout"],
                        got={"subsets.groups": getattr(subsets, "groups", None), "subsets.protocol": "full"})
    return _group_codes(groups, n)


def _checked_order(subsets, order, n: int) -> np.ndarray:
    """The time sampler's keys, once its protocol is known to score each fit on later rows."""
    if order is None:
        raise SpecError("data.order", "the time sampler needs a time per row to order the rows by",
                        allowed="data.order: COLUMN", got=None)
    if subsets.protocol == "full":
        raise SpecError("subsets.protocol", "the time sampler scores each fit on the rows that follow its training "
                        "rows; 'full' would score it on them", allowed=["out_of_subset", "holdout"], got="full")
    return _time_keys(order, n)


def _pool(y, task, subsets, seed, test_size, codes):
    """The rows the subsets come from, the hold-out rows (empty unless holdout), and the pool's classes (None for
    regression); refused when the hold-out split takes a class's every row."""
    if subsets.protocol == "holdout":
        pool, test = holdout_split(y, task, test_size, seed, groups=codes)
    else:
        pool, test = np.arange(len(y)), np.arange(0)
    classes = np.unique(y[pool]) if task == "classification" else None
    if task == "classification" and test.size and len(classes) < len(np.unique(y)):
        raise SpecError("data.test_size", "the training pool lost a class to the hold-out split", got=test_size)
    return pool, test, classes


def _grouped(pool, y, codes, classes, subsets, seed):
    """Training sides of whole groups, and for each the pool's rows of the groups it left out."""
    n_groups = len(np.unique(codes[pool]))
    if subsets.protocol == "out_of_subset" and n_groups < 2:
        raise _few_groups(n_groups, 2, "scoring each fit on groups out of its subset")
    if subsets.sampler != "kfold":
        _subset_size(subsets.fraction, len(pool))
    train = [np.sort(rows) for rows in _group_subsets(pool, y, codes, classes, subsets, seed)]
    held = [pool[~np.isin(codes[pool], codes[rows])] for rows in train]
    return train, held


def _folds(pool, y, classes, k, seed):
    """K folds of the pool in a seeded order: fit i trains on every fold but fold i."""
    if k > len(pool):
        raise SpecError("subsets.k", f"more folds than the {len(pool)} rows in the pool", allowed=f"[2, {len(pool)}]",
                        got=k)
    perm = rng_for(seed, _KFOLD).permutation(pool)
    if classes is not None:  # group by class, then deal rows round-robin: each fold gets every class in proportion
        perm = perm[np.argsort(y[perm], kind="stable")]
    folds = [perm[i::k] for i in range(k)]
    train = [np.sort(np.concatenate(folds[:i] + folds[i + 1 :])) for i in range(k)]
    return train, [np.sort(f) for f in folds]


def _draws(pool, y, classes, subsets, seed):
    """K seeded draws of rows (subsample, bootstrap, stratified), and the pool's rows each left out."""
    sampler, fraction = subsets.sampler, subsets.fraction
    if sampler == "stratified" and classes is None:
        raise SpecError("subsets.sampler", "the stratified sampler needs a classification task",
                        allowed=["subsample", "bootstrap", "kfold"], got=sampler)
    size = _subset_size(fraction, len(pool))
    if classes is not None and size < len(classes):
        raise SpecError("subsets.fraction", f"{sampler} subsets of {size} rows cannot hold all {len(classes)} classes",
                        allowed=f">= {len(classes) / len(pool):.3g}", got=fraction)
    train = []
    for i in range(subsets.k):
        rng = rng_for(seed, _SUBSET, i)
        if sampler == "stratified":
            rows = _draw_stratified(pool, y, classes, fraction, rng)
        else:
            rows = _draw_plain(pool, y, classes, size, rng, replace=sampler == "bootstrap")
        train.append(np.sort(rows))
    return train, [np.setdiff1d(pool, rows, assume_unique=False) for rows in train]


def _subset_size(fraction: float, n_pool: int, key: str = "subsets.fraction") -> int:
    size = int(round(fraction * n_pool))
    if size < 1:
        raise SpecError(key, f"{fraction} of the {n_pool} pool rows gives empty subsets",
                        allowed=f"[{1 / n_pool:.3g}, 1]", got=fraction)
    return size


def _draw_plain(pool, y, classes, size, rng, replace):
    """Draw without a class missing: redraw (from the same stream, so still deterministic) or refuse."""
    for _ in range(_MAX_REDRAWS):
        rows = rng.choice(pool, size=size, replace=replace)
        if classes is None or len(np.unique(y[rows])) == len(classes):
            return rows
    raise SpecError("subsets.sampler", f"subsets of {size} rows keep missing a class after {_MAX_REDRAWS} draws; "
                    "use the stratified sampler or a larger fraction", allowed=["stratified"], got="subsample")


def _draw_stratified(pool, y, classes, fraction, rng):
    """``fraction`` of each class's rows (at least one), without replacement."""
    parts = []
    for c in classes:
        members = pool[y[pool] == c]
        take = min(len(members), max(1, int(round(fraction * len(members)))))
        parts.append(rng.choice(members, size=take, replace=False))
    return np.concatenate(parts)


def _evaluate(subsets, pool, test, held, *, grouped: bool):
    """The rows each fit is scored on, by protocol; out_of_subset refuses a subset that leaves nothing out."""
    if subsets.protocol == "holdout":
        return [test] * subsets.k
    if subsets.protocol == "full":
        return [pool] * subsets.k
    empty = [i for i, rows in enumerate(held) if rows.size == 0]
    if empty and grouped:
        raise SpecError("subsets.groups", f"protocol 'out_of_subset' needs groups left out of each subset, but "
                        f"subset {empty[0]} takes every group", allowed="a fraction < 1, or more groups per class",
                        got=f"fraction {subsets.fraction}")
    if empty:
        raise SpecError("subsets.fraction", f"protocol 'out_of_subset' needs rows left out of each subset, "
                        f"but subset {empty[0]} holds every row", allowed="< 1", got=subsets.fraction)
    return held


# groups -------------------------------------------------------------------------------------------------------------


def _group_codes(groups, n: int) -> np.ndarray:
    """Labels of any type (numbers, text, objects; a missing label is a group of its own) as codes 0..G-1, numbered
    in order of first appearance."""
    import pandas as pd

    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) != n:
        raise SpecError("subsets.groups", f"needs one group label per row of the {n} rows",
                        allowed=f"a 1-D array of {n} labels", got=f"an array of shape {labels.shape}")
    codes, _ = pd.factorize(labels, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.intp)


def _prefix(sizes: np.ndarray, target: float, lo: int, hi: int) -> int:
    """How many of the groups (of these row counts, in this order) come nearest ``target`` rows, within [lo, hi];
    of two as near, the fewer."""
    m = int(np.argmin(np.abs(np.cumsum(sizes) - target))) + 1
    return min(max(m, lo), hi)


def _few_groups(n_groups: int, need: int, what: str) -> SpecError:
    return SpecError("subsets.groups", f"{what} needs at least {need} groups, but there are {n_groups}",
                     allowed=f">= {need} groups", got=f"{n_groups} group{'s' if n_groups != 1 else ''}")


def _holdout_groups(y, task, codes, n_test, seed):
    """Whole groups, in a seeded random order, to the test set until it is nearest ``n_test`` rows (GroupShuffleSplit
    sized in rows). Classification: redrawn (same stream) until both sides hold every class; failing that, the first
    draw whose pool does (the test set may then miss a class); failing that, the first draw (make_plan refuses the
    pool's missing class)."""
    n_groups = int(codes.max()) + 1
    if n_groups < 2:
        raise _few_groups(n_groups, 2, "a hold-out split of whole groups")
    sizes = np.bincount(codes, minlength=n_groups)
    rng = rng_for(seed, _HOLDOUT)
    n_classes = len(np.unique(y)) if task == "classification" else 0
    first = pool_ok = None
    for _ in range(_MAX_REDRAWS if n_classes else 1):
        perm = rng.permutation(n_groups)
        in_test = np.zeros(n_groups, dtype=bool)
        in_test[perm[: _prefix(sizes[perm], n_test, 1, n_groups - 1)]] = True
        test_rows = in_test[codes]
        first = test_rows if first is None else first
        if not n_classes:
            break
        pool_full = len(np.unique(y[~test_rows])) == n_classes
        if pool_full and len(np.unique(y[test_rows])) == n_classes:
            first = test_rows
            break
        if pool_full and pool_ok is None:
            pool_ok = test_rows
    else:
        first = pool_ok if pool_ok is not None else first
    return np.flatnonzero(~first), np.flatnonzero(first)


def _majority(pool, y, codes, groups, classes) -> np.ndarray:
    """The majority class (its index in ``classes``) of each of ``groups`` in the pool; ties to the first class."""
    counts = np.zeros((int(codes.max()) + 1, len(classes)), dtype=np.int64)
    np.add.at(counts, (codes[pool], np.searchsorted(classes, y[pool])), 1)
    return counts[groups].argmax(axis=1)


def _group_subsets(pool, y, codes, classes, subsets, seed):
    """The training sides of a grouped plan: whole groups of the pool."""
    groups, sizes = np.unique(codes[pool], return_counts=True)
    if subsets.sampler == "kfold":
        return _group_folds(pool, y, codes, classes, groups, sizes, subsets.k, seed)
    return _group_draws(pool, y, codes, classes, groups, sizes, subsets, seed)


def _group_folds(pool, y, codes, classes, groups, sizes, k, seed):
    """GroupKFold-like: groups, largest first (ties in a seeded random order), each to the fold that holds the fewest
    rows of the group's majority class (regression: one class), then the fewest rows, so that folds balance rows and
    classes. Refused with fewer groups than folds, or when a fit's training side would miss a class."""
    if k > len(groups):
        raise SpecError("subsets.k", f"more folds than the {len(groups)} groups in the pool",
                        allowed=f"[2, {len(groups)}]", got=k)
    perm = rng_for(seed, _KFOLD).permutation(len(groups))
    order = perm[np.argsort(-sizes[perm], kind="stable")]  # largest first, ties in a seeded order
    major = _majority(pool, y, codes, groups, classes) if classes is not None else np.zeros(len(groups), int)
    rows = np.zeros(k, dtype=np.int64)
    class_rows = np.zeros((k, major.max() + 1), dtype=np.int64)
    fold_of = np.empty(len(groups), dtype=np.intp)
    for j in order:
        fold = int(np.lexsort((np.arange(k), rows, class_rows[:, major[j]]))[0])
        fold_of[j], rows[fold] = fold, rows[fold] + sizes[j]
        class_rows[fold, major[j]] += sizes[j]
    fold_rows = fold_of[np.searchsorted(groups, codes[pool])]
    train = [pool[fold_rows != i] for i in range(k)]
    for i, rows_i in enumerate(train if classes is not None else ()):
        missing = np.setdiff1d(classes, y[rows_i])
        if missing.size:
            raise SpecError("subsets.groups", f"every group of class {missing.tolist()[0]!r} falls in fold {i}, so "
                            f"fit {i} never trains on it", allowed="each class in groups of 2 folds or more",
                            got=f"{len(groups)} groups in {k} folds")
    return train


def _group_draws(pool, y, codes, classes, groups, sizes, subsets, seed):
    """Subsample: whole groups in a seeded random order until the subset is nearest ``fraction`` of the pool's rows;
    at least one group, and (fraction < 1) at least one left out. Stratified: each group counts for its majority
    class (ties: the first class), and the same within each class (one group left out where the class has two or
    more). A subset missing a class is redrawn from the same stream, then refused."""
    sampler, fraction = subsets.sampler, subsets.fraction
    if sampler == "stratified":
        if classes is None:
            raise SpecError("subsets.sampler", "the stratified sampler needs a classification task",
                            allowed=["subsample", "kfold"], got=sampler)
        major = _majority(pool, y, codes, groups, classes)
        strata = [np.flatnonzero(major == c) for c in range(len(classes)) if (major == c).any()]
    else:
        strata = [np.arange(len(groups))]
    in_pool = codes[pool]
    out = []
    for i in range(subsets.k):
        rng = rng_for(seed, _SUBSET, i)
        for _ in range(_MAX_REDRAWS):
            chosen = []
            for stratum in strata:
                perm = stratum[rng.permutation(len(stratum))]
                hi = len(stratum) - 1 if fraction < 1 and len(stratum) > 1 else len(stratum)
                chosen.append(perm[: _prefix(sizes[perm], fraction * sizes[stratum].sum(), 1, hi)])
            rows = pool[np.isin(in_pool, groups[np.concatenate(chosen)])]
            if classes is None or len(np.unique(y[rows])) == len(classes):
                break
        else:
            raise SpecError("subsets.groups", f"{sampler} subsets of whole groups keep missing a class after "
                            f"{_MAX_REDRAWS} draws; use the stratified sampler or a larger fraction",
                            allowed=["stratified", "a larger fraction"], got=f"{sampler}, fraction {fraction}")
        out.append(rows)
    return out


# time ---------------------------------------------------------------------------------------------------------------


def _time_keys(order, n: int) -> np.ndarray:
    """The rows' times as an array: one number or date per row, none missing."""
    keys = np.asarray(order)
    if keys.ndim != 1 or len(keys) != n:
        raise SpecError("data.order", f"needs one time per row of the {n} rows", allowed=f"a 1-D array of {n} values",
                        got=f"an array of shape {keys.shape}")
    if keys.dtype.kind not in "iufmM":
        raise SpecError("data.order", "must be numbers or times to sort the rows by",
                        allowed="numbers, datetimes, timedeltas", got=str(keys.dtype))
    missing = int(np.isnat(keys).sum() if keys.dtype.kind in "mM" else np.isnan(keys).sum() if keys.dtype.kind == "f"
                  else 0)
    if missing:
        raise SpecError("data.order", f"{missing} of the {n} rows have no time (NaN or NaT); the time sampler cannot "
                        "put them before or after the others: drop or fill them",
                        allowed="a time in every row", got=f"{missing} rows without a time")
    return keys


def _cuts_at(sorted_keys: np.ndarray, ideal) -> np.ndarray | None:
    """Cut positions in rows sorted by time: each of ``ideal`` (increasing) moved to the nearest change of time (of
    two as near, the earlier), so that one time is never on both sides of a cut; None if there are too few changes."""
    changes = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1  # row positions where the time changes
    if len(changes) < len(ideal):
        return None
    cuts, lo = [], 0
    for j, want in enumerate(ideal):
        hi = len(changes) - (len(ideal) - j)  # leave a change for each cut still to come
        at = int(np.clip(np.searchsorted(changes, want), lo, hi))
        if at > lo and want - changes[at - 1] <= changes[at] - want:
            at -= 1
        cuts.append(changes[at])
        lo = at + 1
    return np.asarray(cuts, dtype=np.intp)


def _block_cuts(sorted_keys: np.ndarray, n_blocks: int) -> np.ndarray | None:
    """The n_blocks - 1 cuts into contiguous blocks: np.array_split's sizes, moved to changes of time."""
    m = len(sorted_keys)
    sizes = [m // n_blocks + 1] * (m % n_blocks) + [m // n_blocks] * (n_blocks - m % n_blocks)
    return _cuts_at(sorted_keys, np.cumsum(sizes)[:-1])


def _time_pool(keys, protocol, test_size):
    """The pool's rows in time order and the hold-out rows (sorted; under holdout the last ``test_size`` in time)."""
    by_time = np.argsort(keys, kind="stable")  # ties by row index
    if protocol != "holdout":
        return by_time, np.arange(0)
    n = len(keys)
    cut = _cuts_at(keys[by_time], [n - _n_test(test_size, n)])
    if cut is None:
        raise SpecError("data.order", "every row has the same time: nothing follows to hold out",
                        allowed="two times or more", got=f"{n} rows at one time")
    return by_time[: cut[0]], np.sort(by_time[cut[0] :])


def _time_plan(y, task, subsets, keys, test_size):
    """Forward chaining: the pool's rows sorted by time (ties by row index) cut into contiguous blocks, each cut moved
    to the nearest change of time so that one time is never on both sides; nothing is random, ``fraction`` unused.

    out_of_subset: k + 1 blocks; fit i trains on blocks 0..i and is scored on block i + 1.
    holdout: the last ``test_size`` of the rows in time is the test set; the rest is cut into k blocks, fit i trains
    on blocks 0..i (the last fit on the whole pool) and every fit is scored on the test set.
    """
    k = subsets.k
    pool_sorted, test = _time_pool(keys, subsets.protocol, test_size)
    n_blocks = k if subsets.protocol == "holdout" else k + 1
    if task == "classification" and test.size and len(np.unique(y[pool_sorted])) < len(np.unique(y)):
        raise SpecError("data.test_size", "the training pool lost a class to the hold-out split", got=test_size)
    cuts = _block_cuts(keys[pool_sorted], n_blocks)
    if cuts is None:
        distinct = len(np.unique(keys[pool_sorted]))
        most = distinct if subsets.protocol == "holdout" else distinct - 1
        raise SpecError("subsets.k", f"the time sampler cuts the pool into {n_blocks} blocks of distinct times, but "
                        f"the pool has {distinct} distinct times", allowed=f"[1, {most}]", got=k)
    blocks = np.split(pool_sorted, cuts)
    train = [np.sort(np.concatenate(blocks[: i + 1])) for i in range(k)]
    if task == "classification":
        missing = np.setdiff1d(np.unique(y[pool_sorted]), y[train[0]])
        if missing.size:
            raise SpecError("subsets.k", f"the time sampler's first fit trains on the {len(train[0])} earliest rows, "
                            f"which miss class {missing.tolist()[0]!r}; fewer blocks make it longer",
                            allowed=f"a smaller k than {k}", got=k)
    evaluate = [test] * k if subsets.protocol == "holdout" else [np.sort(blocks[i + 1]) for i in range(k)]
    return SubsetPlan(subsets.protocol, "time", tuple(train), tuple(evaluate), test)

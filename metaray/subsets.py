"""K subsets of the data, deterministic in (seed, k), and the rows each subset's fit is scored on.

Protocols:
    holdout: a fixed, seeded test split is carved off first; subsets come from the rest and every fit is
        scored on the same test rows, which no fit ever sees.
    out_of_subset: subsets come from all rows; each fit is scored on the rows its subset left out.
    full: the seed document's protocol, scored on all rows, the subset's own included (optimistic).
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


def holdout_split(y: np.ndarray, task: str, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (pool, test), stratified by class where every class has two rows or more."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    n_test = int(round(test_size * len(y)))
    if n_test < 1 or n_test >= len(y):
        raise SpecError("data.test_size", f"leaves no rows on one side of the split of {len(y)} rows",
                        allowed="(0, 1) with rows on both sides", got=test_size)
    stratify = None
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts):
            stratify = y
    seed_int = int(rng_for(seed, _HOLDOUT).integers(2**31 - 1))
    pool, test = train_test_split(idx, test_size=n_test, random_state=seed_int, stratify=stratify)
    return np.sort(pool), np.sort(test)


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
    parts = []
    for c in classes:
        members = pool[y[pool] == c]
        take = min(len(members), max(1, int(round(fraction * len(members)))))
        parts.append(rng.choice(members, size=take, replace=False))
    return np.concatenate(parts)


def make_plan(y: np.ndarray, task: str, subsets, *, seed: int, test_size: float = 0.2) -> SubsetPlan:
    """Draw the K subsets of a spec's ``subsets`` section.

    Example:
        >>> from metaray.spec import SubsetSpec
        >>> y = np.array([0, 1] * 50)
        >>> plan = make_plan(y, "classification", SubsetSpec(k=3, fraction=0.5, protocol="full"), seed=1)
        >>> plan.k, plan.sizes(0)
        (3, (50, 100))
    """
    n = len(y)
    if subsets.protocol == "holdout":
        pool, test = holdout_split(y, task, test_size, seed)
    else:
        pool, test = np.arange(n), np.arange(0)
    classes = np.unique(y[pool]) if task == "classification" else None
    if task == "classification" and test.size and len(classes) < len(np.unique(y)):
        raise SpecError("data.test_size", "the training pool lost a class to the hold-out split", got=test_size)
    sampler, k, fraction = subsets.sampler, subsets.k, subsets.fraction

    train: list[np.ndarray] = []
    if sampler == "kfold":
        if k > len(pool):
            raise SpecError("subsets.k", f"more folds than the {len(pool)} rows in the pool", allowed=f"[2, {len(pool)}]", got=k)
        perm = rng_for(seed, _KFOLD).permutation(pool)
        if classes is not None:  # group by class, then deal rows round-robin: each fold gets every class in proportion
            perm = perm[np.argsort(y[perm], kind="stable")]
        folds = [perm[i::k] for i in range(k)]
        train = [np.sort(np.concatenate(folds[:i] + folds[i + 1 :])) for i in range(k)]
        held = [np.sort(f) for f in folds]
    else:
        if sampler == "stratified" and classes is None:
            raise SpecError("subsets.sampler", "the stratified sampler needs a classification task",
                            allowed=["subsample", "bootstrap", "kfold"], got=sampler)
        size = _subset_size(fraction, len(pool))
        if classes is not None and size < len(classes):
            raise SpecError("subsets.fraction", f"{sampler} subsets of {size} rows cannot hold all {len(classes)} classes",
                            allowed=f">= {len(classes) / len(pool):.3g}", got=fraction)
        for i in range(k):
            rng = rng_for(seed, _SUBSET, i)
            if sampler == "stratified":
                rows = _draw_stratified(pool, y, classes, fraction, rng)
            else:
                rows = _draw_plain(pool, y, classes, size, rng, replace=sampler == "bootstrap")
            train.append(np.sort(rows))
        held = [np.setdiff1d(pool, rows, assume_unique=False) for rows in train]

    if subsets.protocol == "holdout":
        evaluate = [test] * k
    elif subsets.protocol == "full":
        evaluate = [pool] * k
    else:
        evaluate = held
        empty = [i for i, rows in enumerate(held) if rows.size == 0]
        if empty:
            raise SpecError("subsets.fraction", f"protocol 'out_of_subset' needs rows left out of each subset, "
                            f"but subset {empty[0]} holds every row", allowed="< 1", got=fraction)
    return SubsetPlan(subsets.protocol, sampler, tuple(train), tuple(evaluate), test)

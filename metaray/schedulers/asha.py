"""Asynchronous successive halving (ASHA, Li et al. 2020), the rule of Ray Tune's ``AsyncHyperBandScheduler``
with one bracket, owned here: rungs at ``grace_period * reduction_factor**i`` (real numbers) below the fidelity's
total; a configuration reaching a rung continues only if its objective is in the top ``1/reduction_factor`` of those
recorded at that rung so far.

With several objectives (``objective.also``) it is multi-objective ASHA, as Syne Tune's MOASHA (Schmucker et al.
2021): the configurations recorded at a rung are ordered by non-dominated sorting of their objectives there (Pareto
rank, then the primary objective within a rank), and a configuration continues only if it is in the top
``1/reduction_factor`` of that order."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from metaray.errors import SpecError
from metaray.registry import Option, Rule


class Asha:
    """Args:
        options: ``grace_period`` (the first rung), ``reduction_factor`` and ``fidelity`` (``OPTIONS``).
        mode: "max" or "min": the objective's direction; a list, one per objective, for several (``decide`` is then
            given a tuple of values, the primary first).
        total: the fidelity's total (subsets per configuration, or the learner's epochs).

    Example:
        >>> from types import SimpleNamespace
        >>> asha = Asha(SimpleNamespace(grace_period=1, reduction_factor=2.5), mode="max", total=10)
        >>> asha.milestones(10)
        [1.0, 2.5, 6.25]
        >>> asha.decide(0, 3, 0.9, []), asha.decide(1, 3, 0.5, [])  # both at rung 2.5; the second is below the cut
        (False, True)
    """

    #: a decision at a rung reads only the records of that rung: a configuration may be judged there ahead of those
    #: before it that have not passed it, when they could not change the decision (metaray.driver.Driver._decide_ahead)
    by_rung: ClassVar[bool] = True

    #: ``search.scheduler`` options with their defaults and rules (read by metaray.spec)
    OPTIONS: ClassVar[dict[str, Option]] = {
        "grace_period": Option(float, 1, Rule(lambda v: v > 0, "ASHA's first rung", "> 0")),
        "reduction_factor": Option(float, 3.0, Rule(lambda v: v > 1, "ASHA keeps 1/reduction_factor of each rung",
                                                    "> 1")),
        "fidelity": Option(str, "subsets", choices=("subsets", "epochs")),
    }

    @staticmethod
    def check(options, k: int) -> None:
        """Refuse options that cannot stop anything with ``k`` subsets (with the subsets fidelity, a configuration is
        judged after ceil(rung) subsets)."""
        if options.fidelity != "subsets":
            return
        if k < 2:  # a rung below one subset: none
            raise SpecError("subsets.k", "ASHA over subsets stops configurations at rungs below k subsets; raise "
                            "subsets.k, or take fidelity: epochs or another search.scheduler",
                            allowed=">= 2 with search.scheduler: asha", got=k)
        if math.ceil(options.grace_period) >= k:
            default = "" if "grace_period" in options.model_fields_set else f"; {options.grace_period:g} is the default"
            raise SpecError("search.scheduler.grace_period", "ASHA stops configurations at rungs below k subsets "
                            f"(subsets.k is {k}{default})", allowed=f"(0, {k - 1}]", got=options.grace_period)

    def __init__(self, options, *, mode: str, greater_is_better: bool = True, total: float, overlap: float = 0.0):
        grace, self.rf = float(options.grace_period), float(options.reduction_factor)
        count = int(np.log(total / grace) / np.log(self.rf) + 1)  # as Tune counts its rungs
        self.rungs = [grace * self.rf**i for i in range(count) if grace * self.rf**i < total]
        self._modes = [mode] if isinstance(mode, str) else list(mode)
        self._sign = 1.0 if self._modes[0] == "max" else -1.0
        self._recorded: dict[float, dict[int, float | tuple]] = {rung: {} for rung in self.rungs}
        self._rewards = {rung: _Records() for rung in self.rungs}  # the same, of one objective, as arrays

    def milestones(self, total: float) -> list[float]:
        return [rung for rung in self.rungs if rung < total]

    def decide(self, trial: int, done: float, value, scores: list[float], *, unknown: int = 0,
               pending: list = ()) -> bool | None:
        """Whether to stop ``trial`` at the highest rung ``done`` reached, against the values recorded there of the
        configurations before it. When the driver judges ahead (``Driver._decide_ahead``), ``pending``: the values
        there of configurations before it not yet judged (they will be recorded), and ``unknown``: the number of
        those whose value is not known yet; the decision is taken only if it holds whatever those turn out to be
        (recorded at any value, or never), else None (nothing recorded: ask again later). So a configuration judged
        ahead of an earlier one is judged as it would be in order."""
        several = isinstance(value, tuple)
        if not all(math.isfinite(v) for v in (value if several else (value,))):
            return False
        for rung in reversed(self.rungs):  # the highest rung reached and not yet judged
            recorded = self._recorded[rung]
            if done < rung or trial in recorded:
                continue
            if several:
                before = [v for t, v in recorded.items() if t < trial]  # not those judged ahead of it
                before += [v for v in pending if all(math.isfinite(x) for x in v)]
                if unknown:  # by Pareto rank: judged in order only
                    return None
                stop = bool(before) and self._position(before, value) >= math.ceil((len(before) + 1) / self.rf)
                recorded[trial] = value
                return bool(stop)
            reward = self._sign * value
            stop = self._stops(self._rewards[rung].before(trial, [self._sign * v for v in pending]), reward, unknown)
            if stop is not None:
                recorded[trial] = reward
                self._rewards[rung].add(trial, reward)
            return stop
        return False

    def _stops(self, before: np.ndarray, reward: float, unknown: int) -> bool | None:
        """Whether ``reward`` falls below the rung's cut (the ``1 - 1/rf`` quantile of the rewards recorded before
        it), whichever of the ``unknown`` configurations are recorded too and whatever their rewards; None when that
        depends on them. The cut is lowest when they all come in below everything, highest when above."""
        q = (1 - 1 / self.rf) * 100
        if not unknown:
            return bool(before.size) and bool(reward < np.nanpercentile(before, q))
        if not before.size:  # stopped only if one of them is recorded: open
            return None
        low, high = _cut(before, unknown, q, below=True), _cut(before, unknown, q, below=False)
        margin = 1e-9 * (1 + float(np.abs(before).max()))  # for rounding: the decision in order is the same
        if reward < low - margin:
            return True
        if reward >= high + margin:
            return False
        return None

    def _position(self, recorded: list[tuple], value: tuple) -> int:
        """Where ``value`` comes among ``recorded`` and itself, 0 the first: by Pareto rank, then by the primary
        objective (an earlier configuration first among equals)."""
        from metaray.front import pareto_ranks

        points = np.array([*recorded, value], dtype=float)
        ranks = pareto_ranks(points, self._modes)
        order = sorted(range(len(points)), key=lambda i: (ranks[i], -self._sign * points[i, 0], i))
        return order.index(len(points) - 1)

    def finished(self, trial: int, completed: bool, objective: float, scores: list[float]) -> None:
        pass


class _Records:
    """The rewards recorded at one rung with the configurations they are of, as growing arrays."""

    def __init__(self):
        self.n, self.index, self.reward = 0, np.empty(64, dtype=np.int64), np.empty(64)

    def add(self, trial: int, reward: float) -> None:
        if self.n == self.index.size:
            self.index, self.reward = np.resize(self.index, 2 * self.n), np.resize(self.reward, 2 * self.n)
        self.index[self.n], self.reward[self.n] = trial, reward
        self.n += 1

    def before(self, trial: int, pending: list[float]) -> np.ndarray:
        """The rewards of configurations before ``trial``, and the finite ones of ``pending``."""
        got = self.reward[: self.n][self.index[: self.n] < trial]
        extra = np.asarray(pending, dtype=float)
        return np.concatenate([got, extra[np.isfinite(extra)]]) if extra.size else got


def _cut(values: np.ndarray, extra: int, q: float, *, below: bool) -> float:
    """The ``q`` th percentile (NumPy's linear interpolation) of ``values`` and ``extra`` values lower than all of
    them (``below``) or higher, in the limit: -inf or +inf where it rests on one of those.

    Example:
        >>> _cut(np.array([3.0, 1.0, 2.0]), 1, 50, below=True), _cut(np.array([3.0, 1.0, 2.0]), 1, 50, below=False)
        (1.5, 2.5)
        >>> _cut(np.array([1.0, 2.0]), 2, 50, below=True)
        -inf
    """
    n = values.size + extra
    h = (n - 1) * q / 100
    lo = math.floor(h)
    frac = h - lo
    picks = [lo, lo + 1] if frac and lo + 1 < n else [lo]
    if below:  # the extra ones take positions 0 .. extra - 1
        if picks[0] < extra:
            return -math.inf
        at = [p - extra for p in picks]
    else:  # ... positions values.size .. n - 1
        if picks[-1] >= values.size:
            return math.inf
        at = picks
    x = np.partition(values, at)[at]
    return float(x[0]) if len(at) == 1 else float(x[0] + frac * (x[1] - x[0]))

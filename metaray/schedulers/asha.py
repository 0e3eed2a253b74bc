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

    #: a decision at a rung reads only the records of that rung: a configuration may be judged there as soon as every
    #: configuration before it has passed it (metaray.driver.Driver._decide_ahead)
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
        if options.fidelity == "subsets" and math.ceil(options.grace_period) >= k:
            raise SpecError("search.scheduler.grace_period", "ASHA stops configurations at rungs below k subsets",
                            allowed=f"(0, {k - 1}]", got=options.grace_period)

    def __init__(self, options, *, mode: str, greater_is_better: bool = True, total: float, overlap: float = 0.0):
        grace, self.rf = float(options.grace_period), float(options.reduction_factor)
        count = int(np.log(total / grace) / np.log(self.rf) + 1)  # as Tune counts its rungs
        self.rungs = [grace * self.rf**i for i in range(count) if grace * self.rf**i < total]
        self._modes = [mode] if isinstance(mode, str) else list(mode)
        self._sign = 1.0 if self._modes[0] == "max" else -1.0
        self._recorded: dict[float, dict[int, float | tuple]] = {rung: {} for rung in self.rungs}

    def milestones(self, total: float) -> list[float]:
        return [rung for rung in self.rungs if rung < total]

    def decide(self, trial: int, done: float, value, scores: list[float]) -> bool:
        several = isinstance(value, tuple)
        if not all(math.isfinite(v) for v in (value if several else (value,))):
            return False
        for rung in reversed(self.rungs):  # the highest rung reached and not yet judged
            recorded = self._recorded[rung]
            if done < rung or trial in recorded:
                continue
            if several:
                stop = bool(recorded) and self._position(list(recorded.values()), value) >= math.ceil(
                    (len(recorded) + 1) / self.rf)
                recorded[trial] = value
                return bool(stop)
            reward = self._sign * value
            stop = bool(recorded) and reward < np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)
            recorded[trial] = reward
            return bool(stop)
        return False

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

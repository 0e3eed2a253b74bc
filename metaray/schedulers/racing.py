"""Racing over subsets: stop a configuration once a one-sided paired t-bound says it cannot beat the incumbent (the
best completed configuration). Every configuration is fitted on the same subsets with the same seeds, so its score on
subset j and the incumbent's share the subset's luck; their difference is far less noisy than either score.

Subsets of 80 % of the rows overlap, so the differences are correlated and a plain paired t-bound is too narrow: it
stops configurations a new sample of data would not prove worse. The bound is the corrected resampled t-test's
(Nadeau and Bengio; metaray.stats): its variance term is multiplied by ``1/m + n_test/n_train``, not ``1/m``."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from metaray.errors import SpecError
from metaray.registry import Option, Rule


class Racing:
    """After ``m >= min_subsets`` subsets, with d_j the differences to the incumbent in the metric's better direction,
    a configuration stops when ``mean(d) + t_{confidence, m-1} * sd(d) * sqrt(1/m + overlap) <= tolerance *
    |incumbent|``: with
    that confidence it cannot beat the incumbent by more than the tolerance (relative; 0 demands proof that it cannot
    beat it at all, and keeps every configuration that is as good within the noise).

    Args:
        options: ``min_subsets``, ``confidence``, ``tolerance`` (``OPTIONS``).
        mode: "max" or "min": the objective's direction (which completed configuration is the incumbent).
        greater_is_better: the metric's direction (which way a score difference counts).
        overlap: n_test/n_train of the subset fits (the correction for the subsets' overlap); 0 gives the plain
            paired t-bound, which is over-confident on overlapping subsets.
    """

    #: ``search.scheduler`` options with their defaults and rules (read by metaray.spec)
    OPTIONS: ClassVar[dict[str, Option]] = {
        "min_subsets": Option(int, 3, Rule(lambda v: v >= 2, "racing needs two scores for a spread", ">= 2")),
        "confidence": Option(float, 0.95, Rule(lambda v: 0.5 <= v < 1, "racing's one-sided confidence level",
                                               "[0.5, 1)")),
        "tolerance": Option(float, 0.0, Rule(lambda v: 0 <= v < 1, "racing's relative margin an improvement must be "
                                             "able to exceed", "[0, 1)")),
    }

    @staticmethod
    def check(options, k: int) -> None:
        """Refuse a ``min_subsets`` that leaves nothing to race with ``k`` subsets."""
        if k < 3:  # two scores before the last subset: no min_subsets can race fewer
            raise SpecError("subsets.k", "racing needs two subsets' scores before the last to compare "
                            "configurations; raise subsets.k or take another search.scheduler",
                            allowed=">= 3 with search.scheduler: racing", got=k)
        if options.min_subsets >= k:
            default = "" if "min_subsets" in options.model_fields_set else f"; {options.min_subsets} is the default"
            raise SpecError("search.scheduler.min_subsets", "racing compares configurations before all k subsets "
                            f"are fitted (subsets.k is {k}{default})", allowed=f"[2, {k - 1}]", got=options.min_subsets)

    def __init__(self, options, *, mode: str, greater_is_better: bool, total: float = 0, overlap: float = 0.0):
        self._min, self._conf, self._tol = options.min_subsets, options.confidence, options.tolerance
        self._overlap = overlap
        self._sign = 1.0 if greater_is_better else -1.0
        self._better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
        self._incumbent: tuple[float, list[float]] | None = None  # (objective, per-subset scores)

    def milestones(self, total: float) -> list[float]:
        return [float(m) for m in range(self._min, int(math.ceil(total)))]

    def decide(self, trial: int, done: float, value: float, scores: list[float]) -> bool:
        from scipy import stats

        if self._incumbent is None:
            return False
        m = len(scores)
        d = self._sign * (np.array(scores) - np.array(self._incumbent[1][:m]))
        if m < 2 or not np.isfinite(d).all():
            return False
        bound = d.mean() + stats.t.ppf(self._conf, m - 1) * d.std(ddof=1) * math.sqrt(1.0 / m + self._overlap)
        margin = self._tol * abs(float(np.mean(self._incumbent[1][:m])))
        return bool(bound <= margin)  # cannot beat the incumbent by more than the tolerance

    def finished(self, trial: int, completed: bool, objective: float, scores: list[float]) -> None:
        if completed and math.isfinite(objective) and (
                self._incumbent is None or self._better(objective, self._incumbent[0])):
            self._incumbent = (objective, list(scores))

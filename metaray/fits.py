"""Units of work and what fitting one returns: the plain records that travel between the driver, the runners, the
journal and the workers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Unit:
    """One subset fit of one configuration: configuration ``trial`` (its index in the search), fidelity ``stage``
    (0 unless epochs are the fidelity: then stage s trains for the s-th number of epochs), subset ``subset``."""

    trial: int
    stage: int
    subset: int

    def position(self, k: int) -> int:
        """Where the unit comes in its configuration's canonical order (stage by stage, subset by subset)."""
        return self.stage * k + self.subset


@dataclass
class FitResult:
    """What one subset fit returns."""

    unit: Unit
    scores: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = math.nan
    score_seconds: float = math.nan
    n_train: int = 0
    n_eval: int = 0
    error: str | None = None
    node: str | None = None
    warnings: list[str] = field(default_factory=list)  # distinct warnings the fit raised, one line each
    measures: dict[str, float] = field(default_factory=dict)  # metaray.measures the search asked for
    transient: bool = False  # failed for the cluster's sake (a worker or node lost), not the configuration's
    # final: ensemble only: the fit's predictions on its scoring rows among objective.kept_rows, as float32 (class
    # scores, a column per class; a regressor's predictions); saved beside the journal (folder.Journal), not in it
    predictions: Any = field(default=None, repr=False)

    @property
    def subset(self) -> int:
        return self.unit.subset


def trial_id(index: int) -> str:
    """A configuration's id in tables, MLflow and task names: ``t0003`` for the fourth.

    Example:
        >>> trial_id(3)
        't0003'
    """
    return f"t{index:04d}"

"""Schedulers: when to stop a configuration early. One module each, all behind one protocol; each decides from its
own state, from the scores the driver hands it in the canonical order (configuration by configuration, unit by
unit), so that the same spec gives the same decisions whatever order the fits finish in.

The driver asks ``milestones(total)`` once: the fidelity values (subsets done, or epochs trained) at which it
will ask ``decide``. A configuration that reaches one is promoted (``decide`` returns False) or stopped (True).
``finished`` is told of every configuration that ends, in order. A scheduler whose decision at a rung reads only
that rung's records says so with ``by_rung = True`` (ASHA): the driver then judges a configuration at a rung as
soon as every configuration before it has passed the rung (metaray.driver.Driver._decide_ahead).

Each scheduler class owns its options, as Optuna's components do: ``OPTIONS`` (name -> ``metaray.registry.Option``:
type, default, rule) is what ``search.scheduler`` accepts for it, and ``check(options, k)`` refuses options that
cannot work with k subsets. ``metaray.spec`` reads both through ``SCHEDULERS``; the modules stay light (SciPy is
imported when a scheduler runs), so that loading a spec stays fast.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from metaray.registry import Option, Registry

__all__ = ["Scheduler", "NoScheduler", "SCHEDULERS", "make_scheduler"]


class Scheduler(Protocol):
    OPTIONS: ClassVar[dict[str, Option]]

    @staticmethod
    def check(options: Any, k: int) -> None:
        """Raise a SpecError if ``options`` (a spec's ``search.scheduler``) cannot work with ``k`` subsets."""

    def milestones(self, total: float) -> list[float]:
        """The fidelity values below ``total`` at which configurations are judged, ascending."""

    def decide(self, trial: int, done: float, value: float, scores: list[float]) -> bool:
        """Whether to stop configuration ``trial`` that has ``done`` fidelity (at or past a milestone), with the
        running objective ``value`` and its scores so far (one per subset, of its latest stage)."""

    def finished(self, trial: int, completed: bool, objective: float, scores: list[float]) -> None:
        """Configuration ``trial`` ended: completed (every unit fitted) or not (stopped or failed)."""


class NoScheduler:
    """No early stopping: every configuration is fitted on every unit."""

    OPTIONS: ClassVar[dict[str, Option]] = {}

    @staticmethod
    def check(options, k: int) -> None:
        pass

    def __init__(self, options=None, *, mode: str = "max", greater_is_better: bool = True, total: float = 1,
                 overlap: float = 0.0):
        pass

    def milestones(self, total: float) -> list[float]:
        return []

    def decide(self, trial: int, done: float, value: float, scores: list[float]) -> bool:
        return False

    def finished(self, trial: int, completed: bool, objective: float, scores: list[float]) -> None:
        pass


SCHEDULERS: Registry = Registry("scheduler", "search.scheduler.name")
SCHEDULERS.register("none", NoScheduler)
SCHEDULERS.register("asha", "metaray.schedulers.asha:Asha")
SCHEDULERS.register("racing", "metaray.schedulers.racing:Racing")


def make_scheduler(options, *, mode: str, greater_is_better: bool, total: float, overlap: float = 0.0) -> Scheduler:
    """The scheduler ``options.name`` (a spec's ``search.scheduler``) for objectives optimised in ``mode``.
    ``overlap``: n_test/n_train of the subset fits, the correction of a paired test for the subsets' overlap
    (metaray.stats; 0 for none)."""
    return SCHEDULERS.get(options.name)(options, mode=mode, greater_is_better=greater_is_better, total=total,
                                        overlap=overlap)

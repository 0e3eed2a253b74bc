"""The plan of a search: what it will try and how it decides, made from a prepared spec before anything runs.

``plan(prepared, space, ...)`` is pure: it reads no tracking store and no file, starts nothing and changes none of its
arguments; the warm-start points it is given (chosen by the caller) are all it knows of past searches. What it
returns, a frozen ``Plan``, holds the searcher, the scheduler, the layout of a configuration's units, the driver
that makes every decision, and the ranking that turns the driver's configurations into lines and tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metaray.aggregates import aggregate
from metaray.driver import Driver, Layout, Trial
from metaray.errors import RejectedValue, SpecError, one_line
from metaray.fits import Unit
from metaray.front import Evidence
from metaray.learners import complexity
from metaray.objective import Prepared
from metaray.results import Ranking
from metaray.schedulers import make_scheduler
from metaray.searchers import make_searcher
from metaray.space import plain
from metaray.spec import ExperimentSpec, LearnerSpec
from metaray.stats import VersusBest

#: configurations in flight with an adaptive searcher unless the spec says otherwise: a constant, not a multiple of
#: the cluster's CPUs, so that what the searcher has seen before each suggestion (and so the results table) is the
#: same on a laptop and on a cluster
ADAPTIVE_IN_FLIGHT = 8


@dataclass(frozen=True)
class Plan:
    """A search's plan (not the subsets' plan, ``Prepared.plan``).

    Attributes:
        spec: the spec as the run folder's ``spec.yaml`` records it: the prepared (resolved) spec, with
            ``search.max_concurrent`` resolved too (a copy: the spec given is left as it is).
        space: the parsed search space; searcher, scheduler, layout: see metaray.searchers, metaray.schedulers,
            metaray.driver.Layout.
        driver: the decisions (metaray.driver.Driver; ``num_samples``, ``max_concurrent``); ranking: its
            configurations as lines, rows and tables, with the tests against the best (``ranking.versus``).
        warm: the warm-start points the searcher took (none if it refused them).
        notes: lines for the user (a warm start the searcher refused).
    """

    spec: ExperimentSpec
    space: Any
    searcher: Any
    scheduler: Any
    layout: Layout
    driver: Driver
    ranking: Ranking
    warm: tuple = ()
    notes: tuple[str, ...] = ()

    @property
    def tie_method(self) -> str:
        """How configurations are tested against the best, in words."""
        versus = self.ranking.versus
        return (versus.method if versus else
                "not tested: one subset per configuration leaves no spread to test with")

    def learner_for(self, trial: Trial, unit: Unit):
        """The learner to fit a unit with: the configuration's, trained for the unit's stage's epochs."""
        epochs = self.layout.epochs[unit.stage]
        return trial.learner if epochs is None else trial.learner.with_params(epochs=epochs)


#: ``search.max_concurrent: auto`` keeps this many times the cluster's CPUs in fits between two decisions
AUTO_FITS_PER_CPU = 4


def auto_in_flight(cpus: int, layout: Layout) -> int:
    """The configurations an adaptive searcher keeps in flight on ``cpus`` CPUs: ``AUTO_FITS_PER_CPU`` x ``cpus``
    fits of the units an open configuration may fit before it waits for a decision (``Layout.shortest_step``: K
    without a scheduler; 1 with ASHA's first rung at one subset, or with racing, which decides after every subset
    past its first three), and at least ``ADAPTIVE_IN_FLIGHT``. Configurations end in order, and configuration i
    opens once i - max_concurrent has ended: one held up by a slow fit holds the next ones back, so the window must
    hold several times the work the cluster does at once (the simulator, experiments/benchmarks/scale.py: racing's
    window counted by its first decision, 1,365 configurations at 1,024 cores, kept them 24 % busy, and by its later
    ones, 4,096, 30 %, its search ending in 269 s instead of 429 s)."""
    return max(ADAPTIVE_IN_FLIGHT, AUTO_FITS_PER_CPU * cpus // layout.shortest_step())


def in_flight(plan: Plan, cpus: int) -> int | None:
    """``search.max_concurrent: auto`` on a cluster of ``cpus`` CPUs: ``auto_in_flight`` for an adaptive searcher;
    random and grid keep every CPU busy as they do without it (None). The number goes into the driver and the plan's
    spec (the run folder's spec.yaml: a resume reads it)."""
    resolved = auto_in_flight(cpus, plan.layout) if plan.searcher.adaptive else None
    plan.driver.max_concurrent = resolved
    plan.spec.search.max_concurrent = resolved
    return resolved


def default_samples(spec: ExperimentSpec) -> int:
    """``search.num_samples`` left unset: one pass over a grid (or an empty space), else 16."""
    return 1 if spec.search.searcher == "grid" or spec.parsed_space().empty else 16


def checked_space(prepared: Prepared):
    """The prepared spec's search space, each learner of it built once with a representative value of each
    distribution: misspelled keys and impossible values fail now (SpecError), not configuration by configuration."""
    space = prepared.spec.parsed_space()
    for branch in space.branches:
        params = {**branch.constants, **{name: d.args[0] for name, d in branch.dists.items()}}
        try:
            prepared.learner_for(LearnerSpec(name=branch.learner, params=params))
        except RejectedValue as exc:
            if exc.key.removeprefix("learner.params.") not in branch.dists:
                raise _in_space(space, branch, exc) from None
            # one edge value rejected: configurations that sample bad values fail on their own
        except SpecError as exc:
            raise _in_space(space, branch, exc) from None
    return space


def plan(prepared: Prepared, space, *, warm: Sequence = (), startup: int | None = None) -> Plan:
    """The plan of the prepared spec's search over ``space`` (``checked_space``).

    Args:
        warm: warm-start points (metaray.warmstart.Point) to evaluate first; a searcher that refuses them starts
            cold, and the plan's notes say so.
        startup: the configurations an extended search was first given (its run folder's ``first_num_samples``).
    """
    spec = prepared.spec
    s = spec.search
    n = s.num_samples or default_samples(spec)
    goals = prepared.goals
    # the direction of each objective: a searcher and a scheduler of several (Optuna's multi-objective TPE, MOASHA)
    mode = [o.mode for o in goals.objectives] if goals.multi else prepared.mode
    searcher, warm, notes = _searcher(prepared, space, n, tuple(warm), startup, mode)
    auto = s.max_concurrent == "auto"  # resolved once the cluster is known (in_flight); until then, the default
    given = None if auto else s.max_concurrent
    max_concurrent = ADAPTIVE_IN_FLIGHT if searcher.adaptive and given is None else given
    if auto or max_concurrent != given:  # into the run folder's spec.yaml, now or by in_flight: on a copy
        spec = spec.model_copy(deep=True)
        if not auto:
            spec.search.max_concurrent = max_concurrent
    n_train, n_test = _sizes(prepared)
    scheduler, layout = _scheduler(prepared, space, mode, overlap=n_test / n_train)
    num_samples = searcher.total or n
    if space.empty and n > 1:  # nothing to vary: the learner's own configuration, scored once
        notes = (*notes, f"search.space is empty: one configuration, the learner's own, is scored; search.num_samples: "
                         f"{n} is capped at 1 (another would score the same configuration again)")
        num_samples = 1
    obj, metric = spec.objective, prepared.metric
    gib = metric.greater_is_better
    driver = Driver(searcher, scheduler, layout, num_samples=num_samples, max_concurrent=max_concurrent,
                    score=lambda scores: aggregate(scores, greater_is_better=gib, alpha=obj.alpha, lam=obj.lam),
                    objective=obj.aggregate, metric=prepared.metrics[0], accept=_acceptor(prepared, space), goals=goals)
    versus = VersusBest(obj.aggregate, prepared.mode, gib, n_train, n_test, rope=obj.rope, confidence=obj.confidence,
                        test=obj.tie_test, alpha=obj.alpha, lam=obj.lam, seed=spec.seed
                        ) if prepared.plan.k >= 2 else None  # one subset: no spread to test with
    ds = prepared.dataset
    width, outputs = ds.X.shape[1], len(ds.classes) if ds.classes is not None else 1
    ranking = Ranking(driver, space, metric=metric.name, greater_is_better=gib, aggregate=obj.aggregate,
                      mode=prepared.mode, num_samples=num_samples, alpha=obj.alpha, lam=obj.lam, versus=versus,
                      complexity=lambda t: complexity(t.learner, width, outputs) if t.learner else (9,),
                      origins={i: p.origin for i, p in enumerate(warm)}, goals=goals,
                      test=Evidence(obj.confidence, n_train, n_test, obj.alpha, obj.lam, spec.seed, obj.rope))
    return Plan(spec=spec, space=space, searcher=searcher, scheduler=scheduler, layout=layout, driver=driver,
                ranking=ranking, warm=warm, notes=notes)


def _searcher(prepared: Prepared, space, n: int, warm: tuple, startup: int | None, mode) -> tuple[Any, tuple, tuple]:
    """The spec's searcher, given the warm-start points if it takes them: (searcher, the points taken, notes)."""
    spec = prepared.spec
    name = spec.search.searcher
    try:
        return make_searcher(name, space, n, mode, spec.seed, [p.config for p in warm], startup), warm, ()
    except Exception as exc:
        if not warm:
            raise
        note = f"warm start: the {name} searcher refused the past configurations ({one_line(exc)}); starting cold"
        return make_searcher(name, space, n, mode, spec.seed, startup=startup), (), (note,)


def _scheduler(prepared: Prepared, space, mode, *, overlap: float) -> tuple[Any, Layout]:
    """The spec's scheduler and the layout of a configuration's units: over its subsets, or over its epochs (ASHA
    with the epochs fidelity)."""
    options, k = prepared.spec.search.scheduler, prepared.plan.k
    make = dict(mode=mode, greater_is_better=prepared.metric.greater_is_better, overlap=overlap)
    if options.name != "asha" or options.fidelity == "subsets":
        scheduler = make_scheduler(options, total=k, **make)
        return scheduler, Layout.over_subsets(k, scheduler.milestones(k))
    total = _epochs(prepared, space)
    scheduler = make_scheduler(options, total=total, **make)
    return scheduler, Layout.over_epochs(k, total, scheduler.milestones(total))


def _sizes(prepared: Prepared) -> tuple[float, float]:
    """The rows a subset fit trains on and the rows of the pool it does not, on average: the n_train and n_test
    of the paired tests' overlap correction. Under the ``full`` protocol a fit is scored on its own rows too;
    the rows it did not see are what varies from subset to subset. Under ``holdout`` every fit is scored on
    the same test rows: the correction is then Nadeau and Bengio's heuristic, applied as they do to random
    subsampling."""
    subsets = prepared.plan
    seen = [len(np.unique(t)) for t in subsets.train]
    if subsets.protocol == "full":
        unseen = [max(1, len(e) - n) for e, n in zip(subsets.evaluate, seen, strict=True)]
    else:
        unseen = [len(e) for e in subsets.evaluate]
    return sum(len(t) for t in subsets.train) / subsets.k, sum(unseen) / subsets.k


def _epochs(prepared: Prepared, space) -> int:
    """The learner's epochs, the epochs fidelity's total (ASHA allots them, so they are fixed, not searched)."""
    key = prepared.learner.param_key("epochs")
    if key is None:
        raise SpecError("search.scheduler.fidelity", "the epochs fidelity needs a learner trained in epochs",
                        allowed=["subsets"], got=f"epochs ({prepared.learner.name})")
    if space.conditional or "epochs" in space.branches[0].dists:
        raise SpecError("search.scheduler.fidelity", "with the epochs fidelity ASHA allots the epochs: fix "
                        "learner.params.epochs instead of searching it, in a space of one learner", got="epochs")
    total = int(prepared.learner.estimator.get_params()[key])
    grace = prepared.spec.search.scheduler.grace_period
    if math.ceil(grace) >= total:
        raise SpecError("search.scheduler.grace_period", f"ASHA stops configurations at rungs below the learner's "
                        f"{total} epochs", allowed=f"(0, {total - 1}]", got=grace)
    return total


def _in_space(space, branch, exc: SpecError) -> SpecError:
    """A learner's error about one of its parameters, as an error about the search space's key."""
    where = "search.space" + (f".learner[{branch.learner}]" if space.conditional else "")
    if exc.key.startswith("learner."):
        key = f"{where}.{exc.key.removeprefix('learner.').removeprefix('params.')}"
        return SpecError(key, exc.problem, allowed=exc.allowed, got=exc.got)
    return SpecError(exc.key, f"{exc.problem} (in {where})", allowed=exc.allowed, got=exc.got)


def _acceptor(prepared: Prepared, space) -> Callable[[dict], Any]:
    """The driver's ``accept``: a configuration's learner, built and given its memory reservation (SpecError for one
    the learner refuses, or whose fit no node could hold: that configuration fails, not the search)."""

    def accept(config: dict):
        name, params = space.resolve({k: plain(v) for k, v in config.items()})
        return prepared.reserve_memory(prepared.learner_for(LearnerSpec(name=name, params=params)))

    return accept

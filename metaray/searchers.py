"""Searchers: which configuration to try next.

One small protocol over two kinds: ``random`` and ``grid`` draw from Ray Tune's variant generator (what Tune's
``BasicVariantGenerator`` uses), seeded; ``optuna`` and ``hyperopt`` are Ray Tune ``Searcher`` objects driven through
their public API (``suggest`` / ``on_trial_complete``). The driver asks for configuration i by its index and tells
the searcher its objective in the canonical order.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from metaray.fits import trial_id
from metaray.registry import Registry

OBJECTIVE = "objective"


class Searcher(Protocol):
    """``adaptive``: suggestions learn from completed configurations. ``total``: how many configurations there
    are (a grid), or None."""

    adaptive: bool
    total: int | None
    quiet: Callable[[], contextlib.AbstractContextManager]  # quiets the library's logging within (a whole search)

    def suggest(self, index: int) -> dict[str, Any] | None:
        """The flat configuration to try as number ``index``, or None when there are no more."""

    def complete(self, index: int, value: float | tuple[float, ...] | None, violations: tuple[float, ...] = ()
                 ) -> None:
        """Configuration ``index`` ended with this objective (a tuple: its objectives, the primary first; None: it
        failed), and its constraints' violations (<= 0: met; metaray.front)."""


class Variants:
    """random and grid: Tune's variant generator, seeded; ``num_samples`` passes over the space, each over every grid
    point with fresh random draws (as Tune does)."""

    adaptive = False
    quiet = staticmethod(contextlib.nullcontext)

    def __init__(self, param_space: dict, num_samples: int, seed: int, points: list[dict] = ()):
        from ray.tune.search.variant_generator import generate_variants

        self._points = list(points)  # evaluated first (a warm start); they take the place of the last draws
        rng = np.random.RandomState(seed)
        passes = num_samples if param_space else 1
        self.total = passes * math.prod(len(v["grid_search"]) for v in param_space.values()
                                        if isinstance(v, dict) and "grid_search" in v)
        self._it = (cfg for _ in range(passes) for _, cfg in generate_variants(param_space, random_state=rng))

    def suggest(self, index: int) -> dict | None:
        if index < len(self._points):
            return dict(self._points[index])
        return next(self._it, None)

    def complete(self, index: int, value, violations: tuple[float, ...] = ()) -> None:
        pass


class TuneSearcher:
    """Any ``ray.tune.search.Searcher``, through its public methods; each call inside ``quiet()`` (a context that
    quiets the library's logging within it: ``drive`` enters it once for a whole search)."""

    adaptive = True
    total = None

    def __init__(self, searcher, quiet: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self._s, self.quiet = searcher, quiet

    def suggest(self, index: int) -> dict | None:
        with self.quiet():
            config = self._s.suggest(trial_id(index))
        return config if isinstance(config, dict) else None

    def complete(self, index: int, value, violations: tuple[float, ...] = ()) -> None:
        values = value if isinstance(value, tuple) else (value,)
        ok = value is not None and all(v is not None and math.isfinite(v) for v in values)
        tid = trial_id(index)
        trial = getattr(self._s, "_ot_trials", {}).get(tid)  # OptunaSearch's Optuna trial (Tune passes no constraints)
        if ok and violations and hasattr(trial, "set_constraint"):  # Optuna's samplers then sample by them
            for i, v in enumerate(violations):
                trial.set_constraint(f"c{i}", v if math.isfinite(v) else 1.0)
        result = {objective_name(i, len(values)): v for i, v in enumerate(values)} if ok else None
        with self.quiet():
            self._s.on_trial_complete(tid, result, error=not ok)


def objective_name(i: int, n: int) -> str:
    """The name a Tune searcher knows objective i of n by: ``objective``, or ``objective_0``, ``objective_1`` ..."""
    return OBJECTIVE if n == 1 else f"{OBJECTIVE}_{i}"


@contextlib.contextmanager
def optuna_verbosity(level: int):
    """Optuna's log level at ``level`` within the block, restored after: its INFO line for every trial is noise in a
    search, and a notebook's own studies keep the level their user set."""
    import optuna

    before = optuna.logging.get_verbosity()
    if before == level:  # (a search runs in one block: setting a level clears the cache of every logger, Ray's many)
        yield
        return
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)



def _grid(space, num_samples: int, mode, seed: int, points=(), startup=None) -> Variants:
    from ray import tune

    # choices are enumerated too
    param_space = {k: tune.grid_search(v.categories) if hasattr(v, "categories") else v
                   for k, v in space.param_space().items()}
    return Variants(param_space, num_samples, seed, points)


def _optuna(space, num_samples: int, mode, seed: int, points=(), startup=None) -> TuneSearcher:
    import functools
    import logging

    from ray.tune.search.optuna import OptunaSearch

    quiet = functools.partial(optuna_verbosity, logging.WARNING)
    several = not isinstance(mode, str)
    metric = [objective_name(i, len(mode)) for i in range(len(mode))] if several else OBJECTIVE
    with quiet():  # Tune's default sampler, TPE: multi-objective TPE for several objectives; it reads constraints
        # Tune's distributions converted as OptunaSearch would (which warns that it does, on the user's stderr)
        searcher = OptunaSearch(space=define_by_run(space) or OptunaSearch.convert_search_space(space.param_space()),
                                metric=metric,
                                mode=list(mode) if several else mode, seed=seed,
                                points_to_evaluate=[dict(p) for p in points] or None)
    return TuneSearcher(searcher, quiet)


def define_by_run(space) -> Callable | None:
    """A space of one learner with conditional parameters (a network's blocks, metaray.learners.conditions) as
    Optuna's define-by-run function: the parameters others depend on are drawn first, and a parameter only where
    it exists (``width_2`` when ``n_layers >= 2``), so that Optuna's sampler models only the parameters a
    configuration uses. None for any other space (Tune's dict of distributions serves it)."""
    from metaray.learners import conditions

    if space.conditional:
        return None
    branch = space.branches[0]
    depends = {p: c for p, c in conditions(branch.learner).items() if p in branch.dists}
    if not depends:
        return None
    first = {on for on, _ in depends.values()}
    order = sorted(branch.dists, key=lambda p: (p not in first, p))

    def define(trial):
        for p in order:
            on, least = depends.get(p, (None, 0))
            value = trial.params.get(on, branch.constants.get(on)) if on else None
            if isinstance(value, int) and value < least:
                continue
            branch.dists[p].suggest(trial, p)

    return define


def _hyperopt(space, num_samples: int, mode, seed: int, points=(), startup=None) -> TuneSearcher:
    from ray.tune.search.hyperopt import HyperOptSearch

    # Tune's distributions converted as HyperOptSearch would (which warns that it does, on the user's stderr)
    return TuneSearcher(HyperOptSearch(space=HyperOptSearch.convert_search_space(space.param_space()),
                                       metric=OBJECTIVE, mode=mode, random_state_seed=seed,
                                       n_initial_points=min(20, max(4, (startup or num_samples) // 3)),
                                       points_to_evaluate=[dict(p) for p in points] or None))


def _random(space, num_samples: int, mode, seed: int, points=(), startup=None) -> Variants:
    return Variants(space.param_space(), num_samples, seed, points)


SEARCHERS: Registry = Registry("searcher", "search.searcher")
SEARCHERS.register("random", _random)
SEARCHERS.register("grid", _grid)
SEARCHERS.register("optuna", _optuna)
SEARCHERS.register("hyperopt", _hyperopt)


def make_searcher(name: str, space, num_samples: int, mode, seed: int, points: list[dict] = (),
                  startup: int | None = None) -> Searcher:
    """The named searcher over a parsed space (``metaray.space.Space``); ``points``: flat configurations it hands
    out first (a warm start: Tune searchers' ``points_to_evaluate``, the random searcher's first draws), learning
    from their results like from its own. ``startup``: the number of configurations the search was first given
    (an extended search keeps HyperOpt's random start-up as it was). ``mode``: "max"/"min", or one per objective
    (a search of several, metaray.front). A configuration comes without the parameters its learner does not use with
    the others (``Space.pruned``: a network's blocks it lacks), whichever searcher drew it. A space with nothing to
    search (``Space.empty``) gives the learner's own configuration, whichever searcher is named."""
    make = SEARCHERS.get(name)
    if space.empty:  # nothing to search (Optuna and HyperOpt refuse a space without a distribution): the learner's own
        make = _random
    return Pruned(make(space, num_samples, mode, seed, points, startup), space)


class Pruned:
    """A searcher whose configurations are pruned by the space (``Space.pruned``); the rest is the searcher's."""

    def __init__(self, searcher, space):
        self.searcher, self.space = searcher, space
        self.adaptive, self.total, self.quiet = searcher.adaptive, searcher.total, searcher.quiet

    def suggest(self, index: int) -> dict | None:
        config = self.searcher.suggest(index)
        return self.space.pruned(config) if config is not None else None

    def complete(self, index: int, value, *violations) -> None:
        self.searcher.complete(index, value, *violations)

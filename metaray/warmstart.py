"""Learning across experiments: the past searches a tracking store holds, how similar their data is to a new
search's, and the configurations a new search evaluates first (``search.warm_start``).

Every search records its data's meta-features (metaray.metafeatures), task, metric and direction on its MLflow
parent run, and each configuration (its parameters, its K subset scores, its meta-objective) on a child run. A new
search with ``warm_start: auto`` finds the ``n`` past searches of the same task and metric whose standardised
meta-features are nearest its own, takes their best configurations (at most ``configs``, the best of each search
first), translates them into its own space (parameters outside it dropped, values clipped to its bounds, learner
branches matched by name, a configuration the current learner refuses skipped with a notice) and evaluates them
first; the searcher then continues, learning from them. A list of run ids (a search's parent run, or one
configuration's child run) or experiment names takes those instead. The chosen points are kept in the run folder
(``warm_start.json``), so that a resumed search starts from the same ones whatever the store holds by then.

This module decides; the store is read through metaray.store (``Store``), and each value is fitted into the space by
its distribution (``metaray.space.Dist.closest``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from metaray.store import past_searches  # noqa: F401  (where cli.py and tests look for it)


@dataclass(frozen=True)
class Point:
    """A configuration to evaluate first: the flat config the searcher hands out, and where it came from."""

    config: dict[str, Any]
    origin: str  # "warm <parent run id>/<trial>"
    past_objective: float  # its meta-objective in the search it comes from
    past_scores: tuple[float, ...]  # its K subset scores there


def similar(searches, metafeatures: dict[str, float]):
    """``searches`` (from ``past_searches``) with a ``distance`` column, nearest first: Euclidean distance in
    meta-features standardised over the candidates and the new search together, over the meta-features both
    have (a search without meta-features is left out)."""
    names = [n for n in metafeatures if f"mf.{n}" in searches and searches[f"mf.{n}"].notna().any()
             and math.isfinite(metafeatures[n])]  # a meta-feature older searches lack is left out, not them
    if not names or searches.empty:
        return searches.iloc[0:0].assign(distance=[])
    values = searches[[f"mf.{n}" for n in names]].to_numpy(dtype=float)
    keep = np.isfinite(values).all(axis=1)
    searches, values = searches[keep], values[keep]
    here = np.array([metafeatures[n] for n in names], dtype=float)
    both = np.vstack([values, here])
    scale = both.std(axis=0)
    scale[scale == 0] = 1.0
    distance = np.sqrt((((values - here) / scale) ** 2).sum(axis=1))
    return searches.assign(distance=distance).sort_values("distance", kind="stable")


def choose(options, space, *, metafeatures: dict[str, float], task: str, metric: str, mode: str, uri: str,
           check: Callable[[str, dict], None], say: Callable[[str], None], exclude: set[str] = frozenset()
           ) -> list[Point]:
    """The configurations a search with ``search.warm_start`` = ``options`` evaluates first (see the module)."""
    from metaray.errors import SpecError
    from metaray.store import Store

    try:
        store = Store(uri)
    except SpecError:  # no store yet: nothing to learn from
        say(f"warm start: no MLflow store at {uri} yet; starting cold")
        return []
    if options.source == "auto":
        found = similar(store.searches(task=task, metric=metric), metafeatures)
        if not found.empty:  # not this search itself, and optimised the same way (not, say, for the least spread)
            found = found[~found["run_id"].isin(exclude) & found["mode"].isin([mode, "", None])]
        if found.empty:
            say(f"warm start: no past {task} search scored by {metric} in {uri}; starting cold")
            return []
        sources = [(r.run_id, r.mode, f"{r.experiment}/{r.search} ({r.dataset}, distance {r.distance:.2f})")
                   for r in found.itertuples()]
    else:
        sources = store.named(list(options.source), say)
    chosen = _fitting(store, sources, options, space, check, say)
    if not chosen:
        say("warm start: none of the past configurations fits this search's space; starting cold")
        return []
    say("warm start: from " + ", ".join(label for label, _ in chosen))
    points, seen = [], set()
    for config, run in _round_robin([fitting for _, fitting in chosen]):
        key = json.dumps(config, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        points.append(Point(config, f"warm {run['parent']}/{run['trial']}", run["objective"], store.scores(run)))
        if len(points) >= options.configs:
            break
    return points


def _fitting(store, sources, options, space, check, say) -> list[tuple[str, list[tuple[dict, dict]]]]:
    """(label, [(config, past configuration), ...]) of the sources, nearest first, until ``n`` of them (``auto``;
    else all) have given configurations that fit this space; each source's best first."""
    chosen = []
    limit = options.n if options.source == "auto" else len(sources)
    for run_id, past_mode, label in sources:
        if len(chosen) >= limit:
            break
        fitting = []
        for run in store.best_configurations(run_id, past_mode, options.configs * 3):
            config = _translate(space, run, check, say)
            if config is not None:
                fitting.append((config, run))
        if fitting:
            chosen.append((label, fitting))
    return chosen


def _round_robin(lists: list[list[dict]]):
    """The best of each source, then the second of each, ..."""
    for rank in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if rank < len(x):
                yield x[rank]


def _translate(space, run: dict, check, say) -> dict | None:
    """A past configuration as a flat config of ``space``: its learner's branch (by name), each searched parameter
    the value of its distribution closest to the past one (``Dist.closest``: clipped to the bounds, the nearest
    choice; a parameter the past run did not have, the distribution's centre), every other flat key at its centre.
    None (said, when refused) when the learner is not in the space or refuses the values."""
    from metaray.errors import SpecError

    params = run["params"]
    learner = params.get("learner")
    if space.conditional:
        branch = next((b for b in space.branches if b.learner == learner), None)
    else:
        branch = space.branches[0] if learner in (None, space.branches[0].learner) else None
    if branch is None:
        return None  # another learner family: not this space's
    config = {"learner": branch.learner} if space.conditional else {}
    for b in space.branches:
        for name, dist in b.dists.items():
            past = params.get(f"{b.learner}.{name}", params.get(name)) if b is branch else None
            config[space.flat_name(b, name)] = dist.closest(past)
    name, resolved = space.resolve(config)
    try:
        check(name, resolved)
    except Exception as exc:  # refused by the learner (a SpecError), or worse: that configuration only
        text = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
        say(f"warm start: {run['trial']} of {run['parent'][:12]} skipped: {text}")
        return None
    return config


def save(path, points: list[Point]) -> None:
    path.write_text(json.dumps([asdict(p) for p in points], indent=1, default=str))


def load(path) -> list[Point]:
    return [Point(p["config"], p["origin"], p["past_objective"], tuple(p["past_scores"]))
            for p in json.loads(path.read_text())]

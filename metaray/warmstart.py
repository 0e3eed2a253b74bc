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
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SEARCH_FILTER = "tags.`metaray.kind` = 'search'"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Point:
    """A configuration to evaluate first: the flat config the searcher hands out, and where it came from."""

    config: dict[str, Any]
    origin: str  # "warm <parent run id>/<trial>"
    past_objective: float  # its meta-objective in the search it comes from
    past_scores: tuple[float, ...]  # its K subset scores there


def past_searches(uri: str, *, task: str | None = None, metric: str | None = None):
    """Every metaray search the store holds (newest first): experiment, run id and name, dataset, task, metric,
    mode, best objective, trial, learner and parameters, configurations, and ``mf.<name>`` meta-feature columns."""
    import pandas as pd

    client = _client(uri)  # explicit: nothing global (mlflow.set_tracking_uri also sets the environment)
    experiments = {e.experiment_id: e.name for e in _pages(client.search_experiments)}
    filters = [SEARCH_FILTER] + ([f"tags.task = '{task}'"] if task else []) + (
        [f"tags.metric = '{metric}'"] if metric else [])
    found = list(_pages(client.search_runs, list(experiments), " and ".join(filters),
                        order_by=["attributes.start_time DESC"])) if experiments else []
    if not found:
        return pd.DataFrame()
    rows = []
    for r in found:
        tags, metrics = r.data.tags, r.data.metrics
        row = {"experiment": experiments.get(r.info.experiment_id), "run_id": r.info.run_id,
               "search": r.info.run_name, "status": r.info.status, "dataset": tags.get("dataset"),
               "task": tags.get("task"), "metric": tags.get("metric"), "mode": tags.get("metaray.mode"),
               "best_objective": metrics.get("best_objective"), "best_trial": tags.get("best_trial"),
               "best_learner": tags.get("best_learner"), "best_params": tags.get("best_params"),
               "configurations": metrics.get("configurations"), "run_dir": tags.get("metaray.run_dir")}
        for k, v in r.data.params.items():
            if k.startswith("metafeature."):
                row["mf." + k.removeprefix("metafeature.")] = v
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in out.columns:
        if c.startswith("mf."):
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out


def _pages(method, *args, **kwargs):
    """Every result of a paged MLflow search."""
    token = None
    while True:
        page = method(*args, **kwargs, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _client(uri: str):
    """An MLflow client of an existing store (a SQLite file is not created by reading it), failing fast on an
    unreachable server."""
    import logging

    import mlflow

    from metaray.errors import SpecError
    from metaray.tracking import _quick_http_failures

    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        raise SpecError("tracking.uri", "no MLflow store there (a search creates it)", got=uri)
    _quick_http_failures()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return mlflow.MlflowClient(uri)


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

    try:
        client = _client(uri)
    except SpecError:  # no store yet: nothing to learn from
        say(f"warm start: no MLflow store at {uri} yet; starting cold")
        return []
    if options.source == "auto":
        found = similar(past_searches(uri, task=task, metric=metric), metafeatures)
        if not found.empty:  # not this search itself, and optimised the same way (not, say, for the least spread)
            found = found[~found["run_id"].isin(exclude) & found["mode"].isin([mode, "", None])]
        if found.empty:
            say(f"warm start: no past {task} search scored by {metric} in {uri}; starting cold")
            return []
        sources = [(r.run_id, r.mode, f"{r.experiment}/{r.search} ({r.dataset}, distance {r.distance:.2f})")
                   for r in found.itertuples()]
    else:
        sources = _named(client, list(options.source), say)
    # nearest first, until n sources have given configurations that fit this space; each its best first
    chosen: list[tuple[str, list[tuple[dict, dict]]]] = []
    limit = options.n if options.source == "auto" else len(sources)
    for run_id, past_mode, label in sources:
        if len(chosen) >= limit:
            break
        fitting = []
        for run in _best_children(client, run_id, past_mode, options.configs * 3):
            config = _translate(space, run, check, say)
            if config is not None:
                fitting.append((config, run))
        if fitting:
            chosen.append((label, fitting))
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
        points.append(Point(config, f"warm {run['parent']}/{run['trial']}", run["objective"], _scores(client, run)))
        if len(points) >= options.configs:
            break
    return points


def _best_children(client, run_id: str, mode: str | None, limit: int) -> list[dict]:
    """The best ``limit`` completed configurations of a past search, best first (a child run: itself)."""
    run = client.get_run(run_id)
    if run.data.tags.get("metaray.kind") == "trial":
        return [_child(run)]
    completed = f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`metaray.status` = 'completed'"
    if not mode:  # a search logged before its parent run had its direction: its configurations have it
        some = client.search_runs([run.info.experiment_id], completed, max_results=1)
        mode = some[0].data.tags.get("metaray.mode") if some else None
    order = "ASC" if mode == "min" else "DESC"
    runs = client.search_runs([run.info.experiment_id], completed,
                              order_by=[f"metrics.objective {order}", "metrics.std ASC", "attributes.run_name ASC"],
                              max_results=limit)  # of equals, the steadiest first
    return [_child(r) for r in runs if "objective" in r.data.metrics]


def _child(run) -> dict:
    return {"id": run.info.run_id, "metric": run.data.tags.get("metaray.metric"),
            "parent": run.data.tags.get("mlflow.parentRunId", ""), "trial": run.data.tags.get("metaray.trial", ""),
            "params": {k: _value(v) for k, v in run.data.params.items()}, "objective": run.data.metrics["objective"]}


def _scores(client, run: dict) -> tuple[float, ...]:
    """A chosen configuration's K subset scores in its past search (its primary metric's step series)."""
    if not run["metric"]:
        return ()
    history = sorted(client.get_metric_history(run["id"], run["metric"]), key=lambda m: m.step)
    return tuple(float(m.value) for m in history)


def _named(client, items: list[str], say) -> list[tuple[str, str | None, str]]:
    """(run id, mode, label) of the sources a list names: run ids (a search's parent run: its best
    configurations; a configuration's child run: itself) and experiment names (every search in it, newest first)."""
    out = []
    for item in items:
        if _RUN_ID.match(item):
            try:
                run = client.get_run(item)
            except Exception:
                say(f"warm start: no run {item} in the tracking store; skipped")
                continue
            out.append((item, run.data.tags.get("metaray.mode"), f"run {item}"))
            continue
        exp = client.get_experiment_by_name(item)
        if exp is None:
            say(f"warm start: no MLflow experiment {item!r}; skipped")
            continue
        for parent in client.search_runs([exp.experiment_id], SEARCH_FILTER, max_results=1000,
                                         order_by=["attributes.start_time DESC"]):
            out.append((parent.info.run_id, parent.data.tags.get("metaray.mode"), f"{item}/{parent.info.run_name}"))
    return out


def _round_robin(lists: list[list[dict]]):
    """The best of each source, then the second of each, ..."""
    for rank in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if rank < len(x):
                yield x[rank]


def _value(text: str):
    """A parameter as MLflow stored it (text) back to a value: numbers, None, booleans, lists, or the text."""
    import yaml

    if text in ("None", "null"):
        return None
    for number in (int, float):  # YAML reads 1e-05 as text
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list, str)) or value is None else text


def _translate(space, run: dict, check, say) -> dict | None:
    """A past configuration as a flat config of ``space``: its learner's branch (by name), each searched parameter
    from the past value (clipped to the bounds; a choice it does not offer takes the nearest number, else the first
    option; a parameter the past run did not have, the distribution's centre), every other flat key at its centre.
    None (said, when refused) when the learner is not in the space or refuses the values."""
    from metaray.errors import SpecError

    params = run["params"]
    learner = params.get("learner")
    branches = {b.learner: b for b in space.branches}
    if space.conditional:
        branch = branches.get(learner)
    else:
        branch = space.branches[0] if learner in (None, space.branches[0].learner) else None
    if branch is None:
        return None  # another learner family: not this space's
    config = {}
    if space.conditional:
        config["learner"] = branch.learner
    for b in space.branches:
        for name, dist in b.dists.items():
            flat = f"{b.learner}.{name}" if space.conditional else name
            past = params.get(f"{b.learner}.{name}", params.get(name)) if b is branch else None
            config[flat] = _fit(dist, past)
    name, resolved = space.resolve(config)
    try:
        check(name, resolved)
    except Exception as exc:  # refused by the learner (a SpecError), or worse: that configuration only
        text = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
        say(f"warm start: {run['trial']} of {run['parent'][:12]} skipped: {text}")
        return None
    return config


def _fit(dist, value):
    """``value`` within ``dist``: clipped to a range, rounded to its quantum or integers, or the distribution's
    centre when it has no such value."""
    kind, args = dist.kind, dist.args
    if kind in ("choice", "grid"):
        for a in args:
            if a == value or (a is not None and value is not None and str(a) == str(value)):
                return a
        numeric = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
            return min(numeric, key=lambda a: abs(a - value))  # a number it does not offer: the nearest
        return args[0]
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    low, high = args[0], args[1]
    if kind == "randint":
        top = high - 1
        return int(min(max(round(value), low), top)) if number else int((low + top) // 2)
    if not number:
        value = math.sqrt(low * high) if kind == "loguniform" else (low + high) / 2
    value = float(min(max(value, low), high))
    if kind == "quniform":
        q = args[2]
        value = float(min(max(round(value / q) * q, low), high))
    return value


def save(path, points: list[Point]) -> None:
    path.write_text(json.dumps([asdict(p) for p in points], indent=1, default=str))


def load(path) -> list[Point]:
    return [Point(p["config"], p["origin"], p["past_objective"], tuple(p["past_scores"]))
            for p in json.loads(path.read_text())]

"""The final model of a search, the experiment file's top-level ``final:``: what is fitted once the search's
configurations are ranked, and what best.json describes and MLflow logs as the search's model.

    refit     the best configuration fitted once on the whole training pool (every row but the hold-out split)
    bag       the best configuration's K subset models averaged (class probabilities for a classifier, predictions
              for a regressor); nothing is fitted on the pool. The K models are fitted again from the search's own
              subsets and seeds, so they are the models the search scored: K fits of a subset's size, in parallel.
    ensemble  greedy ensemble selection with replacement (Caruana et al. 2004), bagged (2006), over the best
              ``CANDIDATES`` configurations, driven by the predictions each fit made on the rows its subset left out
              (kept by the search: objective.kept_rows); the members chosen are refitted on the pool and averaged
              with their weights (``select``).

Each is ``kind(search) -> Final`` (``Search``: what it may read of the finished search); a failure raises, and the
search says it without losing its results (metaray.run).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metaray.registry import Registry

CANDIDATES = 10  # ensemble: the best configurations it chooses from
ROUNDS = 25  # ensemble: the members it draws (with replacement); a member's weight is its share of them
BAGS = 20  # ensemble: the bootstrap samples of the rows the selection is repeated on, its weights averaged


@dataclass(frozen=True)
class Search:
    """What a final model is made from: the prepared spec, its shared problem, the ranked configurations and the run
    folder (the fits' predictions)."""

    prepared: Any  # metaray.objective.Prepared
    problem_ref: Any  # the ObjectRef of the shared Problem
    ranking: Any  # metaray.results.Ranking
    folder: Path

    def ranked(self) -> list:
        """The completed, feasible configurations with a finite objective, best first (the earliest of equals)."""
        sign = 1 if self.ranking.mode == "max" else -1
        done = [t for t in self.ranking.driver.trials
                if t.status == "completed" and t.feasible and math.isfinite(t.objective)]
        return sorted(done, key=lambda t: (-sign * t.objective, t.index))


@dataclass(frozen=True)
class Final:
    """A search's final model as a user calls it (behind a table's cleaner), its hold-out scores ({} without a
    hold-out split), and what it is made of: ``members`` as best.json lists them, each with its weight; ``fits``:
    the fits it took; ``details``: what else best.json says of it (an ensemble's selection); ``warnings``: its fits'
    warnings, for the search to say those it has not said (a bag's fits are the search's own: none)."""

    kind: str
    model: Any
    holdout: dict[str, float]
    members: list[dict[str, Any]] = field(default_factory=list)
    fits: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what its fits on the pool warned of, one line each

    def describe(self) -> dict[str, Any]:
        """best.json's ``final``."""
        return {"kind": self.kind, "members": self.members, "fits": self.fits, **self.details}


def refit(search: Search) -> Final:
    """The best configuration fitted on the whole training pool and scored on the hold-out rows, if any."""
    from metaray.objective import deployable

    prepared, trial = search.prepared, search.ranking.best()
    (est, holdout, warned), = _get(*_refit_tasks(search, [trial]), "the refit on the whole training pool")
    return Final("refit", deployable(est, prepared.dataset.cleaner), holdout, [{"trial": trial.id, "weight": 1.0}],
                 fits=1, warnings=warned)


def bag(search: Search) -> Final:
    """The best configuration's K subset models (the search's rows and seeds), fitted in parallel, averaged, and
    scored on the hold-out rows, if any. Each fit reserves what the search's fits of the configuration did; with
    ``ray.fit_timeout_s``, each may take that long."""

    from metaray.learners.bag import Bag
    from metaray.objective import deployable

    prepared, trial = search.prepared, search.ranking.best()
    k = len(prepared.plan.train)
    members = _get(*_subset_tasks(search, [trial]), f"the bag's {k} subset fits")
    model = Bag(members, prepared.dataset.task, prepared.dataset.classes)
    return Final("bag", deployable(model, prepared.dataset.cleaner), _holdout(prepared, model),
                 [{"trial": trial.id, "subset": s, "weight": 1 / k} for s in range(k)], fits=k)


def ensemble(search: Search) -> Final:
    """Caruana's greedy selection with replacement over the best ``CANDIDATES`` configurations, on their
    out-of-subset predictions; the chosen ones refitted on the pool and averaged with their weights."""
    from metaray.learners.bag import Bag
    from metaray.objective import deployable, kept_rows

    prepared = search.prepared
    keep = kept_rows(prepared.plan, prepared.spec.seed)
    candidates = [(t, p) for t in search.ranked()[:CANDIDATES] if (p := out_of_subset(search, t, keep)) is not None]
    if not candidates:
        raise ValueError("none of the best configurations has its fits' out-of-subset predictions (a search that "
                         "began without final: ensemble, or whose predictions/ folder is gone); its results stand; "
                         "search again with final: ensemble to choose one")
    rows = _common_rows([p for _, p in candidates])
    y = prepared.dataset.y[rows[0]]
    scores = {t.id: p[1][rows[1][i]] for i, (t, p) in enumerate(candidates)}
    weights, score, single = select(scores, y, prepared, seed=prepared.spec.seed)
    by_id = {t.id: t for t, _ in candidates}
    members = [by_id[i] for i in sorted(weights, key=lambda i: (-weights[i], i))]
    fitted = _get(*_refit_tasks(search, members), f"the refit of the ensemble's {len(members)} members")
    model = Bag([est for est, _, _ in fitted], prepared.dataset.task, prepared.dataset.classes,
                weights=[weights[t.id] for t in members])
    metric = prepared.metrics[0]
    details = {"selection": {"candidates": [t.id for t, _ in candidates], "rounds": ROUNDS, "bags": BAGS,
                             "rows": int(len(y)),
                             "metric": metric, "score": score, "best_single": single}}
    return Final("ensemble", deployable(model, prepared.dataset.cleaner), _holdout(prepared, model),
                 [{"trial": t.id, "weight": weights[t.id]} for t in members], fits=len(members),
                 details=details, warnings=sorted({w for _, _, said in fitted for w in said}))


def out_of_subset(search: Search, trial, keep: np.ndarray) -> tuple | None:
    """A configuration's out-of-subset predictions, each kept row's averaged over the subsets that left it out:
    (the rows, sorted; their predictions), or None when a fit of its last stage kept none (an older run folder)."""
    from metaray.fits import Unit
    from metaray.folder import PREDICTIONS, prediction_file

    driver = search.ranking.driver
    plan, k = search.prepared.plan, driver.layout.k
    stage = max(trial.reported - 1, 0) // k
    twin = driver.first_of(trial)  # a fit taken from an identical configuration: its predictions are that one's
    total, count = None, np.zeros(len(keep))
    for s in range(k):
        path = search.folder / PREDICTIONS / prediction_file(Unit(trial.index, stage, s))
        if not path.is_file():
            path = search.folder / PREDICTIONS / prediction_file(Unit(twin, stage, s))
        if not path.is_file():
            return None
        p = np.load(path).astype(float)
        held = np.asarray(plan.evaluate[s])
        at = np.searchsorted(keep, held[np.isin(held, keep)])
        if len(p) != len(at):  # kept by another version (another sample of rows): not to be misread
            return None
        if total is None:
            total = np.zeros((len(keep), *p.shape[1:]))
        np.add.at(total, at, p)
        np.add.at(count, at, 1)
    seen = count > 0
    shape = (-1,) + (1,) * (total.ndim - 1)
    return keep[seen], total[seen] / count[seen].reshape(shape)


def _common_rows(found: list[tuple]) -> tuple:
    """The rows every candidate has a prediction for, and where each candidate holds them."""
    common = found[0][0]
    for rows, _ in found[1:]:
        common = np.intersect1d(common, rows)
    return common, [np.searchsorted(rows, common) for rows, _ in found]


def select(scores: dict[str, Any], y, prepared, *, seed: int = 0, rounds: int = ROUNDS,
           bags: int = BAGS) -> tuple[dict[str, float], float, float]:
    """Bagged greedy forward selection with replacement (Caruana et al. 2004; the bagging, 2006): on each of ``bags``
    bootstrap samples of the rows, each round adds the configuration whose predictions, averaged with those chosen so
    far, score best (the first of equals: the better ranked), and the best of the ``rounds`` prefixes is kept (the
    shortest of equals); a configuration's weight is its share of its prefix, averaged over the bags (bagging: their
    remedy for a choice that fits the noise of its rows). Returns the weights (those above zero, in the candidates'
    order), the ensemble's score on all the rows and the best single configuration's."""
    metric, labels = prepared.metric, prepared.dataset.classes
    sign = 1 if metric.greater_is_better else -1

    def score(p, at) -> float:
        s = _score(metric, y[at], p[at], labels)
        return sign * s if math.isfinite(s) else -math.inf  # more is better

    ids, rng, share = list(scores), np.random.default_rng([seed, 0xCA7], ), Counter()
    everything = np.arange(len(y))
    for _ in range(bags):
        at = rng.integers(0, len(y), len(y)) if bags > 1 else everything
        chosen, total, path = [], None, []
        for r in range(rounds):
            trial = [score((scores[i] if total is None else total + scores[i]) / (r + 1), at) for i in ids]
            j = int(np.argmax(trial))
            chosen.append(ids[j])
            total = scores[ids[j]].copy() if total is None else total + scores[ids[j]]
            path.append(trial[j])
        kept = chosen[: int(np.argmax(path)) + 1]
        for i in kept:
            share[i] += 1 / len(kept) / bags
    weights = {i: share[i] for i in ids if share[i] > 0}
    blend = sum(w * scores[i] for i, w in weights.items()) / sum(weights.values())
    return weights, sign * score(blend, everything), sign * max(score(scores[i], everything) for i in ids)


def _score(metric, y, p, labels) -> float:
    """The metric of averaged predictions (class scores: their argmax when it wants labels, rows scaled to sum to 1
    when it wants probabilities)."""
    if labels is None or p.ndim == 1:
        return float(metric(y, p, labels))
    if metric.needs == "predict":
        return float(metric(y, np.asarray(labels)[np.argmax(p, axis=1)], labels))
    return float(metric(y, p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None), labels))


def _subset_tasks(search: Search, trials: list) -> tuple[list, float | None, str]:
    """Ray tasks fitting each configuration's K subset models again (the search's rows and seeds), and their time
    limit: with ``ray.fit_timeout_s``, that long per round of fits the cluster can run at once. Each reserves what
    the search's fits of the configuration did."""
    import ray

    from metaray.objective import fit_subset

    spec = search.prepared.spec
    ray_spec, k = spec.ray, len(search.prepared.plan.train)
    refs = []
    for trial in trials:
        task = ray.remote(fit_subset).options(
            num_cpus=ray_spec.cpus_per_fit, num_gpus=ray_spec.gpus_per_fit, max_retries=ray_spec.max_retries,
            memory=int(trial.learner.memory or 0) or None, name=f"{spec.name} {trial.id} bag")
        refs += [task.remote(search.problem_ref, trial.learner, s, spec.seed) for s in range(k)]
    limit = None
    if ray_spec.fit_timeout_s is not None:
        memory = max(int(t.learner.memory or 0) for t in trials)
        limit = ray_spec.fit_timeout_s * math.ceil(len(refs) / _slots(ray_spec, memory))
    return refs, limit, "ray.fit_timeout_s per fit"


def _refit_tasks(search: Search, trials: list) -> tuple[list, float | None, str]:
    """Ray tasks fitting each configuration on the whole training pool and scoring it on the hold-out rows, and
    their time limit: with ``ray.fit_timeout_s``, that long times the pool's size over a subset's (times the rounds
    the cluster needs for them all). Each reserves the memory metaray.memory estimates for the pool's rows (the
    override scaled likewise); more than any node offers fails the final model, not the search."""
    import ray

    from metaray.memory import estimate, reserve
    from metaray.objective import fit_final

    prepared = search.prepared
    spec, subsets, ray_spec = prepared.spec, prepared.plan, prepared.spec.ray
    pool = len(prepared.dataset.y) - len(subsets.test)
    scale = pool / max(len(t) for t in subsets.train)
    refs, most = [], 0
    for trial in trials:
        learner = trial.learner
        memory = reserve(estimate(prepared.dataset, subsets, learner.model, rows=pool), learner.describe(),
                         available=prepared.available_memory(),
                         override=ray_spec.memory_per_fit and ray_spec.memory_per_fit * max(1.0, scale))
        refs.append(ray.remote(fit_final).options(
            num_cpus=ray_spec.cpus_per_fit, num_gpus=ray_spec.gpus_per_fit, max_retries=ray_spec.max_retries,
            memory=int(memory), name=f"{spec.name} {trial.id} refit").remote(search.problem_ref, learner, spec.seed))
        most = max(most, int(memory))
    limit = None
    if ray_spec.fit_timeout_s is not None:
        rounds = math.ceil(len(trials) / _slots(ray_spec, most))
        limit = ray_spec.fit_timeout_s * max(1.0, pool / min(len(t) for t in subsets.train)) * rounds
    return refs, limit, "ray.fit_timeout_s, scaled to the pool's size"


def _slots(ray_spec, memory: int) -> int:
    """How many of these tasks the cluster runs at once: as its CPUs and GPUs allow, and its memory, each task
    reserving ``memory`` bytes."""
    import ray

    from metaray.cluster import fit_slots

    slots = fit_slots(ray_spec.cpus_per_fit, ray_spec.gpus_per_fit)
    if memory:
        slots = min(slots, max(1, int(ray.cluster_resources().get("memory", 0) // memory)))
    return slots


def _holdout(prepared, model) -> dict[str, float]:
    from metaray.objective import score_rows

    problem = prepared.problem()
    return score_rows(problem, model, problem.plan.test) if problem.plan.test.size else {}


def _get(refs: list, limit: float | None, why: str, what: str) -> list:
    """The tasks' results; with a limit, tasks not done by then are cancelled and the final model fails."""
    import ray

    try:
        if limit is not None:
            done, pending = ray.wait(refs, num_returns=len(refs), timeout=limit)
            if pending:
                raise TimeoutError(f"{what} did not finish within {limit:.0f} s ({why}); the tasks were cancelled")
        return ray.get(refs)
    except BaseException:
        # one failed or ran out of time: those still queued or running are cancelled, only those (forcing the cancel
        # of every task, the ended ones too, coincided here with the driver's process dying in one run of the suite)
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


FINALS: Registry = Registry("final model", "final")
FINALS.register("refit", refit)
FINALS.register("bag", bag)
FINALS.register("ensemble", ensemble)

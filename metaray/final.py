"""The final model of a search, the experiment file's top-level ``final:``: what is fitted once the best configuration
is known, and what best.json describes and MLflow logs as the search's model.

    refit   the best configuration fitted once on the whole training pool (every row but the hold-out split)
    bag     the best configuration's K subset models averaged (class probabilities for a classifier, predictions for
            a regressor); nothing is fitted on the pool. The K models are fitted again from the search's own subsets
            and seeds, so they are the models the search scored: K fits of a subset's size, in parallel, instead of
            one of the pool's size.

Each is ``kind(prepared, problem_ref, trial) -> Final``; a failure raises, and the search says it without losing its
results (metaray.run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from metaray.registry import Registry


@dataclass(frozen=True)
class Final:
    """A search's final model as a user calls it (behind a table's cleaner), its hold-out scores ({} without a
    hold-out split), and what it is made of: ``members`` as best.json lists them, each with its weight."""

    kind: str
    model: Any
    holdout: dict[str, float]
    members: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """best.json's ``final``."""
        return {"kind": self.kind, "members": self.members}


def refit(prepared, problem_ref, trial) -> Final:
    """The best configuration fitted on the whole training pool and scored on the hold-out rows, if any.

    With ``ray.fit_timeout_s``, the refit may take that long times the pool's size over a subset's. It reserves the
    memory metaray.memory estimates for the pool's rows (the override scaled likewise); more than any node offers
    fails the refit, not the search."""
    import ray

    from metaray.memory import estimate, reserve
    from metaray.objective import deployable, fit_final

    spec, subsets, learner = prepared.spec, prepared.plan, trial.learner
    ray_spec = spec.ray
    pool = len(prepared.dataset.y) - len(subsets.test)
    scale = pool / max(len(t) for t in subsets.train)
    memory = reserve(estimate(prepared.dataset, subsets, learner.model, rows=pool), learner.describe(),
                     available=prepared.available_memory(),
                     override=ray_spec.memory_per_fit and ray_spec.memory_per_fit * max(1.0, scale))
    ref = ray.remote(fit_final).options(num_cpus=ray_spec.cpus_per_fit, num_gpus=ray_spec.gpus_per_fit,
                                        max_retries=ray_spec.max_retries, memory=int(memory),
                                        name=f"{spec.name} {trial.id} refit").remote(problem_ref, learner, spec.seed)
    limit = None
    if ray_spec.fit_timeout_s is not None:
        limit = ray_spec.fit_timeout_s * max(1.0, pool / min(len(t) for t in subsets.train))
    est, holdout = _get([ref], limit, "the refit on the whole training pool", "ray.fit_timeout_s, scaled to the "
                        "pool's size")[0]
    return Final("refit", deployable(est, prepared.dataset.cleaner), holdout, [{"trial": trial.id, "weight": 1.0}])


def bag(prepared, problem_ref, trial) -> Final:
    """The best configuration's K subset models (the search's rows and seeds), fitted in parallel, averaged, and
    scored on the hold-out rows, if any. Each fit reserves what the search's fits of the configuration did; with
    ``ray.fit_timeout_s``, each may take that long."""
    import ray

    from metaray.cluster import fit_slots
    from metaray.learners.bag import Bag
    from metaray.objective import deployable, fit_subset, score_rows

    spec, learner = prepared.spec, trial.learner
    ray_spec, k = spec.ray, len(prepared.plan.train)
    task = ray.remote(fit_subset).options(num_cpus=ray_spec.cpus_per_fit, num_gpus=ray_spec.gpus_per_fit,
                                          max_retries=ray_spec.max_retries, memory=int(learner.memory or 0) or None,
                                          name=f"{spec.name} {trial.id} bag")
    refs = [task.remote(problem_ref, learner, s, spec.seed) for s in range(k)]
    limit = None
    if ray_spec.fit_timeout_s is not None:
        limit = ray_spec.fit_timeout_s * math.ceil(k / fit_slots(ray_spec.cpus_per_fit, ray_spec.gpus_per_fit))
    members = _get(refs, limit, f"the bag's {k} subset fits", "ray.fit_timeout_s per fit")
    model = Bag(members, prepared.dataset.task, prepared.dataset.classes)
    problem = prepared.problem()
    holdout = score_rows(problem, model, problem.plan.test) if problem.plan.test.size else {}
    return Final("bag", deployable(model, prepared.dataset.cleaner), holdout,
                 [{"trial": trial.id, "subset": s, "weight": 1 / k} for s in range(k)])


def _get(refs: list, limit: float | None, what: str, why: str) -> list:
    """The tasks' results; with a limit, tasks not done by then are cancelled and the final model fails."""
    import ray

    if limit is not None:
        done, pending = ray.wait(refs, num_returns=len(refs), timeout=limit)
        if pending:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise TimeoutError(f"{what} did not finish within {limit:.0f} s ({why}); the tasks were cancelled")
    return ray.get(refs)


FINALS: Registry = Registry("final model", "final")
FINALS.register("refit", refit)
FINALS.register("bag", bag)

"""The four strategies of the seed document as presets over one engine: which task, which learner family,
which metrics. A strategy never changes the pipeline (subsets, fits, aggregation, search, tracking)."""

from __future__ import annotations

from dataclasses import dataclass, field

from metaray.registry import Registry


@dataclass(frozen=True)
class Strategy:
    """A preset.

    Attributes:
        task: the task it fixes, or None to take the data's.
        family: where learner names are looked up: "predictor" (classifiers and regressors) or "embedding"
            (transformers, scored through a fixed probe and by reconstruction).
        learner: default learner per task.
        metric: default meta-objective metric per task.
        extra_metrics: always reported besides the objective's.
    """

    name: str
    task: str | None
    family: str
    learner: dict[str, str]
    metric: dict[str, str]
    extra_metrics: tuple[str, ...] = field(default_factory=tuple)


STRATEGIES: Registry[Strategy] = Registry("strategy", "strategy")
for _s in (
    Strategy("auto", None, "predictor", {"classification": "logistic_regression", "regression": "ridge"},
             {"classification": "accuracy", "regression": "mse"}),
    Strategy("classification", "classification", "predictor", {"classification": "logistic_regression"},
             {"classification": "accuracy"}),
    Strategy("regression", "regression", "predictor", {"regression": "ridge"}, {"regression": "mse"}),
    # the seed's meta-embedding, done right: an embedder fitted per subset, scored on held-out rows by a fixed
    # probe trained on the embedded subset, and by how well it reconstructs those rows
    Strategy("embedding", None, "embedding", {"classification": "pca", "regression": "pca"},
             {"classification": "accuracy", "regression": "r2"}, ("reconstruction_mse",)),
    # meta neural-architecture design: the learner is an architecture sampled from a Tune space
    Strategy("nas", None, "predictor", {"classification": "nas_net", "regression": "nas_net"},
             {"classification": "accuracy", "regression": "mse"}),
):
    STRATEGIES.register(_s.name, _s)

"""The experiment spec: YAML in, a typed ExperimentSpec out, every default explicit, every error one line.

Example:
    >>> spec = load_spec({"name": "demo", "data": {"dataset": "iris"}}, overrides=["subsets.k=3"])
    >>> spec.subsets.k, spec.subsets.fraction, spec.objective.aggregate
    (3, 0.8, 'mean')
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from metaray.errors import SpecError
from metaray.registry import Option, Rule, check_choice

TASKS = ("auto", "classification", "regression")
SAMPLERS = ("subsample", "bootstrap", "stratified", "kfold", "time")
#: what a column of a table can be made into (metaray.columns): ``data.columns: {title: text, id: drop}``
COLUMN_ROLES = ("numeric", "category", "text", "datetime", "drop")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTES = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _quantity(value, units: dict[str, float], key: str, allowed: str) -> float:
    """A number with an optional unit (``10m``, ``1.5h``, ``4GB``) in the base unit (seconds, bytes)."""
    import re

    if isinstance(value, bool):
        raise SpecError(key, "not a quantity", allowed=allowed, got=value)
    if isinstance(value, (int, float)):
        number, factor = float(value), 1.0
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else None
        if match is None or (unit and unit not in units):
            raise SpecError(key, "not a quantity", allowed=allowed, got=value)
        number, factor = float(match.group(1)), units[unit] if unit else 1.0
    if not math.isfinite(number) or number <= 0:
        raise SpecError(key, "must be positive", allowed=allowed, got=value)
    return number * factor
PROTOCOLS = ("holdout", "out_of_subset", "full")
DEFAULT_FRACTION = {"subsample": 0.8, "stratified": 0.8, "bootstrap": 1.0, "time": None}  # time: forward chaining


POSITIVE = Rule(lambda v: v >= 1, "must be a positive integer", ">= 1")
NON_NEGATIVE = Rule(lambda v: v >= 0, "must not be negative", ">= 0")


def _names(module: str, attr: str) -> Callable[[], list[str]]:
    """The names of a registry (or a dict), looked up when first needed, so that loading a spec stays light."""

    def names():
        import importlib

        found = getattr(importlib.import_module(module), attr)
        return found.names() if hasattr(found, "names") else list(found)

    return names


class _Section(BaseModel):
    """Sections declare their constraints as data (``_rules``, ``_choices``); one validator enforces them and
    writes every message the same way: the key, the problem, the allowed values, the bad value."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    _key: ClassVar[str] = ""
    _rules: ClassVar[dict[str, Rule]] = {}
    _choices: ClassVar[dict[str, tuple[str, Callable[[], Any]]]] = {}

    @field_validator("*")
    @classmethod
    def _declared(cls, v, info):
        name = info.field_name
        if v is None:
            return v
        key = f"{cls._key}.{name}" if cls._key else name
        rule = cls._rules.get(name)
        if rule is not None and not rule.ok(v):
            raise SpecError(key, rule.problem, allowed=rule.allowed, got=v)
        if name in cls._choices:
            kind, allowed = cls._choices[name]
            check_choice(key, kind, v, allowed())
        return v


class DataSpec(_Section):
    """Where the rows come from. Exactly one of ``dataset`` (a registered name) or ``path`` (CSV/Parquet)."""

    dataset: str | None = None
    path: str | None = None
    target: str | None = None
    task: str = "auto"
    params: dict[str, Any] = Field(default_factory=dict)
    test_size: float = 0.2
    scale: bool = False
    impute: bool = True
    na_values: list[str | int | float] = Field(default_factory=list)
    columns: dict[str, str] = Field(default_factory=dict)  # column -> role, over the role metaray would choose
    drop: list[str] = Field(default_factory=list)  # columns left out (IDs, leaks): the same as role drop
    order: str | None = None  # the column that orders rows in time, for subsets.sampler: time

    _key = "data"

    @field_validator("columns", "drop", "order", mode="before")
    @classmethod
    def _names_as_text(cls, v):
        """Column names as text: a YAML ``0:`` names the column ``0`` of a headerless or ``.npy`` table."""
        if isinstance(v, dict):
            return {str(k): r for k, r in v.items()}
        if isinstance(v, list):
            return [str(x) for x in v]
        return v if v is None or isinstance(v, str) else str(v)

    _rules = {"test_size": Rule(lambda v: 0 < v < 1, "must be a fraction of the rows", "(0, 1)")}
    _choices = {"task": ("task", lambda: TASKS), "dataset": ("dataset", _names("metaray.datasets", "DATASETS"))}

    @model_validator(mode="after")
    def _source(self):
        if (self.dataset is None) == (self.path is None):
            raise SpecError("data", "give exactly one of 'dataset' (a name) or 'path' (a CSV/Parquet file)",
                            got={"dataset": self.dataset, "path": self.path})
        if self.path is not None and not self.target:
            raise SpecError("data.target", "a file dataset needs the name of its target column", got=self.target)
        for column, role in self.columns.items():
            check_choice(f"data.columns.{column}", "column role", role, list(COLUMN_ROLES))
        both = sorted(set(self.columns) & set(self.drop))
        if both:
            raise SpecError(f"data.columns.{both[0]}", "also in data.drop: give a column one role",
                            got={"columns": self.columns[both[0]], "drop": both[0]})
        if self.path is None:
            for key in ("columns", "drop", "order"):
                if getattr(self, key):
                    raise SpecError(f"data.{key}", "names columns of a table; give the table as data.path",
                                    got=getattr(self, key))
        return self


class SubsetSpec(_Section):
    """K subsets of the training pool, and the protocol that picks the rows each fit is scored on."""

    sampler: str = "subsample"
    k: int = 5
    fraction: float | None = None
    protocol: str = "out_of_subset"  # it ranks configurations best: experiments/benchmarks/fidelity.py
    groups: str | None = None  # a column whose rows stay together: on a fit's training side or its scoring side

    _key = "subsets"

    @field_validator("groups", mode="before")
    @classmethod
    def _name_as_text(cls, v):
        return v if v is None or isinstance(v, str) else str(v)
    _rules = {"k": Rule(lambda v: v >= 1, "the number of subsets must be at least 1", ">= 1"),
              "fraction": Rule(lambda v: 0 < v <= 1, "must be a fraction of the pool", "(0, 1]")}
    _choices = {"sampler": ("sampler", lambda: SAMPLERS), "protocol": ("protocol", lambda: PROTOCOLS)}

    @model_validator(mode="after")
    def _defaults(self):
        if self.sampler == "kfold":
            if self.k < 2:
                raise SpecError("subsets.k", "kfold needs at least 2 folds", allowed=">= 2", got=self.k)
            if self.fraction is not None and abs(self.fraction - (self.k - 1) / self.k) > 1e-9:
                raise SpecError("subsets.fraction", f"kfold with k={self.k} trains on (k-1)/k of the pool; "
                                "leave fraction unset", allowed=[round((self.k - 1) / self.k, 6)], got=self.fraction)
            resolved = (self.k - 1) / self.k
        elif self.sampler == "time" and self.fraction is not None:
            raise SpecError("subsets.fraction", "the time sampler trains each fit on every row before the ones it is "
                            "scored on (forward chaining); leave fraction unset", allowed=[None], got=self.fraction)
        else:
            resolved = DEFAULT_FRACTION[self.sampler] if self.fraction is None else self.fraction
        if self.fraction != resolved:
            self.fraction = resolved
        return self


class LearnerSpec(_Section):
    """A registered learner name or an import path of a scikit-learn-compatible estimator, and its parameters."""

    name: str | None = None  # None: the strategy's default for the task (logistic_regression, ridge, pca, nas_net)
    params: dict[str, Any] = Field(default_factory=dict)


class ObjectiveSpec(_Section):
    """The metric each fit is scored by, and the aggregate of the K scores that is the meta-objective."""

    metric: str | None = None
    extra_metrics: list[str] = Field(default_factory=list)
    aggregate: str = "mean"
    alpha: float = 0.2
    lam: float = 1.0
    rope: float = 0.01
    confidence: float = 0.95
    tie_test: str = "bayesian"
    also: list[Any] = Field(default_factory=list)  # further objectives (metaray.front): a Pareto front

    _key = "objective"
    _rules = {"alpha": Rule(lambda v: 0 < v <= 1, "CVaR's tail fraction", "(0, 1]"),
              "lam": Rule(lambda v: v >= 0, "the weight of the spread", ">= 0"),
              "rope": Rule(lambda v: v >= 0, "the half-width of the region of practical equivalence, in the "
                           "metric's units", ">= 0"),
              "confidence": Rule(lambda v: 0.5 <= v < 1, "the confidence at which a configuration is tied with the "
                                 "best", "[0.5, 1)")}
    _choices = {"metric": ("metric", _names("metaray.metrics", "METRICS")),
                "aggregate": ("aggregate", _names("metaray.aggregates", "AGGREGATES")),
                "tie_test": ("tie test", _names("metaray.stats", "TIE_TESTS"))}

    @field_validator("extra_metrics")
    @classmethod
    def _extra(cls, v):
        for i, name in enumerate(v):
            check_choice(f"objective.extra_metrics[{i}]", "metric", name, _names("metaray.metrics", "METRICS")())
        return v

    @field_validator("also", mode="before")
    @classmethod
    def _also(cls, v):
        from metaray.front import check_also

        v = [v] if isinstance(v, (str, dict)) else v
        if not isinstance(v, list):
            raise SpecError("objective.also", "a list of objectives", allowed="[NAME, {metric: NAME, aggregate: AGG}]",
                            got=v)
        for i, item in enumerate(v):
            check_also(item, i, *_measurables())
        return v


def _measurables() -> tuple[list[str], list[str], list[str]]:
    """The metrics, the measures and the aggregates an objective or a constraint may name."""
    return (_names("metaray.metrics", "METRICS")(), _names("metaray.measures", "MEASURES")(),
            _names("metaray.aggregates", "AGGREGATES")())


class RaySpec(_Section):
    """Where the fits run. ``address`` None starts a local Ray; ``fits_per_task`` None batches adaptively;
    ``fit_timeout_s`` fails a fit (and its configuration) that runs longer, and cancels its task."""

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_fit: float = 1.0
    gpus_per_fit: float = 0.0
    fits_per_task: int | None = None
    max_retries: int = 3
    fit_timeout_s: float | None = None
    memory_per_fit: float | str | None = None  # bytes (or "2GB"); None: estimated from the encoded data

    _key = "ray"
    _rules = {"num_cpus": POSITIVE, "fits_per_task": POSITIVE, "max_retries": NON_NEGATIVE,
              "fit_timeout_s": Rule(lambda v: v > 0, "seconds a fit may run before it is cancelled", "> 0"),
              "cpus_per_fit": Rule(lambda v: v > 0, "must be positive", "> 0"),
              "gpus_per_fit": Rule(lambda v: v >= 0, "a fraction of a GPU, or 0 for none", ">= 0")}

    @field_validator("memory_per_fit")
    @classmethod
    def _bytes(cls, v):
        return None if v is None else _quantity(v, _BYTES, "ray.memory_per_fit", "bytes or a size such as 2GB, 512MiB")


def _scheduler_options() -> dict[str, dict[str, Option]]:
    """The options each registered scheduler declares (its module owns them: ``OPTIONS``), by scheduler name."""
    from metaray.schedulers import SCHEDULERS

    return {name: SCHEDULERS.get(name).OPTIONS for name in SCHEDULERS.names()}


def _every_option(by_scheduler: dict[str, dict[str, Option]]) -> dict[str, Option]:
    """Every scheduler's options in one mapping, in declaration order; an option two schedulers declare must be
    declared the same way."""
    out: dict[str, Option] = {}
    for name, options in by_scheduler.items():
        for option, declared in options.items():
            if out.setdefault(option, declared) != declared:
                raise TypeError(f"scheduler {name!r} declares the option {option!r} unlike another scheduler")
    return out


_SCHEDULER_OPTIONS = _scheduler_options()
_ALL_SCHEDULER_OPTIONS = _every_option(_SCHEDULER_OPTIONS)


class _SchedulerSection(_Section):
    """Early stopping over a configuration's units, nested as Ray Tune's options are:
    ``{name: asha, grace_period: 1, reduction_factor: 3, fidelity: subsets}``, ``{name: racing, min_subsets: 3,
    confidence: 0.95, tolerance: 0}``, or ``none``; a plain name takes the defaults. Each scheduler's module declares
    its options (``metaray.schedulers``); options of another scheduler are refused."""

    name: str = "none"

    _key = "search.scheduler"
    #: scheduler name -> its options' declarations
    DECLARED: ClassVar[dict[str, dict[str, Option]]] = _SCHEDULER_OPTIONS
    _rules = {option: d.rule for option, d in _ALL_SCHEDULER_OPTIONS.items() if d.rule is not None}
    _choices = {"name": ("scheduler", _names("metaray.schedulers", "SCHEDULERS")),
                **{option: (option, lambda c=d.choices: c) for option, d in _ALL_SCHEDULER_OPTIONS.items()
                   if d.choices}}

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _own_options(self, handler):
        """Written out with its own options only: ``{name: racing, min_subsets: 3, confidence: 0.95,
        tolerance: 0.0}``."""
        return {k: v for k, v in handler(self).items() if k == "name" or k in self.DECLARED.get(self.name, {})}

    @model_validator(mode="after")
    def _options(self):
        own = self.DECLARED.get(self.name, {})
        for option in _ALL_SCHEDULER_OPTIONS:
            value = getattr(self, option)
            if value is not None and option not in own:
                raise SpecError(f"search.scheduler.{option}", f"not an option of the {self.name!r} scheduler",
                                allowed=sorted(own) or "no options", got=option)
            if value is None and option in own:
                object.__setattr__(self, option, own[option].default)
        return self

    def check(self, k: int) -> None:
        """The named scheduler's own check of its options against ``k`` subsets."""
        from metaray.schedulers import SCHEDULERS

        SCHEDULERS.get(self.name).check(self, k)


#: ``search.scheduler``: a name and every scheduler's options as optional fields (each scheduler accepts its own)
SchedulerSpec = create_model("SchedulerSpec", __base__=_SchedulerSection, __module__=__name__,
                             __doc__=_SchedulerSection.__doc__,
                             **{option: (d.type | None, None) for option, d in _ALL_SCHEDULER_OPTIONS.items()})


class WarmStartSpec(_Section):
    """Where a search's first configurations come from (metaray.warmstart): ``none``; ``auto``, the best
    configurations of the ``n`` past searches in the tracking store most similar to this one (same task and metric,
    nearest meta-features); or a list of MLflow run ids and experiment names. ``configs`` bounds how many are
    evaluated first (they count in ``num_samples``). A plain value is the source: ``warm_start: auto``."""

    source: str | list[str] = "none"
    n: int = 3
    configs: int = 8

    _key = "search.warm_start"
    _rules = {"n": POSITIVE, "configs": POSITIVE}

    @model_validator(mode="before")
    @classmethod
    def _from_source(cls, value):
        return {"source": value} if isinstance(value, (str, list)) or value is None else value

    @field_validator("source")
    @classmethod
    def _source(cls, v):
        if isinstance(v, str) and v not in ("none", "auto"):
            raise SpecError("search.warm_start", "not a source of past configurations",
                            allowed=["none", "auto", "a list of MLflow run ids or experiment names"], got=v)
        if isinstance(v, list) and (not v or not all(isinstance(x, str) and x for x in v)):
            raise SpecError("search.warm_start", "a list of MLflow run ids or experiment names, not empty",
                            allowed=["none", "auto", "[run id or experiment name, ...]"], got=v)
        return v


#: the scheduler options that were flat keys of ``search`` before they were nested under ``search.scheduler``
FLAT_SCHEDULER_KEYS = tuple(_ALL_SCHEDULER_OPTIONS)


class SearchSpec(_Section):
    """The search over configurations. ``space`` maps learner parameters to distributions (see metaray.space).

    ``num_samples`` None means 16, or one pass over the grid for the grid searcher. ``max_concurrent`` None lets
    random and grid search keep every CPU busy (their suggestions never depend on results), and runs 8
    configurations at once with the adaptive searchers (optuna, hyperopt), whose suggestions learn from finished
    ones: a constant rather than a multiple of the CPUs, so that the same spec gives the same table on any cluster.
    ``auto`` resolves it from the cluster's CPUs when the search starts (``metaray.plan.in_flight``) and writes the
    number into the run folder's spec.yaml: a resume, and a rerun on a cluster of the same size, give the same table.
    """

    space: dict[str, Any] = Field(default_factory=dict)
    searcher: str = "random"
    num_samples: int | None = None
    max_concurrent: int | Literal["auto"] | None = None
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    warm_start: WarmStartSpec = Field(default_factory=WarmStartSpec)
    time_budget: float | str | None = None  # seconds (or "10m", "1.5h"): no configuration opens after it
    constraints: list[str] = Field(default_factory=list)  # "n_parameters <= 50000": metaray.front

    _key = "search"
    _rules = {"num_samples": POSITIVE}
    _choices = {"searcher": ("searcher", _names("metaray.searchers", "SEARCHERS"))}

    @field_validator("max_concurrent", mode="before")
    @classmethod
    def _in_flight(cls, v):
        if v is None or v == "auto":
            return v
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError("search.max_concurrent", "configurations in flight at once",
                            allowed=[">= 1", "auto (from the CPUs of the cluster when the search starts)"], got=v)
        return v

    @field_validator("time_budget")
    @classmethod
    def _seconds(cls, v):
        return None if v is None else _quantity(v, _UNITS, "search.time_budget", "seconds or a duration such as "
                                                "90s, 10m, 1.5h")

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraints(cls, v):
        from metaray.front import check_constraint

        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list):
            raise SpecError("search.constraints", "a list of constraints", allowed="['n_parameters <= 50000', ...]",
                            got=v)
        for i, text in enumerate(v):
            check_constraint(text, i, *_measurables())
        return [str(t).strip() for t in v]

    @model_validator(mode="after")
    def _warm_grid(self):
        if self.warm_start.source != "none" and self.searcher == "grid":
            raise SpecError("search.warm_start", "a grid is searched whole, in its own order; a warm start needs a "
                            "searcher that draws", allowed=["random", "optuna", "hyperopt"], got="searcher: grid")
        return self

    @model_validator(mode="before")
    @classmethod
    def _flat_scheduler_keys(cls, raw, info):
        """The flat keys (``search.grace_period`` ...) still work for a release: they move under ``scheduler`` (over
        a nested value: the flat one is what an override just set), and each is said once (``ExperimentSpec.notes``,
        gathered through the validation's context)."""
        if not isinstance(raw, dict) or not any(k in raw for k in FLAT_SCHEDULER_KEYS):
            return raw
        notes = (info.context or {}).setdefault("notes", []) if info.context is not None else []
        raw = dict(raw)
        scheduler = raw.get("scheduler", "none")
        scheduler = {"name": scheduler} if isinstance(scheduler, str) else dict(scheduler or {})
        name = scheduler.get("name", "none")
        own = SchedulerSpec.DECLARED.get(name, {})
        for key in FLAT_SCHEDULER_KEYS:
            if key not in raw:
                continue
            value = raw.pop(key)
            # as before: an option of another scheduler is ignored, but epochs without ASHA are refused
            if key in own or (key == "fidelity" and value != _ALL_SCHEDULER_OPTIONS[key].default):
                scheduler[key] = value
                notes.append(f"search.{key}: deprecated; write it under search.scheduler, e.g. "
                             f"search.scheduler: {{name: {name}, {key}: {value}}}")
            else:
                notes.append(f"search.{key}: deprecated, and ignored: not an option of the {name!r} scheduler")
        raw["scheduler"] = scheduler
        return raw


class TrackingSpec(_Section):
    """MLflow tracking; ``uri`` None uses $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working folder.
    ``children``: which configurations get a child run: ``all``, ``top:N`` (the N best completed, logged at the end),
    or ``none`` (every configuration stays in the results table, logged with the parent either way)."""

    uri: str | None = None
    experiment: str | None = None
    children: str = "all"

    _key = "tracking"

    @field_validator("uri")
    @classmethod
    def _uri(cls, v):
        from metaray.store import checked_uri

        return checked_uri(v, "tracking.uri") if v else v

    @field_validator("children", mode="before")
    @classmethod
    def _children(cls, v):
        text = str(v).strip()
        if text in ("all", "none"):
            return text
        head, _, n = text.partition(":")
        if head == "top" and n.strip().isdigit() and int(n) >= 1:
            return f"top:{int(n)}"
        raise SpecError("tracking.children", "which configurations get a child run in MLflow",
                        allowed=["all", "none", "top:N with N >= 1"], got=v)

    @property
    def top(self) -> int | None:
        """N of ``top:N``; None for ``all`` and ``none``."""
        return int(self.children.partition(":")[2]) if self.children.startswith("top:") else None


class ExperimentSpec(_Section):
    """A whole experiment: what data, which subsets, which learner, which objective, where it runs."""

    name: str
    description: str = ""
    strategy: str = "auto"
    seed: int = 0
    data: DataSpec
    subsets: SubsetSpec = Field(default_factory=SubsetSpec)
    learner: LearnerSpec = Field(default_factory=LearnerSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    final: str = "refit"  # the final model: metaray.final
    ray: RaySpec = Field(default_factory=RaySpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: str = "metaray_results"
    base_dir: str = Field(default=".", exclude=True, repr=False)
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """Deprecation notices about how the spec was written, one line each, for the user to read."""
        return list(self._notes)

    _rules = {"name": Rule(lambda v: bool(v.strip()), "must not be empty", "a non-empty name"),
              "seed": Rule(lambda v: v >= 0, "must be a non-negative integer", ">= 0")}
    _choices = {"strategy": ("strategy", _names("metaray.strategies", "STRATEGIES")),
                "final": ("final model", _names("metaray.final", "FINALS"))}

    @model_validator(mode="after")
    def _space(self, info):
        from metaray.space import parse_space

        self._notes = list(dict.fromkeys((info.context or {}).get("notes", [])))
        space = parse_space(self.search.space, self.learner)
        s, scheduler = self.search, self.search.scheduler
        if s.searcher in ("optuna", "hyperopt") and "grid" in space.kinds():
            raise SpecError("search.space", "grid entries need the random or grid searcher",
                            allowed=["random", "grid"], got=s.searcher)
        if s.searcher == "grid" and space.kinds() - {"grid", "choice"}:
            bad = sorted(space.kinds() - {"grid", "choice"})
            raise SpecError("search.space", "the grid searcher enumerates grid and choice entries only",
                            allowed=["grid", "choice"], got=bad)
        scheduler.check(self.subsets.k)
        sub, data = self.subsets, self.data
        if (sub.sampler == "time") != (data.order is not None):
            raise SpecError("data.order" if sub.sampler == "time" else "subsets.sampler",
                            "the time sampler trains on the past and scores on what follows: it needs data.order, the "
                            "column that orders the rows, and data.order is for the time sampler",
                            allowed=["subsets.sampler: time with data.order: COLUMN"],
                            got={"subsets.sampler": sub.sampler, "data.order": data.order})
        if sub.groups is not None and data.path is None:
            raise SpecError("subsets.groups", "names a column of a table; give the table as data.path",
                            got=sub.groups)
        if sub.protocol == "full" and (sub.groups is not None or sub.sampler == "time"):
            raise SpecError("subsets.protocol", "protocol 'full' scores every fit on its own training rows too, so it "
                            "cannot keep a group, or the future, off the scoring side",
                            allowed=["out_of_subset", "holdout"], got="full")
        if sub.groups is not None and sub.sampler in ("bootstrap", "time"):
            raise SpecError("subsets.sampler", "groups are kept together by drawing whole groups",
                            allowed=["subsample", "stratified", "kfold"], got=sub.sampler)
        if self.final != "refit" and self.strategy == "embedding":
            raise SpecError("final", f"a {self.final} averages its models' predictions; an embedding's model is its "
                            "transform, which cannot be averaged", allowed=["refit"], got=self.final)
        if self.final == "ensemble" and sub.protocol != "out_of_subset":
            raise SpecError("final", "ensemble selection weighs configurations by their predictions on the rows their "
                            "fits left out; under another protocol it would choose on rows the fits saw or on the "
                            "hold-out rows that judge it", allowed=["refit", "bag", "ensemble with subsets.protocol: "
                            "out_of_subset"], got={"final": self.final, "subsets.protocol": sub.protocol})
        if self.objective.also:
            self._several_objectives()
        if self.ray.address and self.ray.num_cpus is not None:
            raise SpecError("ray.num_cpus", "applies to a local Ray only; a cluster's nodes set their own CPUs",
                            allowed=[None], got=self.ray.num_cpus)
        return self

    def _several_objectives(self) -> None:
        """What a search of several objectives refuses (metaray.front)."""
        s = self.search
        if s.searcher == "hyperopt":
            raise SpecError("search.searcher", "HyperOpt optimises one objective; objective.also asks for a Pareto "
                            "front", allowed=["random", "grid", "optuna"], got="hyperopt")
        if s.scheduler.name == "racing":
            raise SpecError("search.scheduler", "racing stops a configuration that cannot beat the best on one "
                            "objective; with objective.also it would drop configurations the front needs (ASHA is "
                            "multi-objective: it promotes by non-dominated sorting)", allowed=["none", "asha"],
                            got="racing")

    def parsed_space(self):
        from metaray.space import parse_space

        return parse_space(self.search.space, self.learner)

    def resolve_path(self, path: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_override(item: str) -> tuple[str, Any]:
    """``"subsets.k=10"`` -> ``("subsets.k", 10)``; the value is read as YAML so numbers and lists keep their type."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError("--set", "expected KEY=VALUE with a dotted key", allowed="e.g. subsets.k=10", got=item)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(".".join(parts[: i + 1]), f"is a value, not a section; cannot set {key!r}", got=child)
            node = child
        node[parts[-1]] = value
    return out


def _location(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _from_validation_error(err: ValidationError) -> SpecError:
    e = err.errors(include_url=False)[0]
    key = _location(e["loc"])
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, SpecError):
        return cause
    if e["type"] == "extra_forbidden":
        section_model = _model_at(e["loc"][:-1])
        allowed = sorted(f for f, info in section_model.model_fields.items() if not info.exclude)
        return SpecError(key, "unknown key", allowed=allowed, got=e["loc"][-1])
    if e["type"] == "missing":
        return SpecError(key, "required key is missing")
    if cause is not None:
        return SpecError(key, str(cause), got=e.get("input"))
    return SpecError(key, e["msg"].lower(), got=e.get("input"))


def _model_at(loc: tuple) -> type[BaseModel]:
    model: type[BaseModel] = ExperimentSpec
    for part in loc:
        ann = model.model_fields[part].annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
    return model


def load_spec(source: str | os.PathLike | dict[str, Any] | ExperimentSpec, overrides: list[str] = ()) -> ExperimentSpec:
    """Load, override and validate a spec from a YAML path, a dict or an existing spec.

    Raises:
        SpecError: one line naming the key, the allowed values and the bad value.
    """
    if isinstance(source, ExperimentSpec):
        if not overrides:
            return source
        raw, base_dir = source.to_dict(), source.base_dir
    elif isinstance(source, dict):
        raw, base_dir = source, source.get("base_dir", ".")
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError("spec", "no such experiment file", got=str(path))
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError("spec", f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
        if raw is None:
            raise SpecError("spec", f"{path} is empty")
        base_dir = str(path.parent)
    if not isinstance(raw, dict):
        raise SpecError("spec", "the top level must be a mapping of keys", got=type(raw).__name__)
    raw = apply_overrides(raw, list(overrides))
    raw.setdefault("base_dir", base_dir)
    try:
        return ExperimentSpec.model_validate(raw, context={"notes": []})
    except ValidationError as err:
        raise _from_validation_error(err) from None

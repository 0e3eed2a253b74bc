"""The meta-objective: fit one configuration on K subsets, score each fit, aggregate the scores.

Data flow:
    spec -> prepare() [dataset, subsets, learner, metrics; all validation, before Ray starts]
         -> start_fits(): Ray connected, ray.put(problem) once, a runner (metaray.runners) that fits the subsets,
            score_fit() each -> FitResult per subset, streamed back as fits finish -> aggregate() -> Evaluation
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metaray.aggregates import aggregate, objective_mode
from metaray.data import Dataset, load_dataset
from metaray.errors import FitError, SpecError, headline, one_line
from metaray.fits import FitResult, Unit
from metaray.learners import Learner, accepts_nan, build_learner, final_estimator
from metaray.measures import measure
from metaray.metafeatures import compute as compute_metafeatures
from metaray.metrics import METRICS, get_metric
from metaray.spec import ExperimentSpec, load_spec
from metaray.subsets import SubsetPlan, make_plan


@dataclass(frozen=True)
class Problem:
    """Everything a subset fit reads; put into Ray's object store once per search and shared by every task.

    ``encoded`` is set inside a task only: the encoded rows of the subsets its fits use (``Encoded``), fetched from
    the object store with the task's arguments."""

    X: Any
    y: np.ndarray
    plan: SubsetPlan
    task: str
    labels: np.ndarray | None
    metrics: tuple[str, ...]
    encoded: dict[int, Encoded] | None = None
    keep: np.ndarray | None = None  # final: ensemble: the rows whose out-of-subset predictions each fit keeps
    measures: tuple[str, ...] = ()  # metaray.measures each fit measures (those objectives and constraints name)


@dataclass(frozen=True)
class Encoded:
    """Subset k's rows through the table's encoder (``metaray.columns.encoder``) fitted on its training rows only:
    what every configuration's fit on subset k starts from, computed once per search instead of once per fit."""

    train: Any = None  # encoded rows of plan.train[k], in order
    evaluate: Any = None  # encoded rows of plan.evaluate[k], in order
    error: str | None = None  # the encoder failed on this subset: every fit on it fails with this
    seconds: float = 0.0


def encode_subset(problem: Problem, encoder, k: int) -> Encoded:
    """Fit the table's encoder on subset k's training rows and encode its training and scoring rows (run as a Ray
    task, one per subset, before the fits that need it)."""
    from sklearn.base import clone

    plan = problem.plan
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = clone(encoder).fit(_rows(problem.X, plan.train[k]), problem.y[plan.train[k]])
            train = enc.transform(_rows(problem.X, plan.train[k]))
            held = _stack([enc.transform(_rows(problem.X, c)) for c in _chunks(problem.X, plan.evaluate[k])])
    except MemoryError:
        raise  # the node's trouble, not the subset's: Ray retries the task, the fits on it fail as transient
    except Exception as exc:
        kind, _, message = one_line(exc).partition(": ")
        return Encoded(error=f"{kind} while encoding the table's columns: {message}")
    return Encoded(train, held, seconds=time.perf_counter() - t0)


def _stack(parts: list):
    if hasattr(parts[0], "tocsr"):
        import scipy.sparse as sp

        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)


def fit_seed(seed: int, k: int) -> int:
    """The learner seed of subset k: the same for every configuration, so configurations differ by their
    hyperparameters only (common random numbers), and the same on every rerun."""
    return int(np.random.SeedSequence([seed, k, 0x5EED]).generate_state(1)[0] % (2**31 - 1))


def _rows(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def score_fit(problem: Problem, learner: Learner, unit: Unit, seed: int) -> FitResult:
    """Fit the learner on the unit's subset and score it on the protocol's rows. Errors are returned, not raised."""
    plan, k = problem.plan, unit.subset
    train, held = plan.train[k], plan.evaluate[k]
    result = FitResult(unit, n_train=len(train), n_eval=len(held), node=os.uname().nodename)
    encoded = (problem.encoded or {}).get(k) if hasattr(learner.estimator, "steps") else None
    try:
        # warnings come back with the result, so the driver can say each once instead of every worker printing it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = learner.for_fit(fit_seed(seed, k))
            if encoded is not None and est.steps[0][0] == "prep":  # the subset's encoding is shared: fit what follows
                if encoded.error:
                    raise FitError(encoded.error)
                est, X_train, X_held = _after_encoding(est), encoded.train, encoded.evaluate
            else:
                X_train, X_held = _rows(problem.X, train), None
            t0 = time.perf_counter()
            est.fit(X_train, problem.y[train])
            t1 = time.perf_counter()
            result.scores = score_rows(problem, est, held, X_held)
            result.fit_seconds, result.score_seconds = t1 - t0, time.perf_counter() - t1
            if problem.measures:
                take = ((lambda at: _rows(problem.X, held[at])) if X_held is None else (lambda at: _rows(X_held, at)))
                result.measures = measure(problem.measures, est, take, result.fit_seconds, len(held))
            if problem.keep is not None:
                result.predictions = _kept_predictions(problem, est, held, X_held)
        result.warnings = said(caught)
        primary = result.scores[problem.metrics[0]]
        if not np.isfinite(primary) and problem.metrics[0] not in ("roc_auc",):
            raise FitError(f"the {problem.metrics[0]} score is {primary}; the model's predictions are not finite")
    except Exception as exc:  # a bad configuration must fail its own trial, not the search
        result.error = one_line(exc)
    return result


#: the most rows whose out-of-subset predictions a search keeps for ``final: ensemble`` (a seeded sample beyond)
KEEP_ROWS = 10_000


def kept_rows(plan: SubsetPlan, seed: int) -> np.ndarray:
    """The rows, sorted, whose predictions each fit keeps for ensemble selection: those some subset scores, at most
    ``KEEP_ROWS`` of them (a sample seeded by the spec's seed)."""
    rows = np.unique(np.concatenate([np.asarray(e) for e in plan.evaluate])) if len(plan.evaluate) else np.array([])
    if len(rows) > KEEP_ROWS:
        rng = np.random.default_rng([seed, 0xE45E])
        rows = np.sort(rng.choice(rows, KEEP_ROWS, replace=False))
    return rows.astype(np.int64)


def predictions(est, X, task: str, labels, dtype=np.float32) -> np.ndarray:
    """What ensemble selection averages (kept as float32): a classifier's class probabilities (else its decision
    values as a softmax, else a one-hot of its labels), a column per class of the task; a regressor's predictions."""
    if task != "classification":
        return np.asarray(est.predict(X), dtype=dtype)
    if hasattr(est, "predict_proba"):
        return _proba(est, X, labels).astype(dtype)
    if hasattr(est, "decision_function"):
        return _aligned_scores(est, X, labels).astype(dtype)
    return (np.asarray(est.predict(X))[:, None] == np.asarray(labels)[None, :]).astype(dtype)


def _kept_predictions(problem: Problem, est, held: np.ndarray, X_held=None) -> np.ndarray | None:
    """The fit's predictions on its scoring rows that are among ``problem.keep``, in the order of ``held``; None when
    they cannot be made (the configuration is then no candidate of the ensemble; its fit stands)."""
    at = np.flatnonzero(np.isin(held, problem.keep))
    if not at.size:
        return np.zeros((0, len(problem.labels)) if problem.task == "classification" else 0, dtype=np.float32)
    try:
        X = _rows(problem.X, held[at]) if X_held is None else _rows(X_held, at)
        return predictions(est, X, problem.task, problem.labels)
    except Exception:
        return None


def _after_encoding(est):
    """A learner's pipeline without its first step, the table's encoder (whose output a task is given)."""
    from sklearn.pipeline import Pipeline

    rest = est.steps[1:]
    return rest[0][1] if len(rest) == 1 else Pipeline(rest)


EVAL_CHUNK_BYTES = 16 * 2**20


def _row_bytes(X) -> float:
    n = X.shape[0]
    if hasattr(X, "memory_usage"):
        return X.memory_usage(index=False).sum() / max(n, 1)
    if hasattr(X, "nnz"):  # sparse: the stored values and their column indices
        return (X.data.nbytes + X.indices.nbytes) / max(n, 1)
    return X[:1].nbytes


def _chunks(X, rows: np.ndarray) -> Iterator[np.ndarray]:
    """The evaluation rows in chunks of about ``EVAL_CHUNK_BYTES`` of features: scoring a fit never holds a copy of
    all its evaluation rows at once (on large data, that copy would double a worker's memory)."""
    row_bytes = _row_bytes(X)
    step = max(1, int(EVAL_CHUNK_BYTES // max(row_bytes, 1)))
    for i in range(0, max(len(rows), 1), step):
        yield rows[i : i + step]


def score_rows(problem: Problem, est, rows: np.ndarray, X_rows=None) -> dict[str, float]:
    """Every metric of the problem for a fitted estimator on the given rows, computed chunk by chunk; ``X_rows``:
    those rows' features already encoded, in the order of ``rows`` (else they are taken from the problem)."""
    metrics = [METRICS.get(name) for name in problem.metrics]
    source = problem.X if X_rows is None else X_rows
    chunks = list(_chunks(source, rows if X_rows is None else np.arange(len(rows))))
    parts: dict[str, list] = {m.needs: [] for m in metrics}
    for chunk in chunks:
        X = _rows(source, chunk)
        for need, out in parts.items():
            out.append(_output(need, est, X, problem.labels))
    y = problem.y[rows]
    # predictions keep the labels' own type (text, bool, ...); a reconstruction error is a mean per chunk, weighted
    # by the chunk's rows
    outputs = {need: np.average(p, weights=[len(c) for c in chunks]) if need == "reconstruct" else np.concatenate(p)
               for need, p in parts.items()}
    return {name: m(outputs[m.needs], None) if m.needs == "reconstruct" else m(y, outputs[m.needs], problem.labels)
            for name, m in zip(problem.metrics, metrics, strict=True)}


def _output(need: str, est, X, labels):
    """What a metric needs of a fitted estimator on rows X (see ``Metric.needs``)."""
    if need == "reconstruct":  # measured in the features the embedder saw, after preprocessing
        X = est[:-1].transform(X) if hasattr(est, "steps") else X
        return final_estimator(est).reconstruction_error(X.toarray() if hasattr(X, "toarray") else X)
    if need == "predict":
        return est.predict(X)
    if need == "proba" or hasattr(est, "predict_proba"):
        return _proba(est, X, labels)
    return _softmax_scores(est.decision_function(X))


def said(caught) -> list[str]:
    """Warnings caught in a fit (``warnings.catch_warnings(record=True)``), each distinct one as one line, for the
    driver to say once (metaray.errors.unsaid) instead of every worker printing them in full."""
    return sorted({f"{w.category.__name__}: {headline(str(w.message))}" for w in caught})


def fit_final(problem: Problem, learner: Learner, seed: int):
    """Fit on the whole training pool (every row but the hold-out split); score on the hold-out rows if any.
    Returns the estimator, its hold-out scores and the warnings it raised (``said``)."""
    pool = np.setdiff1d(np.arange(len(problem.y)), problem.plan.test)
    est = learner.for_fit(fit_seed(seed, 1 << 20))
    whole = len(pool) == len(problem.y)  # no hold-out: fit on the shared, read-only features without a copy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(problem.X if whole else _rows(problem.X, pool), problem.y if whole else problem.y[pool])
        scores = score_rows(problem, est, problem.plan.test) if problem.plan.test.size else {}
    return est, scores, said(caught)


def fit_subset(problem: Problem, learner: Learner, k: int, seed: int):
    """Subset k's model of a configuration as the search's fit made it: the same training rows, the same seed (the
    whole learner, a table's encoder included, fitted on the subset's rows)."""
    train = problem.plan.train[k]
    est = learner.for_fit(fit_seed(seed, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the search said its warnings already
        est.fit(_rows(problem.X, train), problem.y[train])
    return est


def deployable(est, cleaner):
    """The refitted model as a user calls it: behind the table's cleaner (see ``TableCleaner``), so that it takes
    the user's own table; an estimator trained on an array is returned as it is."""
    if cleaner is None:
        return est
    from sklearn.pipeline import Pipeline

    return Pipeline([("clean", cleaner), *(est.steps if hasattr(est, "steps") else [("model", est)])])


def _softmax_scores(d: np.ndarray) -> np.ndarray:
    """decision_function values as scores with a column per class (ranking metrics only need the order)."""
    d = np.asarray(d, dtype=float)
    if d.ndim == 1:
        d = np.column_stack([-d, d])
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _proba(est, X, labels):
    """Class probabilities with a column for every class of the task, even one absent from the subset."""
    return _aligned(est.predict_proba(X), est, labels)


def _aligned_scores(est, X, labels):
    """decision_function values as softmax scores (``_softmax_scores``) with a column for every class of the task."""
    return _aligned(_softmax_scores(est.decision_function(X)), est, labels)


def _aligned(columns: np.ndarray, est, labels) -> np.ndarray:
    fitted = list(getattr(est, "classes_", labels))
    if len(fitted) == len(labels):
        return columns
    full = np.zeros((len(columns), len(labels)))
    for j, c in enumerate(fitted):
        full[:, int(np.searchsorted(labels, c))] = columns[:, j]
    return full


@dataclass
class Prepared:
    """A spec resolved against its data: what `evaluate` and the search share. ``spec`` is a copy of the spec given
    to ``prepare``, with what its strategy and data decided filled in (the task, the learner): the spec a run
    folder records."""

    spec: ExperimentSpec
    dataset: Dataset
    plan: SubsetPlan
    learner: Learner
    metrics: tuple[str, ...]
    family: str = "predictor"
    node_memory: float | None = field(default=None, repr=False)  # the most any node offers, once Ray is connected

    @property
    def metric(self):
        return get_metric(self.metrics[0])

    @property
    def mode(self) -> str:
        return objective_mode(self.spec.objective.aggregate, self.metric.greater_is_better)

    @property
    def goals(self):
        """The objectives (the primary first) and constraints of the search (metaray.front.Goals)."""
        from metaray.front import Goals

        obj = self.spec.objective
        return Goals(self.metrics[0], obj.aggregate, obj.also, self.spec.search.constraints, alpha=obj.alpha,
                     lam=obj.lam, direction=lambda name: get_metric(name).greater_is_better)

    def problem(self) -> Problem:
        from metaray.measures import MEASURES

        keep = kept_rows(self.plan, self.spec.seed) if self.spec.final == "ensemble" else None
        measures = tuple(name for name in self.goals.sources if name in MEASURES)
        return Problem(self.dataset.X, self.dataset.y, self.plan, self.dataset.task, self.dataset.classes, self.metrics,
                       keep=keep, measures=measures)

    def learner_for(self, learner_spec) -> Learner:
        """Build (and validate) another configuration of the learner against the same data."""
        ds, spec = self.dataset, self.spec
        task = "embedding" if self.family == "embedding" else ds.task
        learner = build_learner(learner_spec, task, preprocessor=ds.preprocessor(scale=spec.data.scale,
                                impute=spec.data.impute), cpus_per_fit=spec.ray.cpus_per_fit, probe_task=ds.task,
                                device="cuda" if spec.ray.gpus_per_fit else None)
        check_learner(learner, ds, spec, self.metrics)
        return learner

    def available_memory(self) -> float | None:
        """The most memory any node of the connected Ray offers (metaray.memory.node_memory), asked once."""
        if self.node_memory is None:
            from metaray.memory import node_memory

            self.node_memory = node_memory()
        return self.node_memory

    def reserve_memory(self, learner: Learner) -> Learner:
        """Set the memory each fit of ``learner`` reserves (metaray.memory: the estimate, or ``ray.memory_per_fit``);
        raises SpecError, naming the widest columns and the fix, when no node of the cluster could run one."""
        from metaray.memory import estimate, reserve

        need = estimate(self.dataset, self.plan, learner.model)
        learner.memory = reserve(need, learner.describe(), available=self.available_memory(),
                                 override=self.spec.ray.memory_per_fit)
        return learner

    def start_runner(self, problem_ref, *, shared_encoding: bool = True):
        """The runner of this spec's fits on the connected Ray (metaray.runners.FitRunner), with a table's encoding
        of each subset computed once and shared by every configuration (``encode_subsets``) unless told not to."""
        import dataclasses

        import pandas as pd
        import ray

        from metaray.memory import estimate, reserve
        from metaray.runners import FitRunner

        r, available = self.spec.ray, self.available_memory()
        need = estimate(self.dataset, self.plan, None)  # the rows of a subset, without a learner's own memory
        if r.memory_per_fit is not None:  # refused once, before any configuration, not configuration by configuration
            reserve(need, "", available=available, override=r.memory_per_fit)
        encodings, fit_ref = None, problem_ref
        if shared_encoding and isinstance(self.dataset.X, pd.DataFrame):
            memory = reserve(need, "the column encoder", available=available, override=r.memory_per_fit)
            encodings = encode_subsets(self, problem_ref, cpus=r.cpus_per_fit, memory=memory)
            # the fits read the encoded rows, not the table: no task unpickles the table's text again
            fit_ref = ray.put(dataclasses.replace(self.problem(), X=None))
            if r.fit_timeout_s:  # a fit's clock starts when it is dispatched: not while it waits for its encoding
                ray.wait(list(encodings.values()), num_returns=len(encodings))
        return FitRunner(score_fit, fit_ref, seed=self.spec.seed, cpus_per_fit=r.cpus_per_fit,
                         gpus_per_fit=r.gpus_per_fit, fits_per_task=r.fits_per_task, max_retries=r.max_retries,
                         fit_timeout_s=r.fit_timeout_s, label=self.spec.name, encodings=encodings)


def check_learner(learner: Learner, ds: Dataset, spec: ExperimentSpec, metrics: Iterable[str]) -> None:
    model = learner.model
    if ds.needs_imputation and not spec.data.impute and not accepts_nan(model):
        raise SpecError("data.impute", f"features contain NaN and {type(model).__name__} cannot take NaN; "
                        "turn imputation on or pick a learner that handles missing values",
                        allowed=[True], got=spec.data.impute)
    for name in metrics:
        needs = get_metric(name).needs
        if (needs == "proba" and not hasattr(model, "predict_proba")) or (
                needs == "score" and not hasattr(model, "predict_proba") and not hasattr(model, "decision_function")):
            raise SpecError("objective.metric", f"{name!r} needs class probabilities, which "
                            f"{type(model).__name__} with these parameters does not give", got=name)
        if needs == "reconstruct" and not hasattr(model, "reconstruction_error"):
            raise SpecError("objective.metric", f"{name!r} scores embedders; use strategy: embedding", got=name)


def notice(line: str) -> None:
    """Tell the user something about their input that is not an error (rows left out) when the caller passed no
    ``say`` of its own: a warning of the ``metaray`` logger, which prints nothing unless logging is configured."""
    logging.getLogger("metaray").warning(line)


def prepare(spec: ExperimentSpec, say: Callable[[str], None] = notice) -> Prepared:
    """Load the data, draw the subsets and build the learner, raising SpecError on anything unusable; ``say``
    receives one line per notice about the data (rows dropped for a missing target).

    The spec's strategy (a preset, see metaray.strategies) fills what the spec leaves open: the task, the
    learner, the metrics; in a copy of the spec (``Prepared.spec``): the spec given is left as it is.
    """
    from metaray.strategies import STRATEGIES

    spec = spec.model_copy(deep=True)
    strategy = STRATEGIES.get(spec.strategy)
    if strategy.task and spec.data.task not in ("auto", strategy.task):
        raise SpecError("data.task", f"strategy {strategy.name!r} is a {strategy.task} strategy",
                        allowed=[strategy.task, "auto"], got=spec.data.task)
    if strategy.task:
        spec.data.task = strategy.task
    ds = load_dataset(spec)
    for line in ds.notes:
        say(line)
    if spec.learner.name is None:
        spec.learner.name = strategy.learner[ds.task]
    obj = spec.objective
    primary = obj.metric or strategy.metric[ds.task]
    named = [("objective.metric", primary), *((f"objective.extra_metrics[{i}]", m) for i, m in
                                               enumerate(obj.extra_metrics)), *_goal_metrics(spec)]
    for key, name in named:
        metric = get_metric(name)
        if metric.task not in (ds.task, "any"):
            allowed = [m for m in METRICS.names() if METRICS.get(m).task == ds.task
                       or (METRICS.get(m).task == "any" and strategy.family == "embedding")]
            raise SpecError(key, f"a {metric.task} metric cannot score a {ds.task} task", allowed=allowed, got=name)
    if primary == "reconstruction_mse" and not spec.data.scale:
        say("objective.metric: reconstruction_mse is in the features' own units with data.scale: false, so columns "
            "with large units weigh most, and an embedder that standardises its input (autoencoder) is compared with "
            "ones that do not (pca); data.scale: true weighs every column alike")
    names = [primary, *obj.extra_metrics, *strategy.extra_metrics, *(name for _, name in named)]
    metrics = tuple(dict.fromkeys(names))
    plan = make_plan(ds.y, ds.task, spec.subsets, seed=spec.seed, test_size=spec.data.test_size, groups=ds.groups,
                     order=ds.order)
    prepared = Prepared(spec, ds, plan, None, metrics, strategy.family)  # type: ignore[arg-type]
    prepared.learner = prepared.learner_for(spec.learner)
    prepared.goals  # noqa: B018 (the objectives resolved against the metrics: a duplicate is refused now)
    return prepared


def _goal_metrics(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """(key, metric) of every metric that ``objective.also`` and ``search.constraints`` name (not the measures)."""
    from metaray.front import SPREAD, parse_constraint

    found = []
    for i, item in enumerate(spec.objective.also):
        name = item if isinstance(item, str) else item["metric"]
        if name in METRICS.names():
            found.append((f"objective.also[{i}]", name))
    for i, text in enumerate(spec.search.constraints):
        name = parse_constraint(text)[1]
        if name in METRICS.names():
            found.append((f"search.constraints[{i}]", name))
    return [(k, n) for k, n in found if n != SPREAD]


def share(prepared: Prepared):
    """Put the problem into Ray's object store once, and let the driver read its features from there too, so
    that the data exists once on this node: in shared memory, mapped by the driver and every worker."""
    import ray

    ref = ray.put(prepared.problem())
    prepared.dataset.X = ray.get(ref).X  # zero-copy, read-only view for NumPy arrays
    return ref


@dataclass(frozen=True)
class Fits:
    """A prepared spec's fits, ready to run: Ray connected, the problem shared, the runner started."""

    runner: Any  # metaray.runners.FitRunner
    problem_ref: Any  # the ObjectRef of the shared Problem
    dashboard_url: str | None = None


def start_fits(prepared: Prepared, *, say: Callable[[str], None] = notice, dashboard: bool = False,
               warm_up: bool = False, shared_encoding: bool = True,
               connected: Callable[[dict], None] = lambda info: None) -> Fits:
    """Connect to Ray (``ray.address``, else a local Ray), share the problem and start the runner of its fits.

    Args:
        dashboard: start Ray's dashboard (a local Ray only).
        warm_up: import the learner's modules in every worker first (a search's many fits start sooner).
        shared_encoding: a table's subsets encoded once for every configuration (``Prepared.start_runner``).
        connected: called with metaray.cluster.connect's answer once Ray is connected, before anything is sent to it
            (a search waits there for its tracking store; an evaluation reserves its fit's memory).
    """
    from metaray.cluster import connect
    from metaray.cluster import warm_up as import_in_workers

    spec = prepared.spec
    info = connect(spec.ray.address, num_cpus=spec.ray.num_cpus, dashboard=dashboard, say=say)
    if warm_up:
        import_in_workers(["metaray.objective", type(prepared.learner.model).__module__], info["cpus"])
    connected(info)
    ref = share(prepared)
    return Fits(prepared.start_runner(ref, shared_encoding=shared_encoding), ref, info["dashboard_url"])


def encode_subsets(prepared: Prepared, problem_ref, *, cpus: float = 1.0, memory: float | None = None):
    """For a table, one Ray task per subset that fits the column encoder on the subset's training rows and encodes
    its rows (``encode_subset``): {k: ObjectRef of Encoded}, which the fits of every configuration share. (An array's
    preprocessing, imputation and scaling, costs less than a task: its fits do their own.)"""
    import ray

    ds, spec = prepared.dataset, prepared.spec
    encoder = ds.preprocessor(scale=spec.data.scale, impute=spec.data.impute)
    task = ray.remote(encode_subset)
    options = dict(num_cpus=cpus, max_retries=spec.ray.max_retries, **({"memory": int(memory)} if memory else {}))
    return {k: task.options(**options, name=f"{spec.name} encode s{k}").remote(problem_ref, encoder, k)
            for k in range(prepared.plan.k)}


@dataclass
class Evaluation:
    """The meta-objective of one configuration, with everything that went into it.

    Attributes:
        objective: the value of the spec's aggregate, the number a search optimises.
        aggregates: every aggregate of the K primary-metric scores.
        subsets: one row per subset: scores of every metric, fit seconds, sizes.
    """

    name: str
    learner: str
    metric: str
    mode: str
    aggregate: str
    objective: float
    aggregates: dict[str, float]
    subsets: Any  # pandas.DataFrame
    dataset: dict[str, Any]
    protocol: str
    wall_seconds: float
    metafeatures: dict[str, float] = field(default_factory=dict)  # metaray.metafeatures of the dataset
    columns: list[dict[str, Any]] = field(default_factory=list)  # a table's columns: role, why, encoded width

    def summary(self) -> str:
        import pandas as pd

        agg = pd.DataFrame({"value": {k: v for k, v in self.aggregates.items() if k != "n"}})
        agg["meta-objective"] = ["<--" if k == self.aggregate else "" for k in agg.index]
        from metaray.columns import ColumnRole, describe_roles

        roles = [ColumnRole(**c) for c in self.columns]
        lines = [
            f"{self.name}: {self.learner} on {self.dataset['name']} ({self.dataset['task']}, "
            f"{self.dataset['rows']} rows), {len(self.subsets)} subsets, protocol {self.protocol}",
            *(["", "columns (role, why):", *describe_roles(roles)] if roles else []),
            "",
            self.subsets.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "",
            f"aggregates of {self.metric} over {len(self.subsets)} subsets:",
            agg.to_string(float_format=lambda v: f"{v:.4f}"),
            "",
            f"meta-objective ({self.aggregate} {self.metric}, {self.mode}imise): {self.objective:.4f}"
            f"   [{self.wall_seconds:.1f} s]",
        ]
        if self.protocol == "full":
            lines.append("note: protocol 'full' scores each fit on rows it was trained on, so it is optimistic")
        return "\n".join(lines)


def _results_frame(results: list[FitResult], metrics: tuple[str, ...]):
    import pandas as pd

    rows = [{"subset": r.subset, **{m: r.scores.get(m, math.nan) for m in metrics}, "fit_seconds": r.fit_seconds,
             "n_train": r.n_train, "n_eval": r.n_eval} for r in sorted(results, key=lambda r: r.subset)]
    return pd.DataFrame(rows)


def evaluate(spec: ExperimentSpec | dict | str | os.PathLike, overrides: list[str] = (), *,
             progress: Callable[[FitResult, int], None] | None = None,
             say: Callable[[str], None] = notice) -> Evaluation:
    """Score the spec's configuration by its meta-objective; ``progress`` sees every subset's result as it
    arrives, ``say`` every notice about the data.

    Example (starts a local Ray unless one is running)::

        ev = evaluate({"name": "demo", "data": {"dataset": "iris"}, "subsets": {"k": 3}})
        ev.objective, ev.aggregates["std"], ev.subsets  # the meta-objective, the spread, the per-subset table

    Raises:
        SpecError: the spec or its data cannot be used (raised before Ray starts).
        FitError: a subset fit failed; the message names the subset and the learner's error.
    """
    from metaray.cluster import ray_environment

    t0 = time.perf_counter()
    spec = load_spec(spec, list(overrides))
    ray_environment(spec.ray.address)  # before anything imports Ray
    prepared = prepare(spec, say)
    spec = prepared.spec
    # one configuration: its fits encode their own subsets (sharing would add K tasks and save nothing)
    runner = start_fits(prepared, say=say, shared_encoding=False,
                        connected=lambda info: prepared.reserve_memory(prepared.learner)).runner
    runner.submit([Unit(0, 0, k) for k in range(prepared.plan.k)], prepared.learner)
    results = []
    try:
        for r in runner.results():
            results.append(r)
            if progress:
                progress(r, prepared.plan.k)
    finally:
        runner.close()
    failed = [r for r in results if r.error]
    if failed:
        first = min(failed, key=lambda r: r.subset)
        raise FitError(f"{len(failed)} of {prepared.plan.k} subset fits failed; subset {first.subset}: {first.error}")
    metric = prepared.metric
    scores = [r.scores[metric.name] for r in sorted(results, key=lambda r: r.subset)]
    aggs = aggregate(scores, greater_is_better=metric.greater_is_better, alpha=spec.objective.alpha,
                     lam=spec.objective.lam)
    return Evaluation(spec.name, prepared.learner.describe(), metric.name, prepared.mode, spec.objective.aggregate,
                      aggs[spec.objective.aggregate], aggs, _results_frame(results, prepared.metrics),
                      prepared.dataset.describe(), spec.subsets.protocol, time.perf_counter() - t0,
                      compute_metafeatures(prepared.dataset, seed=spec.seed),
                      [r.as_dict() for r in prepared.dataset.roles])

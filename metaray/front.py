"""Several objectives and constraints: the Pareto front of a search.

``objective.also`` adds objectives to the meta-objective (a metric's aggregate, or a measure of metaray.measures:
``fit_seconds``, ``model_bytes`` ...); ``search.constraints`` bounds any of them (``"n_parameters <= 50000"``).
``Goals`` turns a configuration's per-subset results into those values; ``front`` ranks configurations by
non-dominated sorting in which a configuration dominates another only where the subsets show it: significantly
better on at least one objective (the tests ties with the best are decided by, metaray.stats), and worse on none by
more than the region of practical equivalence (``objective.rope`` for a metric, 5 % for a measure). A configuration
that is better on one objective by a practically nil margin therefore does not pad the front, and one a hair worse
on every objective by noise alone is not dropped from it. Infeasible configurations (a constraint violated) are
never on it.

This module imports NumPy only (SciPy when a front is ranked): specs are checked with it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from metaray.errors import SpecError

#: the spread of the primary metric over subsets, as a name of ``objective.also``
SPREAD = "spread"
_CONSTRAINT = re.compile(r"^\s*(?:(?P<agg>\w+)\s*\(\s*(?P<inner>\w+)\s*\)|(?P<name>\w+))\s*"
                         r"(?P<op><=|>=|<|>)\s*(?P<bound>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS = {"<=": 1.0, "<": 1.0, ">=": -1.0, ">": -1.0}


@dataclass(frozen=True)
class Objective:
    """One objective: ``aggregate`` of ``source`` (a metric or a measure) over the subsets, optimised in ``mode``.
    ``label`` names its column in tables and its metric in MLflow."""

    source: str
    aggregate: str
    mode: str
    greater_is_better: bool  # the source's own direction (a measure: False)
    measure: bool

    @property
    def label(self) -> str:
        return self.source if self.measure and self.aggregate == "mean" else f"{self.aggregate}_{self.source}"


@dataclass(frozen=True)
class Constraint:
    """``objective``'s value ``op`` ``bound``; ``text`` as the spec wrote it."""

    objective: Objective
    op: str
    bound: float
    text: str

    def violation(self, value: float) -> float:
        """<= 0 when met (Optuna's convention; a value at the bound of a strict ``<`` or ``>`` is a hair over);
        NaN when there is no value."""
        if not math.isfinite(value):
            return math.nan
        v = _OPS[self.op] * (value - self.bound)
        return max(v, 1e-12) if self.op in ("<", ">") and v == 0 else v

    def met(self, value: float) -> bool:
        v = self.violation(value)
        return math.isfinite(v) and v <= 0


def parse_constraint(text: str) -> tuple[str | None, str, str, float]:
    """``(aggregate or None, name, op, bound)`` of a constraint's text; ValueError if it is not one.

    Example:
        >>> parse_constraint("n_parameters <= 50000"), parse_constraint("worst(accuracy) >= 0.9")
        ((None, 'n_parameters', '<=', 50000.0), ('worst', 'accuracy', '>=', 0.9))
    """
    m = _CONSTRAINT.match(str(text))
    if not m:
        raise ValueError(text)
    return m["agg"], m["inner"] or m["name"], m["op"], float(m["bound"])


def check_also(item, i: int, metrics: Sequence[str], measures: Sequence[str], aggregates: Sequence[str]) -> None:
    """Raise a SpecError naming ``objective.also[i]`` if ``item`` (a name, or ``{metric, aggregate}``) is none."""
    from metaray.registry import check_choice

    names = [*metrics, *measures, SPREAD]
    if isinstance(item, str):
        check_choice(f"objective.also[{i}]", "objective", item, names)
        return
    if not isinstance(item, dict) or "metric" not in item or set(item) - {"metric", "aggregate"}:
        raise SpecError(f"objective.also[{i}]", "an objective is a name or a mapping {metric: ..., aggregate: ...}",
                        allowed=["a metric or measure name", "{metric: NAME, aggregate: AGGREGATE}"], got=item)
    check_choice(f"objective.also[{i}].metric", "metric or measure", item["metric"], [*metrics, *measures])
    check_choice(f"objective.also[{i}].aggregate", "aggregate", item.get("aggregate", "mean"), aggregates)


def check_constraint(text, i: int, metrics: Sequence[str], measures: Sequence[str], aggregates: Sequence[str]) -> None:
    """Raise a SpecError naming ``search.constraints[i]`` if ``text`` is not a constraint on a metric or measure."""
    from metaray.registry import check_choice

    key = f"search.constraints[{i}]"
    try:
        agg, name, _, _ = parse_constraint(text)
    except ValueError:
        raise SpecError(key, "a constraint is 'NAME OP NUMBER' or 'AGGREGATE(NAME) OP NUMBER', OP one of <=, <, >=, >",
                        allowed=["n_parameters <= 50000", "worst(accuracy) >= 0.9"], got=text) from None
    check_choice(key, "metric or measure", name, [*metrics, *measures])
    if agg is not None:
        check_choice(key, "aggregate", agg, aggregates)


class Goals:
    """A search's objectives (the primary first) and constraints, resolved against its metrics.

    Args:
        primary: the primary metric; aggregate: the meta-objective's aggregate; also: ``objective.also``;
        constraints: ``search.constraints``; direction: a metric's name -> greater is better;
        alpha, lam: the aggregates' options.
    """

    def __init__(self, primary: str, aggregate: str, also: Sequence = (), constraints: Sequence[str] = (), *,
                 direction: Callable[[str], bool], alpha: float = 0.2, lam: float = 1.0):
        from metaray.measures import MEASURES

        self.alpha, self.lam = alpha, lam

        def objective(source: str, agg: str) -> Objective:
            from metaray.aggregates import objective_mode

            measure = source in MEASURES
            gib = False if measure else direction(source)
            return Objective(source, agg, objective_mode(agg, gib), gib, measure)

        self.primary = objective(primary, aggregate)
        extra = []
        for item in also:
            if item == SPREAD:
                item = {"metric": primary, "aggregate": "std"}
            source, agg = (item, "mean") if isinstance(item, str) else (item["metric"], item.get("aggregate", "mean"))
            extra.append(objective(source, agg))
        labels = [o.label for o in (self.primary, *extra)]
        for i, label in enumerate(labels[1:]):
            if label in labels[: i + 1]:
                raise SpecError(f"objective.also[{i}]", "the same objective twice (the meta-objective is the first)",
                                allowed="objectives that differ in metric or aggregate", got=label)
        self.also: tuple[Objective, ...] = tuple(extra)
        bounds = []
        for text in constraints:
            agg, name, op, bound = parse_constraint(text)
            bounds.append(Constraint(objective(name, agg or "mean"), op, bound, str(text).strip()))
        self.constraints: tuple[Constraint, ...] = tuple(bounds)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return (self.primary, *self.also)

    @property
    def multi(self) -> bool:
        return bool(self.also)

    @property
    def sources(self) -> tuple[str, ...]:
        """The metrics and measures every fit must give (the primary aside)."""
        return tuple(dict.fromkeys(o.source for o in (*self.also, *(c.objective for c in self.constraints))))

    @property
    def valued(self) -> tuple[Objective, ...]:
        """The objectives a configuration gets a value of, beyond the primary (which is its ``objective``)."""
        return tuple({o.label: o for o in (*self.also, *(c.objective for c in self.constraints))}.values())

    def value(self, o: Objective, series: Sequence[float]) -> float:
        from metaray.aggregates import aggregate

        return aggregate(series, greater_is_better=o.greater_is_better, alpha=self.alpha, lam=self.lam)[o.aggregate]

    def judge(self, series: Callable[[str], list[float]]) -> tuple[dict[str, float], tuple[float, ...]]:
        """A configuration's values (label -> value, the primary aside) and its constraints' violations (<= 0:
        met), from ``series(source)``: its per-subset values of a metric or measure."""
        values = {o.label: self.value(o, series(o.source)) for o in self.valued}
        return values, tuple(c.violation(values[c.objective.label]) for c in self.constraints)

    def feasible(self, values: dict[str, float]) -> bool:
        return all(c.met(values.get(c.objective.label, math.nan)) for c in self.constraints)


# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """How one configuration is compared with another on one objective: "significantly better" by the tests of
    metaray.stats at ``confidence`` (the corrected resampled t-test for means, the paired bootstrap otherwise, as ties
    with the best are tested); "at least as good" when its aggregate is worse by no more than the region of
    practical equivalence: ``rope`` in a metric's units, ``measure_rope`` of a measure's size (5 %: a network 5 %
    larger is practically as large)."""

    confidence: float = 0.95
    n_train: float = 0.0
    n_test: float = 0.0
    alpha: float = 0.2
    lam: float = 1.0
    seed: int = 0
    rope: float = 0.01
    measure_rope: float = 0.05

    @property
    def method(self) -> str:
        return (f"dominated where another is significantly better on one objective (at {self.confidence:g}; corrected "
                f"t-test for means, paired bootstrap otherwise) and worse on none by more than the ROPE ({self.rope:g}"
                f" for metrics, {self.measure_rope:.0%} for measures)")


#: pairs of configurations tested at once (memory: this many times the subsets, in float64, a few times over)
PAIRS_AT_ONCE = 100_000


def compare(series: np.ndarray, o: Objective, ev: Evidence, need: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(better, as_good)``, two configurations x configurations matrices from ``series`` (configurations x subsets,
    the per-subset values of ``o``'s source; NaN where missing): ``better[i, j]`` if i is significantly better than
    j on ``o``; ``as_good[i, j]`` if i's aggregate is worse than j's by no more than the ROPE (``Evidence``).
    ``need``: the pairs whose ``better`` matters (the others are left False): only pairs where i's aggregate is
    better are ever tested, in blocks of ``PAIRS_AT_ONCE``."""
    diff, as_good = _as_good(series, o, ev)
    return _better(series, diff, o, ev, need), as_good


def evidence(series: Sequence[np.ndarray], objectives: Sequence[Objective], ev: Evidence
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``compare``'s ``(better, as_good)`` for each objective, for ``pareto_ranks``: at least as good (within the
    ROPE) first, from the aggregates alone; then a pair is tested on one objective only where i is at least as good
    as j on every other, since no test could make i dominate j otherwise."""
    judged = [_as_good(s, o, ev) for s, o in zip(series, objectives, strict=True)]
    out = []
    for at, (s, o) in enumerate(zip(series, objectives, strict=True)):
        others = np.logical_and.reduce([a for b, (_, a) in enumerate(judged) if b != at] or [True])
        out.append((_better(s, judged[at][0], o, ev, others), judged[at][1]))
    return out


def _as_good(series: np.ndarray, o: Objective, ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """``(diff, as_good)``: the aggregates' differences, signed so that > 0 is where i is better, and whether i is
    worse than j by no more than the ROPE."""
    centre = np.array([_aggregate(row, o, ev) for row in series])
    rope = (ev.measure_rope * np.maximum(np.abs(centre)[:, None], np.abs(centre)[None, :]) if o.measure
            else ev.rope)
    diff = (1.0 if o.mode == "max" else -1.0) * (centre[:, None] - centre[None, :])
    return diff, diff >= -rope


def _better(series: np.ndarray, diff: np.ndarray, o: Objective, ev: Evidence, need: np.ndarray | None):
    """``better[i, j]``: i is significantly better than j on ``o`` (tested only where i's aggregate is better, and
    where ``need`` says the pair matters)."""
    n, k = series.shape
    if k < 2 or n < 2:  # no spread to test with: the aggregates decide
        return diff > 0
    better = np.zeros((n, n), bool)
    rows, cols = np.nonzero((diff > 0) & (True if need is None else need))
    for at in range(0, len(rows), PAIRS_AT_ONCE):
        i, j = rows[at : at + PAIRS_AT_ONCE], cols[at : at + PAIRS_AT_ONCE]
        better[i, j] = _significant(series, i, j, o, ev, 1.0 if o.mode == "max" else -1.0)
    return better


def _significant(series: np.ndarray, i: np.ndarray, j: np.ndarray, o: Objective, ev: Evidence, sign: float):
    """Whether configuration i[p] is significantly better than j[p] on ``o``, for each pair p."""
    from scipy import stats

    from metaray.stats import _ratio, paired_bootstrap

    level = 1.0 - ev.confidence
    if o.aggregate == "mean":  # the corrected resampled t-test, one-sided, every pair at once
        d = sign * (series[i] - series[j])
        ok = ~np.isnan(d)
        m = ok.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(ok, d, 0).sum(axis=1) / m
            var = np.where(ok, (d - mean[:, None]) ** 2, 0).sum(axis=1) / (m - 1)
            t = mean / np.sqrt(var * (1.0 / m + _ratio(ev.n_train, ev.n_test)))
            p = np.where(var > 0, stats.t.sf(t, df=np.maximum(m - 1, 1)), np.where(mean > 0, 0.0, 1.0))
        return (m >= 2) & (p < level)
    # the share of draws in which j is at least as good as i
    return np.array([paired_bootstrap(series[b], series[a], o.aggregate, rope=0.0, n_train=ev.n_train,
                                      n_test=ev.n_test, greater_is_better=o.greater_is_better, better=o.mode,
                                      alpha=ev.alpha, lam=ev.lam, draws=1000, seed=ev.seed)[0] < level
                     for a, b in zip(i, j, strict=True)], dtype=bool)


def _aggregate(row, o: Objective, ev: Evidence) -> float:
    from metaray.aggregates import aggregate

    return aggregate(row, greater_is_better=o.greater_is_better, alpha=ev.alpha, lam=ev.lam)[o.aggregate]


def pareto_ranks(values: np.ndarray, modes: Sequence[str], evidence: Sequence[tuple[np.ndarray, np.ndarray]] | None
                 = None) -> np.ndarray:
    """Non-dominated sorting: rank 1 is the front, rank 2 the front once it is removed, and so on.

    ``values``: configurations x objectives; ``modes``: each objective's "max"/"min". Without ``evidence``,
    dominance is Pareto's on the values. With it (``compare``'s ``(better, as_good)`` per objective), i dominates j
    when it is significantly better on one objective and at least as good on every other. Should that relation
    leave no configuration undominated (it need not be transitive), the rest's plain Pareto front is the next rank.

    Example:
        >>> pareto_ranks(np.array([[0.9, 10], [0.8, 5], [0.7, 8], [0.9, 12]]), ["max", "min"]).tolist()
        [1, 1, 2, 2]
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    signed = values * np.array([1.0 if m == "max" else -1.0 for m in modes])
    ge = (signed[:, None, :] >= signed[None, :, :]).all(axis=2)
    gt = (signed[:, None, :] > signed[None, :, :]).any(axis=2)
    plain = ge & gt  # plain[i, j]: i dominates j
    if evidence is None:
        dominates = plain
    else:
        better = np.stack([b for b, _ in evidence])
        as_good = np.stack([a for _, a in evidence])
        dominates = better.any(axis=0) & as_good.all(axis=0)
        dominates &= ~dominates.T  # each better on one objective, within the ROPE on the other: a trade-off
        np.fill_diagonal(dominates, False)
    ranks = np.zeros(n, int)
    left = np.ones(n, bool)
    rank = 0
    while left.any():
        rank += 1
        layer = _undominated(dominates, left)
        if not layer.any():
            layer = _undominated(plain, left)
        ranks[layer] = rank
        left &= ~layer
    return ranks


def _undominated(dominates: np.ndarray, left: np.ndarray) -> np.ndarray:
    """The configurations of ``left`` that none of ``left`` dominates."""
    beaten = (dominates & left[:, None]).any(axis=0)
    return left & ~beaten


def hypervolume(points: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """The hypervolume dominated by ``points`` (configurations x objectives) up to ``reference`` (a point worse than
    every one on every objective): the area a front covers in two objectives, its volume in more (exact, by
    slicing; for the tens of points a search's front holds).

    Example:
        >>> hypervolume(np.array([[1.0, 0.5], [2.0, 1.0]]), ["max", "min"], [0.0, 2.0])  # 1.5 + 2 - 1 shared
        2.5
    """
    sign = np.array([1.0 if m == "max" else -1.0 for m in modes])
    p = np.asarray(points, dtype=float) * sign  # everything maximised
    r = np.asarray(reference, dtype=float) * sign
    p = p[(p > r).all(axis=1)]
    return float(_hv(p - r))


def _hv(p: np.ndarray) -> float:
    """Hypervolume of points (all > 0) above the origin, everything maximised."""
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(p[:, 0].max())
    order = np.argsort(-p[:, 0])
    p = p[order]
    total, upper = 0.0, p[0, 0]
    for i in range(len(p)):
        low = p[i + 1, 0] if i + 1 < len(p) else 0.0
        if upper > low:
            total += (upper - low) * _hv(p[: i + 1, 1:])
            upper = low
    return total

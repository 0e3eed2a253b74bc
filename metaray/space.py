"""Search spaces written in YAML, translated to Ray Tune's own sample objects.

A space maps learner parameters to distributions or constants::

    C: {loguniform: [0.001, 100]}
    penalty: {choice: [l1, l2]}
    max_iter: 2000                       # a constant

and may choose among learners, each with its own sub-space (a conditional space)::

    learner:
      choice:
        - {name: logistic_regression, params: {C: {loguniform: [0.01, 100]}}}
        - {name: random_forest, params: {n_estimators: {randint: [50, 300]}}}

Conditional spaces are flattened: the key ``learner`` picks a branch and a branch's parameters are named
``<learner>.<param>``, so every searcher (random, grid, Optuna, HyperOpt) sees one flat space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metaray.errors import SpecError

#: distribution name -> (number of arguments, description for messages)
DISTRIBUTIONS = {
    "uniform": "[low, high]",
    "loguniform": "[low, high] with 0 < low",
    "quniform": "[low, high, q]",
    "randint": "[low, high) integers",
    "choice": "a non-empty list",
    "grid": "a non-empty list",
}


@dataclass(frozen=True)
class Dist:
    """One searched parameter's distribution as the YAML wrote it: ``kind`` (a key of ``DISTRIBUTIONS``) and its
    ``args``. Callers ask it what they need (its choices, whether it is numeric, log-scaled or integer, the value
    nearest a past one, Tune's or Optuna's object) rather than branching on the kind themselves.

    Example:
        >>> Dist("loguniform", (0.01, 10.0)).closest(500.0), Dist("choice", (1, 5, 10)).closest(7)
        (10.0, 5)
    """

    kind: str
    args: tuple

    @property
    def choices(self) -> tuple | None:
        """The values of a choice or a grid; None for a range."""
        return self.args if self.kind in ("choice", "grid") else None

    @property
    def numeric(self) -> bool:
        """Its values are numbers: a range, or choices that are all numbers (not booleans, not None)."""
        return self.choices is None or all(_is_number(v) for v in self.choices)

    @property
    def log(self) -> bool:
        """Sampled on a log scale (log-uniform)."""
        return self.kind == "loguniform"

    @property
    def integer(self) -> bool:
        """Its values are whole numbers: randint, or choices of integers (None aside)."""
        if self.kind == "randint":
            return True
        values = [a for a in self.choices or () if a is not None]
        return bool(values) and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in values)

    @property
    def centre(self):
        """A value in the middle: a range's centre (geometric on a log scale, an integer for randint), a choice's
        first value."""
        if self.choices is not None:
            return self.args[0]
        low, high = self.args[0], self.args[1]
        if self.kind == "randint":
            return int((low + high - 1) // 2)
        return math.sqrt(low * high) if self.log else (low + high) / 2

    def closest(self, value):
        """The value of this distribution nearest ``value`` (a past configuration's, warm starting a search): a
        choice equal to it (or with the same text), else the nearest number among the choices, else the first; in a
        range, ``value`` clipped to the bounds and rounded to the quantum or to an integer; the centre when
        ``value`` is not a number."""
        if self.choices is not None:
            for a in self.choices:
                if a == value or (a is not None and value is not None and str(a) == str(value)):
                    return a
            numbers = [a for a in self.choices if _is_number(a)]
            if numbers and _is_number(value):
                return min(numbers, key=lambda a: abs(a - value))  # a number it does not offer: the nearest
            return self.choices[0]
        number = _is_number(value) and math.isfinite(value)
        low, high = self.args[0], self.args[1]
        if self.kind == "randint":
            return int(min(max(round(value), low), high - 1)) if number else self.centre
        value = float(min(max(value if number else self.centre, low), high))
        if self.kind == "quniform":
            q = self.args[2]
            value = float(min(max(round(value / q) * q, low), high))
        return value

    def index(self, cell) -> float:
        """Which of the choices a results-table cell holds, as read back from CSV (None as missing, numbers as
        floats: a column of None and 5 reads 5.0, text and booleans as their text); NaN for none of them."""
        choices = self.choices or ()
        if missing(cell):
            return float(choices.index(None)) if None in choices else math.nan
        for i, a in enumerate(choices):
            if a is None:
                continue
            if _is_number(a):
                try:
                    if float(cell) == float(a):
                        return float(i)
                except (TypeError, ValueError):
                    continue
            elif str(a) == str(cell) or str(a).lower() == str(cell).lower():
                return float(i)
        return math.nan

    def read(self, cell):
        """A results-table cell as a value of this distribution: one of its choices (ValueError for none), an
        integer for randint, else a float."""
        if self.choices is not None:
            i = self.index(cell)
            if math.isnan(i):
                raise ValueError(f"{cell!r} is none of {list(self.choices)}")
            return self.choices[int(i)]
        return int(cell) if self.kind == "randint" else float(cell)

    def to_tune(self):
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def suggest(self, trial, name: str):
        """Draw it from an Optuna trial (define-by-run), as ``to_optuna`` describes it."""
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "randint":
            return trial.suggest_int(name, int(self.args[0]), int(self.args[1]) - 1)
        if self.kind == "quniform":
            return trial.suggest_float(name, self.args[0], self.args[1], step=self.args[2])
        return trial.suggest_float(name, self.args[0], self.args[1], log=self.log)

    def to_optuna(self):
        """Optuna's distribution of the same values (a quantised range as a plain one)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        if self.kind == "randint":
            return IntDistribution(int(self.args[0]), int(self.args[1]) - 1)
        return FloatDistribution(self.args[0], self.args[1], log=self.log)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def missing(value) -> bool:
    """A cell with no value: None, NaN or pandas' NA."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)) or \
        type(value).__name__ == "NAType"


def _is_dist(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def parse_dist(key: str, value: dict) -> Dist:
    kind, args = next(iter(value.items()))
    where = f"{key}.{kind}"
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise SpecError(where, f"{kind} needs {DISTRIBUTIONS[kind]}", got=args)
        return Dist(kind, tuple(args))
    n = 3 if kind == "quniform" else 2
    if not isinstance(args, list) or len(args) != n or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                              for a in args):
        raise SpecError(where, f"{kind} needs {n} numbers {DISTRIBUTIONS[kind]}", got=args)
    low, high = args[0], args[1]
    if not low < high:
        raise SpecError(where, f"the low value must be smaller than the high value (low={low}, high={high})",
                        allowed="low < high", got=args)
    if kind == "loguniform" and low <= 0:
        raise SpecError(where, f"loguniform bounds must be positive (low={low})", allowed="0 < low < high", got=args)
    if kind == "quniform" and args[2] <= 0:
        raise SpecError(where, f"the quantum q must be positive (q={args[2]})", allowed="q > 0", got=args)
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise SpecError(where, "randint bounds must be integers", got=args)
    return Dist(kind, tuple(int(a) for a in args) if kind == "randint" else tuple(float(a) for a in args))


@dataclass(frozen=True)
class Branch:
    """One learner of the space: fixed parameters and searched ones."""

    learner: str
    constants: dict[str, Any] = field(default_factory=dict)
    dists: dict[str, Dist] = field(default_factory=dict)


@dataclass(frozen=True)
class Space:
    """A parsed space: one branch, or several chosen by the flat key ``learner``."""

    branches: tuple[Branch, ...]
    conditional: bool
    selector: str = "choice"  # "choice" or "grid", for a conditional space

    @property
    def empty(self) -> bool:
        return not self.conditional and not self.branches[0].dists

    def flat_name(self, branch: Branch, param: str) -> str:
        """A branch's parameter as the flat space names it: ``<learner>.<param>`` in a conditional space."""
        return f"{branch.learner}.{param}" if self.conditional else param

    def learner_dist(self) -> Dist | None:
        """The distribution of the flat key ``learner`` (a choice or grid of the branches); None with one learner."""
        return Dist(self.selector, tuple(b.learner for b in self.branches)) if self.conditional else None

    def flat_dists(self) -> dict[str, Dist]:
        """Every searched parameter under its flat name, branch by branch, and last, in a conditional space, the
        choice of the learner."""
        out = {self.flat_name(b, p): d for b in self.branches for p, d in b.dists.items()}
        return out | ({"learner": self.learner_dist()} if self.conditional else {})

    def param_space(self) -> dict[str, Any]:
        """The flat space as Ray Tune sample objects, parameters in sorted order: a YAML mapping has no order, so
        the same space written with its keys in another order samples the same configurations."""
        out: dict[str, Any] = {}
        if self.conditional:
            out["learner"] = self.learner_dist().to_tune()
        for b in self.branches:
            for param, dist in sorted(b.dists.items()):
                out[self.flat_name(b, param)] = dist.to_tune()
        return out

    def kinds(self) -> set[str]:
        kinds = {d.kind for b in self.branches for d in b.dists.values()}
        return kinds | ({self.selector} if self.conditional else set())

    def resolve(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A sampled flat config -> (learner name, its parameters); parameters of other branches are dropped."""
        name = config["learner"] if self.conditional else self.branches[0].learner
        branch = next(b for b in self.branches if b.learner == name)
        params = dict(branch.constants)
        # a parameter a define-by-run searcher did not draw (one the learner does not use with the others) is absent
        params.update({p: plain(config[self.flat_name(branch, p)]) for p in branch.dists
                       if self.flat_name(branch, p) in config})
        return name, params

    def pruned(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config without the parameters its learner does not use with the others (a network's blocks it lacks:
        metaray.learners.conditions), as a define-by-run searcher would have drawn it; a space of one learner only.

        Example:
            >>> from metaray.spec import LearnerSpec
            >>> space = parse_space({"n_layers": {"choice": [1, 2]}, "width_2": {"choice": [8]}},
            ...                     LearnerSpec(name="nas_net"))
            >>> space.pruned({"n_layers": 1, "width_2": 8}), space.pruned({"n_layers": 2, "width_2": 8})
            ({'n_layers': 1}, {'n_layers': 2, 'width_2': 8})
        """
        from metaray.learners import inactive

        if self.conditional:
            return config
        branch = self.branches[0]
        unused = inactive(branch.learner, {**branch.constants, **config})
        return {k: v for k, v in config.items() if k not in unused} if unused else config

    def visible(self, config: dict[str, Any]) -> dict[str, Any]:
        """The parameters of a config that matter (the chosen branch's), under their flat names."""
        name, params = self.resolve(config)
        branch = next(b for b in self.branches if b.learner == name)
        out = {"learner": name} if self.conditional else {}
        out.update({self.flat_name(branch, p): params[p] for p in branch.dists if p in params})
        return out


def plain(value):
    """numpy scalars -> Python scalars, so configs serialise to JSON and YAML."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, dict)) else value


def _branch(key: str, learner: str, params: Any, base_params: dict) -> Branch:
    if not isinstance(params, dict):
        raise SpecError(key, "must be a mapping of parameter names to distributions or values", got=params)
    constants, dists = dict(base_params), {}
    for param, value in params.items():
        if _is_dist(value):
            dists[param] = parse_dist(f"{key}.{param}", value)
            constants.pop(param, None)
        elif isinstance(value, dict) and any(k in DISTRIBUTIONS for k in value):
            raise SpecError(f"{key}.{param}", "a distribution has exactly one key", allowed=sorted(DISTRIBUTIONS),
                            got=value)
        elif (isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value)), str)
              and isinstance(next(iter(value.values())), list)):  # {name: [args]} is how a distribution looks
            raise SpecError(f"{key}.{param}", "unknown distribution", allowed=sorted(DISTRIBUTIONS),
                            got=next(iter(value)))
        else:
            constants[param] = value
    return Branch(learner, constants, dists)


def parse_space(raw: dict[str, Any], learner, key: str = "search.space") -> Space:
    """Parse and check a YAML space against the spec's base learner (a ``LearnerSpec``).

    Example:
        >>> from metaray.spec import LearnerSpec
        >>> s = parse_space({"C": {"loguniform": [0.01, 10]}}, LearnerSpec(name="logistic_regression"))
        >>> s.branches[0].dists["C"]
        Dist(kind='loguniform', args=(0.01, 10.0))
    """
    raw = dict(raw or {})
    selector = raw.pop("learner", None)
    if selector is None:
        return Space((_branch(key, learner.name, raw, learner.params),), conditional=False)
    if raw:
        raise SpecError(f"{key}.{next(iter(raw))}", "with a choice of learners, parameters belong in each learner's "
                        "params", got=next(iter(raw)))
    if not _is_dist(selector) or next(iter(selector)) not in ("choice", "grid"):
        raise SpecError(f"{key}.learner", "must be a choice (or grid) of learners", allowed=["choice", "grid"],
                        got=selector)
    kind, options = next(iter(selector.items()))
    if not isinstance(options, list) or not options:
        raise SpecError(f"{key}.learner.{kind}", f"{kind} needs a non-empty list of learners", got=options)
    branches, seen = [], set()
    for i, option in enumerate(options):
        where = f"{key}.learner.{kind}[{i}]"
        if isinstance(option, str):
            option = {"name": option}
        if not isinstance(option, dict) or "name" not in option or set(option) - {"name", "params"}:
            raise SpecError(where, "each learner is a mapping with 'name' and optional 'params'",
                            allowed=["name", "params"], got=option)
        if option["name"] in seen:
            raise SpecError(where, "a learner may appear only once in the choice", got=option["name"])
        seen.add(option["name"])
        base = learner.params if option["name"] == learner.name else {}
        branches.append(_branch(f"{where}.params", option["name"], option.get("params") or {}, base))
    return Space(tuple(branches), conditional=True, selector=kind)

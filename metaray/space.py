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

from dataclasses import dataclass, field
from typing import Any

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
    kind: str
    args: tuple

    def to_tune(self):
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)


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

    def _flat_name(self, branch: Branch, param: str) -> str:
        return f"{branch.learner}.{param}" if self.conditional else param

    def param_space(self) -> dict[str, Any]:
        """The flat space as Ray Tune sample objects, parameters in sorted order: a YAML mapping has no order, so
        the same space written with its keys in another order samples the same configurations."""
        out: dict[str, Any] = {}
        if self.conditional:
            out["learner"] = Dist(self.selector, tuple(b.learner for b in self.branches)).to_tune()
        for b in self.branches:
            for param, dist in sorted(b.dists.items()):
                out[self._flat_name(b, param)] = dist.to_tune()
        return out

    def kinds(self) -> set[str]:
        kinds = {d.kind for b in self.branches for d in b.dists.values()}
        return kinds | ({self.selector} if self.conditional else set())

    def resolve(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A sampled flat config -> (learner name, its parameters); parameters of other branches are dropped."""
        name = config["learner"] if self.conditional else self.branches[0].learner
        branch = next(b for b in self.branches if b.learner == name)
        params = dict(branch.constants)
        params.update({p: plain(config[self._flat_name(branch, p)]) for p in branch.dists})
        return name, params

    def visible(self, config: dict[str, Any]) -> dict[str, Any]:
        """The parameters of a config that matter (the chosen branch's), under their flat names."""
        name, params = self.resolve(config)
        branch = next(b for b in self.branches if b.learner == name)
        out = {"learner": name} if self.conditional else {}
        out.update({self._flat_name(branch, p): params[p] for p in branch.dists})
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

"""What a search's configurations become for people: the ranking (progress lines, rows of the results table, the table
best first, ties with the best) and the SearchResult a search returns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metaray.aggregates import COLUMNS as AGGREGATE_COLUMNS
from metaray.aggregates import running
from metaray.driver import Driver, Trial, status_rank
from metaray.learners import inactive
from metaray.space import missing, plain
from metaray.stats import VersusBest


class Ranking:
    """Ranks a search's configurations: reads the driver's trials through the search space (names, parameters) and
    the objective.

    Args:
        driver: the search's driver (its trials, layout and scores).
        space: the parsed search space (``metaray.space.Space``).
        metric: the primary metric's name; greater_is_better: its direction.
        aggregate: the objective's aggregate (with ``alpha`` and ``lam``, as the spec's objective has them);
            mode: "max" or "min", the objective's direction (``metaray.aggregates.objective_mode``).
        num_samples: the configurations the search will try (the progress lines' total).
        versus: compares each configuration with the best over their common subsets (``metaray.stats.VersusBest``):
            the table's ``p_vs_best``, ``p_not_worse`` and ``tied_with_best``.
        complexity: a configuration's complexity key (``metaray.learners.complexity``), for the simplest tied one.
        origins: configuration index -> where it came from ("warm <past search>/<trial>"), for a warm start; the
            table then has an ``origin`` column ("search" for the searcher's own).
        goals: further objectives and constraints (metaray.front.Goals): the table gets their values, ``feasible``,
            ``pareto_rank`` and ``on_front``; test: how the front tests one configuration against another.
    """

    def __init__(self, driver: Driver, space, *, metric: str, greater_is_better: bool, aggregate: str, mode: str,
                 num_samples: int, alpha: float = 0.2, lam: float = 1.0, versus: VersusBest | None = None,
                 complexity: Callable[[Trial], tuple] | None = None, origins: dict[int, str] | None = None,
                 goals=None, test=None):
        self.driver, self.space, self.metric, self.greater_is_better = driver, space, metric, greater_is_better
        self.aggregate, self.mode, self.num_samples, self.alpha, self.lam = aggregate, mode, num_samples, alpha, lam
        self.versus, self.complexity, self.origins = versus, complexity, origins or {}
        self.goals = goals if goals is not None and (goals.multi or goals.constraints) else None
        self.test = test
        self._best: Trial | None = None
        self._scanned = 0  # configurations looked at by ``best``
        self._running: tuple[tuple[int, int] | None, list[float]] = (None, [])  # the last running(): (trial, reported)

    def learner(self, trial: Trial) -> tuple[str, dict[str, Any]]:
        """The configuration's learner name and its parameters (constants included)."""
        return self.space.resolve({k: plain(v) for k, v in trial.config.items()})

    def visible(self, trial: Trial) -> dict[str, Any]:
        """The searched parameters of the configuration that it uses, under their flat names: a conditional space's
        chosen branch, less those its learner does not use with the others (metaray.learners.inactive: a
        network's parameters of blocks it does not have)."""
        config = {k: plain(v) for k, v in trial.config.items()}
        shown = self.space.visible(config)
        name, params = self.space.resolve(config)
        model = getattr(trial.learner, "model", None)
        unused = inactive(name, model.get_params() if hasattr(model, "get_params") else params)
        return {k: v for k, v in shown.items() if k.rpartition(".")[2] not in unused} if unused else shown

    def series(self, trial: Trial) -> list[tuple[int, dict[str, float], float]]:
        """(subset, scores, fit seconds) of every delivered fit of the configuration's latest stage."""
        k = self.driver.layout.k
        start = (max(trial.reported - 1, 0) // k) * k
        return [(p - start, dict(trial.results[p].scores), trial.results[p].fit_seconds)
                for p in range(start, trial.reported)]

    def scores(self, trial: Trial) -> list[float]:
        """The primary metric's scores of the configuration's latest stage, in subset order."""
        return self.driver.scores(trial)

    def running(self, trial: Trial) -> list[float]:
        """The objective over the first 1, 2, ... of those scores (the running objective); worked out once per
        configuration and stage, for every callback that logs it."""
        key = (trial.index, trial.reported)
        if self._running[0] != key:
            self._running = (key, running(self.scores(trial), self.aggregate, greater_is_better=self.greater_is_better,
                                          alpha=self.alpha, lam=self.lam))
        return self._running[1]

    def epochs_done(self, trial: Trial) -> int:
        layout = self.driver.layout
        return layout.epochs[max(trial.reported - 1, 0) // layout.k] if trial.reported else 0

    def best(self) -> Trial | None:
        """The completed, feasible configuration with the best finite objective (the earliest of equals).
        Configurations end in order and never change after, so only those delivered since the last call are looked
        at."""
        driver, sign = self.driver, 1 if self.mode == "max" else -1
        for t in driver.trials[self._scanned : driver.cursor]:
            if t.status == "completed" and t.feasible and math.isfinite(t.objective) and (
                    self._best is None or sign * t.objective > sign * self._best.objective):
                self._best = t
        self._scanned = max(self._scanned, driver.cursor)
        return self._best

    def line(self, trial: Trial) -> str:
        """The progress line of a configuration that just ended."""
        driver = self.driver
        total = self.num_samples if not driver.exhausted else len(driver.trials)
        params = " ".join(f"{k}={short(v)}" for k, v in self.visible(trial).items())
        head = f"[{trial.index + 1:>3}/{total}] {trial.id} {trial.status:<9}"  # they end in order
        if trial.status == "failed":
            return f"{head} {params}  error: {trial.error}"
        best = self.best()
        tail = f"  best {best.objective:.4f} ({best.id})" if best else ""
        progress = f"{len(driver.scores(trial))}/{driver.layout.k} subsets"
        if driver.layout.epochs[0] is not None:
            progress += f", {self.epochs_done(trial)}/{driver.layout.epochs[-1]} epochs"
        values = "".join(f" {k}={v:.4g}" for k, v in trial.values.items())
        if not trial.feasible:
            values += " infeasible"
        return (f"{head} {self.aggregate} {self.metric}={trial.objective:.4f} "
                f"± {trial.aggregates.get('std', math.nan):.4f}{values} ({progress})  {params}{tail}")

    def row(self, trial: Trial) -> dict[str, Any]:
        """The configuration's row of the results table."""
        scores = self.driver.scores(trial)
        row: dict[str, Any] = {"trial": trial.id, "status": trial.status, "learner": self.learner(trial)[0]}
        if self.origins:
            row["origin"] = self.origins.get(trial.index, "search")
        row.update({f"param.{k}": v for k, v in self.visible(trial).items() if k != "learner"})
        row["objective"] = trial.objective
        row.update({k: trial.aggregates.get(k, math.nan) for k in AGGREGATE_COLUMNS})
        if self.goals is not None:
            for o in self.goals.valued:
                row[o.label] = trial.values.get(o.label, math.nan)
                if self.goals.multi:  # its spread over subsets, for the front's error bars
                    series = [v for v in self.driver.scores(trial, o.source) if not math.isnan(v)]
                    row[f"{o.label}_std"] = float(np.std(series, ddof=1)) if len(series) > 1 else math.nan
            if self.goals.constraints:
                row["feasible"] = trial.feasible if trial.status != "failed" else False
        row["subsets_done"] = len(scores)
        if self.driver.layout.epochs[0] is not None:
            row["epochs_done"] = self.epochs_done(trial)
        row.update({f"score_{k}": s for k, s in enumerate(scores)})
        row["error"] = trial.error or ""
        return row

    def ties(self) -> dict[str, tuple[float, float, bool]]:
        """``(p_vs_best, p_not_worse, tied_with_best)`` of every configuration against the best, over the subsets
        they share: completed ones, and those stopped over subsets (racing, ASHA's subsets fidelity); not those
        stopped at fewer epochs (another fidelity) or failed."""
        trials, best = self.driver.trials, self.best()
        if self.versus is None or best is None:
            return {}
        k = self.driver.layout.k
        scores = np.full((len(trials), k), np.nan)
        for i, t in enumerate(trials):
            got = self.driver.scores(t)
            scores[i, : len(got)] = got
        over_subsets = self.driver.layout.epochs[0] is None
        comparable = [(t.status == "completed" or (t.status == "stopped" and over_subsets)) and t.feasible
                      for t in trials]
        p, sure, tied = self.versus.compare(scores, next(i for i, t in enumerate(trials) if t is best), comparable)
        return {t.id: (float(p[i]), float(sure[i]), bool(tied[i])) for i, t in enumerate(trials)}

    def front(self) -> dict[str, tuple[int, bool]]:
        """``(pareto_rank, on_front)`` of every completed, feasible configuration with every objective's value, by
        non-dominated sorting on the subsets' evidence (metaray.front); {} for a search of one objective."""
        from metaray.front import evidence, pareto_ranks

        if self.goals is None or not self.goals.multi:
            return {}
        objectives = self.goals.objectives
        ranked = [t for t in self.driver.trials if t.status == "completed" and t.feasible and
                  math.isfinite(t.objective) and all(math.isfinite(t.values.get(o.label, math.nan))
                                                     for o in objectives[1:])]
        if not ranked:
            return {}
        values = np.array([[t.objective, *(t.values[o.label] for o in objectives[1:])] for t in ranked])
        found = None
        if self.test is not None and self.driver.layout.k >= 2:
            k = self.driver.layout.k
            series = []
            for o in objectives:
                s = np.full((len(ranked), k), np.nan)
                for i, t in enumerate(ranked):
                    got = self.driver.scores(t, o.source)
                    s[i, : len(got)] = got
                series.append(s)
            found = evidence(series, objectives, self.test)
        ranks = pareto_ranks(values, [o.mode for o in objectives], found)
        return {t.id: (int(r), bool(r == 1)) for t, r in zip(ranked, ranks, strict=True)}

    def front_method(self) -> str:
        """How the front is decided, in words."""
        if self.test is None or self.driver.layout.k < 2:
            return "Pareto dominance on the aggregates (one subset: nothing to test with)"
        return self.test.method

    def simplest_of(self, ids) -> Trial | None:
        """The simplest of the configurations ``ids`` (by ``complexity``; the better objective of equals)."""
        chosen = [t for t in self.driver.trials if t.id in ids]
        if not chosen or self.complexity is None:
            return None
        sign = -1 if self.mode == "max" else 1
        return min(chosen, key=lambda t: (self.complexity(t), sign * t.objective, t.index))

    def simplest(self, ties: dict[str, tuple[float, float, bool]]) -> Trial | None:
        """The simplest completed configuration tied with the best (by ``complexity``; the better objective of
        equals), or None."""
        return self.simplest_of({t.id for t in self.driver.trials if t.status == "completed"
                                 and ties.get(t.id, (0, 0, False))[2]})

    def _integer_columns(self, table) -> list[str]:
        """The ``param.*`` columns of integer parameters (``randint``; a choice or grid of integers, None aside)
        that hold only whole numbers."""
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        found = []
        for b in self.space.branches:
            for param, dist in b.dists.items():
                column = f"param.{self.space.flat_name(b, param)}"
                if column not in table or not dist.integer:
                    continue
                if not is_numeric_dtype(table[column]) or is_bool_dtype(table[column]):
                    continue
                values = table[column].to_numpy(dtype=float, na_value=np.nan)
                values = values[~np.isnan(values)]
                if np.isfinite(values).all() and (np.floor(values) == values).all():
                    found.append(column)
        return found

    def table(self, ties: dict[str, tuple[float, float, bool]] | None = None,
              front: dict[str, tuple[int, bool]] | None = None):
        """Every configuration, completed first, then stopped, then failed; within each the feasible first, then by
        Pareto rank (several objectives), then best objective first."""
        import pandas as pd

        table = pd.DataFrame([self.row(t) for t in self.driver.trials])
        for column in self._integer_columns(table):
            # whole numbers stay whole where other rows lack them (another learner's parameter): 12, not 12.0
            table[column] = table[column].astype("Int64")
        ties = self.ties() if ties is None else ties
        at = table.columns.get_loc("subsets_done")
        for j, name in enumerate(("p_vs_best", "p_not_worse", "tied_with_best")):
            table.insert(at + j, name, [ties.get(t, (math.nan, math.nan, False))[j] for t in table["trial"]])
        order = ["_rank", "_obj", "trial"]
        if self.goals is not None and self.goals.multi:
            front = self.front() if front is None else front
            at = table.columns.get_loc("subsets_done")
            table.insert(at, "pareto_rank", pd.array([front[t][0] if t in front else None for t in table["trial"]],
                                                     dtype="Int64"))
            table.insert(at + 1, "on_front", [front.get(t, (0, False))[1] for t in table["trial"]])
            order.insert(1, "pareto_rank")
        if "feasible" in table:
            table["_infeasible"] = ~table["feasible"].astype(bool)
            order.insert(1, "_infeasible")
        sign = -1 if self.mode == "max" else 1
        table["_rank"] = table["status"].map(status_rank)
        table["_obj"] = sign * table["objective"].astype(float)
        table = table.sort_values(order, na_position="last").drop(columns=[c for c in order if c.startswith("_")])
        return table.reset_index(drop=True)


@dataclass(kw_only=True)
class SearchResult:
    """What a search returns: the results table, the best configuration and where everything was written.

    Attributes:
        results: every configuration, best first (a pandas DataFrame, as Ray Tune's ``ResultGrid.get_dataframe()``):
            status, parameters, objective, aggregates, per-subset scores, error.
        best: the best completed configuration (learner, params, objective, std, hold-out scores), or None.
        run_dir: the run folder (``metaray resume`` takes it).
        mlflow_run_id: the MLflow parent run, when tracked.
        model: the final model (``final``: the best configuration refitted on the whole training pool, its subset
            models averaged, or an ensemble of the best configurations; best["final"] lists its members), as a user
            calls it (behind a table's cleaner), or None.
        refit_error: why the final model could not be made (the search's results stand), or None.
        front: several objectives (``objective.also``): best.json's ``front``: its ``objectives``, ``members`` (the
            configurations on the Pareto front, with their values), ``simplest`` and ``method``; else None.
        constraints: ``search.constraints``: configurations that violate one are marked infeasible (``feasible``),
            never the best nor on the front.
        time_budget: what ``search.time_budget`` did (``seconds``, ``grace_seconds``, ``reached``, ``configurations``
            that ended on their own, ``stopped_unfinished`` at the end of the grace, ``completed``), or None.
    """

    name: str
    run_dir: Path
    results: Any
    best: dict[str, Any] | None
    metric: str
    aggregate: str
    mode: str
    fits_run: int
    fits_replayed: int
    wall_seconds: float
    holdout_scores: dict[str, float] = field(default_factory=dict)
    fits_reused: int = 0  # subset fits taken from an identical configuration (metaray.driver.Driver.reused)
    mlflow_run_id: str | None = None
    dashboard_url: str | None = None
    refit_error: str | None = None
    tie_method: str = ""
    simplest: dict[str, Any] | None = None
    time_budget: dict[str, Any] | None = None
    model: Any = field(default=None, repr=False)
    front: dict[str, Any] | None = None
    constraints: list[str] = field(default_factory=list)
    goal_columns: list[str] = field(default_factory=list)  # the table's columns of further objectives and constraints

    @property
    def ok(self) -> bool:
        """A configuration completed and the best one was refitted: what a search is for."""
        return self.best is not None and self.refit_error is None

    @property
    def final_kind(self) -> str:
        """What the final model is (the spec's ``final``, metaray.final): ``refit``, ``bag`` or ``ensemble``."""
        return ((self.best or {}).get("final") or {}).get("kind", "refit")

    def final_line(self) -> str | None:
        """What the final model is made of, when it is more than the best configuration refitted (metaray.final)."""
        final = (self.best or {}).get("final") or {}
        members = final.get("members") or []
        if final.get("kind") == "bag" and members:
            return f"final model: bag of {members[0]['trial']}'s {len(members)} subset models, averaged"
        if final.get("kind") == "ensemble" and members:
            chosen = ", ".join(f"{m['trial']} x{m['weight']:.2f}" for m in members)
            pick = final.get("selection") or {}
            some = f"{len(members)} configuration" + ("s" if len(members) > 1 else "")
            return (f"final model: ensemble of {some} ({chosen}), chosen on {pick.get('rows')} "
                    f"rows' out-of-subset predictions: {pick.get('metric')} {pick.get('score', math.nan):.4f}, "
                    f"best single {pick.get('best_single', math.nan):.4f}")
        return None

    @property
    def tied(self) -> int:
        """Configurations tied with the best (the best included)."""
        return int(self.results["tied_with_best"].sum()) if "tied_with_best" in self.results else 0

    def tie_line(self) -> str:
        """How many configurations are tied with the best, by which test, and the simplest of them."""
        if self.tie_method.startswith("not tested"):
            return f"tied with the best: {self.tie_method}"
        line = f"tied with the best: {self.tied} of {len(self.results)} configurations ({self.tie_method})"
        if self.simplest and self.simplest["trial"] != self.best["trial"]:
            params = ", ".join(f"{k}={v!r}" for k, v in self.simplest["visible"].items() if k != "learner")
            line += (f"\nsimplest tied: {self.simplest['trial']} {self.simplest['learner']}({params}), "
                     f"{self.aggregate} {self.metric} = {self.simplest['objective']:.4f}")
        elif self.simplest:
            line += "\nsimplest tied: the best configuration itself"
        return line

    def front_line(self) -> str | None:
        """The front in one line: its size, and its simplest configuration with its values; None for one objective."""
        if not self.front:
            return None
        members = self.front["members"]
        labels = ", ".join(f"{o['mode']} {o['label']}" for o in self.front["objectives"])
        line = f"front: {len(members)} configuration{'s' if len(members) != 1 else ''} ({labels})"
        simplest = next((m for m in members if m["trial"] == self.front.get("simplest")), None)
        if simplest:
            params = ", ".join(f"{k}={v!r}" for k, v in simplest["visible"].items() if k != "learner")
            values = ", ".join(f"{k}={v:.4g}" for k, v in simplest["values"].items())
            line += f"; simplest on the front: {simplest['trial']} {simplest['learner']}({params}): {values}"
        return line

    def infeasible_line(self) -> str | None:
        """How many configurations violated the constraints; None without constraints."""
        if not self.constraints or "feasible" not in self.results:
            return None
        done = self.results[self.results["status"] == "completed"]
        bad = int((~done["feasible"].astype(bool)).sum())
        return (f"constraints ({'; '.join(self.constraints)}): {bad} of {len(done)} completed configurations "
                "infeasible" + (", none met them" if bad == len(done) and bad else ""))

    def failures(self) -> str | None:
        """One line on the configurations that failed, with the most common error and its count; None if none did."""
        table = self.results
        errors = table.loc[table["status"] == "failed", "error"].str.replace(r"^subset \d+: ", "", regex=True)
        if errors.empty:
            return None
        # errors that differ only in their numbers (a learning rate, a row count) are one error
        kinds = errors.str.replace(r"\d+(\.\d*)?([eE][-+]?\d+)?", "#", regex=True)
        common = kinds.value_counts().index[0]
        head = (f"every configuration failed ({len(errors)} of {len(table)})" if len(errors) == len(table)
                else f"{len(errors)} of {len(table)} configurations failed")
        return f"{head}; most common error ({(kinds == common).sum()}x): {errors[kinds == common].iloc[0]}"

    def summary(self, top: int = 20) -> str:
        """The table (best ``top``) and the best configuration, as the ``metaray`` command prints them."""
        table = self.results.head(top)
        params = [c for c in table.columns if c.startswith("param.")]
        show = table[["trial", "status", "learner"]].copy()
        if "origin" in table:
            show["origin"] = table["origin"].str.replace(r"^warm (\w{8})\w*/", r"warm \1/", regex=True)
        show["params"] = [" ".join(f"{c.removeprefix('param.').split('.')[-1]}={short(v)}"
                                   for c, v in row.items() if not missing(v)) for _, row in table[params].iterrows()]
        for col in ("objective", "mean", "std", "worst", *self.goal_columns, "feasible", "pareto_rank", "on_front",
                    "p_vs_best", "tied_with_best", "subsets_done", "epochs_done"):
            if col in table:
                show[col] = table[col]
        lines = [f"{self.name}: {len(self.results)} configurations, {self.fits_run} subset fits run"
                 + (f", {self.fits_replayed} replayed from the journal" if self.fits_replayed else "")
                 + (f", {self.fits_reused} taken from identical configurations (not fitted again)"
                    if self.fits_reused else "")
                 + f", {self.wall_seconds:.1f} s"
                 + (f", time budget reached after {self.time_budget['configurations']} configurations"
                    if self.time_budget and self.time_budget["reached"] else ""), "",
                 show.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-",
                                justify="left", max_colwidth=70), ""]
        if self.best:
            params = ", ".join(f"{k}={v!r}" for k, v in self.best["params"].items())
            lines.append(f"best configuration ({self.aggregate} {self.metric} = {self.best['objective']:.4f}, "
                         f"std {self.best['std']:.4f}): {self.best['learner']}({params})")
            final = self.final_kind
            if self.final_line():
                lines.append(self.final_line())
            if self.holdout_scores:
                lines.append(f"{'refitted on the training pool' if final == 'refit' else 'the final model'}, on the "
                             "hold-out rows: " + ", ".join(f"{k}={v:.4f}" for k, v in self.holdout_scores.items()))
            if self.refit_error:
                lines.append(f"the final model ({final}) failed: {self.refit_error}")
            if self.best.get("architecture"):
                lines.append("architecture:\n" + self.best["architecture"])
            lines.append(self.tie_line())
            if self.front_line():
                lines.append(self.front_line())
        elif self.constraints and (self.results["status"] == "completed").any():
            lines.append("no completed configuration met the constraints")
        else:
            lines.append("no configuration completed")
        if self.infeasible_line():
            lines.append(self.infeasible_line())
        lines.append(f"results: {self.run_dir}")
        if (self.run_dir / "report.html").is_file():
            lines.append(f"report: {self.run_dir / 'report.html'}")
        return "\n".join(lines)


def short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)

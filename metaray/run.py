"""One search, end to end: a spec in, a results table out. ``SearchRun.run`` reads top to bottom::

    prepare    metaray.objective: data, subsets, learner, metrics, the spec resolved (a copy)
    plan       metaray.plan: space, searcher, scheduler, layout, driver, ranking (pure)
    folder     metaray.folder: spec.yaml, state.json, the journal of fits
    callbacks  what a search leaves beyond its folder: MLflow, TensorBoard, the report, the weights (on_search_start)
    fits       metaray.objective.start_fits: Ray connected, the data shared once, a runner (metaray.runners)
    drive      metaray.driver.drive: every decision; the callbacks hear each configuration that ends
    finish     the results table, the final model of the best configuration (metaray.final), best.json
               -> SearchResult (on_results: MLflow logs it while on_search_end makes the report)

Why a driver of its own and not a Tune trial per configuration: measured here, Tune trials that launch their subset
fits as nested tasks ran at 4-6x the ideal (placement groups, a trial holding a CPU while it waits); driving Tune's
searchers from one driver and dispatching the fits as plain Ray tasks keeps every CPU on fits.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metaray.callbacks import Callback, CallbackList
from metaray.driver import BUDGET_STOP, Driver, TimeBudget, drive, duration, searcher_pace
from metaray.errors import SpecError, one_line, unsaid
from metaray.final import Search as FinalSearch
from metaray.folder import Journal, RunFolder
from metaray.learners import final_estimator
from metaray.metafeatures import compute as compute_metafeatures
from metaray.objective import Fits, Prepared, notice, prepare, start_fits
from metaray.plan import Plan, checked_space, default_samples, plan
from metaray.results import Ranking, SearchResult
from metaray.runners import BACKUP_AFTER
from metaray.spec import ExperimentSpec, LearnerSpec, load_spec


@dataclass(frozen=True)
class Setup:
    """A search once planned, before anything runs: what its callbacks are given at its start."""

    folder: RunFolder
    prepared: Prepared
    plan: Plan
    metafeatures: dict[str, float]  # metaray.metafeatures of the data ({} when neither tracked nor warm-started)

    @property
    def spec(self) -> ExperimentSpec:
        """The spec as the run folder's spec.yaml records it (Plan.spec)."""
        return self.plan.spec


class SearchRun:
    """Runs one search in its run folder (a new one, or one to resume).

    Args:
        spec: a validated experiment spec (left as it is: what the search resolves goes into a copy).
        folder: the run folder; an existing one is resumed.
        progress: called with one line of text per finished configuration (and for notices); None: quiet.
        dashboard: start Ray's dashboard (a local Ray only).
        track: log to MLflow (with TensorBoard files and the best network's weights in the run folder).
    """

    def __init__(self, spec: ExperimentSpec, folder: RunFolder, *, progress: Callable[[str], None] | None = None,
                 dashboard: bool = False, track: bool = True):
        self.spec, self.folder, self.dashboard, self.track = spec, folder, dashboard, track
        self.progress = progress or (lambda line: None)
        self.say = progress or notice  # what the user should hear even without a progress callback
        self.warned: set[str] = set()  # the kinds of warning said (metaray.errors.warning_kind: the same but numbers)

    def run(self) -> SearchResult:
        """Prepare, plan, run and finish the search (see the module); callbacks hear it all."""
        from metaray.cluster import ray_environment

        t0, began = time.perf_counter(), time.monotonic()  # a time budget counts from here: Ray's start-up too
        ray_environment(self.spec.ray.address)  # before anything imports Ray
        self._say_notes()
        setup = self._setup()
        callbacks = CallbackList(self._callbacks())
        journal = self.folder.journal(self.say)
        fits = None
        try:
            callbacks.on_search_start(setup)
            fits = start_fits(setup.prepared, say=self.say, dashboard=self.dashboard, warm_up=True,
                              connected=lambda info: self._connected(info, callbacks, setup))
            # the configurations of the journal open whatever is left of the budget (they cost nothing), and so does
            # the first: a start-up that took the whole budget still leaves a table of one configuration
            budget = (TimeBudget(setup.spec.search.time_budget, start=began, keep=max(1, journal.configurations))
                      if setup.spec.search.time_budget else None)
            searching = time.perf_counter()
            _drive(setup.plan, fits.runner, journal, callbacks, self.progress, budget, self.warned)
            fits.runner.close()  # the final model gets every CPU; no fit of a stopped configuration runs on
            if line := searcher_pace(setup.spec.search.searcher, setup.plan.driver.searcher_s,
                                     time.perf_counter() - searching):
                self.say(line)
            if fits.runner.copies:
                self.say(f"{fits.runner.copies} straggling task(s) ran {BACKUP_AFTER:g} x their fits' expected time "
                         "and got a backup copy; the first copy to finish was taken")
            result = self._finish(setup, fits, t0, self._budget_end(setup.plan.driver, budget))
            callbacks.on_results(result)
            callbacks.on_search_end(result)
            self.folder.update_state(status="finished" if result.ok else "failed")
            return result
        except BaseException as exc:
            callbacks.on_search_error(exc)
            raise
        finally:
            if fits is not None:
                with contextlib.suppress(Exception):  # cleaning up must not hide why the search stopped
                    fits.runner.close()
            journal.close()
            callbacks.close(self.say)

    def _say_notes(self) -> None:
        for line in self.spec.notes:
            self.say(line)
        if self.spec.search.time_budget and (self.folder / "spec.yaml").is_file():  # a resume (or an extension)
            self.say(f"time budget: a fresh {duration(self.spec.search.time_budget)} for this resume")

    def _setup(self) -> Setup:
        """Prepare the spec, plan the search and prepare its run folder (with the warm start it begins with)."""
        from metaray import warmstart

        prepared = prepare(self.spec, self.say)
        spec = prepared.spec
        # what the tracking store records and a warm start compares; a search that does neither needs none
        metafeatures = (compute_metafeatures(prepared.dataset, seed=spec.seed)
                        if self.track or spec.search.warm_start.source != "none" else {})
        space = checked_space(prepared)
        warm = self._warm_points(prepared, space, metafeatures)
        planned = plan(prepared, space, warm=warm, startup=self.folder.state.get("first_num_samples"))
        for line in planned.notes:
            self.say(line)
        self.folder.prepare(planned.spec, prepared.dataset.describe().get("columns"))
        if spec.search.warm_start.source != "none" and not (self.folder / "warm_start.json").is_file():
            warmstart.save(self.folder / "warm_start.json", list(planned.warm))  # a resume starts from the same
        return Setup(self.folder, prepared, planned, metafeatures)

    def _warm_points(self, prepared: Prepared, space, metafeatures: dict[str, float]) -> list:
        """The configurations to evaluate first (``search.warm_start``): those this run folder already chose (a
        resume), else chosen now from the tracking store (metaray.warmstart)."""
        from metaray import warmstart
        from metaray.store import absolute_uri, tracking_uri

        options = prepared.spec.search.warm_start
        saved = self.folder / "warm_start.json"
        if options.source == "none":
            return []
        if saved.is_file():
            return warmstart.load(saved)
        if (self.folder / "spec.yaml").is_file():  # a search that started before warm starts were kept: none
            return []
        state = self.folder.state
        uri = state.get("mlflow_uri") or absolute_uri(tracking_uri(prepared.spec.tracking.uri))
        try:
            return warmstart.choose(
                options, space, metafeatures=metafeatures, task=prepared.dataset.task,
                metric=prepared.metric.name, mode=prepared.mode, uri=uri, say=self.say,
                check=lambda name, params: prepared.learner_for(LearnerSpec(name=name, params=params)),
                exclude={state["parent_run_id"]} if state.get("parent_run_id") else set())
        except SpecError:
            raise
        except Exception as exc:  # an unreadable store costs the warm start, not the search
            self.say(f"warm start: could not read the tracking store {uri} ({one_line(exc)}); starting cold")
            return []

    def _callbacks(self) -> list[Callback]:
        """In the order they are called: at the search's end TensorBoard's, the report, the weights, then MLflow,
        which logs the files the others made. Without tracking, the report alone."""
        from metaray.report import ReportCallback

        report = ReportCallback(self.say)
        if not self.track:
            return [report]
        from metaray.tensorboard import TensorBoardCallback
        from metaray.tracking import MlflowCallback
        from metaray.weights import WeightsCallback

        weights = WeightsCallback(self.say)
        return [TensorBoardCallback(), report, weights,
                MlflowCallback(progress=self.progress, say=self.say, report=report, weights=weights)]

    def _connected(self, info: dict, callbacks: Callback, setup: Setup) -> None:
        """Ray is connected, nothing sent to it yet: ``search.max_concurrent: auto`` resolved from the cluster's CPUs
        (into spec.yaml), the dashboard's address, and what the callbacks wait for."""
        from metaray.cluster import token_hint
        from metaray.plan import in_flight

        if setup.spec.search.max_concurrent == "auto":
            resolved = in_flight(setup.plan, info["cpus"])
            self.folder.write_spec(setup.spec)
            self.say(f"search.max_concurrent: auto -> {resolved if resolved else 'every CPU'} "
                     f"({info['cpus']} CPUs)")

        if info["dashboard_url"]:
            self.progress(f"Ray dashboard: {info['dashboard_url']} ({token_hint()})")
        callbacks.on_fits_start()  # MLflow: the parent run exists, or the search stops here, before any fit

    def _budget_end(self, driver: Driver, budget: TimeBudget | None) -> dict[str, Any] | None:
        """What the time budget did, in state.json (and best.json, the SearchResult) and, if it ended the search,
        said in one line: ``time budget reached after N configurations``, N those that ended on their own (completed,
        stopped by the scheduler, failed), not those still running at the end of the grace."""
        if budget is None:
            if "time_budget" in self.folder.state:  # an earlier process's budget: not this one's
                self.folder.update_state(time_budget={"seconds": None, "reached": False})
            return None
        trials = driver.trials
        cut = sum(t.status == "stopped" and (t.error or "").startswith(BUDGET_STOP) for t in trials)
        time_budget = {"seconds": budget.seconds, "grace_seconds": round(budget.grace, 3), "reached": budget.reached,
                       "configurations": len(trials) - cut, "stopped_unfinished": cut,
                       "completed": sum(t.status == "completed" for t in trials)}
        self.folder.update_state(time_budget=time_budget)
        if budget.reached:
            line = f"time budget reached after {len(trials) - cut} configurations ({duration(budget.seconds)})"
            if cut:
                line += (f"; {cut} still running after a grace of {duration(budget.grace)} stopped unfinished, "
                         "not ranked")
            self.say(line)
        return time_budget

    def _finish(self, setup: Setup, fits: Fits, t0: float, time_budget: dict[str, Any] | None) -> SearchResult:
        """The results table, the final model (``final``: refit, bag, ensemble; metaray.final), best.json."""
        ranking, trials, prepared = setup.plan.ranking, setup.plan.driver.trials, setup.prepared
        ties, front = ranking.ties(), ranking.front()
        table = ranking.table(ties, front)
        self.folder.write_results(table)
        self.folder.update_state(metric=prepared.metric.name, mode=prepared.mode)  # what the report reads
        simplest = _simplest(ranking, ties)
        best, final, refit_error = None, None, None
        if ranking.best() is not None:
            final, refit_error = _final(FinalSearch(prepared, fits.problem_ref, ranking, self.folder.path))
            for message in unsaid(final.warnings if final else [], self.warned):  # told as the search's are
                where = "the ensemble's refits" if final.kind == "ensemble" else f"the {final.kind}"
                self.progress(f"warning (first seen in {where} on the training pool, said once): {message}")
            best = _best(ranking, final, refit_error)
            best["final"] = final.describe() if final else {"kind": setup.spec.final, "members": []}
            best["tied"] = {"count": int(table["tied_with_best"].sum()), "method": setup.plan.tie_method,
                            "simplest": simplest}
            if time_budget:
                best["time_budget"] = time_budget
            if ranking.goals is not None and ranking.goals.multi:
                best["front"] = _front(ranking, front)
            self.folder.write_best(best)
        return SearchResult(
            name=setup.spec.name, run_dir=self.folder.path, results=table, best=best, metric=prepared.metric.name,
            aggregate=setup.spec.objective.aggregate, mode=prepared.mode, fits_run=sum(t.fitted for t in trials),
            fits_replayed=sum(t.replayed for t in trials), fits_reused=sum(t.reused for t in trials),
            wall_seconds=time.perf_counter() - t0,
            holdout_scores=best["holdout"] if best else {}, dashboard_url=fits.dashboard_url,
            refit_error=refit_error, tie_method=setup.plan.tie_method, simplest=simplest, time_budget=time_budget,
            model=final.model if final else None, front=best.get("front") if best else None,
            constraints=list(setup.spec.search.constraints),
            goal_columns=[o.label for o in ranking.goals.valued] if ranking.goals is not None else [])


def _drive(plan: Plan, runner, journal: Journal, callbacks: Callback, progress: Callable[[str], None],
           budget: TimeBudget | None, warned: set[str]) -> None:
    """Run the plan's driver to its end: a fit the journal holds is replayed, not run again; every fit that arrives
    is journaled (its warnings said once); every configuration that ends is heard by the callbacks and said."""

    def on_fit(trial, r) -> None:
        for message in unsaid(r.warnings, warned):
            progress(f"warning (first seen in {trial.id}, said once): {message}")
        if not r.transient:  # a failed fit too (it fails the same way when replayed), unless the cluster failed it
            journal.write(trial.key, r)

    def on_end(trial) -> None:
        with _uninterrupted():  # a configuration is both handed to the callbacks (MLflow) and said, or neither
            callbacks.on_trial_end(trial, plan.ranking)
            progress(plan.ranking.line(trial))

    drive(plan.driver, runner, learner_for=plan.learner_for, replay=lambda trial, unit: journal.lookup(unit, trial.key),
          on_fit=on_fit, on_end=on_end, before_wait=journal.flush, budget=budget)


def _simplest(ranking: Ranking, ties) -> dict[str, Any] | None:
    """The simplest configuration tied with the best, as best.json and the SearchResult show it."""
    simplest = ranking.simplest(ties)
    if simplest is None:
        return None
    name, params = ranking.learner(simplest)
    return {"trial": simplest.id, "learner": name, "params": params, "visible": ranking.visible(simplest),
            "objective": simplest.objective}


def _front(ranking: Ranking, front: dict[str, tuple[int, bool]]) -> dict[str, Any]:
    """The Pareto front as best.json holds it: its objectives, how it was decided, its configurations (those no other
    dominates, metaray.front) with their values, and the simplest of them."""
    goals = ranking.goals
    members = []
    for t in ranking.driver.trials:
        if front.get(t.id, (0, False))[1]:
            name, params = ranking.learner(t)
            members.append({"trial": t.id, "learner": name, "params": params, "visible": ranking.visible(t),
                            "values": {goals.primary.label: t.objective, **{o.label: t.values[o.label]
                                                                            for o in goals.also}}})
    simplest = ranking.simplest_of({m["trial"] for m in members})
    return {"objectives": [{"label": o.label, "mode": o.mode, "source": o.source, "aggregate": o.aggregate}
                           for o in goals.objectives],
            "method": ranking.front_method(), "members": members,
            "simplest": simplest.id if simplest is not None else None}


def _best(ranking: Ranking, final, refit_error: str | None) -> dict[str, Any]:
    """The best configuration as best.json holds it (but for its ties, time budget and final model)."""
    model, holdout = (final.model, final.holdout) if final else (None, {})
    trial = ranking.best()
    name, params = ranking.learner(trial)
    best = {"trial": trial.id, "learner": name, "params": params, "objective": trial.objective,
            "std": trial.aggregates.get("std", math.nan), "config": trial.config}
    if refit_error is not None:
        best["refit_error"] = refit_error
    best["holdout"] = holdout
    net = final_estimator(model) if model is not None else None
    if hasattr(net, "summary") and hasattr(net, "net_"):  # a network: its architecture, layer by layer
        with contextlib.suppress(Exception):  # a user's estimator with a summary of its own: not ours to read
            best["architecture"] = net.summary()
            best["layers"] = net.layers()
    return best


def _final(search: FinalSearch):
    """The spec's final model (metaray.final): (the Final, None), or (None, the error in one line) when it failed:
    the search's results stand, the failure is said, not raised. best.json's ``final`` gets its seconds."""
    from metaray.final import FINALS

    t0 = time.perf_counter()
    try:
        final = FINALS.get(search.prepared.spec.final)(search)
    except Exception as exc:
        return None, one_line(exc)
    final.details["seconds"] = round(time.perf_counter() - t0, 3)
    return final, None


@contextlib.contextmanager
def _uninterrupted():
    """Ctrl-C waits for the block to end (on the main thread): it lands before or after, never in the middle."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
        elif caught and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def search(spec: ExperimentSpec | dict | str | os.PathLike, overrides: list[str] = (), *,
           run_dir: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None,
           dashboard: bool = False, track: bool = True) -> SearchResult:
    """Search the spec's space for the best meta-objective.

    Starts a local Ray unless one is running in this process (or ``ray.address`` / ``$RAY_ADDRESS`` names a
    cluster); prints nothing unless ``progress`` is given (notices also go to the ``metaray`` logger).

    Example (writes ./metaray_results and ./mlflow.db)::

        import metaray
        result = metaray.search("experiments/meta_classification_iris.yaml", ["search.num_samples=8"])
        result.results.head(), result.best, result.run_dir, result.mlflow_run_id

    Raises:
        SpecError: before any fit, for anything wrong with the spec, its space or its data.
    """
    spec = load_spec(spec, list(overrides))
    folder = RunFolder(run_dir) if run_dir else RunFolder.create(spec.storage, spec.name)
    return SearchRun(spec, folder, progress=progress, dashboard=dashboard, track=track).run()


def extend(run_dir: str | os.PathLike, spec: ExperimentSpec | dict | str | os.PathLike, more: int, *,
           progress: Callable[[str], None] | None = None, dashboard: bool = False, track: bool = True
           ) -> SearchResult:
    """``more`` configurations after those of the search in ``run_dir``, in the same run folder and MLflow parent
    run: ``spec`` must be that search's (the same data, subsets, space and seed; only ``search.num_samples`` may
    differ). Its configurations are replayed from the journal into the searcher, never fitted again; the new ones
    follow, chosen by a searcher that has learned from them."""
    from metaray.folder import resolved

    folder = RunFolder(run_dir)
    old, new = folder.spec(), load_spec(spec)
    if more < 1:
        raise SpecError("--num-samples", "how many configurations to add", allowed=">= 1", got=more)
    s = old.search
    if old.parsed_space().empty:
        raise SpecError("--extend", "extends searches that draw configurations; this one's search.space has nothing to "
                        "search, so its one configuration is the learner's own", got="an empty search.space")
    if s.searcher == "grid" or "grid" in old.parsed_space().kinds():
        raise SpecError("--extend", "extends searches that draw one configuration at a time; a grid is enumerated "
                        "whole", allowed=["random", "optuna", "hyperopt"],
                        got=s.searcher if s.searcher == "grid" else "a space with grid values")
    # the task and the default learner resolved, as the search's spec.yaml has them
    a, b = resolved(old), resolved(prepare(new, say=lambda line: None).spec)
    for raw in (a, b):
        raw["search"].pop("num_samples"), raw["search"].pop("max_concurrent"), raw["search"].pop("time_budget", None)
    what = ("strategy", "seed", "data", "subsets", "learner", "objective", "search")  # ray, tracking: as now
    differ = _first_difference({k: a.get(k) for k in what}, {k: b.get(k) for k in what})
    if differ:
        raise SpecError("--extend", "the run folder holds a search of another spec; an extension keeps the data, "
                        "subsets, space and seed, only search.num_samples grows", got=f"{differ} differs")
    done = s.num_samples or default_samples(old)
    s.num_samples = done + more
    old.ray = new.ray.model_copy(deep=True)  # where it runs now (a cluster, or this machine)
    old.search.time_budget = new.search.time_budget  # a fresh budget, the one given now
    old.final = new.final  # the final model of the extended search: the one asked for now
    folder.write_spec(old)
    folder.update_state(status="running", first_num_samples=folder.state.get("first_num_samples", done))
    return SearchRun(old, folder, progress=progress, dashboard=dashboard, track=track).run()


def _first_difference(a, b, where: str = "") -> str | None:
    """The first key (dotted) at which two nested dicts differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    return None if a == b else where


def resume(run_dir: str | os.PathLike, *, progress: Callable[[str], None] | None = None, dashboard: bool = False,
           track: bool = True, time_budget: float | str | None = None) -> SearchResult:
    """Continue a search from its run folder: fits in its journal are replayed, not run again, and the result is
    the one an uninterrupted search gives. A time budget (the spec's ``search.time_budget``, or ``time_budget``:
    600, "10m") starts afresh, and the configurations replayed from the journal cost none of it."""
    folder = RunFolder(run_dir)
    spec = folder.spec()  # refuses a folder that is not a run folder
    if time_budget is not None:
        spec = load_spec(folder / "spec.yaml", [f"search.time_budget={time_budget}"])
    return SearchRun(spec, folder, progress=progress, dashboard=dashboard, track=track).run()

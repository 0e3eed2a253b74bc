"""One search, end to end: a spec in, a results table out.

It wires the parts, each of which owns one thing::

    spec -> prepare (data, subsets, learner; metaray.objective) -> searcher (metaray.searchers)
         -> scheduler (metaray.schedulers) -> driver (metaray.driver: every decision, no Ray)
         -> runner (metaray.runners: Ray tasks) -> run folder (metaray.folder: spec, journal, results)
         -> tracking (metaray.tracking: MLflow, TensorBoard) -> SearchResult

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
from typing import Any

import numpy as np

from metaray.aggregates import aggregate
from metaray.driver import BUDGET_STOP, Driver, Layout, TimeBudget, Trial, drive, duration
from metaray.errors import RejectedValue, SpecError
from metaray.fits import FitResult, Unit
from metaray.folder import RunFolder
from metaray.learners import complexity, final_estimator
from metaray.metafeatures import compute as compute_metafeatures
from metaray.objective import deployable, notice, prepare, share
from metaray.results import Reporter, SearchResult
from metaray.schedulers import make_scheduler
from metaray.searchers import make_searcher
from metaray.space import plain
from metaray.spec import ExperimentSpec, LearnerSpec, load_spec
from metaray.stats import VersusBest

#: configurations in flight with an adaptive searcher unless the spec says otherwise: a constant, not a multiple of
#: the cluster's CPUs, so that what the searcher has seen before each suggestion (and so the results table) is the
#: same on a laptop and on a cluster
ADAPTIVE_IN_FLIGHT = 8


class SearchRun:
    """Runs one search in its run folder (a new one, or one to resume).

    Args:
        spec: a validated experiment spec.
        folder: the run folder; an existing one is resumed.
        progress: called with one line of text per finished configuration (and for notices); None: quiet.
        dashboard: start Ray's dashboard (a local Ray only).
        track: log to MLflow.
    """

    def __init__(self, spec: ExperimentSpec, folder: RunFolder, *, progress: Callable[[str], None] | None = None,
                 dashboard: bool = False, track: bool = True):
        self.spec, self.folder, self.dashboard, self.track = spec, folder, dashboard, track
        self.progress = progress or (lambda line: None)
        self.say = progress or notice  # what the user should hear even without a progress callback
        self.dashboard_url: str | None = None
        self._warned: set[str] = set()
        self.time_budget: dict[str, Any] | None = None  # how a time budget ended the search (state.json, best.json)

    def run(self) -> SearchResult:
        from metaray.cluster import connect, ray_environment, token_hint, warm_up
        from metaray.store import Tracker

        t0, began = time.perf_counter(), time.monotonic()  # a time budget counts from here: Ray's start-up too
        spec = self.spec
        ray_environment(spec.ray.address)  # before anything imports Ray
        for line in spec.notes:
            self.say(line)
        if spec.search.time_budget and (self.folder / "spec.yaml").is_file():  # a resume (or an extension)
            self.say(f"time budget: a fresh {duration(spec.search.time_budget)} for this resume")
        self.prepared = prepare(spec, self.say)
        # what the tracking store records and a warm start compares; a search that does neither needs none
        self.metafeatures = (compute_metafeatures(self.prepared.dataset, seed=spec.seed)
                             if self.track or spec.search.warm_start.source != "none" else {})
        self.driver = self._plan()
        # after _plan resolved max_concurrent into the spec it writes
        self.folder.prepare(spec, self.prepared.dataset.describe().get("columns"))
        if spec.search.warm_start.source != "none" and not (self.folder / "warm_start.json").is_file():
            from metaray.warmstart import save

            save(self.folder / "warm_start.json", self.warm)  # a resume starts from the same points, or none
        self.journal = self.folder.journal(self.say)
        state = self.folder.state
        self.tracker = Tracker(spec, self.folder.path, self.prepared.dataset.describe(), uri=state.get("mlflow_uri"),
                               parent_id=state.get("parent_run_id"), metric=self.prepared.metric.name,
                               mode=self.prepared.mode, metafeatures=self.metafeatures) if self.track else None
        started = self.tracker.start() if self.tracker else None  # MLflow's start-up overlaps Ray's
        if started:  # recorded as soon as it exists, even if the search stops before it is awaited
            started.add_done_callback(self._record_parent)
        runner = None
        try:
            info = connect(spec.ray.address, num_cpus=spec.ray.num_cpus, dashboard=self.dashboard, say=self.say)
            self.dashboard_url = info["dashboard_url"]
            warm_up(["metaray.objective", type(self.prepared.learner.model).__module__], info["cpus"])
            if self.dashboard_url:
                self.progress(f"Ray dashboard: {self.dashboard_url} ({token_hint()})")
            parent_id = started.result() if started else None
            self.problem_ref = share(self.prepared)
            runner = self.prepared.start_runner(self.problem_ref)
            # the configurations of the journal open whatever is left of the budget (they cost nothing), and so does
            # the first: a start-up that took the whole budget still leaves a table of one configuration
            budget = (TimeBudget(spec.search.time_budget, start=began, keep=max(1, self.journal.configurations))
                      if spec.search.time_budget else None)
            drive(self.driver, runner, learner_for=self._learner_for, replay=self._replay, on_fit=self._on_fit,
                  on_end=self._on_end, before_wait=self.journal.flush, budget=budget)
            runner.close()  # the refit gets every CPU; no fit of a stopped configuration runs on
            self._budget_end(budget)
            result = self._finish(t0, parent_id)
            if self.tracker:
                if self.tracker.lag:
                    self.progress(f"MLflow: catching up, {self.tracker.lag} configurations still to log")
                try:
                    self.tracker.finish(result, self._final_model).result()  # the report too, made off the driver
                finally:
                    for note in self.tracker.notes:
                        self.say(note)
                    if not (self.folder / "report.html").is_file() and not self.tracker.notes:
                        self._report()  # MLflow failed before the tracking process made it
            else:
                self._report()
            self.folder.update_state(status="finished" if result.ok else "failed")
            return result
        except BaseException:
            if self.tracker:
                self.tracker.abort()
            raise
        finally:
            if runner is not None:
                with contextlib.suppress(Exception):  # cleaning up must not hide why the search stopped
                    runner.close()
            self.journal.close()
            if self.tracker:
                self.tracker.close(self.say)

    def _record_parent(self, started) -> None:
        if not started.exception() and started.result():
            self.folder.update_state(parent_run_id=started.result(), mlflow_uri=self.tracker.uri,
                                     mlflow_experiment=self.tracker.experiment_name)

    # the plan: searcher, scheduler, layout, driver -----------------------------------------------------------

    def _plan(self) -> Driver:
        spec, prepared = self.spec, self.prepared
        s, options = spec.search, spec.search.scheduler
        self.space = spec.parsed_space()
        for branch in self.space.branches:  # misspelled keys and impossible values fail now, not trial by trial
            self._check_branch(branch)
        n = s.num_samples or self.default_samples()
        self.warm = self._warm_points()
        startup = self.folder.state.get("first_num_samples")  # an extended search: what it was first given
        try:
            searcher = make_searcher(s.searcher, self.space, n, prepared.mode, spec.seed, [p.config for p in self.warm],
                                     startup)
        except Exception as exc:
            if not self.warm:
                raise
            self.say(f"warm start: the {s.searcher} searcher refused the past configurations ({_one_line(exc)}); "
                     "starting cold")
            self.warm = []
            searcher = make_searcher(s.searcher, self.space, n, prepared.mode, spec.seed, startup=startup)
        if searcher.adaptive and s.max_concurrent is None:
            s.max_concurrent = ADAPTIVE_IN_FLIGHT  # resolved into the run folder's spec.yaml, which resume reads
        k = prepared.plan.k
        n_train, n_test = self._sizes()
        make = dict(mode=prepared.mode, greater_is_better=prepared.metric.greater_is_better, overlap=n_test / n_train)
        if options.name != "asha" or options.fidelity == "subsets":
            scheduler = make_scheduler(options, total=k, **make)
            layout = Layout.over_subsets(k, scheduler.milestones(k))
        else:
            total = self._epochs()
            scheduler = make_scheduler(options, total=total, **make)
            layout = Layout.over_epochs(k, total, scheduler.milestones(total))
        self.num_samples = searcher.total or n
        obj = spec.objective
        score = lambda scores: aggregate(scores, greater_is_better=prepared.metric.greater_is_better,  # noqa: E731
                                         alpha=obj.alpha, lam=obj.lam)
        driver = Driver(searcher, scheduler, layout, num_samples=self.num_samples, max_concurrent=s.max_concurrent,
                        score=score, objective=obj.aggregate, metric=prepared.metrics[0], accept=self._accept)
        versus = VersusBest(obj.aggregate, prepared.mode, prepared.metric.greater_is_better, n_train, n_test,
                            rope=obj.rope, confidence=obj.confidence, test=obj.tie_test, alpha=obj.alpha, lam=obj.lam,
                            seed=spec.seed) if k >= 2 else None  # one subset: no spread to test with
        ds = prepared.dataset
        width, outputs = ds.X.shape[1], len(ds.classes) if ds.classes is not None else 1
        self.report = Reporter(driver, self.space, metric=prepared.metric.name, aggregate=obj.aggregate,
                               mode=prepared.mode, versus=versus,
                               complexity=lambda t: complexity(t.learner, width, outputs) if t.learner else (9,),
                               origins={i: p.origin for i, p in enumerate(self.warm)})
        return driver

    def _warm_points(self) -> list:
        """The configurations to evaluate first (``search.warm_start``): those this run folder already chose (a
        resume), else chosen now from the tracking store (metaray.warmstart)."""
        from metaray import warmstart
        from metaray.store import absolute_uri, tracking_uri

        options = self.spec.search.warm_start
        saved = self.folder / "warm_start.json"
        if options.source == "none":
            return []
        if saved.is_file():
            return warmstart.load(saved)
        if (self.folder / "spec.yaml").is_file():  # a search that started before warm starts were kept: none
            return []
        state = self.folder.state
        uri = state.get("mlflow_uri") or absolute_uri(tracking_uri(self.spec.tracking.uri))
        prepared = self.prepared
        try:
            return warmstart.choose(
                options, self.space, metafeatures=self.metafeatures, task=prepared.dataset.task,
                metric=prepared.metric.name, mode=prepared.mode, uri=uri, say=self.say,
                check=lambda name, params: prepared.learner_for(LearnerSpec(name=name, params=params)),
                exclude={state["parent_run_id"]} if state.get("parent_run_id") else set())
        except SpecError:
            raise
        except Exception as exc:  # an unreadable store costs the warm start, not the search
            self.say(f"warm start: could not read the tracking store {uri} ({_one_line(exc)}); starting cold")
            return []

    def _sizes(self) -> tuple[float, float]:
        """The rows a subset fit trains on and the rows of the pool it does not, on average: the n_train and n_test
        of the paired tests' overlap correction. Under the ``full`` protocol a fit is scored on its own rows too;
        the rows it did not see are what varies from subset to subset. Under ``holdout`` every fit is scored on
        the same test rows: the correction is then Nadeau and Bengio's heuristic, applied as they do to random
        subsampling."""
        plan = self.prepared.plan
        seen = [len(np.unique(t)) for t in plan.train]
        if plan.protocol == "full":
            unseen = [max(1, len(e) - n) for e, n in zip(plan.evaluate, seen, strict=True)]
        else:
            unseen = [len(e) for e in plan.evaluate]
        return sum(len(t) for t in plan.train) / plan.k, sum(unseen) / plan.k

    def default_samples(self) -> int:
        """``search.num_samples`` left unset: one pass over a grid (or an empty space), else 16."""
        s = self.spec.search
        return 1 if s.searcher == "grid" or self.spec.parsed_space().empty else 16

    def _epochs(self) -> int:
        """The learner's epochs, the epochs fidelity's total (ASHA allots them, so they are fixed, not searched)."""
        prepared = self.prepared
        key = prepared.learner.param_key("epochs")
        if key is None:
            raise SpecError("search.scheduler.fidelity", "the epochs fidelity needs a learner trained in epochs",
                            allowed=["subsets"], got=f"epochs ({prepared.learner.name})")
        if self.space.conditional or "epochs" in self.space.branches[0].dists:
            raise SpecError("search.scheduler.fidelity", "with the epochs fidelity ASHA allots the epochs: fix "
                            "learner.params.epochs instead of searching it, in a space of one learner",
                            got="epochs")
        total = int(prepared.learner.estimator.get_params()[key])
        grace = self.spec.search.scheduler.grace_period
        if math.ceil(grace) >= total:
            raise SpecError("search.scheduler.grace_period", f"ASHA stops configurations at rungs below the learner's "
                            f"{total} epochs", allowed=f"(0, {total - 1}]", got=grace)
        return total

    def _check_branch(self, branch) -> None:
        """Build each learner of the space once, with a representative value of each distribution."""
        params = {**branch.constants, **{name: d.args[0] for name, d in branch.dists.items()}}
        try:
            self.prepared.learner_for(LearnerSpec(name=branch.learner, params=params))
        except RejectedValue as exc:
            if exc.key.removeprefix("learner.params.") not in branch.dists:
                raise self._in_space(branch, exc) from None
            # one edge value rejected: configurations that sample bad values fail on their own
        except SpecError as exc:
            raise self._in_space(branch, exc) from None

    def _in_space(self, branch, exc: SpecError) -> SpecError:
        where = "search.space" + (f".learner[{branch.learner}]" if self.space.conditional else "")
        if exc.key.startswith("learner."):
            key = f"{where}.{exc.key.removeprefix('learner.').removeprefix('params.')}"
            return SpecError(key, exc.problem, allowed=exc.allowed, got=exc.got)
        return SpecError(exc.key, f"{exc.problem} (in {where})", allowed=exc.allowed, got=exc.got)

    def _accept(self, config: dict) -> Any:
        name, params = self.space.resolve({k: plain(v) for k, v in config.items()})
        learner = self.prepared.learner_for(LearnerSpec(name=name, params=params))
        return self.prepared.reserve_memory(learner)  # a fit no node could hold fails its configuration, not the search

    # the driver's hooks ---------------------------------------------------------------------------------------

    def _learner_for(self, trial: Trial, unit: Unit):
        epochs = self.driver.layout.epochs[unit.stage]
        return trial.learner if epochs is None else trial.learner.with_params(epochs=epochs)

    def _replay(self, trial: Trial, unit: Unit) -> FitResult | None:
        return self.journal.lookup(unit, trial.key)

    def _on_fit(self, trial: Trial, r: FitResult) -> None:
        for message in set(r.warnings) - self._warned:
            self._warned.add(message)
            self.progress(f"warning (first seen in {trial.id}, said once): {message}")
        if not r.transient:  # a failed fit too (it fails the same way when replayed), unless the cluster failed it
            self.journal.write(trial.key, r)

    def _on_end(self, trial: Trial) -> None:
        report = self.report
        row, line = report.row(trial), report.line(trial, self.num_samples)
        with _uninterrupted():  # a configuration is both sent to MLflow and said, or neither
            if self.tracker:
                self.tracker.log_trial(row, trial.id, trial.status, report.visible(trial), report.learner(trial)[0],
                                       trial.error, report.series(trial))
            self.progress(line)

    def _finish(self, t0: float, parent_id: str | None) -> SearchResult:
        report, trials = self.report, self.driver.trials
        ties = report.ties()
        table = report.table(ties)
        self.folder.write_results(table)
        self.folder.update_state(metric=self.prepared.metric.name, mode=self.prepared.mode)  # what the report reads
        best_trial, simplest = report.best(), report.simplest(ties)
        if simplest is not None:
            simplest = {"trial": simplest.id, "learner": report.learner(simplest)[0],
                        "params": report.learner(simplest)[1], "visible": report.visible(simplest),
                        "objective": simplest.objective}
        best, holdout, self._final_model, refit_error = None, {}, None, None
        if best_trial:
            name, params = report.learner(best_trial)
            best = {"trial": best_trial.id, "learner": name, "params": params, "objective": best_trial.objective,
                    "std": best_trial.aggregates.get("std", math.nan), "config": best_trial.config}
            try:
                est, holdout = self._refit(best_trial)
                self._final_model = deployable(est, self.prepared.dataset.cleaner)
            except Exception as exc:  # the search's results stand; the refit's failure is said, not raised
                refit_error = _one_line(exc)
                best["refit_error"] = refit_error
            best["holdout"] = holdout
            model = final_estimator(self._final_model) if self._final_model is not None else None
            if hasattr(model, "summary") and hasattr(model, "net_"):  # a network: its architecture, layer by layer
                with contextlib.suppress(Exception):  # a user's estimator with a summary of its own: not ours to read
                    best["architecture"] = model.summary()
                    best["layers"] = model.layers()
            best["tied"] = {"count": int(table["tied_with_best"].sum()), "method": self._tie_method(),
                            "simplest": simplest}
            if self.time_budget:
                best["time_budget"] = self.time_budget
            self.folder.write_best(best)
        return SearchResult(self.spec.name, self.folder.path, table, best, self.prepared.metric.name,
                            self.spec.objective.aggregate, self.prepared.mode, sum(t.fitted for t in trials),
                            sum(t.replayed for t in trials), time.perf_counter() - t0, holdout, parent_id,
                            self.dashboard_url, refit_error, self._tie_method(), simplest,
                            time_budget=self.time_budget)

    def _budget_end(self, budget: TimeBudget | None) -> None:
        """What the time budget did, in state.json (best.json, the SearchResult) and, if it ended the search, said
        in one line: ``time budget reached after N configurations``, N those that ended on their own (completed,
        stopped by the scheduler, failed), not those still running at the end of the grace."""
        if budget is None:
            if "time_budget" in self.folder.state:  # an earlier process's budget: not this one's
                self.folder.update_state(time_budget={"seconds": None, "reached": False})
            return
        trials = self.driver.trials
        cut = sum(t.status == "stopped" and (t.error or "").startswith(BUDGET_STOP) for t in trials)
        self.time_budget = {"seconds": budget.seconds, "grace_seconds": round(budget.grace, 3),
                            "reached": budget.reached, "configurations": len(trials) - cut, "stopped_unfinished": cut,
                            "completed": sum(t.status == "completed" for t in trials)}
        self.folder.update_state(time_budget=self.time_budget)
        if budget.reached:
            line = f"time budget reached after {len(trials) - cut} configurations ({duration(budget.seconds)})"
            if cut:
                line += (f"; {cut} still running after a grace of {duration(budget.grace)} stopped unfinished, "
                         "not ranked")
            self.say(line)

    def _tie_method(self) -> str:
        versus = self.report.versus
        return versus.method if versus else "not tested: one subset per configuration leaves no spread to test with"

    def _report(self) -> None:
        from metaray.report import write

        try:
            write(self.folder.path)
        except Exception as exc:  # the search's results stand; the report's failure is said, not raised
            self.say(f"report: not made ({_one_line(exc)}); try: metaray report {self.folder.path}")

    def _refit(self, trial: Trial):
        """The best configuration fitted on the whole training pool, scored on the hold-out rows if any. With
        ``ray.fit_timeout_s``, the refit may take that long times the pool's size over a subset's. It reserves the
        memory metaray.memory estimates for the pool's rows (the override scaled likewise); more than any node
        offers fails the refit with one line, not the search."""
        import ray

        from metaray.memory import estimate, reserve
        from metaray.objective import fit_final

        ray_spec, prepared = self.spec.ray, self.prepared
        pool = len(prepared.dataset.y) - len(prepared.plan.test)
        scale = pool / max(len(t) for t in prepared.plan.train)
        memory = reserve(estimate(prepared.dataset, prepared.plan, trial.learner.model, rows=pool),
                         trial.learner.describe(), available=prepared.node_memory,
                         override=ray_spec.memory_per_fit and ray_spec.memory_per_fit * max(1.0, scale))
        ref = ray.remote(fit_final).options(num_cpus=ray_spec.cpus_per_fit, num_gpus=ray_spec.gpus_per_fit,
                                            max_retries=ray_spec.max_retries, memory=int(memory),
                                            name=f"{self.spec.name} {trial.id} refit").remote(
            self.problem_ref, trial.learner, self.spec.seed)
        limit = ray_spec.fit_timeout_s
        if limit is not None:
            plan = self.prepared.plan
            limit *= max(1.0, (len(self.prepared.dataset.y) - len(plan.test)) / min(len(t) for t in plan.train))
            if not ray.wait([ref], timeout=limit)[0]:
                ray.cancel(ref, force=True)
                raise TimeoutError(f"the refit on the whole training pool did not finish within {limit:.0f} s "
                                   "(ray.fit_timeout_s, scaled to the pool's size); its task was cancelled")
        return ray.get(ref)


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


def _one_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its message (a Ray task error: the cause's)."""
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


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
    from metaray.folder import _resolved

    folder = RunFolder(run_dir)
    old, new = folder.spec(), load_spec(spec)
    if more < 1:
        raise SpecError("--num-samples", "how many configurations to add", allowed=">= 1", got=more)
    s = old.search
    if s.searcher == "grid" or "grid" in old.parsed_space().kinds():
        raise SpecError("--extend", "extends searches that draw one configuration at a time; a grid is enumerated "
                        "whole", allowed=["random", "optuna", "hyperopt"],
                        got=s.searcher if s.searcher == "grid" else "a space with grid values")
    prepare(new, say=lambda line: None)  # resolves the task and the default learner, as the search's spec.yaml has
    a, b = _resolved(old), _resolved(new)
    for raw in (a, b):
        raw["search"].pop("num_samples"), raw["search"].pop("max_concurrent"), raw["search"].pop("time_budget", None)
    what = ("strategy", "seed", "data", "subsets", "learner", "objective", "search")  # ray, tracking: as now
    differ = _first_difference({k: a.get(k) for k in what}, {k: b.get(k) for k in what})
    if differ:
        raise SpecError("--extend", "the run folder holds a search of another spec; an extension keeps the data, "
                        "subsets, space and seed, only search.num_samples grows", got=f"{differ} differs")
    done = s.num_samples or SearchRun(old, folder).default_samples()
    s.num_samples = done + more
    old.ray = new.ray  # where it runs now (a cluster, or this machine)
    old.search.time_budget = new.search.time_budget  # a fresh budget, the one given now
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

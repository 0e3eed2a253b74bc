"""The search: Ray Tune's searchers and schedulers, driven by one metaray driver that dispatches subset fits.

Why not one Tune trial per configuration: measured here, a Tune trial that launches its subset fits as nested
tasks ran at 4-6x the ideal (placement groups, a trial holding a CPU while it waits); driving Tune's searchers
(``suggest``/``on_trial_complete``) and schedulers (``on_trial_result``) from the driver and dispatching the
fits as plain Ray tasks keeps every CPU on fits.

Determinism: the driver feeds the searcher and the scheduler in a canonical order, configuration by
configuration and, within one, subset by subset (0, 1, 2, ...). Fits run in parallel and finish in any order,
but no decision depends on timing: an adaptive searcher suggests configuration i right after configuration
i - max_concurrent is delivered to it, never later, and max_concurrent is a number of the spec, not of the
cluster. So the same spec and seed give the same results table on any cluster, and a search resumed after a
crash replays its journal (``fits.jsonl``) into exactly the decisions it would have made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from metaray.aggregates import aggregate
from metaray.data import is_target_file
from metaray.errors import MetarayError, SpecError
from metaray.learners import final_estimator
from metaray.objective import FitResult, FitRunner, Prepared, deployable, notice, prepare, share
from metaray.space import plain
from metaray.spec import ExperimentSpec, LearnerSpec, load_spec

OBJECTIVE = "objective"
TIME_ATTR = "subsets_done"
#: configurations in flight with an adaptive searcher unless the spec says otherwise: a constant, not a multiple of
#: the cluster's CPUs, so that what the searcher has seen before each suggestion (and so the results table) is the
#: same on a laptop and on a cluster
ADAPTIVE_IN_FLIGHT = 8


# --- searchers: Tune's own, behind one small interface --------------------------------------------------


class _Variants:
    """random and grid: Tune's variant generator (what BasicVariantGenerator uses), seeded."""

    adaptive = False

    def __init__(self, param_space: dict, num_samples: int, seed: int):
        from ray.tune.search.variant_generator import generate_variants

        rng = np.random.RandomState(seed)
        passes = num_samples if param_space else 1
        # like Tune: num_samples passes, each over every grid point with fresh random samples
        self.total = passes * math.prod(len(v["grid_search"]) for v in param_space.values()
                                        if isinstance(v, dict) and "grid_search" in v)
        self._it = (cfg for _ in range(passes) for _, cfg in generate_variants(param_space, random_state=rng))

    def suggest(self, trial_id: str) -> dict | None:
        return next(self._it, None)

    def complete(self, trial_id: str, value: float | None) -> None:
        pass


class _TuneSearcher:
    """optuna and hyperopt: a ray.tune.search.Searcher fed through suggest/on_trial_complete."""

    adaptive = True

    def __init__(self, name: str, param_space: dict, mode: str, seed: int, num_samples: int):
        if name == "optuna":
            import logging

            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(logging.WARNING)
            self._s = OptunaSearch(space=param_space, metric=OBJECTIVE, mode=mode, seed=seed)
        else:
            from ray.tune.search.hyperopt import HyperOptSearch

            self._s = HyperOptSearch(space=param_space, metric=OBJECTIVE, mode=mode, random_state_seed=seed,
                                     n_initial_points=min(20, max(4, num_samples // 3)))

    def suggest(self, trial_id: str) -> dict | None:
        config = self._s.suggest(trial_id)
        return config if isinstance(config, dict) else None

    def complete(self, trial_id: str, value: float | None) -> None:
        ok = value is not None and math.isfinite(value)
        self._s.on_trial_complete(trial_id, {OBJECTIVE: value} if ok else None, error=not ok)


def make_searcher(spec: ExperimentSpec, space, mode: str, num_samples: int):
    param_space = space.param_space()
    if spec.search.searcher in ("random", "grid"):
        if spec.search.searcher == "grid":  # choices are enumerated too
            from ray import tune

            param_space = {k: tune.grid_search(v.categories) if hasattr(v, "categories") else v
                           for k, v in param_space.items()}
        return _Variants(param_space, num_samples, spec.seed)
    return _TuneSearcher(spec.search.searcher, param_space, mode, spec.seed, num_samples)


# --- schedulers over subsets -------------------------------------------------------------------------------


class _TrialRef:
    """What Tune's schedulers read of a trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class _Full:
    """No early stopping: every configuration is fitted on all K subsets."""

    def milestones(self, k: int) -> list[int]:
        return []

    def add(self, trial) -> None:
        pass

    def stop(self, trial, m: int, value: float) -> bool:
        return False

    def complete(self, trial) -> None:
        pass


class _Asha(_Full):
    """Tune's AsyncHyperBandScheduler; its time attribute is the fidelity: subsets done, or epochs trained."""

    def __init__(self, spec: ExperimentSpec, mode: str, max_t: int):
        from ray.tune.schedulers import AsyncHyperBandScheduler

        self._s = AsyncHyperBandScheduler(time_attr=TIME_ATTR, metric=OBJECTIVE, mode=mode, max_t=max_t,
                                          grace_period=spec.search.grace_period,
                                          reduction_factor=spec.search.reduction_factor, brackets=1)

    def milestones(self, k: int) -> list[int]:
        return sorted(int(m) for m, _ in self._s._brackets[0]._rungs if m < k)

    def add(self, trial) -> None:
        self._s.on_trial_add(None, _TrialRef(trial.id))

    def stop(self, trial, m: int, value: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        if not math.isfinite(value):
            return False
        return self._s.on_trial_result(None, _TrialRef(trial.id), {TIME_ATTR: m, OBJECTIVE: value}) == TrialScheduler.STOP

    def complete(self, trial) -> None:
        if trial.id in self._s._trial_info:
            self._s.on_trial_remove(None, _TrialRef(trial.id))


class _Racing(_Full):
    """Stop a configuration once a one-sided paired t-bound says it cannot beat the incumbent.

    Every configuration is fitted on the same subsets with the same seeds, so its score on subset j and the
    incumbent's score on subset j share the subset's luck; their difference is far less noisy than either
    score. After ``m >= min_subsets`` subsets, with d_j the differences in the metric's better direction, the
    configuration stops when ``mean(d) + t_{confidence, m-1} * sd(d) / sqrt(m) <= tolerance * |incumbent|``:
    with that confidence it cannot beat the incumbent by more than the tolerance (relative; 0 demands proof
    that it cannot beat it at all, and keeps every configuration that is as good within the noise).
    """

    def __init__(self, spec: ExperimentSpec, greater_is_better: bool, mode: str):
        self._min, self._conf, self._tol = spec.search.min_subsets, spec.search.confidence, spec.search.tolerance
        self._sign = 1.0 if greater_is_better else -1.0
        self._mode = mode
        self._incumbent = None

    def milestones(self, k: int) -> list[int]:
        return list(range(self._min, k))

    def stop(self, trial, m: int, value: float) -> bool:
        from scipy import stats

        inc = self._incumbent
        if inc is None:
            return False
        d = self._sign * (np.array(trial.scores(m)) - np.array(inc.scores(m)))
        if not np.isfinite(d).all():
            return False
        bound = d.mean() + stats.t.ppf(self._conf, m - 1) * d.std(ddof=1) / math.sqrt(m)
        margin = self._tol * abs(float(np.mean(inc.scores(m))))
        return bool(bound <= margin)  # cannot beat the incumbent by more than the tolerance

    def complete(self, trial) -> None:
        if trial.status != "completed" or not math.isfinite(trial.objective):
            return
        inc = self._incumbent
        if inc is None or (trial.objective > inc.objective if self._mode == "max" else trial.objective < inc.objective):
            self._incumbent = trial


def make_scheduler(spec: ExperimentSpec, prepared: Prepared, max_t: int):
    name = spec.search.scheduler
    if name == "asha":
        return _Asha(spec, prepared.mode, max_t)
    if name == "racing":
        return _Racing(spec, prepared.metric.greater_is_better, prepared.mode)
    return _Full()


# --- the driver --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One configuration of the search and what is known of it."""

    index: int
    config: dict[str, Any]
    visible: dict[str, Any]
    learner_name: str
    learner: Any = None
    status: str = "running"  # running | completed | stopped | failed
    results: dict[int, FitResult] = field(default_factory=dict)
    reported: int = 0
    submitted: int = 0
    cap: int = 0
    error: str | None = None
    objective: float = math.nan
    aggregates: dict[str, float] = field(default_factory=dict)
    metric: str = ""
    k: int = 1  # subsets per stage
    fitted_now: int = 0  # fits run by this process
    replayed: int = 0  # fits taken from the journal of an earlier, interrupted process

    @property
    def id(self) -> str:
        return f"t{self.index:04d}"

    @cached_property
    def key(self) -> str:
        """Identifies the configuration in the journal; computed once, read for every fit."""
        return config_key(self.config)

    @property
    def final(self) -> bool:
        return self.status != "running"

    def scores(self, m: int | None = None) -> list[float]:
        """The primary metric's scores on subsets 0..m-1 of the latest stage (default: all reported)."""
        start = (max(self.reported - 1, 0) // self.k) * self.k
        m = self.reported - start if m is None else m
        return [self.results[start + j].scores.get(self.metric, math.nan) for j in range(m)]


def config_key(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Journal:
    """Append-only record of finished fits (failed ones too); what a resumed search replays instead of fitting again.

    A process killed while writing leaves its last line cut short: that line is cut back when the journal is
    opened again (and said), and its fit runs again. A complete line that does not parse is not a kill's doing;
    the journal is refused rather than read in part.
    """

    def __init__(self, path: Path, say: Callable[[str], None] = lambda line: None):
        self.path = path
        self.memo: dict[tuple[int, int], tuple[str, FitResult]] = {}
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                say(f"journal: cut back a truncated last line ({len(data) - end} bytes) of {path}; that fit runs again")
            for number, line in enumerate(data[:end].decode().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    r = FitResult(**{f.name: row[f.name] for f in fields(FitResult) if f.name in row})
                    self.memo[(row["trial"], row.get("unit", row["subset"]))] = (row["key"], r)
                except (ValueError, KeyError, TypeError):
                    raise SpecError("resume", f"line {number} of the journal is not a fit record, so the journal "
                                    "cannot be trusted", got=f"{path}: {line[:80]}") from None
        self._fh = open(path, "a")

    def lookup(self, trial: Trial, unit: int) -> FitResult | None:
        hit = self.memo.get((trial.index, unit))
        return hit[1] if hit and hit[0] == trial.key else None

    def write(self, trial: Trial, unit: int, r: FitResult) -> None:
        row = {"trial": trial.index, "key": trial.key, "unit": unit, **r.__dict__}
        self._fh.write(json.dumps(row, default=float) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class SearchResult:
    """What a search returns: the results table, the best configuration and where everything was written."""

    name: str
    run_dir: Path
    table: Any  # pandas.DataFrame, best first
    best: dict[str, Any] | None
    metric: str
    aggregate: str
    mode: str
    fits_run: int
    fits_replayed: int
    wall_seconds: float
    holdout_scores: dict[str, float] = field(default_factory=dict)
    mlflow_parent_run_id: str | None = None
    dashboard_url: str | None = None
    refit_error: str | None = None

    @property
    def ok(self) -> bool:
        """A configuration completed and the best one was refitted: what a search is for."""
        return self.best is not None and self.refit_error is None

    def failures(self) -> str | None:
        """One line on the configurations that failed, with the most common error and its count; None if none did."""
        errors = self.table.loc[self.table["status"] == "failed", "error"].str.replace(r"^subset \d+: ", "", regex=True)
        if errors.empty:
            return None
        # errors that differ only in their numbers (a learning rate, a row count) are one error
        kinds = errors.str.replace(r"\d+(\.\d*)?([eE][-+]?\d+)?", "#", regex=True)
        common = kinds.value_counts().index[0]
        head = (f"every configuration failed ({len(errors)} of {len(self.table)})" if len(errors) == len(self.table)
                else f"{len(errors)} of {len(self.table)} configurations failed")
        return f"{head}; most common error ({(kinds == common).sum()}x): {errors[kinds == common].iloc[0]}"

    def summary(self, top: int = 20) -> str:
        table = self.table.head(top)
        params = [c for c in table.columns if c.startswith("param.")]
        show = table[["trial", "status", "learner"]].copy()
        show["params"] = [" ".join(f"{c.removeprefix('param.').split('.')[-1]}={_short(v)}"
                                   for c, v in row.items() if not _missing(v)) for _, row in table[params].iterrows()]
        for col in ("objective", "mean", "std", "worst", "subsets_done", "epochs_done"):
            if col in table:
                show[col] = table[col]
        lines = [f"{self.name}: {len(self.table)} configurations, {self.fits_run} subset fits run"
                 + (f", {self.fits_replayed} replayed from the journal" if self.fits_replayed else "")
                 + f", {self.wall_seconds:.1f} s", "",
                 show.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-",
                                justify="left", max_colwidth=70), ""]
        if self.best:
            params = ", ".join(f"{k}={v!r}" for k, v in self.best["params"].items())
            lines.append(f"best configuration ({self.aggregate} {self.metric} = {self.best['objective']:.4f}, "
                         f"std {self.best['std']:.4f}): {self.best['learner']}({params})")
            if self.holdout_scores:
                lines.append("refitted on the training pool, on the hold-out rows: "
                             + ", ".join(f"{k}={v:.4f}" for k, v in self.holdout_scores.items()))
            if self.refit_error:
                lines.append(f"the refit on the training pool failed: {self.refit_error}")
            if self.best.get("architecture"):
                lines.append("architecture:\n" + self.best["architecture"])
        else:
            lines.append("no configuration completed")
        lines.append(f"results: {self.run_dir}")
        return "\n".join(lines)


class Search:
    """Runs one search; see the module docstring for the protocol.

    Args:
        spec: a validated experiment spec.
        run_dir: the run's folder (created); an existing one is resumed.
        progress: called with one line of text per finished configuration.
    """

    def __init__(self, spec: ExperimentSpec, run_dir: Path, *, progress: Callable[[str], None] | None = None,
                 dashboard: bool = False, track: bool = True):
        self.spec, self.run_dir, self.dashboard, self.track = spec, Path(run_dir), dashboard, track
        self.progress = progress or (lambda line: None)
        self.say = progress or notice  # what the user must hear even without a progress callback

    # the protocol ----------------------------------------------------------------------------------------

    def run(self) -> SearchResult:

        from metaray.cluster import connect, prefer_loopback, token_hint, warm_up
        from metaray.tracking import Tracker

        t0 = time.perf_counter()
        spec = self.spec
        prefer_loopback(spec.ray.address)  # before anything imports Ray
        self.prepared = prepared = prepare(spec, self.say)
        self.space = spec.parsed_space()
        for branch in self.space.branches:  # misspelled keys and impossible values fail now, not trial by trial
            self._check_branch(branch)
        self.K = prepared.plan.k
        s = spec.search
        n = s.num_samples or (1 if self.space.empty or s.searcher == "grid" else 16)
        self.searcher = make_searcher(spec, self.space, prepared.mode, n)
        self.num_samples = self.searcher.total if hasattr(self.searcher, "total") else n
        if self.searcher.adaptive and s.max_concurrent is None:
            s.max_concurrent = ADAPTIVE_IN_FLIGHT  # resolved into the run folder's spec.yaml, which resume reads
        self.max_concurrent = s.max_concurrent
        self._fidelity(spec, prepared)
        _prepare_run_dir(self.run_dir, spec)
        self.journal = Journal(self.run_dir / "fits.jsonl", self.say)

        tracker = Tracker(spec, self.run_dir, prepared.dataset.describe()) if self.track else None
        started = tracker.start() if tracker else None  # MLflow's start-up overlaps Ray's
        try:
            info = connect(spec.ray.address, num_cpus=spec.ray.num_cpus, dashboard=self.dashboard, say=self.say)
            self.dashboard_url = info["dashboard_url"]
            warm_up(["metaray.objective", type(prepared.learner.model).__module__], info["cpus"])
            if self.dashboard_url:
                self.progress(f"Ray dashboard: {self.dashboard_url} ({token_hint()})")
            parent_id = started.result() if started else None
            self.problem_ref = share(prepared)
            self.runner = FitRunner(self.problem_ref, cpus_per_fit=spec.ray.cpus_per_fit,
                                    gpus_per_fit=spec.ray.gpus_per_fit, fits_per_task=spec.ray.fits_per_task,
                                    max_retries=spec.ray.max_retries, fit_timeout_s=spec.ray.fit_timeout_s,
                                    label=spec.name)
            self.trials: list[Trial] = []
            self._warned: set[str] = set()
            self.cursor, self.exhausted = 0, False
            self.tracker = tracker
            self._loop()
            self.runner.close()  # the refit gets every CPU; no fit of a stopped configuration runs on
            result = self._finish(t0, parent_id)
            if tracker:
                tracker.finish(result, self._final_model).result()
            _write_state(self.run_dir, status="finished" if result.ok else "failed", parent_run_id=parent_id)
            return result
        except BaseException:
            if tracker:
                tracker.abort()
            raise
        finally:
            if getattr(self, "runner", None) is not None:
                with contextlib.suppress(Exception):  # cleaning up must not hide why the search stopped
                    self.runner.close()
            self.journal.close()
            if tracker:
                tracker.close()

    def _fidelity(self, spec: ExperimentSpec, prepared: Prepared) -> None:
        """Lay a configuration's work out as units, fitted in order: with the subsets fidelity, unit u is subset
        u; with the epochs fidelity, stage s trains every subset for ``epochs[s]`` epochs (rungs of ASHA, then
        the learner's own epochs), and unit u is subset u % K of stage u // K. ``decisions`` maps a number of
        units done to the fidelity value the scheduler is told."""
        K = self.K
        if spec.search.fidelity == "subsets":
            self.scheduler = make_scheduler(spec, prepared, K)
            self.stage_epochs: list[int | None] = [None]
            self.decisions = {m: m for m in self.scheduler.milestones(K)}
            return
        key = prepared.learner.param_key("epochs")
        if key is None:
            raise SpecError("search.fidelity", "the epochs fidelity needs a learner trained in epochs",
                            allowed=["subsets"], got=f"epochs ({prepared.learner.name})")
        if self.space.conditional or "epochs" in self.space.branches[0].dists:
            raise SpecError("search.fidelity", "with the epochs fidelity ASHA allots the epochs: fix "
                            "learner.params.epochs instead of searching it, in a space of one learner",
                            got="epochs")
        total = int(prepared.learner.estimator.get_params()[key])
        self.scheduler = make_scheduler(spec, prepared, total)
        rungs = self.scheduler.milestones(total)
        self.stage_epochs = [*rungs, total]
        self.decisions = {(i + 1) * K: e for i, e in enumerate(rungs)}

    def _check_branch(self, branch) -> None:
        """Build each learner of the space once, with a representative value of each distribution."""
        params = {**branch.constants, **{name: d.args[0] for name, d in branch.dists.items()}}
        try:
            self.prepared.learner_for(LearnerSpec(name=branch.learner, params=params))
        except SpecError as exc:
            param = exc.key.removeprefix("learner.params.")
            if param in branch.dists and exc.problem.startswith("rejected by"):
                return  # one edge value rejected; trials that sample bad values fail on their own
            where = "search.space" + (f".learner[{branch.learner}]" if self.space.conditional else "")
            if exc.key.startswith("learner."):
                key = f"{where}.{exc.key.removeprefix('learner.').removeprefix('params.')}"
                raise SpecError(key, exc.problem, allowed=exc.allowed, got=exc.got) from None
            raise SpecError(exc.key, f"{exc.problem} (in {where})", allowed=exc.allowed, got=exc.got) from None

    @property
    def units(self) -> int:
        return self.K * len(self.stage_epochs)

    def _loop(self) -> None:
        while True:
            self._fill()
            self._deliver()
            if self.exhausted and self.cursor == len(self.trials):
                return
            results = self.runner.wait()
            if not results and self.runner.pending == 0 and not self._can_fill():
                raise MetarayError("search stalled: no fits pending and no configuration can advance")  # a bug
            for r in results:
                tid, _, stage = r.trial_id.partition("/")
                trial = self.trials[int(tid[1:])]
                for message in set(r.warnings) - self._warned:
                    self._warned.add(message)
                    self.progress(f"warning (first seen in {trial.id}, said once): {message}")
                unit = int(stage or 0) * self.K + r.subset
                if not r.transient:  # a failed fit too (it fails the same way when replayed), unless the cluster
                    self.journal.write(trial, unit, r)  # failed it: a resume then fits it again
                trial.fitted_now += 1
                if not trial.final:
                    trial.results[unit] = r

    def _can_fill(self) -> bool:
        if self.exhausted:
            return False
        open_trials = len(self.trials) - self.cursor
        if self.max_concurrent and open_trials >= self.max_concurrent:
            return False
        if not self.searcher.adaptive:
            return self.runner.pending < self.runner.work_wanted(self.prepared.learner) and open_trials < 256
        return True

    def _fill(self) -> None:
        while self._can_fill():
            index = len(self.trials)
            if index >= self.num_samples:
                self.exhausted = True
                return
            config = self.searcher.suggest(f"t{index:04d}")
            if config is None:
                self.exhausted = True
                return
            config = {k: plain(v) for k, v in config.items()}
            name, params = self.space.resolve(config)
            trial = Trial(index, config, self.space.visible(config), name, metric=self.prepared.metrics[0], k=self.K)
            self.trials.append(trial)
            self.scheduler.add(trial)
            try:
                trial.learner = self.prepared.learner_for(LearnerSpec(name=name, params=params))
            except SpecError as exc:
                trial.status, trial.error = "failed", str(exc)
                continue
            trial.cap = min(self.decisions, default=self.units)
            self._submit(trial)

    def _submit(self, trial: Trial) -> None:
        todo: dict[int, list[int]] = {}
        for unit in range(trial.submitted, trial.cap):
            hit = self.journal.lookup(trial, unit)
            if hit is not None:
                trial.results[unit] = hit
                trial.replayed += 1
            else:
                todo.setdefault(unit // self.K, []).append(unit % self.K)
        trial.submitted = max(trial.submitted, trial.cap)
        for stage, subsets in todo.items():
            epochs = self.stage_epochs[stage]
            if epochs is None:
                self.runner.submit(trial.id, trial.learner, subsets, self.spec.seed, priority=trial.index)
            else:
                self.runner.submit(f"{trial.id}/{stage}", trial.learner.with_params(epochs=epochs), subsets,
                                   self.spec.seed, priority=trial.index)

    def _deliver(self) -> None:
        while self.cursor < len(self.trials):
            trial = self.trials[self.cursor]
            self._advance(trial)
            if not trial.final:
                return
            self._finalize(trial)
            self.cursor += 1
            # an adaptive searcher suggests the next configuration having seen exactly the ones before it: how
            # many results it has seen at each suggestion depends on the spec, never on which fit finished first
            self._fill()

    def _advance(self, trial: Trial) -> None:
        spec = self.spec
        while not trial.final and trial.reported < self.units and trial.reported in trial.results:
            r = trial.results[trial.reported]
            if r.error:
                trial.status, trial.error = "failed", f"subset {r.subset}: {r.error}"
                break
            trial.reported += 1
            m = trial.reported
            if m in self.decisions:
                value = self._aggregates(trial)[spec.objective.aggregate]
                if self.scheduler.stop(trial, self.decisions[m], value):
                    trial.status = "stopped"
                    break
                trial.cap = next((x for x in sorted(self.decisions) if x > m), self.units)
                self._submit(trial)
        if trial.reported == self.units and not trial.final:
            trial.status = "completed"
        if trial.final:
            self.runner.cancel(trial.id)

    def _aggregates(self, trial: Trial) -> dict[str, float]:
        obj = self.spec.objective
        return aggregate(trial.scores(), greater_is_better=self.prepared.metric.greater_is_better,
                         alpha=obj.alpha, lam=obj.lam)

    def _finalize(self, trial: Trial) -> None:
        if trial.reported:
            trial.aggregates = self._aggregates(trial)
            trial.objective = trial.aggregates[self.spec.objective.aggregate]
        self.searcher.complete(trial.id, trial.objective if trial.status != "failed" else None)
        self.scheduler.complete(trial)
        if self.tracker:
            self.tracker.log_trial(self._row(trial), trial)
        self.progress(self._line(trial))

    # reporting -------------------------------------------------------------------------------------------

    def _line(self, trial: Trial) -> str:
        done = sum(t.final for t in self.trials)
        total = self.num_samples if not self.exhausted else len(self.trials)
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.visible.items())
        head = f"[{done:>3}/{total}] {trial.id} {trial.status:<9}"
        if trial.status == "failed":
            return f"{head} {params}  error: {trial.error}"
        best = self._best()
        tail = f"  best {best.objective:.4f} ({best.id})" if best else ""
        return (f"{head} {self.spec.objective.aggregate} {self.prepared.metric.name}={trial.objective:.4f} "
                f"± {trial.aggregates.get('std', math.nan):.4f} ({self._progress_of(trial)})  {params}{tail}")

    def _progress_of(self, trial: Trial) -> str:
        done = f"{len(trial.scores())}/{self.K} subsets"
        if self.stage_epochs[0] is None:
            return done
        return f"{done}, {self.stage_epochs[max(trial.reported - 1, 0) // self.K]}/{self.stage_epochs[-1]} epochs"

    def _best(self) -> Trial | None:
        done = [t for t in self.trials if t.status == "completed" and math.isfinite(t.objective)]
        if not done:
            return None
        sign = 1 if self.prepared.mode == "max" else -1
        return max(done, key=lambda t: (sign * t.objective, -t.index))

    def _row(self, trial: Trial) -> dict[str, Any]:
        row: dict[str, Any] = {"trial": trial.id, "status": trial.status, "learner": trial.learner_name}
        row.update({f"param.{k}": v for k, v in trial.visible.items() if k != "learner"})
        row[OBJECTIVE] = trial.objective
        row.update({k: trial.aggregates.get(k, math.nan) for k in ("mean", "std", "worst", "median", "cvar",
                                                                      "mean_minus_std")})
        row[TIME_ATTR] = len(trial.scores())
        if self.stage_epochs[0] is not None:
            row["epochs_done"] = self.stage_epochs[max(trial.reported - 1, 0) // self.K] if trial.reported else 0
        row.update({f"score_{k}": s for k, s in enumerate(trial.scores())})
        row["error"] = trial.error or ""
        return row

    def _finish(self, t0: float, parent_id: str | None) -> SearchResult:
        import pandas as pd

        rows = [self._row(t) for t in self.trials]
        table = pd.DataFrame(rows)
        order = {"completed": 0, "stopped": 1, "failed": 2}
        sign = -1 if self.prepared.mode == "max" else 1
        table["_rank"] = table["status"].map(order)
        table["_obj"] = sign * table[OBJECTIVE].astype(float)
        table = table.sort_values(["_rank", "_obj", "trial"], na_position="last").drop(columns=["_rank", "_obj"])
        table = table.reset_index(drop=True)
        table.to_csv(self.run_dir / "results.csv", index=False)
        _to_parquet(table, self.run_dir / "results.parquet")
        best_trial = self._best()
        best, holdout, self._final_model, refit_error = None, {}, None, None
        if best_trial:
            best = {"trial": best_trial.id, "learner": best_trial.learner_name,
                    "params": self.space.resolve(best_trial.config)[1], "objective": best_trial.objective,
                    "std": best_trial.aggregates.get("std", math.nan), "config": best_trial.config}
            try:
                est, holdout = self._refit(best_trial)
                self._final_model = deployable(est, self.prepared.dataset.cleaner)
            except Exception as exc:  # the search's results stand; the refit's failure is said, not raised
                refit_error = _one_line(exc)
                best["refit_error"] = refit_error
            best["holdout"] = holdout
            model = final_estimator(self._final_model) if self._final_model is not None else None
            if hasattr(model, "summary"):  # a network: its architecture, layer by layer
                best["architecture"] = model.summary()
            (self.run_dir / "best.json").write_text(json.dumps(best, indent=2, default=str))
        return SearchResult(self.spec.name, self.run_dir, table, best, self.prepared.metric.name,
                            self.spec.objective.aggregate, self.prepared.mode, sum(t.fitted_now for t in self.trials),
                            sum(t.replayed for t in self.trials),
                            time.perf_counter() - t0, holdout, parent_id, self.dashboard_url, refit_error)

    def _refit(self, trial: Trial):
        """The best configuration fitted on the whole training pool, scored on the hold-out rows if any. With
        ``ray.fit_timeout_s``, the refit may take that long times the pool's size over a subset's."""
        import ray

        from metaray.objective import fit_final

        ref = ray.remote(fit_final).options(num_cpus=self.spec.ray.cpus_per_fit, num_gpus=self.spec.ray.gpus_per_fit,
                                            max_retries=self.spec.ray.max_retries,
                                            name=f"{self.spec.name} {trial.id} refit").remote(
            self.problem_ref, trial.learner, self.spec.seed)
        limit = self.spec.ray.fit_timeout_s
        if limit is not None:
            plan = self.prepared.plan
            limit *= max(1.0, (len(self.prepared.dataset.y) - len(plan.test)) / min(len(t) for t in plan.train))
            if not ray.wait([ref], timeout=limit)[0]:
                ray.cancel(ref, force=True)
                raise TimeoutError(f"the refit on the whole training pool did not finish within {limit:.0f} s "
                                   "(ray.fit_timeout_s, scaled to the pool's size); its task was cancelled")
        return ray.get(ref)


def _one_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its message (a Ray task error: the cause's)."""
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _to_parquet(table, path: Path) -> None:
    try:
        table.astype({c: str for c in table.columns if table[c].dtype == object}).to_parquet(path, index=False)
    except (ImportError, ValueError):
        pass  # the CSV is the record; Parquet is a convenience


def _write_state(run_dir: Path, **updates) -> None:
    path = run_dir / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update({k: v for k, v in updates.items() if v is not None})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def _prepare_run_dir(run_dir: Path, spec: ExperimentSpec) -> None:
    import yaml

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpecError("storage", f"cannot write the run folder ({exc.strerror})", got=str(run_dir)) from None
    spec_file = run_dir / "spec.yaml"
    if not spec_file.exists():
        raw = spec.to_dict()
        if raw["data"].get("path"):  # a resumed run reads the data from where the original spec pointed
            raw["data"]["path"] = str(spec.resolve_path(raw["data"]["path"]).resolve())
            if is_target_file(raw["data"].get("target")):
                raw["data"]["target"] = str(spec.resolve_path(raw["data"]["target"]).resolve())
        spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        _write_state(run_dir, status="running", name=spec.name, started=time.strftime("%Y-%m-%dT%H:%M:%S"))


def new_run_dir(spec: ExperimentSpec) -> Path:
    """``<storage>/<name>/<timestamp>``, storage relative to the working folder."""
    base = Path(os.path.expanduser(spec.storage)) / spec.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, i = base / stamp, 1
    while path.exists():
        path, i = base / f"{stamp}-{i}", i + 1
    return path


def run_search(spec: ExperimentSpec | dict | str | os.PathLike, overrides: list[str] = (), *,
               run_dir: str | os.PathLike | None = None, progress: Callable[[str], None] | None = None,
               dashboard: bool = False, track: bool = True) -> SearchResult:
    """Search the spec's space for the best meta-objective.

    Example (starts a local Ray and writes ./metaray_results and ./mlflow.db)::

        result = run_search("experiments/meta_classification_iris.yaml", ["search.num_samples=8"])
        result.table.head(), result.best

    Raises:
        SpecError: before any fit, for anything wrong with the spec, its space or its data.
    """
    spec = load_spec(spec, list(overrides))
    return Search(spec, Path(run_dir) if run_dir else new_run_dir(spec), progress=progress, dashboard=dashboard,
                  track=track).run()


def resume_search(run_dir: str | os.PathLike, *, progress: Callable[[str], None] | None = None,
                  dashboard: bool = False, track: bool = True) -> SearchResult:
    """Continue a search from its run folder: fits in its journal are replayed, not run again."""
    run_dir = Path(run_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise SpecError("resume", "not a metaray run folder (no spec.yaml in it)", got=str(run_dir))
    spec = load_spec(run_dir / "spec.yaml")
    return Search(spec, run_dir, progress=progress, dashboard=dashboard, track=track).run()


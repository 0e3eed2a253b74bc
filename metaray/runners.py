"""Runners: where subset fits are run. The driver gives units of work and takes results; a runner carries them out.

``FitRunner`` runs them as Ray tasks, on a laptop or a cluster. ``InProcessRunner`` runs them one after another in
this process, with any fit function: the driver's tests use it with made-up fits (and results handed back in a
shuffled order), and the throughput benchmark with fits that do nothing.
"""

from __future__ import annotations

import collections
import heapq
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from metaray.errors import SpecError, one_line
from metaray.fits import FitResult, Unit, trial_id

#: a task's fits should take this many times Ray's cost per task (measured as the search runs: ``FitRunner``), so
#: that the cost is at most 5 % of the work
OVERHEAD_SHARE = 0.05
#: Ray's cost per task assumed until a few tasks have measured it (what it is on a quiet 2-core machine)
ASSUMED_OVERHEAD_S = 0.002
#: the longest a batch of short fits may last: results, and the decisions they feed, come back at least this often
MAX_TASK_SECONDS = 0.5
#: how many of the latest gaps between tasks (per worker) the overhead is the median of
GAPS_KEPT = 64
#: a task still running this many times as long as its fits were expected to take (each learner's mean fit time) gets
#: a backup copy (``FitRunner``): the first copy to finish is taken, the other cancelled. Fits are deterministic
#: (their seeds come from the spec and the subset), so either copy gives the same results; a straggler (a slow node,
#: a noisy neighbour) then no longer holds up the configurations that wait for it
BACKUP_AFTER = 3.0
#: ... and has run this long: a short task that ends late is held up by scheduling, not by a slow node
BACKUP_MIN_S = 5.0


def backup_due(started: float, expected: float) -> float:
    """When a task started at ``started`` and expected to take ``expected`` seconds is due a backup copy."""
    return started + max(BACKUP_AFTER * expected, BACKUP_MIN_S)


class Runner(Protocol):
    """What the driver's loop needs of a runner."""

    def submit(self, units: list[Unit], learner: Any) -> None:
        """Queue fits of one configuration (and stage) with its learner; lower configurations go out first."""

    def wait(self, timeout: float | None = None) -> list[FitResult]:
        """Block until some fits finish and return their results (empty when nothing is queued or running, or when
        ``timeout`` seconds pass first)."""

    def cancel(self, trial: int) -> None:
        """Drop the queued fits of a configuration (and stop its running ones where the runner can)."""

    def room(self) -> int:
        """How many more fits would keep the runner busy: the driver opens configurations while this is > 0."""

    def idle(self) -> int:
        """Slots that would idle (nothing running there, nothing queued): the driver gives fits ahead of a decision
        to as many configurations (``Driver.advance``)."""

    def close(self) -> None:
        """Stop everything still queued or running."""

    @property
    def pending(self) -> int:
        """Fits queued or running."""


def span(numbers: Iterable[int]) -> str:
    """Numbers as ranges: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``.

    Example:
        >>> span([0, 1, 2, 5, 7, 8])
        '0-2,5,7-8'
    """
    out: list[str] = []
    for n in sorted(numbers):
        if out and n == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


def batch_size(fit_s: float, overhead_s: float) -> int:
    """How many fits of ``fit_s`` seconds a task carries when Ray's cost per task is ``overhead_s``: enough that the
    cost is at most ``OVERHEAD_SHARE`` of the task's work, no more than fill ``MAX_TASK_SECONDS``, at least one.

    Example:
        >>> [batch_size(0.01, overhead) for overhead in (0.0005, 0.002, 0.02)]  # 10 ms fits
        [1, 4, 40]
        >>> batch_size(0.001, 0.05), batch_size(0.2, 0.002)  # capped at half a second; a long fit goes alone
        (500, 1)
    """
    fit_s = max(fit_s, 1e-5)
    return max(1, min(math.ceil(overhead_s / (OVERHEAD_SHARE * fit_s) - 1e-9), math.floor(MAX_TASK_SECONDS / fit_s)))


def task_name(label: str, groups: list[tuple[Any, list[Unit]]]) -> str:
    """What the dashboard and `ray list tasks` show for a task's groups of fits (one group per configuration and
    stage): ``meta_iris t0003 s0-4`` (``… stage 1`` past the first), ``meta_iris t0003 s15-19 +2 configurations``."""
    units = groups[0][1]
    first = units[0]
    stage = f" stage {first.stage}" if first.stage else ""
    more = f" +{len(groups) - 1} configuration{'s' if len(groups) > 2 else ''}" if len(groups) > 1 else ""
    return f"{label} {trial_id(first.trial)} s{span(u.subset for u in units)}{stage}{more}"


def _fit_batch(fit, problem, groups: list[tuple[Any, list[Unit]]], seed: int, subsets: tuple[int, ...] = (),
               *encoded) -> tuple[list[FitResult], tuple[int, str], float, float]:
    """A task's fits: each group is a learner and its units (one configuration and stage); ``encoded``: the shared
    encodings of ``subsets`` (Ray fetched them as the task's arguments). Returns the results, the worker (process
    id, node) and when the task's body began and ended on the worker's clock: the driver measures from these the
    time a worker spends between two tasks, Ray's cost per task (``FitRunner``)."""
    began = time.monotonic()
    if subsets:
        import dataclasses

        problem = dataclasses.replace(problem, encoded=dict(zip(subsets, encoded, strict=True)))
    results = [fit(problem, learner, unit, seed) for learner, units in groups for unit in units]
    node = _node_name()
    for r in results:
        r.node = node
    return results, (os.getpid(), node), began, time.monotonic()


def _node_name() -> str:
    """This Ray node: its host name and the start of its node id (several nodes may share one host)."""
    import ray

    return f"{os.uname().nodename}:{ray.get_runtime_context().get_node_id()[:8]}"


class FitRunner:
    """Runs subset fits as Ray tasks and hands back their results as they finish.

    Short fits are batched several to a task (the rule: ``_batch_size``), sized from two things measured as the search
    runs: each learner's fit time, and Ray's cost per task, the median time a worker spends between the end of one
    task and the start of its next while work waits for it (scheduling, handing results back, fetching arguments,
    on this cluster as loaded as it is). Queued fits go out lowest configuration
    first (so the oldest one finishes first), and at most ``2 x slots`` tasks are in flight, so that the queued fits
    of a configuration a scheduler stops can still be dropped (``cancel``). ``wait`` hands back every task that has
    finished, not just the first, so that the driver's work per result shrinks as the cluster grows.

    A task still running ``BACKUP_AFTER`` times as long as its fits were expected to take (each learner's mean
    measured fit time; timed from when it had a slot) gets a backup copy, launched when no fit is queued or when it is
    the oldest configuration's: the first copy to finish is taken and the other cancelled (its worker killed). Fits are
    deterministic, so either gives the same results; a straggler (a slow or overloaded node) then does not hold up
    the configurations whose decisions, and an adaptive searcher's suggestions, wait for it. ``copies`` counts them.

    With ``fit_timeout_s``, every task carries one fit and no more tasks are in flight than there are slots, so a
    task starts when it is dispatched; one still running ``fit_timeout_s`` after that is cancelled (its worker is
    killed) and its fit fails with the reason.

    Args:
        fit: ``fit(problem, learner, unit, seed) -> FitResult`` (metaray.objective.score_fit), run in the tasks.
        problem_ref: ``ray.put(Problem)``, shared by every task.
        seed: the spec's seed; each fit derives its own from it and its subset.
        cpus_per_fit: CPUs each task reserves.
        fits_per_task: fixed batch size; None adapts it to measured fit times.
        max_retries: Ray retries of a task whose worker or node died.
        fit_timeout_s: seconds a fit may run; None for no limit.
        label: the search's name, first word of every task's name (``meta_iris t0003 s0-4`` in Ray's dashboard).
        encodings: {subset: ObjectRef} of the table's encoding per subset (metaray.objective.encode_subsets), handed
            to each task for the subsets of its fits.
    """

    def __init__(self, fit, problem_ref, *, seed: int = 0, cpus_per_fit: float = 1.0, gpus_per_fit: float = 0.0,
                 fits_per_task: int | None = None, max_retries: int = 3, fit_timeout_s: float | None = None,
                 label: str = "metaray", encodings: dict[int, Any] | None = None):
        import ray

        from metaray.cluster import fit_slots, max_node_resource

        for key, need, resource in (("cpus_per_fit", cpus_per_fit, "CPU"), ("gpus_per_fit", gpus_per_fit, "GPU")):
            if need > max_node_resource(resource):
                raise SpecError(f"ray.{key}", f"no node of this Ray cluster has that many {resource}s, so no fit "
                                "could ever be scheduled", allowed=f"<= {max_node_resource(resource):g}", got=need)
        self._ray = ray
        self._fit, self._ref = fit, problem_ref
        self._seed = seed
        self._remote = ray.remote(_fit_batch)
        self._resources = dict(num_cpus=cpus_per_fit, num_gpus=gpus_per_fit, max_retries=max_retries)
        self._encodings = encodings or {}
        self.slots = fit_slots(cpus_per_fit, gpus_per_fit)
        self._timeout = fit_timeout_s
        self._label = label
        self._fixed = 1 if fit_timeout_s else fits_per_task
        self._max_inflight = self.slots if fit_timeout_s else 2 * self.slots
        self._deadline: dict[Any, float] = {}
        # a heap of ((trial, stage, subset), seq, unit, learner): lowest configuration first (plain tuples compare
        # faster than the Unit dataclass)
        self._queue: list[tuple[tuple[int, int, int], int, Unit, Any]] = []
        self._seq = 0
        self._inflight: dict[Any, list[Unit]] = {}  # ref -> its units
        self._groups: dict[Any, list] = {}  # ref -> its groups: its learners (a backup copy is launched with the same)
        self._due: dict[Any, float] = {}  # ref -> when it is due a backup copy (its fits' times are known)
        self._twin: dict[Any, Any] = {}  # a task and its backup copy, each way
        self._started: dict[Any, float] = {}  # ref -> when it started, about (when it was launched with a slot free)
        self.copies = 0  # backup copies launched
        self._dropped: set[int] = set()  # configurations cancelled: their running tasks get no copy
        self._fit_seconds: dict[str, float] = {}  # per learner name: a running mean of measured fit times
        self._gaps: collections.deque[float] = collections.deque(maxlen=GAPS_KEPT)  # seconds between two tasks
        self._worker_end: dict[tuple[int, str], float] = {}  # per worker: when its latest task ended
        self._queued: set = set()  # tasks launched while every slot was busy: the gap before each is Ray's cost
        self._overhead_s = ASSUMED_OVERHEAD_S  # the median of the gaps (``overhead_s``)
        self._last = None  # the learner submitted last: its fit time sizes ``room``

    def submit(self, units: list[Unit], learner) -> None:
        for unit in units:
            heapq.heappush(self._queue, ((unit.trial, unit.stage, unit.subset), self._seq, unit, learner))
            self._seq += 1
        self._last = learner

    def cancel(self, trial: int) -> None:
        """Drop the queued fits of a configuration. Its running tasks finish (their results are ignored): a polite
        cancel raises KeyboardInterrupt wherever the task's Python code is, and one that lands in an import (a
        first ``import torch``) leaves that module half-imported in the worker, failing every later fit there. With
        ``fit_timeout_s`` the user has said hung fits must die: then its tasks are cancelled and their workers
        killed."""
        self._queue = [job for job in self._queue if job[0][0] != trial]
        heapq.heapify(self._queue)
        self._dropped.add(trial)
        if self._timeout is None:
            return
        for ref, units in list(self._inflight.items()):
            if all(u.trial == trial for u in units):  # a task shared with other configurations runs on
                self._ray.cancel(ref, force=True)
                self._forget(ref)

    @property
    def pending(self) -> int:
        copies = sum(len(self._inflight[r]) for r in self._twin) // 2  # a task and its copy are the same fits
        return len(self._queue) + sum(len(units) for units in self._inflight.values()) - copies

    @property
    def overhead_s(self) -> float:
        """Ray's cost per task as measured so far: the median gap between two tasks on a worker (``ASSUMED_OVERHEAD_S``
        until a few were measured); updated once per ``wait`` round."""
        return self._overhead_s

    def room(self) -> int:
        """Two tasks' worth of fits per slot, less what is already pending."""
        return 2 * self.slots * self._batch_size(self._last, capped=False) - self.pending

    def idle(self) -> int:
        """Slots with no task, and none queued to take them."""
        return 0 if self._queue else max(0, self.slots - len(self._inflight))  # a copy takes a slot too

    def _batch_size(self, learner, capped: bool = True) -> int:
        """How many fits the next task of ``learner`` carries. The batching rule:

        1. ``ray.fits_per_task`` (or ``fit_timeout_s``: one fit a task, so that a task's clock is its fit's) fixes it.
        2. A learner with no fit measured yet gets one fit a task: its first tasks measure how long a fit takes
           (fit and score seconds, a running mean per learner name, updated as results arrive in ``wait``).
        3. Then enough fits that Ray's cost per task (``overhead_s``, measured) is at most ``OVERHEAD_SHARE`` of
           the task's work: with 2 ms a task, a 10 ms fit goes four to a task, a fit of 40 ms or more alone; on a
           cluster where a task costs 20 ms, forty.
        4. Never a batch longer than ``MAX_TASK_SECONDS`` (the decisions that wait on its results stay timely), nor,
           ``capped``, more than the queue shared evenly over the slots, so that near the end of the queue no slot
           idles while another works through a long batch.
        """
        if self._fixed:
            return self._fixed
        estimate = self._fit_seconds.get(learner.name) if learner is not None else None
        if estimate is None:
            return 1
        size = batch_size(estimate, self.overhead_s)
        if capped:
            size = min(size, math.ceil(len(self._queue) / self.slots))
        return max(1, size)

    def _dispatch(self) -> None:
        """Launch tasks while fewer than ``_max_inflight`` are in flight. A task takes the lowest queued fits, sized by
        the learner of the first (``_batch_size``), and may take fits of the next configurations when one has too
        few left: each configuration's (and stage's) fits in a task form a group with its own learner."""
        while self._queue and len(self._inflight) < self._max_inflight:
            learner = self._queue[0][3]
            size = self._batch_size(learner)
            groups: list[tuple[Any, list[Unit]]] = []
            taken = 0
            while self._queue and taken < size:
                _, _, unit, unit_learner = heapq.heappop(self._queue)
                if groups and groups[-1][0] is unit_learner and groups[-1][1][-1].trial == unit.trial:
                    groups[-1][1].append(unit)
                else:
                    groups.append((unit_learner, [unit]))
                taken += 1
            self._track(self._launch(groups), groups)

    def _track(self, ref, groups: list[tuple[Any, list[Unit]]]) -> None:
        """Record a task just launched: its units, their learners, when it is due a backup copy."""
        now = time.monotonic()
        if len(self._inflight) >= self.slots:  # it waits for a worker: none idles for want of it
            self._queued.add(ref)
        self._inflight[ref] = [u for _, units in groups for u in units]
        self._groups[ref] = groups
        if self._timeout:
            self._deadline[ref] = now + self._timeout
        if ref not in self._queued:
            self._started[ref] = now

    def _back_up(self) -> None:
        """Launch a backup copy of each task due one (``BACKUP_AFTER``), lowest configuration first, at most one copy
        per slot at once: at once when no fit is queued (a slot would idle) or the task is of the oldest configuration
        in flight (it holds up those after it), else once the queue is empty; none for a cancelled configuration's. A
        task that waited for a worker is timed from the first round in which no task waits (every task in flight then
        has a slot)."""
        if self._timeout is not None:
            return
        now = time.monotonic()
        if len(self._inflight) <= self.slots:
            self._started.update({r: now for r in self._inflight if r not in self._started})
        for ref, started in self._started.items():
            if ref not in self._due and ref not in self._twin:
                expected = sum(self._fit_seconds.get(name, math.nan) for name in _names(self._groups[ref]))
                if math.isfinite(expected):
                    self._due[ref] = backup_due(started, expected)
        due = []
        for ref in [r for r, at in self._due.items() if at <= now]:  # mostly none: the common round ends here
            if all(u.trial in self._dropped for u in self._inflight[ref]):
                self._due[ref] = math.inf  # every fit of it is of a cancelled configuration: never copied
            else:
                due.append((self._inflight[ref][0], ref))
        if not due:
            return
        due.sort(key=lambda d: d[0])
        oldest = min(units[0].trial for units in self._inflight.values()
                     if not all(u.trial in self._dropped for u in units))
        for first, ref in due:
            if len(self._twin) // 2 >= self.slots:
                break  # at most a copy per slot at once (they may exceed the tasks in flight: a straggler's is urgent)
            if self._queue and first.trial != oldest:
                continue  # fits wait for a slot, and this configuration holds up no other: the copy waits
            del self._due[ref]
            copy = self._launch(self._groups[ref])
            self._track(copy, self._groups[ref])
            self._twin[ref], self._twin[copy] = copy, ref
            self.copies += 1

    def _launch(self, groups: list[tuple[Any, list[Unit]]]):
        """One task for a batch of fits, named for people."""
        subsets = tuple(sorted({u.subset for _, units in groups for u in units} & set(self._encodings)))
        memory = max((learner.memory or 0 for learner, _ in groups), default=0)  # metaray.memory's reservation
        resources = {**self._resources, "memory": int(memory)} if memory else self._resources
        return self._remote.options(**resources, name=task_name(self._label, groups)).remote(
            self._fit, self._ref, groups, self._seed, subsets, *(self._encodings[k] for k in subsets))

    def wait(self, timeout: float | None = None) -> list[FitResult]:
        """Dispatch what fits, block until at least one task finishes (or ``timeout`` seconds pass), return its
        results (empty when idle)."""
        ray = self._ray
        self._dispatch()
        self._back_up()
        if not self._inflight:
            return []
        now = time.monotonic()  # a copy still waiting for the queue to empty is looked at again after the next results
        wakes = [*self._deadline.values(), *(at for at in self._due.values() if now < at < math.inf)]
        wait_s = max(0.0, min(wakes) - now) if wakes else None
        if timeout is not None:
            wait_s = timeout if wait_s is None else min(wait_s, timeout)
        refs = list(self._inflight)
        done, rest = ray.wait(refs, num_returns=1, timeout=wait_s)
        if done and rest:  # every other task that has finished too: one driver round for all of them
            done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = self._expire(set(done))  # also while other fits finish: an overdue one must not keep its slot
        times = []  # (began, ended, worker, queued) of each task of this round, measured in the order they ran
        for ref in done:
            if ref not in self._inflight:  # the copy of a task taken in this round
                continue
            twin = self._twin.get(ref)
            units, names, queued = self._forget(ref)
            try:
                results, worker, began, ended = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                continue
            except ray.exceptions.RayError as exc:  # the worker or its node died, beyond Ray's retries
                if twin is not None:
                    continue  # its copy runs on
                results = [FitResult(unit, error=one_line(exc), transient=True) for unit in units]
            else:
                times.append((began, ended, worker, queued))
            if twin is not None:  # the first copy to finish is taken: the other is stopped
                self._ray.cancel(twin, force=True)
                self._forget(twin)
            for r, name in zip(results, names, strict=True):
                if r.error is None and name is not None:
                    seconds = r.fit_seconds + r.score_seconds
                    old = self._fit_seconds.get(name)
                    self._fit_seconds[name] = seconds if old is None else 0.7 * old + 0.3 * seconds
            out.extend(results)
        for began, ended, worker, queued in sorted(times):
            self._measure(worker, began, ended, queued)
        if times and len(self._gaps) >= 4:
            self._overhead_s = statistics.median(self._gaps)
        self._dispatch()
        return out

    def _forget(self, ref) -> tuple[list[Unit], list[str | None], bool]:
        """A task that is done or cancelled, out of every record of tasks in flight: its units, their learners'
        names, and whether it waited for a worker."""
        self._deadline.pop(ref, None)
        self._due.pop(ref, None)
        self._started.pop(ref, None)
        twin = self._twin.pop(ref, None)
        if twin is not None:
            self._twin.pop(twin, None)
        units = self._inflight.pop(ref)
        queued = ref in self._queued
        self._queued.discard(ref)
        return units, _names(self._groups.pop(ref)), queued

    def _measure(self, worker: tuple[int, str], began: float, ended: float, queued: bool) -> None:
        """A task's time on its worker: the gap since that worker's previous task ended is Ray's cost per task when
        the task was waiting for a worker (``queued``), not when the worker idled for want of work."""
        last = self._worker_end.get(worker)
        if queued and last is not None and began >= last:
            self._gaps.append(began - last)
        self._worker_end[worker] = max(ended, last or ended)

    def _expire(self, finished: set) -> list[FitResult]:
        """Cancel the tasks past their deadline that have not just finished (killing their workers: a hung fit
        does not answer a polite cancel) and fail their fits."""
        now, out = time.monotonic(), []
        for ref in [r for r, deadline in self._deadline.items() if deadline <= now and r not in finished]:
            self._ray.cancel(ref, force=True)
            units, _, _ = self._forget(ref)
            out += [FitResult(unit, error=f"TimeoutError: the fit did not finish within ray.fit_timeout_s="
                              f"{self._timeout:g} s; its task was cancelled") for unit in units]
        return out

    def close(self, patience_s: float = 5.0) -> None:
        """Stop everything still queued or running (fits of configurations that were stopped or failed): kill their
        workers, so that nothing outlives the search, not even a fit hung in native code. Ray ignores a forced cancel
        that follows a polite one too closely, so the forced cancel is repeated until the tasks are gone."""
        # the subsets' encodings too: one still running (a search that ended early) must not outlive it
        refs, until = list(self._inflight) + list(self._encodings.values()), time.monotonic() + patience_s
        while refs and time.monotonic() < until:
            for ref in refs:
                self._ray.cancel(ref, force=True)
            refs = self._ray.wait(refs, num_returns=len(refs), timeout=0.5)[1]
        self._queue, self._inflight, self._deadline, self._queued = [], {}, {}, set()
        self._groups, self._due, self._twin, self._started, self._dropped = {}, {}, {}, {}, set()
        self._encodings = {}  # their objects leave the object store with the last reference

    def results(self) -> Iterator[FitResult]:
        """Yield every submitted fit's result, in the order they finish."""
        while self._inflight or self._queue:
            yield from self.wait()


def _names(groups: list[tuple[Any, list[Unit]]]) -> list[str]:
    """The learner name of each unit of a task's groups, in order."""
    return [learner.name for learner, units in groups for _ in units]


class InProcessRunner:
    """Runs fits one after another in this process with ``fit(unit, learner) -> FitResult``.

    Each ``wait`` runs up to ``slots`` queued fits, lowest configuration first; with ``shuffle`` (a NumPy random
    generator) it runs them in a random order and hands the results back in a random order, holding some back for a
    later ``wait``, as a cluster's nodes would.

    Example:
        >>> from metaray.fits import FitResult, Unit
        >>> runner = InProcessRunner(lambda unit, learner: FitResult(unit, scores={"accuracy": 1.0}))
        >>> runner.submit([Unit(0, 0, 0), Unit(0, 0, 1)], learner=None)
        >>> sorted(r.subset for r in runner.wait())
        [0, 1]
    """

    def __init__(self, fit: Callable[[Unit, Any], FitResult], *, slots: int = 2, shuffle=None):
        self._fit, self.slots, self._rng = fit, slots, shuffle
        self._queue: list[tuple[Unit, Any]] = []
        self._sorted = True
        self._held: list[FitResult] = []

    def submit(self, units: list[Unit], learner) -> None:
        if self._queue and units and units[0] < self._queue[-1][0]:
            self._sorted = False  # sorted once, when fits are next taken
        self._queue += [(unit, learner) for unit in units]

    def cancel(self, trial: int) -> None:
        self._queue = [job for job in self._queue if job[0].trial != trial]

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._held)

    def room(self) -> int:
        return 2 * self.slots - self.pending

    def idle(self) -> int:
        return self.slots - self.pending

    def wait(self, timeout: float | None = None) -> list[FitResult]:
        """Run up to ``slots`` fits (``timeout`` is moot: they run here, one after another)."""
        if not self._sorted:
            self._queue.sort(key=lambda job: job[0])
            self._sorted = True
        n = min(self.slots, len(self._queue))
        if self._rng is None or not self._queue:
            jobs, self._queue = self._queue[:n], self._queue[n:]
        else:
            take = set(self._rng.choice(len(self._queue), size=n, replace=False).tolist())
            jobs = [job for i, job in enumerate(self._queue) if i in take]
            self._queue = [job for i, job in enumerate(self._queue) if i not in take]
        self._held += [self._fit(unit, learner) for unit, learner in jobs]
        if self._rng is None or not self._queue:
            out, self._held = self._held, []
            return out
        self._rng.shuffle(self._held)
        keep = int(self._rng.integers(0, len(self._held) + 1))
        out, self._held = self._held[keep:], self._held[:keep]
        return out

    def close(self) -> None:
        self._queue, self._held = [], []

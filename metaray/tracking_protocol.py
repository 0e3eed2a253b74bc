"""The messages between a search's driver and its tracking process (metaray.tracking), and the protocol they follow.

The driver (``Tracker``, through a feeder thread) writes requests to the tracking process's stdin, pickled one after
another; the process answers on its stdout, read by the driver's reader thread. One search at a time::

    request      reply                                 when
    Start        Started(parent_id) | StartFailed      first; Started once the experiment and parent run exist
    LogTrial     Logged(error)                         one per configuration that ended, in the order they ended
    Results      (none)                                at most once, after the search's last LogTrial: logged while
                                                       the driver still draws the files Finish brings
    Finish       Finished(error, notes)                at most once, after the search's last LogTrial (and Results)
    Abort        (none)                                the search stopped before Finish: its parent run is KILLED
    End          Ended                                 last: every request before it has been handled

Ordering: one pipe each way, read and handled in order, so a reply comes after those of every earlier request, and
``Ended`` means the whole search is logged. After ``StartFailed`` the process logs nothing of that search and
answers ``End`` only. The driver's side is a bounded queue (``Tracker``'s ``MAX_QUEUED``): a driver that runs that
far ahead of MLflow waits.

Ctrl-C: the process ignores SIGINT (a terminal sends it to the whole process group) and handles every request it
was sent; the driver sends ``Abort``, then ``End``, and waits for ``Ended`` (a second Ctrl-C leaves the process to
finish on its own). A killed driver: the process reads EOF on its stdin, logs every request it had received, marks
the parent run KILLED and exits; the replies it can no longer send are dropped. A resumed search sends ``Start``
with the parent run its run folder recorded: the process reopens it and skips the configurations it already holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# requests: driver -> tracking process ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Connect to the store, create the experiment and the parent run (or reopen ``parent_id``). The process takes
    the driver's working folder (MLflow puts a new store's artifacts under ./mlruns) and environment (credentials,
    MLFLOW_* settings) as they are now: it outlives searches."""

    spec: Any  # the ExperimentSpec, as the run folder's spec.yaml records it
    run_dir: Path
    dataset: dict[str, Any]  # Dataset.describe()
    uri: str
    experiment: str
    parent_id: str | None  # an interrupted search's parent run, to reopen
    metric: str
    mode: str  # the objective's direction, "max" or "min"
    metafeatures: dict[str, float]
    cwd: str
    environ: dict[str, str]


@dataclass(frozen=True)
class LogTrial:
    """One configuration that ended: a child run of the parent."""

    trial: str  # its id, t0003
    status: str
    row: dict[str, Any]  # its row of the results table
    params: dict[str, Any]  # its searched parameters, by their flat names
    learner: str
    error: str | None
    series: list[tuple[int, dict[str, float], float]]  # (subset, scores, fit seconds) of its latest stage
    running: list[float]  # the running objective over those subsets
    values: dict[str, float] = field(default_factory=dict)  # its further objectives and constrained values
    feasible: bool = True  # it meets the search's constraints


@dataclass(frozen=True)
class Results:
    """The search's results on the parent run and the best model (cloudpickled, as MLflow saves it): logged while
    the driver draws the report; ``Finish`` follows with the files and ends the parent run."""

    result: Any  # the SearchResult, without its model
    model: bytes | None


@dataclass(frozen=True)
class Finish:
    """The search's end: the files the driver made (the report's, logged under ``report/``; the best network's
    weights), then the parent run's final status; with the results and model when no ``Results`` came first."""

    result: Any  # the SearchResult, without its model; None once Results brought it
    model: bytes | None
    report: tuple[Path, ...] = ()
    weights: Path | None = None


@dataclass(frozen=True)
class Abort:
    """The search stopped without a result (an error, Ctrl-C): its parent run is KILLED once all before is logged."""


@dataclass(frozen=True)
class End:
    """The search is over: answer ``Ended`` once everything before is handled."""


# replies: tracking process -> driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    parent_id: str


@dataclass(frozen=True)
class StartFailed:
    error: Exception  # a SpecError naming tracking.uri, or a RuntimeError of one line


@dataclass(frozen=True)
class Logged:
    error: str | None = None  # why MLflow refused the configuration's child run, in one line


@dataclass(frozen=True)
class Finished:
    error: str | None = None  # why logging the search's end failed, in one line
    notes: tuple[str, ...] = field(default=())  # lines for the user (the report's files could not be logged)


@dataclass(frozen=True)
class Ended:
    pass

"""A search's run folder, ``<storage>/<name>/<timestamp>/``, and everything in it: the resolved ``spec.yaml``,
``state.json`` (status, MLflow store and parent run), the journal ``fits.jsonl``, ``results.csv``/``.parquet`` and
``best.json``. ``metaray resume`` needs nothing else."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from metaray.errors import SpecError
from metaray.fits import FitResult, Unit

#: the run folder's folder of the fits' out-of-subset predictions (``final: ensemble``), one file per fit
PREDICTIONS = "predictions"


def prediction_file(unit: Unit) -> str:
    return f"{unit.trial:04d}-{unit.stage}-{unit.subset}.npy"


class Journal:
    """Append-only record of finished fits (failed ones too); what a resumed search replays instead of fitting again.

    A process killed while writing leaves its last line cut short: that line is cut back when the journal is
    opened again (and said), and its fit runs again. A complete line that does not parse is not a kill's doing;
    the journal is refused rather than read in part.
    """

    def __init__(self, path: Path, say: Callable[[str], None] = lambda line: None):
        self.path = path
        self.memo: dict[Unit, tuple[str, FitResult]] = {}
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                say(f"journal: cut back a truncated last line ({len(data) - end} bytes) of {path}; that fit runs again")
            for number, line in enumerate(data[:end].decode().splitlines(), 1):
                if line.strip():
                    self._read(number, line)
        self._fh = open(path, "a")

    def _read(self, number: int, line: str) -> None:
        try:
            row = json.loads(line)
            # an earlier release wrote no stage, but "t0003/1" for the trial of stage 1
            stage = row["stage"] if "stage" in row else int(row["trial_id"].partition("/")[2] or 0)
            unit = Unit(row["trial"], stage, row["subset"])
            result = FitResult(unit, **{f.name: row[f.name] for f in fields(FitResult) if f.name in row and
                                        f.name != "unit"})
        except (ValueError, KeyError, TypeError):
            raise SpecError("resume", f"line {number} of the journal is not a fit record, so the journal cannot be "
                            "trusted", got=f"{self.path}: {line[:80]}") from None
        self.memo[unit] = (row["key"], result)

    @property
    def configurations(self) -> int:
        """Configurations it holds fits of, counting from the first: one more than the highest index (0: none)."""
        return max((unit.trial for unit in self.memo), default=-1) + 1

    def lookup(self, unit: Unit, key: str) -> FitResult | None:
        """The recorded fit of this unit, if it was of the same configuration (``key``)."""
        hit = self.memo.get(unit)
        return hit[1] if hit and hit[0] == key else None

    def write(self, key: str, r: FitResult) -> None:
        """Record a finished fit; its predictions (``final: ensemble``), if any, go to ``predictions/`` beside the
        journal first, and leave the result (the driver keeps no predictions in memory)."""
        if r.predictions is not None:
            import numpy as np

            folder = self.path.parent / PREDICTIONS
            folder.mkdir(exist_ok=True)
            np.save(folder / prediction_file(r.unit), r.predictions)
            r.predictions = None
        row = {"trial": r.unit.trial, "stage": r.unit.stage, "subset": r.unit.subset, "key": key,
               **{f.name: getattr(r, f.name) for f in fields(FitResult) if f.name not in ("unit", "predictions")}}
        self._fh.write(json.dumps(row, default=float) + "\n")

    def flush(self) -> None:
        """Hand what was written to the operating system: the search does it before it waits for more fits, so
        that a kill loses none of the fits that have arrived (a line per fit stays buffered until then)."""
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def resolved(spec) -> dict[str, Any]:
    """The spec as written to spec.yaml: data paths made absolute, so that a resume finds the data from any folder."""
    from metaray.data import is_target_file

    raw = spec.to_dict()
    if raw["data"].get("path"):
        raw["data"]["path"] = str(spec.resolve_path(raw["data"]["path"]).resolve())
        if is_target_file(raw["data"].get("target")):
            raw["data"]["target"] = str(spec.resolve_path(raw["data"]["target"]).resolve())
    return raw


def _unbudgeted(raw: dict[str, Any]) -> dict[str, Any]:
    """A resolved spec without its time budget."""
    return {**raw, "search": {k: v for k, v in raw["search"].items() if k != "time_budget"}}


class RunFolder:
    """The files of one search. A new folder is made by ``create``; an existing one (to resume) is opened with
    ``RunFolder(path)``."""

    def __init__(self, path: str | os.PathLike, *, new: bool = False):
        self.path, self.new = Path(path), new
        self._state_lock = threading.Lock()  # state.json is updated from the driver and from MLflow's reader thread

    @classmethod
    def create(cls, storage: str, name: str) -> RunFolder:
        """``<storage>/<name>/<timestamp>``, storage relative to the working folder; made on disk by ``prepare``
        (with a suffix if another search took the same second meanwhile)."""
        return cls(Path(os.path.expanduser(storage)) / name / time.strftime("%Y%m%d-%H%M%S"), new=True)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # the spec ------------------------------------------------------------------------------------------------

    def prepare(self, spec, columns: dict[str, str] | None = None) -> None:
        """Make the folder (refusing one that cannot be written) and, for a new search, write its resolved spec
        (data paths made absolute, so that a resume finds the data from any folder) and its state, with the roles
        of a table's columns (``columns``): a resume whose table's roles differ (the table changed, or the search
        began before metaray gave columns roles) is refused, since its journaled fits saw other features."""

        try:
            self._make()
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise SpecError("storage", f"cannot write the run folder ({exc.strerror})", got=str(self.path)) from None
        raw = resolved(spec)
        spec_file = self.path / "spec.yaml"
        if spec_file.exists():  # a folder to resume: its journal is of this spec's fits, or of none
            # read through the spec model, so that keys added by a later release (at their defaults) match; a time
            # budget is not what is searched but how long for: a resume may have another
            if _unbudgeted(resolved(self.spec())) != _unbudgeted(raw):
                raise SpecError("storage", "the run folder holds the run of another spec; resume that one "
                                "(metaray resume) or search in a new folder", got=str(self.path))
            state = self.state
            if columns and state and state.get("columns") != columns:  # no state.json at all: nothing to compare
                raise SpecError("storage", "the run folder's fits saw other columns (its table changed, or the search "
                                "began before metaray gave columns roles): they would not compare with new ones; "
                                "search in a new folder", got=str(self.path))
            if columns and not state:
                self.update_state(columns=columns)
            return
        self.write_spec(spec)
        self.update_state(status="running", name=spec.name, started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          columns=columns or None)

    def write_spec(self, spec) -> None:
        """Write (or, to extend a search, rewrite) the resolved spec."""
        import yaml

        (self.path / "spec.yaml").write_text(yaml.safe_dump(resolved(spec), sort_keys=False))

    def _make(self) -> None:
        if not self.new:
            self.path.mkdir(parents=True, exist_ok=True)
            return
        base, i = self.path, 1
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=False)
                self.new = False
                return
            except FileExistsError:
                self.path, i = base.with_name(f"{base.name}-{i}"), i + 1

    def spec(self):
        """The spec the search started with (for a resume)."""
        from metaray.spec import load_spec

        if not (self.path / "spec.yaml").is_file():
            raise SpecError("resume", "not a metaray run folder (no spec.yaml in it)", got=str(self.path))
        return load_spec(self.path / "spec.yaml")

    # state, journal, outputs ---------------------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        path = self.path / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def update_state(self, **updates) -> None:
        """Merge ``updates`` (None values skipped) into state.json, atomically; one update at a time."""
        with self._state_lock:
            state = self.state
            state.update({k: v for k, v in updates.items() if v is not None})
            tmp = self.path / "state.tmp"
            tmp.write_text(json.dumps(state, indent=2))
            os.replace(tmp, self.path / "state.json")

    def journal(self, say: Callable[[str], None] = lambda line: None) -> Journal:
        return Journal(self.path / "fits.jsonl", say)

    def write_results(self, table) -> None:
        """The results table as CSV (the record) and Parquet (a convenience, skipped if it cannot be written)."""
        table.to_csv(self.path / "results.csv", index=False)
        try:
            table.astype({c: str for c in table.columns if table[c].dtype == object}).to_parquet(
                self.path / "results.parquet", index=False)
        except (ImportError, ValueError):
            pass

    def write_best(self, best: dict[str, Any]) -> None:
        (self.path / "best.json").write_text(json.dumps(best, indent=2, default=str))

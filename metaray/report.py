"""A search's report: one self-contained HTML file (figures embedded, no network needed to open it) and the same
figures as PNGs, written into the run folder (``report.html``, ``report/*.png``) at the end of every search, logged to
its MLflow parent run, and made again from any run folder by ``metaray report RUN_DIR``.

It reads only the run folder (spec.yaml, results.csv, best.json, state.json), so a report can be made for a search
that ran elsewhere; a search makes it through ``ReportCallback``. Figures are drawn on matplotlib ``Figure`` objects
(no pyplot, no backend switched), each only where it has something to show:

    objective     meta-objective of each configuration with its spread over subsets; the tied set marked
    subsets       configurations x subsets heat map of scores: which subsets are hard
    parameters    the objective against each searched parameter (log axes where the space is log)
    parallel      parallel coordinates of the top configurations
    importance    parameter importance: Optuna's get_param_importances on the finished configurations, or a
                  random-forest surrogate where Optuna cannot take the space; the figure says which
    rungs         ASHA / racing: the fidelity at which each configuration stopped
    architecture  a network's best architecture, parameters per layer
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metaray.callbacks import Callback
from metaray.errors import SpecError, one_line
from metaray.space import missing

#: configurations drawn in the per-configuration figures, best first
TOP = 40
#: configurations drawn in the parallel coordinates
TOP_PARALLEL = 20


@dataclass
class ReportFiles:
    """What ``write`` made: the HTML file and the figures (name -> PNG path), in the order they appear."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    importance_method: str = ""
    #: figures that had nothing to show, or could not be drawn: name -> why (said on the page, under Figures)
    left_out: dict[str, str] = field(default_factory=dict)


def write(run_dir, out=None) -> ReportFiles:
    """Make the report of the search in ``run_dir``: ``out`` (default ``RUN_DIR/report.html``) and the PNGs in
    ``RUN_DIR/report/`` (with ``out``: in ``<out's name>_figures/`` beside it, so the run folder is only read).

    Every figure is drawn from the values there are (another learner's parameters, non-positive values on a log
    axis, configurations stopped early are left off it); a figure that has nothing to show, or that cannot be
    drawn, is left out with a line on the page saying why, and the rest of the report is made. Figures are drawn on
    matplotlib ``Figure`` objects with the Agg canvas: pyplot and its backend are left as they are.

    Raises:
        SpecError: ``run_dir`` is missing, not a run folder, holds no results yet, or a file in it cannot be read
            (the message names the file); or the report cannot be written where it should go.
    """
    folder, spec = _run_folder(run_dir)
    data = _Data.load(folder, spec)
    made = ReportFiles(Path(out) if out else folder / "report.html")
    pngs = folder / "report" if out is None else made.html.with_name(f"{made.html.stem}_figures")
    try:
        made.html.unlink(missing_ok=True)  # a report that fails half-way leaves none, not an old one
        pngs.mkdir(parents=True, exist_ok=True)
        for old in pngs.glob("*.png"):
            old.unlink()
    except OSError as exc:
        raise _unwritable(out, made.html, exc) from None
    captions = _draw(data, made, pngs, out)
    made.importance_method = data.importance_method if "importance" in made.figures else ""
    try:
        made.html.parent.mkdir(parents=True, exist_ok=True)
        made.html.write_text(_html(data, made, captions), encoding="utf-8")
    except OSError as exc:
        raise _unwritable(out, made.html, exc) from None
    return made


def _run_folder(run_dir):
    """The run folder and its spec, refused in one line when it is none or holds no results yet."""
    from metaray.folder import RunFolder

    folder = RunFolder(run_dir)
    if not folder.path.exists():
        raise SpecError("RUN_DIR", "no such folder", got=str(folder.path))
    if not folder.path.is_dir():
        raise SpecError("RUN_DIR", "not a folder (a run folder holds spec.yaml and results.csv)",
                        got=str(folder.path))
    if not (folder / "spec.yaml").is_file():
        raise SpecError("RUN_DIR", "not a metaray run folder (no spec.yaml in it)", got=str(folder.path))
    spec = _read(folder, "spec.yaml", lambda path: folder.spec())
    if not (folder / "results.csv").is_file():
        raise SpecError("RUN_DIR", "the search has no results table yet (results.csv is written when it ends)",
                        got=str(folder.path))
    return folder, spec


def _draw(data: _Data, made: ReportFiles, pngs: Path, out) -> dict[str, str]:
    """Draw every figure of ``FIGURES`` into ``pngs``, filling ``made.figures`` and ``made.left_out``; the captions
    of those drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    captions: dict[str, str] = {}
    for name, draw in FIGURES:
        path = pngs / f"{name}.png"
        try:
            drawn = draw(data)
            if drawn is None:  # not this search's figure (no early stopping, not a network)
                continue
            if isinstance(drawn, str):  # nothing to show: said on the page
                made.left_out[name] = drawn
                continue
            fig, caption = drawn
            FigureCanvasAgg(fig)  # PNGs, whatever backend pyplot uses
            fig.savefig(path, dpi=90)
        except OSError as exc:
            raise _unwritable(out, path, exc) from None
        except Exception as exc:  # one figure's failure leaves it out, not the report
            path.unlink(missing_ok=True)
            made.left_out[name] = f"drawing it failed ({one_line(exc)})"
            continue
        made.figures[name], captions[name] = path, caption
    return captions


def _unwritable(out, path: Path, exc: OSError) -> SpecError:
    return SpecError("--out" if out else "RUN_DIR", f"cannot write the report ({exc.strerror or one_line(exc)})",
                     got=str(path))


def _read(folder, name: str, read):
    """``read(folder / name)``; a file that cannot be read or parsed is the run folder's problem, said in one line
    that names the file."""
    path = folder / name
    try:
        return read(path)
    except SpecError as exc:
        raise SpecError("RUN_DIR", f"{name} cannot be used ({exc})", got=str(path)) from None
    except Exception as exc:
        raise SpecError("RUN_DIR", f"{name} cannot be read ({one_line(exc)})", got=str(path)) from None


def _figure(**kwargs):
    """A matplotlib figure of its own, not pyplot's: drawing it switches no backend and registers nothing."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def preload() -> None:
    """Import what ``write`` needs (matplotlib's Figure and Agg canvas, Optuna, a random forest), so that the report
    at a search's end waits on no import: the tracking process, or ``ReportCallback`` in a thread, does it while the
    search runs. Sets no backend."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import optuna  # noqa: F401
    import sklearn.ensemble  # noqa: F401


# the data --------------------------------------------------------------------------------------------------


@dataclass
class _Data:
    spec: object
    table: object  # the results table, best first
    best: dict
    dists: dict  # flat parameter name -> metaray.space.Dist
    scores: list[str]  # score_0 ... columns
    metric_name: str  # the primary metric (the strategy's default when the spec names none)
    mode: str  # the objective's direction: "max" or "min"
    greater_is_better: bool  # the metric's direction (the heat map's scores)
    importance_method: str = ""

    @classmethod
    def load(cls, folder, spec) -> _Data:
        table = _results(folder)
        best = _read(folder, "best.json", lambda path: json.loads(path.read_text())) \
            if (folder / "best.json").is_file() else {}
        if not isinstance(best, dict):
            raise SpecError("RUN_DIR", "best.json is not a configuration", got=str(folder / "best.json"))
        dists = _read(folder, "spec.yaml", lambda path: spec.parsed_space().flat_dists())
        scores = sorted((c for c in table.columns if c.startswith("score_")), key=lambda c: int(c[6:]))
        # the search wrote its metric and direction there (a spec may leave them implicit)
        state = _read(folder, "state.json", lambda path: folder.state)
        if not isinstance(state, dict):
            raise SpecError("RUN_DIR", "state.json is not a mapping", got=str(folder / "state.json"))
        metric = state.get("metric") or spec.objective.metric or "accuracy"
        gib = _read(folder, "state.json", lambda path: _greater_is_better(metric))
        mode = state.get("mode") or _objective_mode(spec, gib)  # a folder written before state.json had it
        return cls(spec, table, best, dists, scores, metric, mode, gib)

    @property
    def completed(self):
        t = self.table
        return t[(t["status"] == "completed") & np.isfinite(t["objective"].astype(float))]

    @property
    def metric(self) -> str:
        return f"{self.spec.objective.aggregate} {self.metric_name}"

    def params(self) -> list[str]:
        """Searched parameters that the table holds (``param.<name>`` columns; the learner of a conditional space)."""
        return [p for p in self.dists if (p == "learner" and "learner" in self.table) or f"param.{p}" in self.table]

    def column(self, frame, name: str):
        return frame["learner"] if name == "learner" else frame[f"param.{name}"]

    def goodness(self, objective):
        """Objective values scaled to [0, 1], 1 the best, whichever the direction."""
        v = np.asarray(objective, dtype=float)
        lo, hi = np.nanmin(v), np.nanmax(v)
        scaled = (v - lo) / (hi - lo if hi > lo else 1.0)
        return scaled if self.mode == "max" else 1.0 - scaled

    def axis(self, name: str, frame) -> _Axis:
        """The parameter's values over the configurations of ``frame``, as every figure draws them."""
        import pandas as pd

        raw, dist = self.column(frame, name), self.dists[name]
        if not dist.numeric:
            labels = [str(a) if a is not None else "None" for a in dist.choices]
            return _Axis(name, np.array([dist.index(v) for v in raw], dtype=float), labels)
        v = np.array(pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float, na_value=np.nan))
        v[~np.isfinite(v)] = np.nan  # another learner's parameter (or an unreadable cell): no value
        if not dist.log:
            return _Axis(name, v)
        if _one_value(v[v > 0]) or not (v > 0).any():
            return _Axis(name, v, note="one value, so no log axis" if (v > 0).any() else "")
        below = np.isfinite(v) & (v <= 0)
        v[below] = np.nan
        return _Axis(name, v, log=True, note=f"{int(below.sum())} values <= 0 left off its log axis"
                     if below.any() else "")


def _results(folder):
    """The results table, its numbers as numbers and ``tied_with_best`` as booleans."""
    import pandas as pd

    table = _read(folder, "results.csv", lambda path: pd.read_csv(path, keep_default_na=False, na_values=[""]))
    lacking = [c for c in ("trial", "status", "objective") if c not in table]
    if lacking:
        raise SpecError("RUN_DIR", f"results.csv is not a metaray results table (no column {lacking[0]!r})",
                        got=str(folder / "results.csv"))
    for c in table.columns:
        if c == "objective" or c.startswith("score_") or c in ("std", "p_vs_best", "p_not_worse"):
            table[c] = pd.to_numeric(table[c], errors="coerce")
    table["trial"], table["status"] = table["trial"].astype(str), table["status"].astype(str)
    if "tied_with_best" in table:
        table["tied_with_best"] = table["tied_with_best"].astype(str).str.lower().eq("true")
    return table


def _greater_is_better(metric: str) -> bool:
    from metaray.metrics import get_metric

    return get_metric(metric).greater_is_better


def _objective_mode(spec, greater_is_better: bool) -> str:
    from metaray.aggregates import objective_mode

    return objective_mode(spec.objective.aggregate, greater_is_better)


def _one_value(v: np.ndarray) -> bool:
    """Finite values that are one value, give or take rounding (a log-uniform range narrower than a millionth)."""
    return v.size > 0 and float(v.max() - v.min()) <= 1e-6 * float(max(abs(v.max()), abs(v.min())))


@dataclass
class _Axis:
    """A parameter's values over some configurations, ready to draw: NaN where a configuration has none (another
    learner's parameter; a value <= 0 on a log axis). Every figure draws parameters through this."""

    name: str
    values: np.ndarray  # the values, or a choice's category codes
    labels: list[str] | None = None  # a choice's values; None for a numeric parameter
    log: bool = False  # a log-uniform parameter with two or more positive values: drawn on a log axis
    note: str = ""  # what was left off, or why the axis is not log, for the caption

    @property
    def present(self) -> np.ndarray:
        return np.isfinite(self.values)

    @property
    def empty(self) -> bool:
        return not self.present.any()

    @property
    def scaled(self) -> np.ndarray:
        """The values on a linear scale: log10 on a log axis."""
        return np.log10(self.values) if self.log else self.values

    @property
    def single(self) -> bool:
        """A numeric parameter with one value here: drawn as a point, on no scale."""
        return self.labels is None and _one_value(self.values[self.present])

    @property
    def title(self) -> str:
        return self.name + (" (log)" if self.log else "")


def _axes(d: _Data, frame, what: str) -> tuple[list[_Axis], str]:
    """The axes of the searched parameters that have a value in ``frame``, and a sentence on those left out or
    drawn otherwise ("" if none): the parameters figure, parallel coordinates and the importance share it."""
    axes = [d.axis(name, frame) for name in d.params()]
    absent = [a.name for a in axes if a.empty]
    notes = [f"{a.name}: {a.note}" for a in axes if a.note and not a.empty]
    said = ([f"Not drawn (no value among {what}): {', '.join(absent)}."] if absent else []) + \
        ([f"Note: {'; '.join(notes)}."] if notes else [])
    return [a for a in axes if not a.empty], "".join(" " + s for s in said)


# the figures -----------------------------------------------------------------------------------------------
#
# Each returns (figure, caption); a line saying why it has nothing to show; or None where it is not this
# search's figure (rungs without early stopping, the architecture of what is not a network).


def _objective(d: _Data):
    done = d.completed.head(TOP)
    if done.empty:
        return "no configuration completed"
    fig = _figure(figsize=(11, 4.2))
    ax = fig.subplots()
    x = np.arange(len(done))
    tied = _tied(done)
    err = done["std"].astype(float).fillna(0).to_numpy() if "std" in done else np.zeros(len(done))
    for mask, colour, label in ((tied, "tab:green", "tied with the best"), (~tied, "tab:grey", "not tied")):
        if mask.any():
            ax.errorbar(x[mask], done["objective"].to_numpy(float)[mask], yerr=err[mask], fmt="o", capsize=3,
                        color=colour, label=label)
    ax.plot(x[:1], done["objective"].to_numpy(float)[:1], marker="*", markersize=16, color="tab:orange",
            linestyle="none", label="best")
    ax.set_xticks(x)
    ax.set_xticklabels(done["trial"], rotation=90, fontsize=7)
    ax.set_ylabel(f"{d.metric} (± std over subsets)")
    ax.set_title(f"Meta-objective per configuration, best first ({len(done)} of {len(d.table)} shown)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tied_info = d.best.get("tied")
    method = tied_info.get("method", "") if isinstance(tied_info, dict) else ""
    return fig, f"Each configuration's meta-objective with its spread over the subsets. Tied: {method or 'n/a'}."


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _tied(frame) -> np.ndarray:
    return frame["tied_with_best"].to_numpy(bool) if "tied_with_best" in frame else np.zeros(len(frame), bool)


def _subsets(d: _Data):
    done = d.completed.head(TOP)
    if done.empty:
        return "no configuration completed"
    if not d.scores:
        return "the results table has no per-subset scores"
    values = done[d.scores].to_numpy(float)
    fig = _figure(figsize=(max(6, 0.6 * len(d.scores) + 3), max(3, 0.22 * len(done) + 1.5)))
    ax = fig.subplots()
    # yellow is good: a loss's colours are reversed, so that a hard subset is a dark column either way
    image = ax.imshow(values, aspect="auto", cmap="viridis" if d.greater_is_better else "viridis_r",
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=d.metric_name + ("" if d.greater_is_better else " (lower is better)"))
    ax.set_yticks(range(len(done)))
    ax.set_yticklabels(done["trial"], fontsize=7)
    with np.errstate(all="ignore"):
        means = [np.nanmean(c) if np.isfinite(c).any() else math.nan for c in values.T]
    ax.set_xticks(range(len(d.scores)))
    ax.set_xticklabels([f"{i}\n{m:.3g}" for i, m in enumerate(means)], fontsize=7)
    ax.set_xlabel("subset (mean score over these configurations)")
    ax.set_title("Scores of each configuration on each subset (yellow: good): a column dark for all is a hard subset",
                 fontsize=9)
    fig.tight_layout()
    return fig, "Configurations (rows, best first) × subsets (columns): the score of each fit."


def _parameters(d: _Data):
    done = d.completed
    if not d.params():
        return "the space has no searched parameter"
    if done.empty:
        return "no configuration completed"
    axes, note = _axes(d, done, "the completed configurations")
    if not axes:
        return "no completed configuration has a value of a searched parameter"
    cols = min(3, len(axes))
    rows = math.ceil(len(axes) / cols)
    fig = _figure(figsize=(max(4.2 * cols, 7.5), 3.3 * rows))
    panels = fig.subplots(rows, cols, squeeze=False)
    y, tied = done["objective"].to_numpy(float), _tied(done)
    for ax, a in zip(panels.flat, axes, strict=False):
        x = a.values
        if a.labels is not None:  # a choice: its values side by side, jittered
            x = x + np.random.default_rng(0).uniform(-0.15, 0.15, len(x))
            ax.set_xticks(range(len(a.labels)))
            ax.set_xticklabels(a.labels, rotation=30, fontsize=7)
            ax.set_xlim(-0.5, len(a.labels) - 0.5)
        elif a.single:  # one value: a point above it, not a scale of rounding differences
            x = np.where(a.present, 0.0, np.nan)
            ax.set_xticks([0.0])
            ax.set_xticklabels([f"{np.nanmedian(a.values):.4g}"])
            ax.set_xlim(-1.0, 1.0)
        for mask, size, colour, label in ((~tied, 18, "tab:grey", "not tied"), (tied, 24, "tab:green", "tied")):
            mask = mask & a.present
            if mask.any():
                ax.scatter(x[mask], y[mask], s=size, color=colour, label=label)
        if a.log:
            ax.set_xscale("log")
        ax.set_xlabel(a.title)
        ax.set_ylabel(d.metric, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(panels.flat)[len(axes):]:
        ax.axis("off")
    fig.suptitle("Meta-objective against each searched parameter (green: tied with the best)")
    fig.tight_layout()
    return fig, "One panel per searched parameter; log axes where the space is log-uniform." + note


def _parallel(d: _Data):
    import matplotlib

    done = d.completed.head(TOP_PARALLEL)
    if not d.params():
        return "the space has no searched parameter"
    if len(done) < 2:
        return f"{_count(len(done), 'configuration')} completed: parallel coordinates need two"
    axes, note = _axes(d, done, f"the top {len(done)} configurations")
    if not axes:
        return "no completed configuration has a value of a searched parameter"
    data, ticks = _scaled_to_ranges(axes, done["objective"].to_numpy(float))
    colour = d.goodness(done["objective"].to_numpy(float))
    names = [*(a.title for a in axes), "objective"]
    fig = _figure(figsize=(max(6, 2.2 * len(names)), 4.5))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"]
    for row, c in sorted(zip(data, colour, strict=True), key=lambda rc: rc[1]):  # the best drawn last, on top
        ax.plot(range(len(names)), row, color=cmap(c), alpha=0.85, linewidth=1.6, marker="o", markersize=3)
    for i in range(len(names)):
        ax.axvline(i, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{t}" for n, t in zip(names, ticks, strict=True)], fontsize=7)
    ax.set_xlim(-0.3, len(names) - 0.7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_title(f"Parallel coordinates of the top {len(done)} configurations (yellow: the best objective)")
    fig.tight_layout()
    return fig, "Each line is a configuration; each axis one parameter, scaled to its range (log where log)." + note


def _scaled_to_ranges(axes: list[_Axis], obj: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Parallel coordinates' values (configurations x axes, the objective last), each axis scaled to [0, 1] over
    its range, and each axis's range as its tick text."""
    axes_values, ticks = [], []
    for a in axes:
        v = a.scaled
        if a.labels is not None:
            lo, hi = 0.0, float(max(len(a.labels) - 1, 1))
            ticks.append(" / ".join(a.labels))
        else:
            lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
            if a.single:
                hi = lo
            fmt = (lambda e: f"{10 ** e:.3g}") if a.log else (lambda e: f"{e:.3g}")
            ticks.append(f"{fmt(lo)} … {fmt(hi)}" if hi > lo else fmt(lo))
        axes_values.append((v - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(v), 0.5, np.nan))
    lo, hi = obj.min(), obj.max()
    axes_values.append((obj - lo) / (hi - lo) if hi > lo else np.full(len(obj), 0.5))
    ticks.append(f"{lo:.4g} … {hi:.4g}" if hi > lo else f"{lo:.4g}")
    return np.vstack(axes_values).T, ticks


def _importance(d: _Data):
    done, params = d.completed, d.params()
    if not params:
        return "the space has no searched parameter"
    if len(params) == 1:  # (one bar at 1: Optuna's fANOVA took half a second of a small search's driver to say so)
        return f"one searched parameter ({params[0]}): all the importance is its own"
    if len(done) < 4:
        return f"{_count(len(done), 'configuration')} completed: the importance needs four"
    found = _optuna_importance(d, done, params)
    d.importance_method = "Optuna's get_param_importances (fANOVA)"
    if found is None:
        found = _forest_importance(d, done)
        d.importance_method = "random-forest surrogate (impurity importance of a forest fitted to the objective)"
    if not found:
        return "no completed configuration has a value of a searched parameter"
    names = sorted(found, key=found.get)
    fig = _figure(figsize=(7, 0.45 * len(names) + 1.6))
    ax = fig.subplots()
    ax.barh(names, [found[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (share)")
    ax.set_title(f"Parameter importance: {d.importance_method}", fontsize=9)
    fig.tight_layout()
    return fig, f"Which parameters matter for the meta-objective, by {d.importance_method}."


def _optuna_importance(d: _Data, done, params) -> dict[str, float] | None:
    """Optuna's importances, for a space it can take: one learner, no conditional parameters."""
    try:
        import optuna

        from metaray.searchers import optuna_verbosity

        if "learner" in d.dists or len(params) < 1:
            return None
        dists = {name: d.dists[name].to_optuna() for name in params}
        with optuna_verbosity(optuna.logging.ERROR):
            study = optuna.create_study(direction="maximize" if d.mode == "max" else "minimize")
            for _, row in done.iterrows():
                # no learner: one-learner spaces only; a value that is none of a choice's: refused, the surrogate. A
                # parameter the configuration does not use (a block its network lacks) is left out of its trial, so
                # Optuna weighs only parameters every configuration has
                values = {name: d.dists[name].read(row[f"param.{name}"]) for name in params
                          if not missing(row[f"param.{name}"])}
                study.add_trial(optuna.trial.create_trial(params=values, distributions={n: dists[n] for n in values},
                                                          value=float(row["objective"])))
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        return {k: float(v) for k, v in found.items()} or None
    except Exception:  # a space or values Optuna refuses: the surrogate below
        return None


def _forest_importance(d: _Data, done) -> dict[str, float]:
    from sklearn.ensemble import RandomForestRegressor

    axes, _ = _axes(d, done, "the completed configurations")
    if not axes:
        return {}
    columns = []
    for a in axes:
        v = a.scaled
        lo, hi = np.nanmin(v), np.nanmax(v)
        columns.append(np.where(np.isfinite(v), v, lo - (hi - lo) - 1.0))  # another learner's: below its range
    X = np.column_stack(columns)
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(X, done["objective"].to_numpy(float))
    return dict(zip((a.name for a in axes), forest.feature_importances_.astype(float).tolist(), strict=True))


def _rungs(d: _Data):
    import matplotlib.ticker
    import pandas as pd

    scheduler = d.spec.search.scheduler
    if scheduler.name not in ("asha", "racing"):
        return None
    fidelity = "epochs_done" if "epochs_done" in d.table else "subsets_done"
    if fidelity not in d.table:
        return f"the results table has no {fidelity} column"
    t = d.table[d.table["status"].isin(["completed", "stopped"])]
    t = t[np.isfinite(t["objective"].astype(float)) & np.isfinite(pd.to_numeric(t[fidelity], errors="coerce"))]
    if t.empty:
        return "no configuration completed or was stopped with a finite objective"
    fig = _figure(figsize=(9, 4))
    ax = fig.subplots()
    for status, colour in (("completed", "tab:green"), ("stopped", "tab:red")):
        part = t[t["status"] == status]
        ax.scatter(part[fidelity].astype(float), part["objective"].astype(float), color=colour, s=22,
                   label=f"{status} ({len(part)})", alpha=0.8)
    counts = t[t["status"] == "stopped"][fidelity].value_counts().sort_index()
    top = float(t["objective"].astype(float).max())
    for rung, n in counts.items():
        ax.annotate(f"{n} stopped", (float(rung), top), fontsize=7, ha="center", va="bottom")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(fidelity.replace("_", " ") + " when it ended (the rung)")
    ax.set_ylabel(f"{d.metric} at that rung")
    ax.set_title(f"{scheduler.name}: the rung at which each configuration stopped")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, f"Early stopping by {scheduler.name}: each configuration at the fidelity it reached."


def _architecture(d: _Data):
    layers = d.best.get("layers")
    if not layers:
        return None
    labels = [row["layer"] if len(row["layer"]) <= 60 else row["layer"][:57] + "..." for row in layers]
    counts = [row["parameters"] for row in layers]
    fig = _figure(figsize=(10, 0.38 * len(layers) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(layers))[::-1]
    ax.barh(y, counts, color="tab:purple")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7, family="monospace")
    for yi, n in zip(y, counts, strict=True):
        ax.annotate(f"{n:,}", (n, yi), fontsize=7, va="center", xytext=(3, 0), textcoords="offset points")
    ax.set_xlabel("trainable parameters")
    ax.set_title(f"Best architecture ({d.best.get('trial', '')}): {sum(counts):,} parameters")
    fig.tight_layout()
    return fig, "The best network, input to output: each layer and its trainable parameters."


def _front(d: _Data):
    """Several objectives: every pair of them, each completed configuration a point with its spread over subsets as
    error bars, the Pareto front (best.json's ``front``) drawn and joined; infeasible ones hollow."""
    front = d.best.get("front") if isinstance(d.best.get("front"), dict) else None
    if not front:
        return None
    objectives = [o for o in front.get("objectives") or [] if isinstance(o, dict)]
    done = d.table[d.table["status"] == "completed"]
    columns = ["objective", *(o["label"] for o in objectives[1:])]
    if done.empty or any(c not in done for c in columns):
        return "no configuration completed with every objective's value"
    spreads = ["std", *(f"{o['label']}_std" for o in objectives[1:])]
    on = done["on_front"].to_numpy(bool) if "on_front" in done else np.zeros(len(done), bool)
    feasible = done["feasible"].to_numpy(bool) if "feasible" in done else np.ones(len(done), bool)
    pairs = [(i, j) for i in range(len(columns)) for j in range(i + 1, len(columns))]
    fig = _figure(figsize=(5.2 * min(len(pairs), 3), 4.4 * math.ceil(len(pairs) / 3)))
    axes = np.atleast_1d(fig.subplots(math.ceil(len(pairs) / 3), min(len(pairs), 3))).ravel()
    for ax, (i, j) in zip(axes, pairs, strict=False):
        x, y = done[columns[j]].to_numpy(float), done[columns[i]].to_numpy(float)
        xe, ye = (done[c].to_numpy(float) if c in done else np.zeros(len(done)) for c in (spreads[j], spreads[i]))
        for mask, colour, label in ((~on & feasible, "tab:grey", "dominated"), (on, "tab:green", "on the front"),
                                    (~feasible, "tab:red", "infeasible")):
            if mask.any():
                ax.errorbar(x[mask], y[mask], xerr=np.nan_to_num(xe[mask]), yerr=np.nan_to_num(ye[mask]), fmt="o",
                            capsize=2, color=colour, label=label, alpha=0.8,
                            mfc="none" if colour == "tab:red" else None)
        order = np.argsort(x[on])
        ax.plot(x[on][order], y[on][order], color="tab:green", alpha=0.4, drawstyle="steps-post")
        for label, xi, yi in zip(done["trial"][on], x[on], y[on], strict=True):
            ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        names = [d.metric, *(o["label"] for o in objectives[1:])]
        modes = [o.get("mode", "?") for o in objectives]
        ax.set_xlabel(f"{names[j]} ({modes[j]})")
        ax.set_ylabel(f"{names[i]} ({modes[i]})")
        for values, scale in ((x, ax.set_xscale), (y, ax.set_yscale)):
            if (values > 0).all() and values.max() > 20 * values.min():
                scale("log")  # sizes and times that span orders of magnitude
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Pareto front: {len(front.get('members') or [])} of {len(done)} completed configurations",
                 fontsize=10)
    fig.tight_layout()
    return fig, (f"Each pair of objectives; error bars: the spread over subsets. On the front: {front.get('method')}. "
                 f"Simplest on the front: {front.get('simplest')}.")


FIGURES = (("objective", _objective), ("front", _front), ("subsets", _subsets), ("parameters", _parameters),
           ("parallel", _parallel), ("importance", _importance), ("rungs", _rungs),
           ("architecture", _architecture))


# the page --------------------------------------------------------------------------------------------------


def _html(d: _Data, report: ReportFiles, captions: dict[str, str]) -> str:
    e = html.escape
    table = d.table.head(TOP)
    params = [c for c in table.columns if c.startswith("param.")]
    head = ["trial", "status", "learner", *[c.removeprefix("param.") for c in params], "objective", "std",
            "p_vs_best", "p_not_worse", "tied_with_best"]
    rows = []
    for _, r in table.iterrows():
        cells = [r["trial"], r["status"], r.get("learner"), *[r[c] for c in params], r["objective"], r.get("std"),
                 r.get("p_vs_best"), r.get("p_not_worse"), r.get("tied_with_best")]
        tied = " class=tied" if r.get("tied_with_best") is True else ""
        rows.append(f"<tr{tied}>" + "".join(f"<td>{e(_cell(c))}</td>" for c in cells) + "</tr>")
    figures = []
    for name, _ in FIGURES:  # drawn and left out, in their order
        if name in report.figures:
            data = base64.b64encode(report.figures[name].read_bytes()).decode()
            figures.append(f'<figure id="fig-{name}"><img alt="{name}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{e(captions[name])}</figcaption></figure>")
        elif name in report.left_out:
            figures.append(f'<figure id="fig-{name}" class="left-out"><figcaption>{e(name)}: not drawn: '
                           f"{e(report.left_out[name])}.</figcaption></figure>")
    return _PAGE.format(title=e(f"metaray report: {d.spec.name}"),
                        summary="".join(f"<p>{e(s)}</p>" for s in _summary(d)),
                        head="".join(f"<th>{e(h)}</th>" for h in head), rows="\n".join(rows),
                        figures="\n".join(figures), n=len(report.figures))


def _summary(d: _Data) -> list[str]:
    """The page's opening lines: the search, its best configuration and the tied set (what best.json holds of
    them; a search in which nothing completed has none)."""
    best = d.best
    tied = best.get("tied") if isinstance(best.get("tied"), dict) else {}
    simplest = tied.get("simplest") if isinstance(tied.get("simplest"), dict) else {}
    lines = [f"{len(d.table)} configurations, {int((d.table['status'] == 'completed').sum())} completed; "
             f"meta-objective: {d.metric} over {d.spec.subsets.k} subsets ({d.spec.subsets.sampler}, "
             f"protocol {d.spec.subsets.protocol})."]
    if not best:
        return [*lines, "No configuration completed."]
    lines.append(f"Best: {best.get('trial', '?')} {best.get('learner', '?')}({_params(best.get('params'))}), "
                 f"{_number(best.get('objective'))} ± {_number(best.get('std'))}.")
    lines.append(f"Tied with the best: {tied.get('count', '?')} ({tied.get('method', 'n/a')}).")
    if simplest:
        lines.append(f"Simplest tied: {simplest.get('trial', '?')} {simplest.get('learner', '?')}"
                     f"({_params(simplest.get('params'))}), {_number(simplest.get('objective'))}.")
    front = best.get("front") if isinstance(best.get("front"), dict) else {}
    if front:  # several objectives: the configurations no other dominates
        members = [m for m in front.get("members") or [] if isinstance(m, dict)]
        lines.append(f"Pareto front ({', '.join(str(o.get('label')) for o in front.get('objectives') or [])}): "
                     + ", ".join(f"{m.get('trial', '?')}" for m in members)
                     + f"; simplest on it: {front.get('simplest')}.")
    final = best.get("final") if isinstance(best.get("final"), dict) else {}
    if final:  # metaray.final: what the logged model is made of, each member with its weight
        members = [m for m in final.get("members") or [] if isinstance(m, dict)]
        said = "; ".join(f"{m.get('trial', '?')}" + (f" subset {m['subset']}" if "subset" in m else "")
                         + f" weight {_number(m.get('weight'))}" for m in members)
        holdout = best.get("holdout") if isinstance(best.get("holdout"), dict) else {}
        lines.append(f"Final model ({final.get('kind', '?')}): {said or 'not made'}"
                     + ("; on the hold-out rows: " + ", ".join(f"{k}={_number(v)}" for k, v in holdout.items())
                        if holdout else "") + ".")
    return lines


def _number(v) -> str:
    try:
        return f"{float(v):.4f}"
    except (TypeError, ValueError):
        return "?"


def _cell(v) -> str:
    if missing(v):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _params(params) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) if isinstance(params, dict) else ""


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
tr.tied {{ background: #e6f4e6; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; }} figcaption {{ font-size: 13px; color: #555; }}
figure.left-out figcaption {{ font-style: italic; }}
</style></head>
<body>
<h1>{title}</h1>
{summary}
<p id="rendered">figures rendered: checking</p>
<h2>Configurations (best first; green: tied with the best)</h2>
<table><tr>{head}</tr>
{rows}
</table>
<h2>Figures</h2>
{figures}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("figure img"), ok = 0;
  imgs.forEach(function (i) {{ if (i.complete && i.naturalWidth > 0) ok += 1; }});
  document.getElementById("rendered").textContent = "figures rendered: " + ok + " of {n}";
}});
</script>
</body></html>
"""


# the callback ----------------------------------------------------------------------------------------------


class ReportCallback(Callback):
    """Writes a search's report into its run folder when the search ends (a hook of ``metaray.callbacks``).

    ``on_fits_start`` imports what the report needs in a daemon thread while the fits run (not during the
    start-up); ``on_search_end`` writes the report. One that cannot be made is said in one line (``report: not made
    (...); try: metaray report RUN_DIR``), never raised. ``made`` holds what was written (a ``ReportFiles``; None
    before, or after a failure), for a callback that logs it (MLflow).
    """

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.made: ReportFiles | None = None

    def on_fits_start(self) -> None:
        threading.Thread(target=_preload_quietly, name="metaray report preload", daemon=True).start()

    def on_search_end(self, result) -> None:
        try:
            self.made = write(result.run_dir)
        except Exception as exc:  # the search's results stand; the report's failure is said, not raised
            self.say(f"report: not made ({one_line(exc)}); try: metaray report {result.run_dir}")


def _preload_quietly() -> None:
    with contextlib.suppress(Exception):  # a failed import here fails again, and is said, when the report is made
        preload()


class _CallableModule(types.ModuleType):
    """This module, callable as ``write``: ``metaray.report(run_dir)`` is the public API's name for ``write``, and once
    the module is imported Python binds that name on the package to the module itself."""

    def __call__(self, run_dir, out=None) -> ReportFiles:
        return write(run_dir, out)


sys.modules[__name__].__class__ = _CallableModule

"""A search's report: one self-contained HTML file (figures embedded, no network needed to open it) and the same
figures as PNGs, written into the run folder (``report.html``, ``report/*.png``) at the end of every search, logged to
its MLflow parent run, and made again from any run folder by ``metaray report RUN_DIR``.

It reads only the run folder (spec.yaml, results.csv, best.json), so a report can be made for a search that ran
elsewhere. Figures, each drawn only where it has something to show:

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
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metaray.errors import SpecError

#: configurations drawn in the per-configuration figures, best first
TOP = 40
#: configurations drawn in the parallel coordinates
TOP_PARALLEL = 20


@dataclass
class Report:
    """What ``write`` made: the HTML file and the figures (name -> PNG path), in the order they appear."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    importance_method: str = ""


def write(run_dir, out=None) -> Report:
    """Make the report of the search in ``run_dir``: ``out`` (default ``RUN_DIR/report.html``) and the PNGs in
    ``RUN_DIR/report/`` (with ``out``: in ``<out's name>_figures/`` beside it, so the run folder is only read).

    Raises:
        SpecError: ``run_dir`` is not a run folder, or holds no results yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    from metaray.folder import RunFolder

    folder = RunFolder(run_dir)
    if not (folder / "spec.yaml").is_file():
        raise SpecError("RUN_DIR", "not a metaray run folder (no spec.yaml in it)", got=str(folder.path))
    spec = folder.spec()
    if not (folder / "results.csv").is_file():
        raise SpecError("RUN_DIR", "the search has no results table yet (results.csv is written when it ends)",
                        got=str(folder.path))
    report = Report(Path(out) if out else folder / "report.html")
    report.html.unlink(missing_ok=True)  # a report that fails half-way leaves none, not an old one
    data = _Data.load(folder, spec)
    pngs = folder / "report" if out is None else report.html.with_name(f"{report.html.stem}_figures")
    pngs.mkdir(parents=True, exist_ok=True)
    for old in pngs.glob("*.png"):
        old.unlink()
    captions: dict[str, str] = {}
    for name, draw in FIGURES:
        made = draw(data)
        if made is None:
            continue
        fig, caption = made
        path = pngs / f"{name}.png"
        fig.savefig(path, dpi=90)
        import matplotlib.pyplot as plt

        plt.close(fig)
        report.figures[name], captions[name] = path, caption
    report.importance_method = data.importance_method
    report.html.parent.mkdir(parents=True, exist_ok=True)
    report.html.write_text(_html(data, report, captions), encoding="utf-8")
    return report


def preload() -> None:
    """Import what ``write`` needs (matplotlib, Optuna, a random forest): the tracking process does it while the
    search runs, so that the report at its end waits on no import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
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
        import pandas as pd

        table = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=[""])
        best = json.loads((folder / "best.json").read_text()) if (folder / "best.json").is_file() else {}
        space = spec.parsed_space()
        dists = {}
        for b in space.branches:
            for p, d in b.dists.items():
                dists[f"{b.learner}.{p}" if space.conditional else p] = d
        if space.conditional:
            from metaray.space import Dist

            dists["learner"] = Dist("choice", tuple(b.learner for b in space.branches))
        scores = sorted((c for c in table.columns if c.startswith("score_")), key=lambda c: int(c[6:]))
        if "tied_with_best" in table:
            table["tied_with_best"] = table["tied_with_best"].astype(str).str.lower().eq("true")
        from metaray.aggregates import objective_mode
        from metaray.metrics import get_metric

        state = folder.state  # the search wrote its metric and direction there (a spec may leave them implicit)
        metric = state.get("metric") or spec.objective.metric or "accuracy"
        gib = get_metric(metric).greater_is_better
        mode = state.get("mode") or objective_mode(spec.objective.aggregate, gib)
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
        return [p for p in self.dists if p == "learner" or f"param.{p}" in self.table]

    def column(self, frame, name: str):
        return frame["learner"] if name == "learner" else frame[f"param.{name}"]

    def goodness(self, objective):
        """Objective values scaled to [0, 1], 1 the best, whichever the direction."""
        v = np.asarray(objective, dtype=float)
        lo, hi = np.nanmin(v), np.nanmax(v)
        scaled = (v - lo) / (hi - lo if hi > lo else 1.0)
        return scaled if self.mode == "max" else 1.0 - scaled

    def is_log(self, name: str) -> bool:
        return self.dists[name].kind == "loguniform"

    def is_numeric(self, name: str) -> bool:
        d = self.dists[name]
        if d.kind in ("choice", "grid"):
            return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.args)
        return True

    def axis(self, name: str, values):
        """A parameter's values on a numeric axis (log10 for a log space; category codes for choices), and the
        category labels (None for a numeric one)."""
        import pandas as pd

        if self.is_numeric(name):
            v = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
            return (np.log10(v) if self.is_log(name) else v), None
        args = self.dists[name].args
        labels = [str(a) if a is not None else "None" for a in args]
        return np.array([_choice_index(args, v) for v in values], dtype=float), labels


def _choice_index(args, value) -> float:
    """Which of a choice's values a results-table cell holds: None is read back as missing, numbers as floats
    (a column of None and 5 reads 5.0), text and booleans as their text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float(args.index(None)) if None in args else math.nan
    for i, a in enumerate(args):
        if a is None:
            continue
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            try:
                if float(value) == float(a):
                    return float(i)
            except (TypeError, ValueError):
                continue
        elif str(a) == str(value) or str(a).lower() == str(value).lower():
            return float(i)
    return math.nan


# the figures -----------------------------------------------------------------------------------------------


def _objective(d: _Data):
    import matplotlib.pyplot as plt

    done = d.completed.head(TOP)
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.2))
    x = np.arange(len(done))
    tied = done["tied_with_best"].to_numpy(bool) if "tied_with_best" in done else np.zeros(len(done), bool)
    err = done["std"].astype(float).fillna(0).to_numpy()
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
    method = d.best.get("tied", {}).get("method", "")
    return fig, f"Each configuration's meta-objective with its spread over the subsets. Tied: {method or 'n/a'}."


def _subsets(d: _Data):
    import matplotlib.pyplot as plt

    done = d.completed.head(TOP)
    if done.empty or not d.scores:
        return None
    values = done[d.scores].to_numpy(float)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(d.scores) + 3), max(3, 0.22 * len(done) + 1.5)))
    # yellow is good: a loss's colours are reversed, so that a hard subset is a dark column either way
    image = ax.imshow(values, aspect="auto", cmap="viridis" if d.greater_is_better else "viridis_r",
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=d.metric_name + ("" if d.greater_is_better else " (lower is better)"))
    ax.set_yticks(range(len(done)))
    ax.set_yticklabels(done["trial"], fontsize=7)
    means = np.nanmean(values, axis=0)
    ax.set_xticks(range(len(d.scores)))
    ax.set_xticklabels([f"{i}\n{m:.3g}" for i, m in enumerate(means)], fontsize=7)
    ax.set_xlabel("subset (mean score over these configurations)")
    ax.set_title("Scores of each configuration on each subset (yellow: good): a column dark for all is a hard subset",
                 fontsize=9)
    fig.tight_layout()
    return fig, "Configurations (rows, best first) × subsets (columns): the score of each fit."


def _parameters(d: _Data):
    import matplotlib.pyplot as plt

    done, params = d.completed, d.params()
    if done.empty or not params:
        return None
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    y = done["objective"].to_numpy(float)
    tied = done["tied_with_best"].to_numpy(bool) if "tied_with_best" in done else np.zeros(len(done), bool)
    for ax, name in zip(axes.flat, params, strict=False):
        raw = d.column(done, name)
        if d.is_numeric(name):
            x = np.asarray(raw.astype(float))
            ax.scatter(x[~tied], y[~tied], s=18, color="tab:grey", label="not tied")
            ax.scatter(x[tied], y[tied], s=24, color="tab:green", label="tied")
            if d.is_log(name):
                ax.set_xscale("log")
        else:
            codes, labels = d.axis(name, raw)
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(codes))
            ax.scatter((codes + jitter)[~tied], y[~tied], s=18, color="tab:grey")
            ax.scatter((codes + jitter)[tied], y[tied], s=24, color="tab:green")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30, fontsize=7)
        ax.set_xlabel(name + (" (log)" if d.is_log(name) else ""))
        ax.set_ylabel(d.metric, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.suptitle("Meta-objective against each searched parameter (green: tied with the best)")
    fig.tight_layout()
    return fig, "One panel per searched parameter; log axes where the space is log-uniform."


def _parallel(d: _Data):
    import matplotlib.pyplot as plt

    done, params = d.completed.head(TOP_PARALLEL), d.params()
    if len(done) < 2 or not params:
        return None
    axes_values, ticks = [], []
    for name in params:
        v, labels = d.axis(name, d.column(done, name))
        lo, hi = (0, max(len(labels) - 1, 1)) if labels else (np.nanmin(v), np.nanmax(v)) if np.isfinite(v).any() \
            else (0, 1)
        span = hi - lo if hi > lo else 1.0
        axes_values.append((v - lo) / span)
        if labels:
            ticks.append(" / ".join(labels))
        else:
            fmt = (lambda e: f"{10 ** e:.3g}") if d.is_log(name) else (lambda e: f"{e:.3g}")
            ticks.append(f"{fmt(lo)} … {fmt(hi)}")
    obj = done["objective"].to_numpy(float)
    lo, hi = obj.min(), obj.max()
    axes_values.append((obj - lo) / (hi - lo if hi > lo else 1.0))
    ticks.append(f"{lo:.4g} … {hi:.4g}")
    colour = d.goodness(obj)
    names = [*params, "objective"]
    data = np.vstack(axes_values).T  # configurations x axes
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(names)), 4.5))
    cmap = plt.get_cmap("viridis")
    for row, c in sorted(zip(data, colour, strict=True), key=lambda rc: rc[1]):  # the best drawn last, on top
        ax.plot(range(len(names)), row, color=cmap(c), alpha=0.85, linewidth=1.6)
    for i in range(len(names)):
        ax.axvline(i, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{t}" for n, t in zip(names, ticks, strict=True)], fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"Parallel coordinates of the top {len(done)} configurations (yellow: the best objective)")
    fig.tight_layout()
    return fig, "Each line is a configuration; each axis one parameter, scaled to its range (log where log)."


def _importance(d: _Data):
    import matplotlib.pyplot as plt

    done, params = d.completed, d.params()
    if len(done) < 4 or not params:
        return None
    found = _optuna_importance(d, done, params)
    d.importance_method = "Optuna's get_param_importances (fANOVA)"
    if found is None:
        found = _forest_importance(d, done, params)
        d.importance_method = "random-forest surrogate (impurity importance of a forest fitted to the objective)"
    if not found:
        return None
    names = sorted(found, key=found.get)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.6))
    ax.barh(names, [found[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (share)")
    ax.set_title(f"Parameter importance: {d.importance_method}", fontsize=9)
    fig.tight_layout()
    return fig, f"Which parameters matter for the meta-objective, by {d.importance_method}."


def _optuna_importance(d: _Data, done, params) -> dict[str, float] | None:
    """Optuna's importances, for a space it can take: one learner, no conditional parameters."""
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if "learner" in d.dists or len(params) < 1:
            return None
        dists = {}
        for name in params:
            dist = d.dists[name]
            if dist.kind in ("choice", "grid"):
                dists[name] = CategoricalDistribution(list(dist.args))
            elif dist.kind == "randint":
                dists[name] = IntDistribution(int(dist.args[0]), int(dist.args[1]) - 1)
            else:
                dists[name] = FloatDistribution(dist.args[0], dist.args[1], log=dist.kind == "loguniform")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(direction="maximize" if d.mode == "max" else "minimize")
        for _, row in done.iterrows():
            values = {}
            for name in params:
                raw, dist = row[f"param.{name}"], d.dists[name]  # no learner: one-learner spaces only
                if dist.kind in ("choice", "grid"):
                    values[name] = dist.args[int(_choice_index(dist.args, raw))]  # NaN: refused, the surrogate
                elif dist.kind == "randint":
                    values[name] = int(raw)
                else:
                    values[name] = float(raw)
            study.add_trial(optuna.trial.create_trial(params=values, distributions=dists,
                                                      value=float(row["objective"])))
        found = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
            seed=0))
        return {k: float(v) for k, v in found.items()} or None
    except Exception:  # a space or values Optuna refuses: the surrogate below
        return None


def _forest_importance(d: _Data, done, params) -> dict[str, float]:
    from sklearn.ensemble import RandomForestRegressor

    columns, kept = [], []
    for name in params:
        v, _ = d.axis(name, d.column(done, name))
        if not np.isfinite(v).any():
            continue
        kept.append(name)
        lo, hi = np.nanmin(v), np.nanmax(v)
        columns.append(np.where(np.isfinite(v), v, lo - (hi - lo) - 1.0))  # another learner's: below its range
    if not columns:
        return {}
    X = np.column_stack(columns)
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(X, done["objective"].to_numpy(float))
    return dict(zip(kept, forest.feature_importances_.astype(float).tolist(), strict=True))


def _rungs(d: _Data):
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scheduler = d.spec.search.scheduler
    if scheduler.name not in ("asha", "racing"):
        return None
    t = d.table[d.table["status"].isin(["completed", "stopped"])]
    if t.empty:
        return None
    fidelity = "epochs_done" if "epochs_done" in t else "subsets_done"
    fig, ax = plt.subplots(figsize=(9, 4))
    for status, colour in (("completed", "tab:green"), ("stopped", "tab:red")):
        part = t[t["status"] == status]
        ax.scatter(part[fidelity].astype(float), part["objective"].astype(float), color=colour, s=22,
                   label=f"{status} ({len(part)})", alpha=0.8)
    counts = t[t["status"] == "stopped"][fidelity].value_counts().sort_index()
    for rung, n in counts.items():
        ax.annotate(f"{n} stopped", (float(rung), np.nanmax(t["objective"].astype(float))), fontsize=7,
                    ha="center", va="bottom")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(fidelity.replace("_", " ") + " when it ended (the rung)")
    ax.set_ylabel(f"{d.metric} at that rung")
    ax.set_title(f"{scheduler.name}: the rung at which each configuration stopped")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, f"Early stopping by {scheduler.name}: each configuration at the fidelity it reached."


def _architecture(d: _Data):
    import matplotlib.pyplot as plt

    layers = d.best.get("layers")
    if not layers:
        return None
    labels = [row["layer"] if len(row["layer"]) <= 60 else row["layer"][:57] + "..." for row in layers]
    counts = [row["parameters"] for row in layers]
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(layers) + 1.6))
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


FIGURES = (("objective", _objective), ("subsets", _subsets), ("parameters", _parameters),
           ("parallel", _parallel), ("importance", _importance), ("rungs", _rungs),
           ("architecture", _architecture))


# the page --------------------------------------------------------------------------------------------------


def _html(d: _Data, report: Report, captions: dict[str, str]) -> str:
    e = html.escape
    table = d.table.head(TOP)
    params = [c for c in table.columns if c.startswith("param.")]
    head = ["trial", "status", "learner", *[c.removeprefix("param.") for c in params], "objective", "std",
            "p_vs_best", "p_not_worse", "tied_with_best"]
    rows = []
    for _, r in table.iterrows():
        cells = [r["trial"], r["status"], r["learner"], *[r[c] for c in params], r["objective"], r.get("std"),
                 r.get("p_vs_best"), r.get("p_not_worse"), r.get("tied_with_best")]
        tied = " class=tied" if r.get("tied_with_best") is True else ""
        rows.append(f"<tr{tied}>" + "".join(f"<td>{e(_cell(c))}</td>" for c in cells) + "</tr>")
    tied = d.best.get("tied", {})
    simplest = tied.get("simplest") or {}
    summary = [f"{len(d.table)} configurations, {int((d.table['status'] == 'completed').sum())} completed; "
               f"meta-objective: {d.metric} over {d.spec.subsets.k} subsets ({d.spec.subsets.sampler}, "
               f"protocol {d.spec.subsets.protocol})."]
    if d.best:
        summary.append(f"Best: {d.best['trial']} {d.best['learner']}({_params(d.best['params'])}), "
                       f"{d.best['objective']:.4f} ± {d.best['std']:.4f}.")
        summary.append(f"Tied with the best: {tied.get('count', '?')} ({tied.get('method', 'n/a')}).")
        if simplest:
            summary.append(f"Simplest tied: {simplest['trial']} {simplest['learner']}({_params(simplest['params'])}),"
                           f" {simplest['objective']:.4f}.")
    else:
        summary.append("No configuration completed.")
    figures = []
    for name, path in report.figures.items():
        data = base64.b64encode(path.read_bytes()).decode()
        figures.append(f'<figure id="fig-{name}"><img alt="{name}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(captions[name])}</figcaption></figure>")
    return _PAGE.format(title=e(f"metaray report: {d.spec.name}"), summary="".join(f"<p>{e(s)}</p>" for s in summary),
                        head="".join(f"<th>{e(h)}</th>" for h in head), rows="\n".join(rows),
                        figures="\n".join(figures), n=len(report.figures))


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
tr.tied {{ background: #e6f4e6; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; }} figcaption {{ font-size: 13px; color: #555; }}
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

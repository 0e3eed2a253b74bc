"""Compare searches across experiments from what MLflow recorded (read through metaray.store): a table best first,
and a plot."""

from __future__ import annotations

from pathlib import Path

from metaray.errors import SpecError


def _experiment_names(items: list[str]) -> list[str]:
    names = []
    for item in items:
        if item.endswith((".yaml", ".yml")) and Path(item).is_file():
            from metaray.spec import load_spec

            spec = load_spec(item)
            names.append(spec.tracking.experiment or spec.name)
        else:
            names.append(item)
    return names


def compare_runs(experiments: list[str] = (), *, uri: str | None = None):
    """Every configuration MLflow holds for the experiments (all metaray ones when empty), best first: by
    experiment, then completed before stopped before failed, then by objective in its direction. Sets nothing
    global (the store is read through an explicit client).

    Returns:
        A DataFrame with experiment, search, trial, learner, status, objective, std, worst and parameters.
    """
    import pandas as pd

    from metaray.driver import status_rank
    from metaray.store import Store, tracking_uri

    runs = Store(tracking_uri(uri, "uri")).trials(_experiment_names(list(experiments)))
    if runs.empty:
        return pd.DataFrame()
    out = runs[["experiment", "search", "trial", "learner", "status", "objective", "std", "worst", "mode",
                "metric"]].copy()
    for c in [c for c in runs.columns if c.startswith("params.")]:
        try:  # MLflow stores parameters as text
            out[c.removeprefix("params.")] = pd.to_numeric(runs[c])
        except (ValueError, TypeError):
            out[c.removeprefix("params.")] = runs[c]
    out["_key"] = out["objective"].where(out["mode"] == "min", -out["objective"])
    out["_status"] = out["status"].map(status_rank)
    out = out.sort_values(["experiment", "_status", "_key", "search", "trial"], na_position="last")
    return out.drop(columns=["_key", "_status"]).reset_index(drop=True)


def plot_runs(table, path: str | Path, top: int = 30) -> Path:
    """Meta-objective of each configuration with its spread across subsets, one panel per experiment. Drawn on a
    matplotlib ``Figure`` with the Agg canvas: pyplot's backend is left as it is."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [(name, g[g["status"] == "completed"].head(top)) for name, g in table.groupby("experiment", sort=True)]
    groups = [(n, g) for n, g in groups if not g.empty]
    if not groups:
        raise SpecError("--plot", "no completed configuration to plot")
    fig = Figure(figsize=(10, 3.2 * len(groups)))
    axes = fig.subplots(len(groups), 1, squeeze=False)
    for ax, (name, g) in zip(axes[:, 0], groups, strict=True):
        x = range(len(g))
        ax.errorbar(x, g["objective"], yerr=g["std"].fillna(0), fmt="o", capsize=3)
        ax.set_xticks(list(x))
        labels = zip(g["search"].str[-6:], g["trial"], g["learner"], strict=True)
        ax.set_xticklabels([f"{s}/{t}\n{lrn}" for s, t, lrn in labels],
                           fontsize=6, rotation=90)
        metric = g["metric"].dropna().iloc[0] if g["metric"].notna().any() else "objective"
        ax.set_ylabel(f"{metric} (± std over subsets)")
        ax.set_title(f"{name}: best first ({g['mode'].iloc[0]}imise)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path

"""Compare searches across experiments from what MLflow recorded: a table best first, and a plot."""

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
    """Every configuration MLflow holds for the experiments (all metaray ones when empty), best first.

    Returns:
        A DataFrame with experiment, search, trial, learner, status, objective, std, worst and parameters.
    """
    import mlflow
    import pandas as pd

    from metaray.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(uri))
    client = mlflow.MlflowClient()
    names = _experiment_names(list(experiments))
    if names:
        missing = [n for n in names if client.get_experiment_by_name(n) is None]
        if missing:
            known = sorted(e.name for e in client.search_experiments())
            raise SpecError("experiment", "no such MLflow experiment", allowed=known, got=missing[0])
    runs = mlflow.search_runs(experiment_names=names or None, search_all_experiments=not names,
                              filter_string="tags.`metaray.kind` = 'trial'", max_results=50000)
    if runs.empty:
        return pd.DataFrame()
    exp_names = {e.experiment_id: e.name for e in client.search_experiments()}
    parents = runs["tags.mlflow.parentRunId"].unique()
    parent_names = {p: client.get_run(p).info.run_name for p in parents}
    out = pd.DataFrame({
        "experiment": runs["experiment_id"].map(exp_names),
        "search": runs["tags.mlflow.parentRunId"].map(parent_names),
        "trial": runs["tags.metaray.trial"],
        "learner": runs["tags.learner"],
        "status": runs["tags.metaray.status"],
        "objective": runs.get("metrics.objective"),
        "std": runs.get("metrics.std"),
        "worst": runs.get("metrics.worst"),
        "mode": runs["tags.metaray.mode"],
        "metric": runs.get("tags.metaray.metric"),
    })
    params = [c for c in runs.columns if c.startswith("params.") and c != "params.learner"]
    for c in params:
        try:  # MLflow stores parameters as text
            out[c.removeprefix("params.")] = pd.to_numeric(runs[c])
        except (ValueError, TypeError):
            out[c.removeprefix("params.")] = runs[c]
    out["_key"] = out["objective"].where(out["mode"] == "min", -out["objective"])
    out["_status"] = out["status"].map({"completed": 0, "stopped": 1, "failed": 2}).fillna(3)
    out = out.sort_values(["experiment", "_status", "_key", "search", "trial"], na_position="last")
    return out.drop(columns=["_key", "_status"]).reset_index(drop=True)


def plot_runs(table, path: str | Path, top: int = 30) -> Path:
    """Meta-objective of each configuration with its spread across subsets, one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, g[g["status"] == "completed"].head(top)) for name, g in table.groupby("experiment", sort=True)]
    groups = [(n, g) for n, g in groups if not g.empty]
    if not groups:
        raise SpecError("--plot", "no completed configuration to plot")
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), squeeze=False)
    for ax, (name, g) in zip(axes[:, 0], groups):
        x = range(len(g))
        ax.errorbar(x, g["objective"], yerr=g["std"].fillna(0), fmt="o", capsize=3)
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"{s}/{t}\n{lrn}" for s, t, lrn in zip(g["search"].str[-6:], g["trial"], g["learner"])],
                           fontsize=6, rotation=90)
        metric = g["metric"].dropna().iloc[0] if g["metric"].notna().any() else "objective"
        ax.set_ylabel(f"{metric} (± std over subsets)")
        ax.set_title(f"{name}: best first ({g['mode'].iloc[0]}imise)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

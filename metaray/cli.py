"""The `metaray` command. Imports stay inside the commands so that `metaray --help` is instant."""

from __future__ import annotations

import argparse
import sys

from metaray import __version__
from metaray.errors import MetarayError, SpecError

_SAID: set[str] = set()


def _progress(result, total: int) -> None:
    from metaray.errors import unsaid

    for message in unsaid(result.warnings, _SAID):  # (those the same but for their numbers: one)
        print(f"  warning (said once): {message}", file=sys.stderr, flush=True)
    if result.error:
        line = f"  subset {result.subset + 1}/{total}: failed: {result.error}"
    else:
        scores = "  ".join(f"{k}={v:.4f}" for k, v in result.scores.items())
        line = f"  subset {result.subset + 1}/{total}: {scores}  (fit {result.fit_seconds:.2f} s, {result.node})"
    print(line, file=sys.stderr, flush=True)


def _to_stderr(line: str) -> None:
    """Progress and notices: stderr, so that stdout holds only the results."""
    print(line, file=sys.stderr, flush=True)


def cmd_evaluate(args) -> int:
    from metaray.objective import evaluate
    from metaray.spec import load_spec

    spec = load_spec(args.experiment, _overrides(args))
    print(f"evaluating {spec.name}: {spec.subsets.k} subsets ({spec.subsets.sampler}), "
          f"learner {spec.learner.name or 'the strategy default'}",
          file=sys.stderr, flush=True)
    ev = evaluate(spec, progress=None if args.quiet else _progress, say=_to_stderr)
    if args.json:
        import json

        print(json.dumps({"name": ev.name, "objective": ev.objective, "aggregate": ev.aggregate, "metric": ev.metric,
                          "mode": ev.mode, "aggregates": ev.aggregates, "subsets": ev.subsets.to_dict("records"),
                          "dataset": ev.dataset, "protocol": ev.protocol, "learner": ev.learner,
                          "metafeatures": ev.metafeatures, "columns": ev.columns}))
    else:
        print(ev.summary())
    return 0


def _overrides(args) -> list[str]:
    overrides = list(args.set or [])
    if getattr(args, "num_samples", None) is not None:
        overrides.append(f"search.num_samples={args.num_samples}")
    if getattr(args, "address", None):
        overrides.append(f"ray.address={args.address}")
    if getattr(args, "time_budget", None) is not None:
        overrides.append(f"search.time_budget={args.time_budget}")
    return overrides


NO_TRACKING = "log nothing to MLflow (no tracking process); the run folder keeps the results, report and journal"


def _print_search(result) -> int:
    """The table and the best configuration on stdout; what failed on stderr. Exit status 1 when the search has no
    answer (every configuration failed, or the best one's refit did), though its input was valid."""
    print(result.summary())
    if result.mlflow_run_id:
        from metaray.folder import RunFolder
        from metaray.store import is_server, shown_uri

        uri = RunFolder(result.run_dir).state.get("mlflow_uri") or ""  # the store's, as the run folder keeps it
        where = (f"browse it at {shown_uri(uri)}" if is_server(uri)
                 else "browse with: mlflow ui --host 127.0.0.1")
        print(f"mlflow: run {result.mlflow_run_id} ({where})")
    sys.stdout.flush()
    failures = result.failures()
    if result.best is None and result.infeasible_line() and (result.results["status"] == "completed").any():
        print(f"metaray: no configuration met the constraints: {result.infeasible_line()}; results: "
              f"{result.run_dir}", file=sys.stderr)
    elif result.best is None:
        counts = ", ".join(f"{n} {status}" for status, n in result.results["status"].value_counts().items())
        print(f"metaray: no configuration completed: {failures or f'none has a finite meta-objective ({counts})'}; "
              f"results: {result.run_dir}", file=sys.stderr)
    elif result.refit_error:
        print(f"metaray: the {result.final_kind} of the best configuration failed ({result.refit_error}); the search's "
              f"results are in {result.run_dir}", file=sys.stderr)
    elif failures:
        print(failures, file=sys.stderr)
    return 0 if result.ok else 1


def cmd_run(args) -> int:
    from metaray.driver import duration
    from metaray.run import extend, search
    from metaray.spec import load_spec

    if args.extend:
        if args.num_samples is None:
            raise SpecError("--num-samples", "--extend needs the number of configurations to add", got=None)
        spec = load_spec(args.experiment, list(args.set or []) + ([f"ray.address={args.address}"] if args.address
                                                                   else [])
                         + ([f"search.time_budget={args.time_budget}"] if args.time_budget is not None else []))
        print(f"extending {args.extend} by {args.num_samples} configurations", file=sys.stderr, flush=True)
        return _print_search(extend(args.extend, spec, args.num_samples, progress=_to_stderr,
                                    dashboard=args.dashboard, track=not args.no_tracking))
    spec = load_spec(args.experiment, _overrides(args))
    s = spec.search
    print(f"searching {spec.name}: {s.searcher} searcher, scheduler {s.scheduler.name}, {spec.subsets.k} subsets "
          f"({spec.subsets.sampler}) per configuration"
          + (f", time budget {duration(s.time_budget)}" if s.time_budget else ""), file=sys.stderr, flush=True)
    return _print_search(search(spec, progress=_to_stderr, dashboard=args.dashboard, track=not args.no_tracking))


def cmd_resume(args) -> int:
    from metaray.run import resume

    print(f"resuming {args.path}", file=sys.stderr, flush=True)
    return _print_search(resume(args.path, progress=_to_stderr, dashboard=args.dashboard,
                                time_budget=args.time_budget, track=not args.no_tracking))


def _check_store(uri: str, given: bool) -> None:
    """`compare` and `history` first open the tracking store at ``uri`` and list its experiments: a store that cannot
    be read (a server that does not answer, a database whose driver is missing, none there) is one line naming
    ``--uri`` (``given``; else the variable it came from), exit 2, not MLflow's traceback. What they read after is
    not wrapped: an error there is metaray's own, and shows as one."""
    from metaray.store import Store, store_error, uri_key

    key = uri_key("--uri", given)
    try:
        Store(uri).experiments()
    except SpecError as exc:
        raise SpecError(key, exc.problem, allowed=exc.allowed, got=exc.got) from None
    except Exception as exc:
        raise store_error(key, "cannot read the MLflow tracking store", exc, uri) from None


def cmd_compare(args) -> int:
    from metaray.comparison import compare_runs, plot_runs
    from metaray.store import tracking_uri

    uri = tracking_uri(args.uri, "--uri")
    _check_store(uri, bool(args.uri))
    table = compare_runs(args.experiments, uri=uri)
    if table.empty:
        print("no metaray runs found", file=sys.stderr)
        return 1
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for name, group in table.groupby("experiment", sort=True):
            print(f"== {name} ({len(group)} configurations)")
            print(group.drop(columns=["experiment"]).head(args.top).dropna(axis=1, how="all")
                  .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.plot:
        print(f"plot: {plot_runs(table, args.plot)}")
    return 0


def cmd_history(args) -> int:
    from metaray.store import absolute_uri, tracking_uri
    from metaray.warmstart import past_searches, similar

    uri = absolute_uri(tracking_uri(args.uri, "--uri"))
    if args.similar:
        from metaray.metafeatures import compute as compute_metafeatures
        from metaray.objective import prepare
        from metaray.spec import load_spec

        spec = load_spec(args.similar)
        prepared = prepare(spec, say=_to_stderr)
        here = compute_metafeatures(prepared.dataset, seed=spec.seed)
        _check_store(uri, bool(args.uri))
        table = similar(past_searches(uri, task=prepared.dataset.task, metric=prepared.metric.name), here)
        what = f"like {spec.name} ({prepared.dataset.task}, {prepared.metric.name}), nearest first"
    else:
        _check_store(uri, bool(args.uri))
        table, what = past_searches(uri), "newest first"
    if table.empty:
        print(f"no past metaray searches{' like it' if args.similar else ''} in {uri}", file=sys.stderr)
        return 1
    import pandas as pd

    show = ["experiment", "search", "dataset", "task", "metric", "best_objective", "best_learner", "best_params",
            "configurations", *(["distance"] if args.similar else []),
            *[c for c in ("mf.rows_log10", "mf.features_log10", "mf.classes", "mf.target_skew", "mf.landmark_1nn")
              if c in table]]
    print(f"past searches in {uri}, {what}:")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60):
        print(table[show].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_report(args) -> int:
    from metaray.report import write

    try:
        made = write(args.path, args.out)
    except MetarayError:
        raise  # a folder that is not a search's, or a file in it that cannot be read: one line, exit 2
    except Exception as exc:  # whatever else the folder's contents lead to: still one line, not a traceback
        what = " ".join(str(exc).split())[:300]
        raise SpecError("RUN_DIR", f"the report could not be made ({type(exc).__name__}: {what})",
                        got=str(args.path)) from None
    print(f"report: {made.html}")
    for name, path in made.figures.items():
        print(f"  {name}: {path}")
    for name, why in made.left_out.items():
        print(f"  {name}: not drawn: {why}")
    if made.importance_method:
        print(f"  (parameter importance by {made.importance_method})")
    return 0


def _ray_environment(args) -> None:
    """Before anything imports Ray: token authentication on, and a Ray on this machine bound to 127.0.0.1 (see
    metaray.cluster.ray_environment). The address is the command line's, else the spec's (a resumed run's spec is in
    its folder)."""
    from pathlib import Path

    from metaray.cluster import ray_environment
    from metaray.spec import load_spec

    address = getattr(args, "address", None)
    if address is None:
        source = Path(args.path) / "spec.yaml" if args.command == "resume" else args.experiment
        try:
            address = load_spec(source, list(getattr(args, "set", None) or [])).ray.address
        except MetarayError:
            return  # the command itself says what is wrong
    ray_environment(address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaray", description="Distributed meta-objective search on Ray.")
    parser.add_argument("--version", action="version", version=f"metaray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("evaluate", help="score the experiment's configuration on K subsets and print the table")
    ev.add_argument("experiment", help="experiment YAML file")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (repeatable)")
    ev.add_argument("--address", help="join an existing Ray cluster instead of starting a local one")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--quiet", action="store_true", help="no per-subset progress lines")
    ev.set_defaults(func=cmd_evaluate)

    run = sub.add_parser("run", help="search the experiment's space for the best meta-objective")
    run.add_argument("experiment", help="experiment YAML file")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (repeatable)")
    run.add_argument("--num-samples", type=int, help="number of configurations (search.num_samples)")
    run.add_argument("--address", help="join an existing Ray cluster instead of starting a local one")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard on 127.0.0.1 and print its URL")
    run.add_argument("--time-budget", metavar="DURATION", help="open no configuration after this long (600, 90s, "
                     "10m, 1.5h; search.time_budget), counted from the command's start; those still running then may "
                     "finish within a grace of a tenth of it (at most 1m), else are stopped unfinished")
    run.add_argument("--extend", metavar="RUN_DIR", help="add --num-samples configurations to the finished search in "
                     "RUN_DIR (same spec): its configurations are not fitted again")
    run.add_argument("--no-tracking", action="store_true", help=NO_TRACKING)
    run.set_defaults(func=cmd_run)

    res = sub.add_parser("resume", help="continue an interrupted search from its run folder")
    res.add_argument("path", help="the run folder, e.g. metaray_results/NAME/20260101-120000")
    res.add_argument("--dashboard", action="store_true", help="start Ray's dashboard on 127.0.0.1")
    res.add_argument("--time-budget", metavar="DURATION", help="a fresh time budget for this resume (default: the "
                     "search's own search.time_budget, afresh); the configurations replayed from the journal cost none")
    res.add_argument("--no-tracking", action="store_true", help=NO_TRACKING)
    res.set_defaults(func=cmd_resume)

    cmp_ = sub.add_parser("compare", help="table (and plot) of the configurations MLflow recorded, best first")
    cmp_.add_argument("experiments", nargs="*", help="MLflow experiment names or experiment YAML files (all: none)")
    cmp_.add_argument("--plot", metavar="FILE.png", help="write meta-objective ± spread per configuration")
    cmp_.add_argument("--uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    cmp_.add_argument("--top", type=int, default=20, help="rows per experiment")
    cmp_.set_defaults(func=cmd_compare)

    his = sub.add_parser("history", help="past searches in the tracking store: data, meta-features, best result")
    his.add_argument("--similar", metavar="EXPERIMENT.yaml", help="rank them by how like this one their data is")
    his.add_argument("--uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    his.add_argument("--top", type=int, default=20, help="searches to show")
    his.set_defaults(func=cmd_history)

    rep = sub.add_parser("report", help="a search's report: one self-contained HTML file and its figures as PNGs")
    rep.add_argument("path", help="the run folder, e.g. metaray_results/NAME/20260101-120000")
    rep.add_argument("--out", metavar="FILE.html", help="where to write the HTML (default: RUN_DIR/report.html)")
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("evaluate", "run", "resume"):
            _ray_environment(args)
        return args.func(args)
    except MetarayError as exc:
        print(f"metaray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metaray: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The `metaray` command: main(), then a quick exit. Everything metaray writes is flushed and closed by
    then (journal, results, MLflow's tracking process); the interpreter's own teardown of Ray's and MLflow's
    modules takes seconds and has nothing left to save."""
    import os

    code = main()

    def stop_ray() -> None:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()

    if "metaray.tracking" in sys.modules:  # its process has logged everything by now; it ends with its pipe
        sys.modules["metaray.tracking"].shutdown(meanwhile=stop_ray)  # the two ends overlap
    else:
        stop_ray()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()

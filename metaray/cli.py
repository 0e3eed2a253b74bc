"""The `metaray` command. Imports stay inside the commands so that `metaray --help` is instant."""

from __future__ import annotations

import argparse
import sys

from metaray import __version__
from metaray.errors import MetarayError


def _progress(result, total: int) -> None:
    if result.error:
        line = f"  subset {result.subset + 1}/{total}: failed: {result.error}"
    else:
        scores = "  ".join(f"{k}={v:.4f}" for k, v in result.scores.items())
        line = f"  subset {result.subset + 1}/{total}: {scores}  (fit {result.fit_seconds:.2f} s, {result.node})"
    print(line, file=sys.stderr, flush=True)


def cmd_evaluate(args) -> int:
    from metaray.objective import evaluate
    from metaray.spec import load_spec

    overrides = list(args.set or [])
    if args.address:
        overrides.append(f"ray.address={args.address}")
    spec = load_spec(args.experiment, overrides)
    print(f"evaluating {spec.name}: {spec.subsets.k} subsets ({spec.subsets.sampler}), learner {spec.learner.name}",
          file=sys.stderr, flush=True)
    ev = evaluate(spec, progress=None if args.quiet else _progress)
    if args.json:
        import json

        print(json.dumps({"name": ev.name, "objective": ev.objective, "aggregate": ev.aggregate, "metric": ev.metric,
                          "mode": ev.mode, "aggregates": ev.aggregates, "subsets": ev.subsets.to_dict("records"),
                          "dataset": ev.dataset, "protocol": ev.protocol, "learner": ev.learner}))
    else:
        print(ev.summary())
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MetarayError as exc:
        print(f"metaray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metaray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

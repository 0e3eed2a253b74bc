#!/usr/bin/env bash
# One entry point for people and CI: creates .venv on first use (torch's CPU build first, so that the
# package's torch range is already met), installs metaray with its test extras within .ci/constraints.txt (the
# versions the suite last passed with), then runs a command.
#   ./dev.sh demo   the main job on embedded defaults (local Ray, MLflow in sqlite:///mlflow.db)
#   ./dev.sh test   the whole test suite (what CI runs; pytest's own options pass through)
#   ./dev.sh test -m "not slow"   the quick lane: unit tests and short searches, about two minutes; it skips the
#                   tests marked slow (processes, clusters and browsers of their own, long searches, benchmarks)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${METARAY_VENV:-.venv}
PY="$VENV/bin/python"
stamp="$VENV/.metaray-installed"

setup() {
    local want
    want=$(cat pyproject.toml .ci/constraints.txt | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "torch==2.13.0"
    "$PY" -m pip install --quiet -c .ci/constraints.txt -e ".[test]"  # the versions the suite last passed with
    echo "$want" > "$stamp"
}

cmd=${1:-demo}
shift || true
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$VENV/bin/metaray" run experiments/meta_classification_iris.yaml "$@" ;;
    test) setup; exec "$PY" -m pytest "$@" ;;
    *) echo "usage: ./dev.sh [setup|demo|test] [args...]" >&2; exit 2 ;;
esac

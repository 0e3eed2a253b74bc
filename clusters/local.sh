#!/usr/bin/env bash
# A Ray cluster of several nodes on this machine: every server on 127.0.0.1, token authentication on
# (see clusters/local.py for how, and for its settings).
#
#   clusters/local.sh start [WORKERS]     # prints the lines to run a search on it
#   clusters/local.sh status
#   clusters/local.sh stop                # ends every process of this cluster, and says how many
#
# It runs with $PYTHON, else this repository's .venv, else python3 (each needs metaray installed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$here/../.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" "$here/local.py" "$@"

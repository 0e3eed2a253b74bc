#!/usr/bin/env bash
# An MLflow tracking server on PostgreSQL on this machine (the server on 127.0.0.1, the database on a Unix socket):
#
#   clusters/mlflow/local.sh start FOLDER [--port 5000] [--workers 4]   # prints the tracking URI
#   clusters/mlflow/local.sh status FOLDER
#   clusters/mlflow/local.sh restart FOLDER [--kill]                    # the server again, same database and port
#   clusters/mlflow/local.sh stop FOLDER                                # ends both, leaving nothing running
#
# It runs with $PYTHON, else this repository's .venv, else python3 (each needs mlflow and psycopg2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$here/../../.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" "$here/local.py" "$@"

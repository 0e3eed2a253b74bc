"""The MLflow tracking store as metaray reads it: where it is (URIs), and every read of past searches."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(spec_uri: str | None = None) -> str:
    """The spec's URI, else $MLFLOW_TRACKING_URI, else SQLite in the working folder."""
    return spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_uri(uri: str) -> str:
    """A tracking URI that means the same store from any working folder: a relative SQLite file or local folder is
    made absolute (what a run folder records, so that ``metaray resume`` finds the store from anywhere).

    Example:
        >>> absolute_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
        >>> absolute_uri("sqlite:///mlflow.db").startswith("sqlite:////")
        True
    """
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path, sep, query = uri.removeprefix("sqlite:///").partition("?")
        return f"sqlite:///{Path(path).resolve()}{sep}{query}"
    if uri.startswith("file:") and not uri.startswith("file:/"):  # file:./mlruns
        return Path(uri.removeprefix("file:")).resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri

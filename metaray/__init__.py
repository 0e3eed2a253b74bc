"""metaray: score configurations by a meta-objective over K data subsets, in parallel on Ray.

Heavy modules (Ray, scikit-learn, torch) load on first use, so ``import metaray`` stays fast. Nothing is printed
unless asked: progress goes to a callback, notices to the ``metaray`` logger.

Example (starts a local Ray unless one runs in this process)::

    import metaray
    result = metaray.search("experiments/meta_classification_iris.yaml", ["search.num_samples=8"])
    result.results          # a DataFrame: one row per configuration, best first
    result.best, result.run_dir, result.mlflow_run_id
    metaray.resume(result.run_dir)                       # continue an interrupted search
    metaray.extend(result.run_dir, spec, 8)              # 8 more configurations, nothing refitted
    metaray.report(result.run_dir)                       # report.html and report/*.png
    metaray.compare(["meta_classification_iris"])        # every configuration MLflow holds, best first
    ev = metaray.evaluate("experiments/meta_classification_iris.yaml", ["subsets.k=10"])
    ev.objective, ev.aggregates["worst"], ev.subsets     # one configuration on its K subsets
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"
__all__ = ["search", "resume", "extend", "compare", "evaluate", "history", "report", "load_spec", "ExperimentSpec", "SearchResult", "Evaluation",
           "MetarayError", "SpecError", "FitError", "__version__"]

from metaray.errors import FitError, MetarayError, SpecError

logging.getLogger("metaray").addHandler(logging.NullHandler())  # a library: the application decides what is shown

_LAZY = {"search": ("metaray.run", "search"), "resume": ("metaray.run", "resume"), "extend": ("metaray.run", "extend"),
         "history": ("metaray.warmstart", "past_searches"), "report": ("metaray.report", "write"),
         "SearchResult": ("metaray.results", "SearchResult"), "compare": ("metaray.comparison", "compare_runs"),
         "evaluate": ("metaray.objective", "evaluate"), "Evaluation": ("metaray.objective", "Evaluation"),
         "load_spec": ("metaray.spec", "load_spec"), "ExperimentSpec": ("metaray.spec", "ExperimentSpec")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'metaray' has no attribute {name!r}")

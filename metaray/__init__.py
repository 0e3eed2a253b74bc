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

A library that behaves in a notebook: these calls leave ``os.environ``, matplotlib's backend and Optuna's and
MLflow's log levels as they found them, and never change the spec they are given. What Ray must read when it is
imported and started (``RAY_AUTH_MODE=token``; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for a Ray on this machine: see
metaray.cluster.ray_environment), and what Ray itself sets then (``PYTHONBREAKPOINT`` ...), is removed when the call
returns (metaray.cluster.environment_scope): Ray's processes have it, and Ray stays up for the next call. Reading
MLflow sets nothing global (metaray.store). Importing scikit-learn (looking up ``metaray.search`` does) sets
``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK``, as it does for any of its users.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"
__all__ = ["search", "resume", "extend", "compare", "evaluate", "history", "report", "load_spec", "ExperimentSpec",
           "SearchResult", "Evaluation", "MetarayError", "SpecError", "FitError", "__version__"]

from metaray.errors import FitError, MetarayError, SpecError

logging.getLogger("metaray").addHandler(logging.NullHandler())  # a library: the application decides what is shown

_LAZY = {"search": ("metaray.run", "search"), "resume": ("metaray.run", "resume"), "extend": ("metaray.run", "extend"),
         "history": ("metaray.store", "past_searches"), "report": ("metaray.report", None),
         "SearchResult": ("metaray.results", "SearchResult"), "compare": ("metaray.comparison", "compare_runs"),
         "evaluate": ("metaray.objective", "evaluate"), "Evaluation": ("metaray.objective", "Evaluation"),
         "load_spec": ("metaray.spec", "load_spec"), "ExperimentSpec": ("metaray.spec", "ExperimentSpec")}


#: the calls that may start Ray: they run within metaray.cluster.environment_scope
_STARTS_RAY = ("search", "resume", "extend", "evaluate")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        found = importlib.import_module(module)
        found = found if attr is None else getattr(found, attr)  # metaray.report: the module, callable as write
        if name in _STARTS_RAY:
            found = _leaving_the_environment(found)
        globals()[name] = found  # looked up once: metaray.search is metaray.search
        return found
    raise AttributeError(f"module 'metaray' has no attribute {name!r}")


def _leaving_the_environment(fn):
    """``fn`` within ``metaray.cluster.environment_scope``: what it sets in ``os.environ`` for Ray is removed again
    when it returns."""
    import functools

    @functools.wraps(fn)
    def call(*args, **kwargs):
        from metaray.cluster import environment_scope

        with environment_scope():
            return fn(*args, **kwargs)

    return call

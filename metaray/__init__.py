"""metaray: score configurations by a meta-objective over K data subsets, in parallel on Ray.

Heavy modules (Ray, scikit-learn, torch) load on first use, so ``import metaray`` stays fast.

Example (starts a local Ray)::

    import metaray
    spec = metaray.load_spec("experiments/meta_classification_iris.yaml", overrides=["subsets.k=10"])
    result = metaray.evaluate(spec)
    print(result.objective, result.aggregates["worst"])
    print(result.subsets)   # a DataFrame: one row per subset
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["evaluate", "load_spec", "ExperimentSpec", "Evaluation", "MetarayError", "SpecError", "FitError",
           "__version__"]

from metaray.errors import FitError, MetarayError, SpecError

_LAZY = {"evaluate": "metaray.objective", "Evaluation": "metaray.objective", "load_spec": "metaray.spec",
         "ExperimentSpec": "metaray.spec"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metaray' has no attribute {name!r}")

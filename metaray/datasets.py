"""The named datasets (``data.dataset``): scikit-learn's bundled sets and synthetic generators.

A registry of its own, apart from metaray.data, so that checking a spec's dataset name (``load_spec``) imports neither
pandas nor scikit-learn: a loader imports scikit-learn when it is called.
"""

from __future__ import annotations

import inspect
from typing import Any

from metaray.errors import SpecError
from metaray.registry import Registry

#: scikit-learn's datasets that ship with it (no download)
BUNDLED = ("iris", "wine", "breast_cancer", "digits", "diabetes", "linnerud")
#: scikit-learn's generators; ``data.params`` are their arguments, the spec's seed their ``random_state``
SYNTHETIC = ("make_classification", "make_regression", "make_friedman1", "make_blobs", "make_moons")


def _sklearn_bundled(loader: str):
    def load(spec) -> tuple[Any, Any]:
        from sklearn import datasets

        bunch = getattr(datasets, loader)()
        return bunch.data, bunch.target

    return load


def _synthetic(generator: str):
    def load(spec) -> tuple[Any, Any]:
        from sklearn import datasets

        fn = getattr(datasets, generator)
        params = dict(spec.data.params)
        accepted = set(inspect.signature(fn).parameters) - {"random_state"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise SpecError(f"data.params.{unknown[0]}", f"not a parameter of {generator}", allowed=sorted(accepted),
                            got=unknown[0])
        try:
            return fn(**params, random_state=spec.seed)
        except (ValueError, TypeError) as exc:
            raise SpecError("data.params", f"{generator} refused the parameters: {exc}", got=params) from None

    return load


#: name -> ``load(spec) -> (X, y)``
DATASETS: Registry = Registry("dataset", "data.dataset")
for _name in BUNDLED:
    DATASETS.register(_name, _sklearn_bundled(f"load_{_name}"))
for _name in SYNTHETIC:
    DATASETS.register(_name, _synthetic(_name))

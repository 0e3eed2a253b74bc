"""How much memory one subset fit needs, so that no more fits run at once on a node than its memory holds.

Each fit task reserves Ray's ``memory`` resource: the estimate below, or ``ray.memory_per_fit``; a fit no node can
hold is refused before it starts, with one line naming the widest columns. The estimate, calibrated by
``experiments/benchmarks/memory_calibration.py`` (docs/performance.md, "Memory"):

    bytes = WORKER_BYTES + table bytes + COPIES[dense or sparse] * rows * row bytes
            (+ PAIRWISE_FACTOR * scikit-learn's working_memory for learners that compute distances)
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

from metaray.errors import SpecError

#: a Ray worker with NumPy, pandas and scikit-learn imported, before it fits anything
WORKER_BYTES = 300e6
#: copies of the encoded training rows a fit holds at its peak: the encoded matrix, the learner's own conversion
#: (float32 bins, a C-ordered copy, a densified one-hot) and its working arrays; measured, rounded up
COPIES = {"dense": 5.0, "sparse": 6.0}
#: bytes of one stored value of a CSR matrix: a float64 and its int32 column index
SPARSE_VALUE_BYTES = 12
#: learners that compute distances between rows (neighbours, kernels) hold blocks of them while scoring, sized by
#: scikit-learn's ``working_memory`` (1 GB by default); measured up to 2.2 GB for neighbours on sparse one-hot
PAIRWISE_FACTOR = 2.5
PAIRWISE_MODULES = ("sklearn.neighbors", "sklearn.svm", "sklearn.decomposition._kernel_pca")


@dataclass(frozen=True)
class Estimate:
    """A fit's estimated peak memory, and what it is made of (for the message when it is too much)."""

    bytes: float
    rows: int
    width: int
    dense: bool
    widest: tuple[tuple[str, int], ...]  # the columns that encode widest, (name, encoded columns)

    def message(self, available: float, learner: str) -> str:
        cols = ", ".join(f"{name} ({w} columns)" for name, w in self.widest) or "the features"
        return (f"a fit of {learner} needs about {_size(self.bytes)} ({self.rows} rows x {self.width} encoded "
                f"columns, {'dense' if self.dense else 'sparse'}), more than any node offers ({_size(available)}); "
                f"widest: {cols}; fix: leave columns out or encode them as text (data.drop, data.columns), lower "
                "subsets.fraction, pick a learner that takes sparse input, or add a node with more memory")


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def estimate(dataset, plan, model, *, encoded_sparse: bool | None = None, rows: int | None = None) -> Estimate:
    """The peak memory of one fit of ``model`` on the largest subset of ``plan`` (``model`` None: of the column
    encoder's task, which holds the encoded rows as the encoder makes them; ``rows``: another number of training
    rows, e.g. the whole pool's for the refit).

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> from sklearn.linear_model import LogisticRegression
        >>> ds = SimpleNamespace(X=np.zeros((1000, 10)), roles=[])
        >>> plan = SimpleNamespace(train=[np.arange(800)], evaluate=[np.arange(200)])
        >>> e = estimate(ds, plan, LogisticRegression())
        >>> e.rows, e.width, e.dense
        (800, 10, True)
    """
    from metaray.columns import accepts_sparse

    rows = rows or max(len(t) for t in plan.train)
    roles = [r for r in getattr(dataset, "roles", []) if r.role != "drop"]
    X = dataset.X
    if roles:
        width = sum(r.width for r in roles)
        # stored values of a row when one-hot columns stay sparse: one per category column, the others in full
        nnz = sum(1 if r.role == "category" else r.width for r in roles)
        table = table_bytes(X)
    else:
        width = nnz = X.shape[1]
        table = 0.0  # an array is shared from the object store, not copied into the worker
    sparse = (encoded_sparse if encoded_sparse is not None else nnz < 0.3 * width) and (
        model is None or accepts_sparse(model))
    row_bytes = nnz * SPARSE_VALUE_BYTES if sparse else width * 8
    total = WORKER_BYTES + table + COPIES["sparse" if sparse else "dense"] * rows * row_bytes
    if type(getattr(model, "embedder", model)).__module__.startswith(PAIRWISE_MODULES):  # an embedding's probe too
        import sklearn

        total += PAIRWISE_FACTOR * sklearn.get_config()["working_memory"] * 2**20
    widest = tuple(sorted(((r.column, r.width) for r in roles), key=lambda c: -c[1])[:3])
    return Estimate(float(total), rows, int(width), not sparse, widest)


#: the last table measured, by a weak reference (an id alone may be reused by a later table), and its bytes
_LAST_TABLE: list = [None, 0.0]


def table_bytes(X) -> float:
    """The user's table as a worker holds it, its strings included (measured once per table)."""
    if not hasattr(X, "memory_usage"):
        return float(X.nbytes)
    ref, size = _LAST_TABLE
    if ref is None or ref() is not X:
        size = float(X.memory_usage(index=False, deep=True).sum())
        _LAST_TABLE[:] = [weakref.ref(X), size]
    return size


def node_memory() -> float:
    """The most memory one alive node of the connected Ray cluster offers to tasks (its ``memory`` resource)."""
    from metaray.cluster import max_node_resource

    return max_node_resource("memory")


def reserve(est: Estimate, learner: str, *, available: float, override: float | None = None) -> float:
    """The memory a fit task reserves: ``override`` (``ray.memory_per_fit``) or the estimate; raises SpecError when
    no node could ever run it."""
    need = override if override is not None else est.bytes
    if need > available:
        if override is not None:
            raise SpecError("ray.memory_per_fit", "more than any node of this Ray cluster offers",
                            allowed=f"<= {available:.0f} bytes ({_size(available)})", got=override)
        raise SpecError("ray.memory_per_fit", est.message(available, learner))
    return math.ceil(need)

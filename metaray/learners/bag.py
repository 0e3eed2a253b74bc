"""A bag: models fitted on different subsets of the rows, averaged (``final: bag``, metaray.final)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if


class Bag(BaseEstimator):
    """Fitted models averaged (with ``weights``, or equally): a classifier's class probabilities (or, for members
    without them, their decision scores as a softmax; ``predict`` then takes the majority vote), a regressor's
    predictions. The members are kept as they were fitted; ``fit`` refuses, since refitting them on one table would
    make them one model.

    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array(["a", "a", "b", "b"])
    >>> bag = Bag([LogisticRegression().fit(X[:3], y[:3]), LogisticRegression().fit(X[1:], y[1:])], "classification",
    ...           np.array(["a", "b"]))
    >>> bag.predict(np.array([[0.0], [3.0]])).tolist(), bag.predict_proba(X).shape
    (['a', 'b'], (4, 2))
    """

    def __init__(self, members: list, task: str, classes=None, weights=None):
        self.members, self.task, self.classes, self.weights = members, task, classes, weights

    def _average(self, outputs: list) -> np.ndarray:
        return np.average(np.asarray(outputs), axis=0, weights=self.weights)

    @property
    def classes_(self) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("a regressor's bag has no classes")
        return np.asarray(self.classes)

    def fit(self, X, y=None):
        raise TypeError("a bag holds models already fitted on the search's subsets; search again to change them")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def _probabilistic(self) -> bool:
        return self.task == "classification" and all(hasattr(m, "predict_proba") for m in self.members)

    def predict(self, X):
        if self.task != "classification":
            return self._average([np.asarray(m.predict(X), dtype=float) for m in self.members])
        if self._probabilistic():
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        votes = np.zeros((_rows(X), len(self.classes_)))
        weights = np.ones(len(self.members)) if self.weights is None else self.weights
        for m, w in zip(self.members, weights, strict=True):  # the (weighted) majority vote; a tie: the first class
            votes[np.arange(len(votes)), np.searchsorted(self.classes_, np.asarray(m.predict(X)))] += w
        return self.classes_[np.argmax(votes, axis=1)]

    @available_if(lambda self: self._probabilistic())
    def predict_proba(self, X):
        from metaray.objective import _proba

        return self._average([_proba(m, X, self.classes_) for m in self.members])

    @available_if(lambda self: self.task == "classification")
    def decision_function(self, X):
        """Scores with a column per class: the members' probabilities, or their decision values as a softmax,
        averaged (ranking metrics need only the order)."""
        if self._probabilistic():
            return self.predict_proba(X)
        from metaray.objective import _aligned_scores

        return self._average([_aligned_scores(m, X, self.classes_) for m in self.members])

    def __repr__(self) -> str:
        names = sorted({type(m).__name__ for m in self.members})
        return f"Bag({len(self.members)} x {', '.join(names)})"


def _rows(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)

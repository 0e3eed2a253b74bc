"""A bag: models fitted on different subsets of the rows, averaged (``final: bag``, metaray.final)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if


class Bag(BaseEstimator):
    """Fitted models averaged (with ``weights``, or equally): a classifier's class scores, a column per class
    (``metaray.objective.predictions``: its probabilities; for a member without them, its decision values as a
    softmax, else a one-hot of its labels), ``predict`` their argmax; a regressor's predictions. What ensemble
    selection averages is what the bag averages. The members are kept as they were fitted; ``fit`` refuses, since
    refitting them on one table would make them one model.

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

    def _scores(self, X) -> np.ndarray:
        from metaray.objective import predictions

        return self._average([predictions(m, X, self.task, self.classes_, dtype=float) for m in self.members])

    def predict(self, X):
        if self.task != "classification":
            return self._average([np.asarray(m.predict(X), dtype=float) for m in self.members])
        return self.classes_[np.argmax(self._scores(X), axis=1)]

    @available_if(lambda self: self._probabilistic())
    def predict_proba(self, X):
        return self._scores(X)

    @available_if(lambda self: self.task == "classification")
    def decision_function(self, X):
        """The averaged class scores (probabilities when every member gives them; ranking metrics need only the
        order)."""
        return self._scores(X)

    def __repr__(self) -> str:
        names = sorted({type(m).__name__ for m in self.members})
        return f"Bag({len(self.members)} x {', '.join(names)})"

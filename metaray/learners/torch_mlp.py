"""A PyTorch multi-layer perceptron with the scikit-learn estimator contract (classifier and regressor)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from metaray.errors import FitError
from metaray.learners.nets import (
    ACTIVATIONS,
    build_mlp,
    count_parameters,
    describe,
    layers,
    pick_device,
    torch_settings,
)


class _TorchMLP(BaseEstimator):
    """Shared training loop. A head mixed in before it (ClassifierHead, RegressorHead) supplies
    ``_encode_targets(y) -> (targets, n_outputs)``, ``_loss()`` and the predict methods.

    Args:
        hidden_layer_sizes: width of each hidden layer.
        activation: one of ``ACTIVATIONS``.
        dropout: dropout probability after each hidden layer.
        batch_norm: batch normalisation after each hidden linear layer.
        optimizer: "adam", "adamw" or "sgd" (with Nesterov momentum 0.9).
        lr, weight_decay, batch_size, epochs: the optimisation.
        standardize: scale inputs (and regression targets) by statistics of the training rows.
        random_state: seeds weight initialisation and batch order.
        n_threads: torch intra-op threads; metaray sets it to the CPUs a fit holds.
        device: "auto" (CUDA when the fit was given a GPU), "cpu" or "cuda".
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "optimizer": [StrOptions({"adam", "adamw", "sgd"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "standardize": ["boolean"],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, hidden_layer_sizes=(64,), activation="relu", dropout=0.0, batch_norm=False, optimizer="adam",
                 lr=3e-3, weight_decay=0.0, batch_size=64, epochs=100, standardize=True, random_state=None,
                 n_threads=None, device="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.standardize = standardize
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device

    def _make_net(self, n_in: int, n_out: int):
        """The network; architecture learners override this."""
        return build_mlp(n_in, n_out, self.hidden_layer_sizes, self.activation, self.dropout, self.batch_norm)

    def summary(self) -> str:
        """The fitted network, layer by layer, with parameter counts."""
        check_is_fitted(self, "net_")
        return f"{type(self).__name__}\n{describe(self.net_)}"

    def layers(self) -> list[dict]:
        """The fitted network's layers, each with its parameter count (the report draws them)."""
        check_is_fitted(self, "net_")
        return layers(self.net_)

    def fit(self, X, y):
        self._validate_params()
        device = pick_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch_settings(self.n_threads, seed, device):
            return self._fit(X, y, device, seed)

    def _fit(self, X, y, device: str, seed: int):
        import torch

        # a classifier takes one label column (a column vector is raveled, with scikit-learn's warning); a regressor
        # one or several target columns
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=not isinstance(self, ClassifierHead),
                             y_numeric=False)
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1], np.float32)
        self.scale_ = X.std(axis=0) if self.standardize else np.ones(X.shape[1], np.float32)
        self.scale_[self.scale_ == 0] = 1.0
        targets, n_out = self._encode_targets(y)
        gen = torch.Generator().manual_seed(seed)  # the batch order's own stream
        net = self._make_net(X.shape[1], n_out).to(device)
        opt = self._optimizer(net.parameters())
        loss_fn = self._loss()
        xt = torch.from_numpy(self._scale(X)).to(device)
        yt = torch.from_numpy(targets).to(device)
        n, bs = len(xt), int(self.batch_size)
        net.train()
        for epoch in range(int(self.epochs)):
            order = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                if self.batch_norm and len(idx) < 2:
                    continue  # batch norm cannot train on a single row
                opt.zero_grad()
                loss = loss_fn(net(xt[idx]), yt[idx])
                if not torch.isfinite(loss):
                    raise FitError(f"{type(self).__name__}: training loss became {loss.item()} at epoch {epoch + 1} "
                                   f"(lr={self.lr}); lower the learning rate")
                loss.backward()
                opt.step()
        # predictions in float64: the precision scikit-learn expects of them, and the same for a row whether it is
        # predicted alone or in a batch
        self.net_ = net.cpu().double().eval()
        self.n_parameters_ = count_parameters(net)
        return self

    def _optimizer(self, params):
        import torch

        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)

    def _scale(self, X, dtype=np.float32):
        return ((X - self.mean_) / self.scale_).astype(dtype)

    def _forward(self, X):
        import torch

        check_is_fitted(self, "net_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with torch.no_grad(), torch_settings(self.n_threads):
            return self.net_(torch.from_numpy(self._scale(X, np.float64))).numpy()


class ClassifierHead:
    """Cross-entropy over encoded labels; any label type. Mixed into a network learner."""

    def _encode_targets(self, y):
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)  # a continuous target is refused, as every scikit-learn classifier does
        self.classes_, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64), len(self.classes_)

    def _loss(self):
        from torch import nn

        return nn.CrossEntropyLoss()

    def predict_proba(self, X):
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        scores = self._forward(X)  # checks that the model is fitted before classes_ is read
        return self.classes_[np.argmax(scores, axis=1)]


class RegressorHead:
    """Mean squared error on standardised targets, single or multi-output. Mixed into a network learner."""

    def _encode_targets(self, y):
        y = np.asarray(y, dtype=np.float32)
        self.multi_output_ = y.ndim == 2
        y2 = y.reshape(len(y), -1)
        self.y_mean_ = y2.mean(axis=0) if self.standardize else np.zeros(y2.shape[1], np.float32)
        self.y_scale_ = y2.std(axis=0) if self.standardize else np.ones(y2.shape[1], np.float32)
        self.y_scale_[self.y_scale_ == 0] = 1.0
        return ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32), y2.shape[1]

    def _loss(self):
        from torch import nn

        return nn.MSELoss()

    def predict(self, X):
        out = self._forward(X) * self.y_scale_ + self.y_mean_
        return out if self.multi_output_ else out.ravel()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one network output per target column
        return tags


class TorchMLPClassifier(ClassifierMixin, ClassifierHead, _TorchMLP):
    """PyTorch MLP classifier.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True)
        >>> TorchMLPClassifier(epochs=30, random_state=0).fit(X, y).score(X, y) > 0.9
        True
    """


class TorchMLPRegressor(RegressorMixin, RegressorHead, _TorchMLP):
    """PyTorch MLP regressor."""

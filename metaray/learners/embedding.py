"""Embedders scored the way an embedding is used: a fixed probe trained on the embedded subset predicts the
held-out rows from their embedding, and the embedding's reconstruction of those rows is measured."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from metaray.errors import FitError
from metaray.learners.nets import ACTIVATIONS, build_mlp, count_parameters, pick_device, torch_settings


class EmbeddingProbe(TransformerMixin, BaseEstimator):
    """``embedder`` fitted on the subset's features; ``probe`` fitted on the embedded subset and its targets.

    ``predict``/``predict_proba`` go through the embedding, so the classification or regression metrics
    score the probe; ``reconstruction_error`` scores the embedder alone.
    """

    def __init__(self, embedder=None, probe=None):
        self.embedder = embedder
        self.probe = probe

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=False, multi_output=True)
        self.embedder_ = clone(self.embedder)
        Z = self.embedder_.fit_transform(X)
        self.probe_ = clone(self.probe).fit(Z, y)
        if hasattr(self.probe_, "classes_"):
            self.classes_ = self.probe_.classes_
        self.n_components_ = Z.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "embedder_")
        return self.embedder_.transform(validate_data(self, X, reset=False))

    def predict(self, X):
        Z = self.transform(X)  # checks that the model is fitted before the probe is read
        return self.probe_.predict(Z)

    def predict_proba(self, X):
        Z = self.transform(X)
        return self.probe_.predict_proba(Z)

    def reconstruction_error(self, X) -> float:
        """Mean squared error of inverse_transform(transform(X)) against X, in the features' own units."""
        X = np.asarray(X, dtype=float)
        rec = np.asarray(self.embedder_.inverse_transform(self.transform(X)), dtype=float)
        return float(np.mean((X - rec) ** 2))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def default_probe(task: str):
    """The fixed probe: a standardised logistic regression (classification) or ridge (regression)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=2000) if task == "classification" else Ridge()
    return make_pipeline(StandardScaler(), model)


class TorchAutoencoder(TransformerMixin, BaseEstimator):
    """A PyTorch autoencoder as a scikit-learn transformer: ``transform`` encodes, ``inverse_transform`` decodes.

    Args:
        bottleneck: embedding width.
        depth: hidden layers on each side of the bottleneck, widths halving from ``width`` towards it.
        width, activation, dropout, lr, batch_size, epochs, weight_decay: the network and its training.
        random_state: seeds initialisation and batch order.
        n_threads: torch threads (metaray sets the CPUs a fit holds); device: "auto", "cpu" or "cuda".
    """

    _parameter_constraints: dict = {
        "bottleneck": [Interval(Integral, 1, None, closed="left")],
        "depth": [Interval(Integral, 0, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
    }

    def __init__(self, bottleneck=8, depth=1, width=64, activation="relu", dropout=0.0, lr=3e-3, weight_decay=0.0,
                 batch_size=64, epochs=100, random_state=None, n_threads=None, device="auto"):
        self.bottleneck = bottleneck
        self.depth = depth
        self.width = width
        self.activation = activation
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device

    def fit(self, X, y=None):
        self._validate_params()
        device = pick_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch_settings(self.n_threads, seed, device):
            return self._fit(X, device, seed)

    def _fit(self, X, device: str, seed: int):
        import torch

        X = validate_data(self, X, dtype=np.float32)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        gen = torch.Generator().manual_seed(seed)  # the batch order's own stream
        hidden = [max(self.bottleneck, int(self.width) // (2**i)) for i in range(int(self.depth))]
        self.encoder_ = build_mlp(X.shape[1], self.bottleneck, hidden, self.activation, self.dropout).to(device)
        self.decoder_ = build_mlp(self.bottleneck, X.shape[1], hidden[::-1], self.activation, self.dropout).to(device)
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        xt = torch.from_numpy((X - self.mean_) / self.scale_).to(device)
        n, bs = len(xt), int(self.batch_size)
        for epoch in range(int(self.epochs)):
            order = torch.randperm(n, generator=gen).to(device)
            for start in range(0, n, bs):
                batch = xt[order[start : start + bs]]
                opt.zero_grad()
                loss = torch.mean((self.decoder_(self.encoder_(batch)) - batch) ** 2)
                if not torch.isfinite(loss):
                    raise FitError(f"TorchAutoencoder: training loss became {loss.item()} at epoch {epoch + 1} "
                                   f"(lr={self.lr}); lower the learning rate")
                loss.backward()
                opt.step()
        # encode and decode in float64, so that a row's embedding does not depend on the batch it comes in
        self.encoder_ = self.encoder_.cpu().double().eval()
        self.decoder_ = self.decoder_.cpu().double().eval()
        self.n_parameters_ = count_parameters(self.encoder_) + count_parameters(self.decoder_)
        return self

    def transform(self, X):
        import torch

        check_is_fitted(self, "encoder_")
        dtype = _float_dtype(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with torch.no_grad(), torch_settings(self.n_threads):
            return self.encoder_(torch.from_numpy((X - self.mean_) / self.scale_)).numpy().astype(dtype, copy=False)

    def inverse_transform(self, Z):
        import torch

        check_is_fitted(self, "decoder_")
        dtype = _float_dtype(Z)
        with torch.no_grad(), torch_settings(self.n_threads):
            out = self.decoder_(torch.as_tensor(np.asarray(Z, dtype=np.float64))).numpy()
        return (out * self.scale_ + self.mean_).astype(dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]  # trained in float32, answers in the input's
        return tags


def _float_dtype(X):
    """The float type an output should have for input X: float32 for float32 input, else float64."""
    return np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64

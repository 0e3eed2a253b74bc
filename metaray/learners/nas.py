"""Architectures as a search space: a network built from flat, searchable parameters (the number of dense
layers and the width of each, convolutional blocks with channels and kernel sizes for image-shaped inputs,
activation, dropout, batch norm) and trained like the MLP learner (optimiser, learning rate, batch size,
epochs). Flat parameters let every Tune searcher sample an architecture."""

from __future__ import annotations

import math
from numbers import Integral

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval

from metaray.errors import FitError
from metaray.learners.nets import build_convnet, build_mlp
from metaray.learners.torch_mlp import ClassifierHead, RegressorHead, _TorchMLP

MAX_DENSE, MAX_CONV = 4, 3
_WIDTH = [Interval(Integral, 1, None, closed="left")]


class _Architecture(_TorchMLP):
    """``n_layers`` dense layers of widths ``width_1..width_n``, after ``conv_blocks`` convolutional blocks of
    ``channels_i`` maps with ``kernel_i`` kernels on inputs reshaped to ``image_shape`` (None: a square
    single-channel image when the feature count is a square, as digits' 8x8)."""

    _parameter_constraints: dict = {
        **_TorchMLP._parameter_constraints,
        "n_layers": [Interval(Integral, 0, MAX_DENSE, closed="both")],
        **{f"width_{i}": _WIDTH for i in range(1, MAX_DENSE + 1)},
        "conv_blocks": [Interval(Integral, 0, MAX_CONV, closed="both")],
        **{f"channels_{i}": _WIDTH for i in range(1, MAX_CONV + 1)},
        **{f"kernel_{i}": _WIDTH for i in range(1, MAX_CONV + 1)},
        "image_shape": ["array-like", None],
    }

    def __init__(self, n_layers=2, width_1=128, width_2=64, width_3=64, width_4=64, conv_blocks=0, channels_1=16,
                 channels_2=32, channels_3=64, kernel_1=3, kernel_2=3, kernel_3=3, image_shape=None,
                 activation="relu", dropout=0.0, batch_norm=False, optimizer="adam", lr=3e-3, weight_decay=0.0,
                 batch_size=64, epochs=60, standardize=True, random_state=None, n_threads=None, device="auto"):
        self.n_layers = n_layers
        self.width_1, self.width_2, self.width_3, self.width_4 = width_1, width_2, width_3, width_4
        self.conv_blocks = conv_blocks
        self.channels_1, self.channels_2, self.channels_3 = channels_1, channels_2, channels_3
        self.kernel_1, self.kernel_2, self.kernel_3 = kernel_1, kernel_2, kernel_3
        self.image_shape = image_shape
        super().__init__(hidden_layer_sizes=(), activation=activation, dropout=dropout, batch_norm=batch_norm,
                         optimizer=optimizer, lr=lr, weight_decay=weight_decay, batch_size=batch_size, epochs=epochs,
                         standardize=standardize, random_state=random_state, n_threads=n_threads, device=device)

    def _make_net(self, n_in: int, n_out: int):
        hidden = [getattr(self, f"width_{i}") for i in range(1, self.n_layers + 1)]
        if not self.conv_blocks:
            return build_mlp(n_in, n_out, hidden, self.activation, self.dropout, self.batch_norm)
        shape = tuple(self.image_shape) if self.image_shape is not None else None
        if shape is None:
            side = math.isqrt(n_in)
            if side * side != n_in:
                raise FitError(f"conv_blocks={self.conv_blocks} needs image-shaped inputs; {n_in} features are not "
                               "a square image, so set image_shape: [channels, height, width]")
            shape = (1, side, side)
        if len(shape) == 2:
            shape = (1, *shape)
        if math.prod(shape) != n_in:
            raise FitError(f"image_shape {list(shape)} holds {math.prod(shape)} values, not the {n_in} features")
        channels = [getattr(self, f"channels_{i}") for i in range(1, self.conv_blocks + 1)]
        kernels = [getattr(self, f"kernel_{i}") for i in range(1, self.conv_blocks + 1)]
        return build_convnet(shape, n_out, channels, kernels, hidden, self.activation, self.dropout, self.batch_norm)


class TorchNetClassifier(ClassifierMixin, ClassifierHead, _Architecture):
    """An architecture from the search space, as a classifier (cross-entropy)."""


class TorchNetRegressor(RegressorMixin, RegressorHead, _Architecture):
    """An architecture from the search space, as a regressor (mean squared error on standardised targets)."""

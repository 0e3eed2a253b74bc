"""PyTorch building blocks shared by the neural learners."""

from __future__ import annotations

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "gelu": "GELU", "elu": "ELU", "leaky_relu": "LeakyReLU",
               "sigmoid": "Sigmoid", "silu": "SiLU"}


def build_mlp(n_in: int, n_out: int, hidden, activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
    """A feed-forward network: [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden layer, then Linear."""
    from torch import nn

    layers, width = [], n_in
    for size in hidden:
        layers.append(nn.Linear(width, int(size)))
        if batch_norm:
            layers.append(nn.BatchNorm1d(int(size)))
        layers.append(getattr(nn, ACTIVATIONS[activation])())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())

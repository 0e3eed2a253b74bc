"""PyTorch building blocks shared by the neural learners."""

from __future__ import annotations

from contextlib import contextmanager

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


def pick_device(device: str = "auto") -> str:
    """"auto" is CUDA when this process was given a GPU (Ray sets CUDA_VISIBLE_DEVICES per task), else CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextmanager
def torch_settings(n_threads: int | None = None, seed: int | None = None, device: str = "cpu"):
    """Torch's intra-op threads and (given ``seed``) its global random state, seeded, for one fit or prediction; both
    put back afterwards, so that a learner leaves its caller's torch as it found it (as in a notebook)."""
    import torch

    before = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(int(n_threads))
    try:
        if seed is None:
            yield
            return
        # the generators the fit draws from: the CPU's (weights, dropout on CPU) and the current GPU's (dropout there)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == "cuda" else []):
            torch.default_generator.manual_seed(seed)
            if device == "cuda":
                torch.cuda.manual_seed(seed)
            yield
    finally:
        if n_threads:
            torch.set_num_threads(before)


def build_convnet(image_shape, n_out: int, channels, kernels, hidden, activation: str = "relu",
                  dropout: float = 0.0, batch_norm: bool = False):
    """Convolutional blocks [Conv2d -> (BatchNorm) -> activation -> MaxPool(2) while the image is >= 2 wide],
    then the dense layers of ``build_mlp`` on the flattened maps. Input rows are flat; they are reshaped here."""
    from torch import nn

    c, h, w = image_shape
    layers: list = [nn.Unflatten(1, (c, h, w))]
    for ch, k in zip(channels, kernels, strict=True):
        layers.append(nn.Conv2d(c, int(ch), int(k), padding=int(k) // 2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(ch)))
        layers.append(getattr(nn, ACTIVATIONS[activation])())
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = int(ch)
    layers.append(nn.Flatten())
    layers.append(build_mlp(c * h * w, n_out, hidden, activation, dropout, batch_norm))
    return nn.Sequential(*layers)


def layers(net) -> list[dict]:
    """The network's layers in order: ``{"layer": its repr, "parameters": its own trainable parameters}``."""
    from torch import nn

    return [{"layer": repr(module), "parameters": sum(p.numel() for p in module.parameters(recurse=False))}
            for module in net.modules() if not isinstance(module, nn.Sequential) and module is not net]


def describe(net) -> str:
    """A readable summary: one line per layer with its parameter count, then the total."""
    lines = [f"  {row['layer']}" + (f"  [{row['parameters']:,} parameters]" if row["parameters"] else "")
             for row in layers(net)]
    lines.append(f"  total: {count_parameters(net):,} parameters")
    return "\n".join(lines)

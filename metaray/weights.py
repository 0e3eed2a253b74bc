"""The best network's weights: ``best_weights.pt`` in the run folder, a PyTorch ``state_dict`` loadable without
metaray (``torch.load``), for a search whose best configuration is a network (metaray.learners' torch learners)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from metaray.callbacks import Callback
from metaray.errors import one_line
from metaray.learners import final_estimator


class WeightsCallback(Callback):
    """Saves the weights of the search's refitted best model when it is a network; ``path`` is the file written
    (None otherwise), for a callback that logs it (MLflow). One that cannot be saved is said in one line."""

    def __init__(self, say: Callable[[str], None] = lambda line: None):
        self.say = say
        self.path: Path | None = None

    def on_search_end(self, result) -> None:
        net = getattr(final_estimator(result.model), "net_", None) if result.model is not None else None
        if net is None:
            return
        try:
            import torch

            path = result.run_dir / "best_weights.pt"
            torch.save(net.state_dict(), path)
            self.path = path
        except Exception as exc:  # the search's results stand
            self.say(f"weights: best_weights.pt not saved ({one_line(exc)})")

"""The per-epoch and per-step records of a training run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["History"]


class History:
    """Per-epoch and per-step records of a run.

    ``history["val_loss"]`` is the list over epochs; ``history.steps`` holds
    one dict per mini-batch (loss, lr, batch size, wall time).
    """

    def __init__(self, metric_names: Sequence[str] = ()) -> None:
        self.epochs: list[dict[str, float]] = []
        self.steps: list[dict[str, float]] = []
        self.metric_names = list(metric_names)

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.epochs:
            seen.update(dict.fromkeys(e))
        return list(seen)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps, "metric_names": self.metric_names}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epochs = [dict(e) for e in state["epochs"]]
        self.steps = [dict(s) for s in state["steps"]]
        self.metric_names = list(state["metric_names"])

    def __repr__(self) -> str:
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps, keys={self.keys()})"

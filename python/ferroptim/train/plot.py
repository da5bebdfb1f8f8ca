"""A picture of a training run: loss, metric, learning rate and batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_history"]


def plot_history(history: Any, path: str | Path) -> Path:
    """Four panels in one PNG (matplotlib's Agg backend, no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("plotting needs matplotlib: pip install 'ferroptim[train]'") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [e["epoch"] for e in history.epochs]
    steps = [s["step"] for s in history.steps]
    metric = next(
        (k for k in history.metric_names if f"val_{k}" in history.keys() or k in history.keys()),
        None,
    )
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    ax = axes[0, 0]
    # Batch losses share the epoch axis: step k of an N-step epoch lands at k / N.
    per_epoch = max(1.0, len(steps) / max(1, len(epochs)))
    ax.plot(
        [s / per_epoch for s in steps],
        [s["loss"] for s in history.steps],
        lw=0.5,
        alpha=0.35,
        label="batch",
    )
    ax.plot(epochs, history["loss"], marker="o", ms=3, label="train")
    if "val_loss" in history.keys():
        ax.plot(epochs, history["val_loss"], marker="o", ms=3, label="validation")
    ax.set_title("loss")
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()
    ax = axes[0, 1]
    if metric is not None:
        if metric in history.keys():
            ax.plot(epochs, history[metric], marker="o", ms=3, label="train")
        if f"val_{metric}" in history.keys():
            ax.plot(epochs, history[f"val_{metric}"], marker="o", ms=3, label="validation")
        ax.legend()
    ax.set_title(metric or "no metric")
    ax.set_xlabel("epoch")
    ax = axes[1, 0]
    ax.plot(steps, [s["lr"] for s in history.steps])
    ax.set_title("learning rate")
    ax.set_xlabel("step")
    ax = axes[1, 1]
    ax.step(epochs, history["batch_size"], where="post")
    ax.set_title("batch size")
    ax.set_xlabel("epoch")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

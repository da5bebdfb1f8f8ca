"""A picture of a training run: loss, metric, learning rate and batch size."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["history_figure", "plot_history"]

# Per-epoch keys that are not a loss or a metric.
_NOT_METRICS = ("epoch", "loss", "lr", "batch_size", "time", "step")


def _records(history: Any) -> tuple[list[dict[str, float]], list[dict[str, float]], list[str]]:
    """(per-epoch dicts, per-step dicts, metric names) of a History or a dict of lists."""
    if isinstance(history, Mapping):
        lists = {}
        for key, values in history.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise TypeError(f"history[{key!r}]: expected a list of numbers, got {values!r}")
            try:
                lists[str(key)] = [float(v) for v in values]
            except (TypeError, ValueError):
                raise TypeError(f"history[{key!r}]: expected a list of numbers") from None
        if "loss" not in lists:
            raise ValueError(f"history: needs a 'loss' list, has {sorted(lists)}")
        n = len(lists["loss"])
        uneven = sorted(k for k, v in lists.items() if len(v) != n)
        if uneven:
            raise ValueError(f"history: {uneven} have not one value per epoch ({n} losses)")
        epochs = [{"epoch": float(i + 1), **{k: v[i] for k, v in lists.items()}} for i in range(n)]
        names = [k for k in lists if not k.startswith("val_") and k not in _NOT_METRICS]
        return epochs, [], names
    if not all(hasattr(history, a) for a in ("epochs", "steps", "metric_names")):
        raise TypeError(
            f"history: expected a History or a dict of lists, got {type(history).__name__}"
        )
    return list(history.epochs), list(history.steps), list(history.metric_names)


def _column(epochs: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    rows = [e for e in epochs if key in e]
    return [e["epoch"] for e in rows], [e[key] for e in rows]


def _best_epoch(epochs: list[dict[str, float]]) -> tuple[float, str] | None:
    """The epoch of the lowest validation loss (the one best.npz keeps), else of the lowest loss."""
    for key in ("val_loss", "loss"):
        xs, ys = _column(epochs, key)
        finite = [(y, x) for x, y in zip(xs, ys) if math.isfinite(y)]
        if finite:
            return min(finite)[1], key
    return None


def history_figure(history: Any, *, title: str | None = None) -> Any:
    """The figure :func:`plot_history` saves (a matplotlib ``Figure``).

    Parameters
    ----------
    history : History or dict of lists
        A :class:`~ferroptim.train.trainer.History`, or per-epoch lists such as
        Keras' ``history.history``: ``{"loss": [...], "val_loss": [...], ...}``.
    title : str, optional
        The figure's title (e.g. data set, model, optimizer, test accuracy).

    Returns
    -------
    matplotlib.figure.Figure
        Panels, all over epochs: loss (batch losses faint), the first metric,
        the learning rate, and the batch size only when it changes. A dotted
        line marks the best epoch (lowest validation loss).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("plotting needs matplotlib: pip install 'ferroptim[train]'") from err
    epochs, steps, metric_names = _records(history)
    keys = {k for e in epochs for k in e}
    metric = next((k for k in metric_names if f"val_{k}" in keys or k in keys), None)
    sizes = _column(epochs, "batch_size")[1]
    show_sizes = len(set(sizes)) > 1
    panels = ["loss", "metric", "lr"] + (["batch size"] if show_sizes else [])
    # Figure() rather than pyplot: no global state, nothing to close.
    fig = Figure(figsize=(11, 7) if show_sizes else (14, 4.3), constrained_layout=True)
    axes = fig.subplots(2, 2).ravel() if show_sizes else fig.subplots(1, 3)
    axis = dict(zip(panels, axes, strict=True))
    # Step k of an N-step epoch lands at epoch (k / N), so every panel shares the epoch axis.
    per_epoch = max(1.0, len(steps) / max(1, len(epochs)))

    ax = axis["loss"]
    if steps:
        ax.plot(
            [s["step"] / per_epoch for s in steps],
            [s["loss"] for s in steps],
            lw=0.5,
            alpha=0.3,
            color="C0",
            label="batch",
        )
    ax.plot(*_column(epochs, "loss"), marker="o", ms=3, color="C0", label="train")
    if "val_loss" in keys:
        ax.plot(*_column(epochs, "val_loss"), marker="o", ms=3, color="C1", label="validation")
    losses = [v for v in _column(epochs, "loss")[1] + _column(epochs, "val_loss")[1]]
    if losses and all(v > 0 and math.isfinite(v) for v in losses):
        ax.set_yscale("log")
    ax.set_title("loss")

    ax = axis["metric"]
    if metric is not None:
        if metric in keys:
            ax.plot(*_column(epochs, metric), marker="o", ms=3, color="C0", label="train")
        if f"val_{metric}" in keys:
            val = _column(epochs, f"val_{metric}")
            ax.plot(*val, marker="o", ms=3, color="C1", label="validation")
    ax.set_title(metric or "no metric")

    ax = axis["lr"]
    if steps:
        ax.plot([s["step"] / per_epoch for s in steps], [s["lr"] for s in steps], color="C2")
    elif "lr" in keys:
        ax.plot(*_column(epochs, "lr"), marker="o", ms=3, color="C2")
    ax.set_title("learning rate (per step)" if steps else "learning rate")

    if show_sizes:
        ax = axis["batch size"]
        ax.step(*_column(epochs, "batch_size"), where="post")
        ax.set_title("batch size")

    best = _best_epoch(epochs)
    for name, ax in axis.items():
        ax.set_xlabel("epoch")
        if best is not None:
            label = f"best epoch {best[0]:g} ({best[1]})"
            ax.axvline(best[0], color="0.4", ls=":", lw=1, label=label)
        if name in ("loss", "metric") and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_history(history: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Saves :func:`history_figure` as a PNG (matplotlib's Agg backend, no display needed).

    Parameters
    ----------
    history : History or dict of lists
        A :class:`~ferroptim.train.trainer.History`, or per-epoch lists such as
        ``{"loss": [...], "val_loss": [...], "accuracy": [...]}``.
    path : str or Path
        The PNG file; its folder is created when needed.
    title : str, optional
        The figure's title.

    Returns
    -------
    Path
        ``path``.
    """
    fig = history_figure(history, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

"""Callbacks: hooks the trainer calls around epochs and batches.

Each hook gets the trainer; ``logs`` holds the numbers of that batch or
epoch (``loss``, metrics, ``val_*``, ``lr``, ``batch_size``, ``time``). A
callback stops training by setting ``trainer.stop_training = True``. Stateful
callbacks implement ``state_dict`` / ``load_state_dict`` so a resumed run
continues exactly.
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "PlotHistory",
    "ProgressBar",
    "ReduceLROnPlateau",
    "ReduceLROnPlateauCallback",
    "TerminateOnNaN",
]


class Callback:
    def on_train_begin(self, trainer: Any) -> None: ...
    def on_epoch_begin(self, trainer: Any, epoch: int) -> None: ...
    def on_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: Any) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def _better(mode: str, min_delta: float):
    if mode == "min":
        return lambda value, best: value < best - min_delta
    return lambda value, best: value > best + min_delta


def _mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if any(k in monitor for k in ("acc", "r2")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by ``min_delta`` for ``patience``
    epochs; with ``restore_best`` the params of the best epoch are put back."""

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor
        self.mode = _mode(monitor, mode)
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_params: np.ndarray | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, not in {sorted(logs)}")
        value = logs[self.monitor]
        if _better(self.mode, self.min_delta)(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_params = trainer.get_params()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True

    def on_train_end(self, trainer: Any) -> None:
        if self.restore_best and self.stopped_epoch is not None and self.best_params is not None:
            trainer.set_params(self.best_params)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "best_params": self.best_params,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
        self.best_params = state["best_params"]


class ModelCheckpoint(Callback):
    """Writes ``last.npz`` after every epoch and ``best.npz`` when ``monitor``
    improves, into ``directory`` (atomically; see :mod:`.checkpoint`)."""

    def __init__(
        self,
        directory: str | Path,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best: bool = True,
        save_last: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = _mode(monitor, mode)
        self.save_best = save_best
        self.save_last = save_last
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best and self.monitor in logs:
            value = logs[self.monitor]
            if _better(self.mode, 0.0)(value, self.best):
                self.best = value
                trainer.save_checkpoint(self.directory / "best.npz")
        if self.save_last:
            trainer.save_checkpoint(self.directory / "last.npz")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class ReduceLROnPlateauCallback(Callback):
    """Feeds ``monitor`` to a :class:`ferroptim.schedules.ReduceLROnPlateau` each epoch.

    Parameters
    ----------
    monitor : str
        The logged value to watch, e.g. ``"val_loss"`` (its name sets the mode).
    **kwargs
        Passed to :class:`ferroptim.schedules.ReduceLROnPlateau` (factor, patience, ...).
    """

    def __init__(self, monitor: str = "val_loss", **kwargs: Any) -> None:
        self.monitor = monitor
        self.kwargs = kwargs
        self.scheduler: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        if self.scheduler is None:
            from ferroptim.schedules import ReduceLROnPlateau as Plateau

            self.kwargs.setdefault("mode", _mode(self.monitor, "auto"))
            self.scheduler = Plateau(trainer.optimizer, **self.kwargs)
            if getattr(self, "_pending", None) is not None:
                self.scheduler.load_state_dict(self._pending)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.scheduler.step(logs[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is None:
            self._pending = state
        else:
            self.scheduler.load_state_dict(state)


class ReduceLROnPlateau(ReduceLROnPlateauCallback):
    """Deprecated name of :class:`ReduceLROnPlateauCallback`.

    It clashed with the schedule :class:`ferroptim.schedules.ReduceLROnPlateau`
    (exported as ``ferroptim.ReduceLROnPlateau``); it still works, with a warning.
    """

    def __init__(self, monitor: str = "val_loss", **kwargs: Any) -> None:
        warnings.warn(
            "ferroptim.train.ReduceLROnPlateau is renamed ReduceLROnPlateauCallback "
            "(ferroptim.ReduceLROnPlateau is the schedule); the old name will go",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(monitor, **kwargs)


class CSVLogger(Callback):
    """Writes one row per epoch to a CSV file (header from the first epoch).

    When training begins the file is rewritten from the trainer's history (the
    epochs it has completed), then rows are appended: a run killed after
    writing a row but before its checkpoint, then resumed, gets no duplicate
    rows; a resumed run logging to a new folder gets the earlier rows too; a
    new run in an old folder starts a new file.

    Parameters
    ----------
    path : str or Path
        The CSV file; its folder is created when needed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, trainer: Any) -> None:
        done = int(getattr(trainer, "epoch", 0))
        history = getattr(getattr(trainer, "history", None), "epochs", [])
        rows = [{"epoch": i + 1, **e} for i, e in enumerate(history[:done])]
        if not rows and not self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Through a temporary file: a kill now leaves the old file or the new one.
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
        tmp.replace(self.path)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"epoch": epoch + 1, **logs}
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch loss is NaN or infinite."""

    def on_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None:
        if not math.isfinite(logs["loss"]):
            trainer.stop_training = True
            trainer.log(f"loss is {logs['loss']} at step {step}: stopping")


def _short(key: str) -> str:
    """Short metric names for one-line displays: ``val_accuracy`` -> ``val_acc``."""
    return key.replace("accuracy", "acc")


def _num(value: float) -> str:
    """Three decimals for values near 1 (accuracy, most losses), else 3 significant digits."""
    if value != value or value in (math.inf, -math.inf):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e3:
        return f"{value:.3f}"
    return f"{value:.2e}"


def format_logs(logs: dict[str, float], skip: tuple[str, ...] = ()) -> str:
    """``loss=0.123 acc=0.951 val_loss=0.130 val_acc=0.940``: the epoch's
    loss and metrics, short names, few digits (fits 80 columns with a bar)."""
    hidden = ("epoch", "step", "time", "batch_size", "lr", *skip)
    return " ".join(f"{_short(k)}={_num(v)}" for k, v in logs.items() if k not in hidden)


class ProgressBar(Callback):
    """Progress of a run on ``file`` (default ``sys.stderr``).

    In a terminal: tqdm bars, one over epochs showing the last epoch's loss and
    metrics (``loss=0.123 acc=0.951 val_loss=0.130 val_acc=0.940``, laid out
    to fit 80 columns), one over the batches of the current epoch. Elsewhere
    (a log file, a pipe, a batch job): one flushed line per epoch, as Keras
    prints with ``verbose=2``. Silent with ``verbose=0``.

    Parameters
    ----------
    verbose : int
        0: nothing; 1 or more: bars in a terminal, lines elsewhere.
    force : bool
        Draw the bars even when ``file`` is not a terminal.
    file : file-like, optional
        Where to write (``sys.stderr`` when None).
    ncols : int, optional
        Width of the bars (default: the terminal's width).
    """

    def __init__(
        self, verbose: int = 1, force: bool = False, file: Any = None, ncols: int | None = None
    ) -> None:
        self.verbose = verbose
        self.force = force
        self.file = file
        self.ncols = ncols
        self.epoch_bar: Any = None
        self.batch_bar: Any = None
        self._lines = False

    def _out(self) -> Any:
        return self.file or sys.stderr

    def _bars(self) -> bool:
        out = self._out()
        return self.force or (hasattr(out, "isatty") and out.isatty())

    def _bar_args(self) -> dict[str, Any]:
        if self.ncols is not None:
            return {"file": self.file, "ncols": self.ncols}
        return {"file": self.file, "dynamic_ncols": True}

    def on_train_begin(self, trainer: Any) -> None:
        self._lines = False
        if self.verbose <= 0:
            return
        if not self._bars():
            self._lines = True
            return
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        # No bar graphic on the epoch line: the room goes to the numbers.
        self.epoch_bar = tqdm(
            total=trainer.epochs,
            initial=trainer.epoch,
            unit="epoch",
            position=0,
            bar_format="epoch {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}",
            **self._bar_args(),
        )

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        if self.epoch_bar is None:
            return
        self.batch_bar = self._tqdm(
            total=trainer.batches_per_epoch(epoch),
            desc=f"epoch {epoch + 1}",
            unit="batch",
            position=1,
            leave=False,
            **self._bar_args(),
        )

    def on_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None:
        if self.batch_bar is not None:
            self.batch_bar.update(1)
            if step % 10 == 0:
                self.batch_bar.set_postfix_str(f"loss={_num(logs['loss'])}", refresh=False)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self._lines:
            line = f"epoch {epoch + 1}/{trainer.epochs} {logs.get('time', 0.0):.1f}s"
            line += f" {format_logs(logs)}"
            if "lr" in logs:
                line += f" lr={logs['lr']:.2e}"
            print(line, file=self._out(), flush=True)
            return
        if self.batch_bar is not None:
            self.batch_bar.close()
            self.batch_bar = None
        if self.epoch_bar is not None:
            self.epoch_bar.set_postfix_str(format_logs(logs), refresh=False)
            self.epoch_bar.update(1)

    def on_train_end(self, trainer: Any) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()
            self.batch_bar = None
        if self.epoch_bar is not None:
            self.epoch_bar.close()
            self.epoch_bar = None


class PlotHistory(Callback):
    """Writes the history as one PNG when training ends (see :func:`plot_history`).

    Parameters
    ----------
    path : str or Path
        The PNG file.
    title : str or callable, optional
        The figure's title, or a function ``trainer -> str`` called when
        training ends (e.g. to add the test accuracy).
    """

    def __init__(self, path: str | Path, title: Any = None) -> None:
        self.path = Path(path)
        self.title = title

    def on_train_end(self, trainer: Any) -> None:
        from ferroptim.train.plot import plot_history

        title = self.title(trainer) if callable(self.title) else self.title
        plot_history(trainer.history, self.path, title=title)

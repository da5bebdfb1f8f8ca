"""The training loop: mini-batches, callbacks, history and exact resume.

The model protocol (what :class:`Trainer` needs from a model):

- ``arena``: a :class:`ferroptim.ParamArena` holding every param;
- ``forward(X, train: bool) -> output`` (logits or predictions);
- ``backward(grad_output) -> None``: writes the grads of the last forward
  into ``arena.grads`` in place;
- optional ``get_rng_state() / set_rng_state(state)`` (dropout), and
  ``config()`` (a JSON dict, stored in checkpoints and compared on load).

Or wrap a plain function with :class:`FunctionModel`:
``loss_and_grads(params, X_batch, y_batch) -> (loss, grads)``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferroptim.arena import ParamArena
from ferroptim.train import _restore, checkpoint
from ferroptim.train.callbacks import Callback, ProgressBar
from ferroptim.train.data import batches
from ferroptim.train.history import History

__all__ = ["FunctionModel", "History", "Trainer"]


class FunctionModel:
    """Adapts ``loss_and_grads(params, X, y) -> (loss, grads)`` to the trainer.

    Parameters
    ----------
    params : dict of str to numpy.ndarray, or ParamArena
        The params by name. Training needs them in one arena, so a dict is
        copied into one (``self.arena``); the trainer then writes the trained
        values back into your arrays after every update, load and restore, so
        they keep training. Arrays it cannot write back to (not a writable
        NumPy array of the arena's dtype, or sharing memory with another)
        stay as they were, with a warning. Change params through
        ``model.arena.params`` or ``Trainer.set_params``: the next write-back
        overwrites edits made to your own arrays.
    loss_and_grads : callable
        ``loss_and_grads(params, X_batch, y_batch) -> (loss, grads)``;
        ``params`` holds views into the arena, ``grads`` is a dict by name.
    predict : callable, optional
        ``predict(params, X) -> output``: enables :meth:`Trainer.predict` and
        validation metrics.
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray] | ParamArena,
        loss_and_grads: Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], Any],
        predict: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._mirrors: dict[str, np.ndarray] = {}
        if isinstance(params, ParamArena):
            self.arena = params
        else:
            if not isinstance(params, Mapping):
                raise TypeError(
                    f"params must be a dict name -> array or a ParamArena, "
                    f"not {type(params).__name__}"
                )
            self.arena = ParamArena.from_arrays(params)
            copies = []
            for name, a in params.items():
                ok = (
                    type(a) is np.ndarray
                    and a.dtype == self.arena.dtype
                    and a.flags.writeable
                    and not any(np.may_share_memory(a, m) for m in self._mirrors.values())
                )
                if ok:
                    self._mirrors[name] = a
                else:
                    copies.append(name)
            if copies:
                warnings.warn(
                    f"FunctionModel: params {copies} are not writable {self.arena.dtype} NumPy "
                    "arrays of their own, so training updates a copy and leaves them as they "
                    "are; read the trained values from model.arena.params",
                    UserWarning,
                    stacklevel=2,
                )
        self.loss_and_grads_fn = loss_and_grads
        self.predict_fn = predict

    def write_back(self) -> None:
        """Copies the arena's params into the arrays the model was built from."""
        for name, a in self._mirrors.items():
            a[...] = self.arena.params[name]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.loss_and_grads_fn(self.arena.params, X, y)
        for name, g in grads.items():
            self.arena.grads[name][...] = g
        return float(loss)

    def forward(self, X: np.ndarray, train: bool = False) -> np.ndarray:
        if self.predict_fn is None:
            raise ValueError("this FunctionModel has no predict function")
        return self.predict_fn(self.arena.params, X)

    def config(self) -> dict[str, Any]:
        return {"kind": "function", "shapes": {n: list(s) for n, s in self.arena.shapes.items()}}


class Trainer:
    """Fits a model with a ferroptim optimizer on NumPy arrays.

    ``optimizer`` must be built on ``model.arena`` (``fo.AdamW(model.arena)``,
    or groups of ``model.arena.select(...)``), so a step is one kernel pass.
    ``batch_size`` is an int or a function ``epoch -> int`` (a batch-size
    schedule). ``scheduler`` (anything with ``step()``) advances after every
    real optimizer update (``scheduler_interval="step"``) or every epoch;
    with gradient accumulation, micro-batches do not count. When the
    optimizer keeps averaged weights, evaluation and prediction use them.
    ``loss_scaler`` (a :class:`ferroptim.LossScaler` or
    :class:`ferroptim.DynamicLossScaler`; float16 training) scales the loss's
    grad before the backward pass and steps through it: the grads are unscaled
    inside the optimizer's fused step and a step whose grads overflowed is
    skipped. Losses of float16 (and bfloat16) outputs are computed in float32.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss: Any = "cross_entropy",
        *,
        metrics: Sequence[Any] = (),
        scheduler: Any = None,
        scheduler_interval: str = "step",
        batch_size: int | Callable[[int], int] = 32,
        callbacks: Sequence[Callback] = (),
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        verbose: int = 1,
        config: Mapping[str, Any] | None = None,
        loss_scaler: Any = None,
    ) -> None:
        from ferroptim.amp import LossScaler
        from ferroptim.train.losses import get_loss
        from ferroptim.train.metrics import get_metric

        if not hasattr(model, "arena"):
            raise TypeError("model must have an 'arena' (a ParamArena); see ferroptim.train")
        if getattr(optimizer, "arena", None) is not model.arena:
            raise ValueError(
                "optimizer must be built on model.arena, e.g. ferroptim.AdamW(model.arena)"
            )
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(
                f"scheduler_interval must be 'step' or 'epoch', not {scheduler_interval!r}"
            )
        if isinstance(batch_size, int) and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if loss_scaler is not None and not isinstance(loss_scaler, LossScaler):
            raise TypeError(f"loss_scaler: must be a ferroptim.LossScaler, got {loss_scaler!r}")
        if loss_scaler is not None and isinstance(model, FunctionModel):
            raise ValueError("loss_scaler: needs a model with forward and backward")
        self.loss_scaler = loss_scaler
        self.model = model
        self.optimizer = optimizer
        if _is_torch_loss(loss):
            from ferroptim.train.torch_model import TorchLoss

            loss = TorchLoss(loss)  # torch.nn.CrossEntropyLoss() etc. work as given
        self.loss_name = loss if isinstance(loss, str) else type(loss).__name__
        self.loss_fn = get_loss(loss) if isinstance(loss, str) else loss
        self.metrics: dict[str, Callable] = {}
        for m in metrics:
            name = m if isinstance(m, str) else getattr(m, "__name__", type(m).__name__)
            self.metrics[name] = get_metric(m) if isinstance(m, str) else m
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.verbose = verbose
        self.callbacks = list(callbacks)
        if verbose and not any(isinstance(c, ProgressBar) for c in self.callbacks):
            self.callbacks.append(ProgressBar(verbose))
        self.config = dict(config or {})
        self.history = History(list(self.metrics))
        self.epoch = 0  # completed epochs
        self.step = 0  # mini-batches seen
        self.epochs = 0
        self.stop_training = False
        self._n_train = 0
        # Wall time split for profiling: model compute vs. optimizer step.
        self.timing = {"forward_backward": 0.0, "optimizer": 0.0, "total": 0.0}

    # -- helpers ----------------------------------------------------------

    def log(self, message: str) -> None:
        if self.verbose:
            print(message)

    def batch_size_at(self, epoch: int) -> int:
        size = self.batch_size(epoch) if callable(self.batch_size) else self.batch_size
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"batch size at epoch {epoch} must be an int >= 1, got {size!r}")
        return int(size)

    def batches_per_epoch(self, epoch: int) -> int:
        size = self.batch_size_at(epoch)
        return self._n_train // size if self.drop_last else math.ceil(self._n_train / size)

    def _stateful_callbacks(self) -> list[Callback]:
        """Callbacks whose state a checkpoint keeps (progress bars have none)."""
        return [cb for cb in self.callbacks if not isinstance(cb, ProgressBar)]

    def get_params(self) -> np.ndarray:
        return self.model.arena.data.copy()

    def set_params(self, values: np.ndarray) -> None:
        self.model.arena.data[...] = values
        self._write_back()

    def _write_back(self) -> None:
        """Keeps a FunctionModel's user arrays equal to the trained params."""
        if isinstance(self.model, FunctionModel):
            self.model.write_back()

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _averaged(self):
        import contextlib

        if getattr(self.optimizer, "_averaging", False):
            return self.optimizer.averaged_params()
        return contextlib.nullcontext()

    # -- training ---------------------------------------------------------

    def _train_batch(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray | None]:
        t0 = time.perf_counter()
        if isinstance(self.model, FunctionModel):
            loss = self.model.loss_and_grads(X, y)
            out = self.model.forward(X) if self.model.predict_fn and self.metrics else None
        else:
            out = self.model.forward(X, train=True)
            loss, grad_out = self.loss_fn(_wide(out), y)
            if self.loss_scaler is None:
                self.model.backward(grad_out)
            else:  # scaled grads may overflow: the scaler skips that step, no warning
                grad_out = grad_out * grad_out.dtype.type(self.loss_scaler.get_scale())
                with np.errstate(over="ignore", invalid="ignore"):
                    self.model.backward(grad_out)
        t1 = time.perf_counter()
        scaler = self.loss_scaler
        updated = self.optimizer.step() if scaler is None else scaler.step(self.optimizer)
        t2 = time.perf_counter()
        self.timing["forward_backward"] += t1 - t0
        self.timing["optimizer"] += t2 - t1
        if updated:
            self._write_back()
        if updated and self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        return float(loss), out

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        epochs: int = 10,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        initial_epoch: int | None = None,
    ) -> History:
        """Trains for ``epochs`` more epochs (or until a callback stops it).

        A second call continues where the first ended: ``fit(X, y, epochs=3)``
        twice trains 6 epochs. To train *up to* an epoch instead, as Keras
        does, give ``initial_epoch``: ``fit(X, y, epochs=10,
        initial_epoch=trainer.epoch)`` after :meth:`load_checkpoint` finishes
        a 10-epoch run however far it got.

        Parameters
        ----------
        X : numpy.ndarray
            Training inputs, one row per sample.
        y : numpy.ndarray
            Training targets, as many rows as ``X``.
        epochs : int
            Epochs to train in this call; with ``initial_epoch``, the epoch to stop at.
        validation_data : tuple of numpy.ndarray, optional
            ``(X_val, y_val)``, evaluated after every epoch (``val_*`` in the logs).
        initial_epoch : int, optional
            Completed epochs to count from (sets :attr:`epoch`; Keras' meaning).

        Returns
        -------
        History
            The history of the whole run, this call's epochs appended.
        """
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows, y has {len(y)}")
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if value is None and name == "initial_epoch":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if initial_epoch is None:
            epochs = self.epoch + int(epochs)
        else:
            self.epoch = int(initial_epoch)
        self.epochs = int(epochs)
        self._n_train = len(X)
        self.stop_training = False
        start_total = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.epoch < epochs and not self.stop_training:
            epoch = self.epoch
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
            t_epoch = time.perf_counter()
            size = self.batch_size_at(epoch)
            total_loss, seen = 0.0, 0
            metric_sums = dict.fromkeys(self.metrics, 0.0)
            for idx in batches(
                len(X),
                size,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                drop_last=self.drop_last,
            ):
                Xb, yb = X[idx], y[idx]
                lr = self._lr()  # the lr this step uses
                loss, out = self._train_batch(Xb, yb)
                n = len(idx)
                total_loss += loss * n
                seen += n
                if out is not None:
                    for name, fn in self.metrics.items():
                        metric_sums[name] += float(fn(out, yb)) * n
                self.step += 1
                logs = {
                    "step": self.step,
                    "loss": loss,
                    "lr": lr,
                    "batch_size": n,
                    "time": time.perf_counter() - start_total,
                }
                self.history.steps.append(logs)
                for cb in self.callbacks:
                    cb.on_batch_end(self, self.step, logs)
                if self.stop_training:
                    break
            logs = {"epoch": epoch + 1, "loss": total_loss / max(seen, 1)}
            if not isinstance(self.model, FunctionModel) or self.model.predict_fn:
                for name in self.metrics:
                    logs[name] = metric_sums[name] / max(seen, 1)
            if validation_data is not None:
                val = self.evaluate(*validation_data)
                logs.update({f"val_{k}": v for k, v in val.items()})
            logs["lr"] = self._lr()
            logs["batch_size"] = size
            logs["time"] = time.perf_counter() - t_epoch
            self.history.epochs.append(logs)
            self.epoch += 1
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, logs)
        for cb in self.callbacks:
            cb.on_train_end(self)
        self.timing["total"] += time.perf_counter() - start_total
        return self.history

    # -- evaluation -------------------------------------------------------

    def predict(self, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Model outputs (eval mode, averaged weights when the optimizer keeps them)."""
        with self._averaged():
            outs = [
                self.model.forward(X[i : i + batch_size], train=False)
                for i in range(0, len(X), batch_size)
            ]
        return np.concatenate(outs) if outs else np.empty((0,))

    def evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> dict[str, float]:
        """Loss and metrics on ``(X, y)``."""
        if isinstance(self.model, FunctionModel) and self.model.predict_fn is None:
            with self._averaged():
                loss, _ = self.model.loss_and_grads_fn(self.model.arena.params, X, y)
            return {"loss": float(loss)}
        out = self.predict(X, batch_size)
        result = {"loss": float(self.loss_fn(_wide(out), y)[0])}
        for name, fn in self.metrics.items():
            result[name] = float(fn(out, y))
        return result

    # -- checkpoints ------------------------------------------------------

    def _layout(self) -> dict[str, list[int]]:
        return {n: list(s) for n, s in self.model.arena.shapes.items()}

    def state_dict(self) -> dict[str, Any]:
        model_config = self.model.config() if hasattr(self.model, "config") else {}
        return {
            "config": {**self.config, "model": model_config},
            "layout": self._layout(),
            "dtype": str(self.model.arena.dtype),
            "optimizer_class": type(self.optimizer).__name__,
            "epoch": self.epoch,
            "step": self.step,
            "params": self.model.arena.data.copy(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_updates": self.optimizer.num_updates,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "loss_scaler": None if self.loss_scaler is None else self.loss_scaler.state_dict(),
            "model_rng": (
                self.model.get_rng_state() if hasattr(self.model, "get_rng_state") else None
            ),
            "callbacks": [cb.state_dict() for cb in self._stateful_callbacks()],
            "history": self.history.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a run from :meth:`state_dict`, all or nothing.

        Every part is checked (layout, dtype, optimizer class, params, history,
        counters, scheduler, RNG and callback states) and a failure raises
        :class:`CheckpointError` with the trainer, model and optimizer exactly
        as they were.

        Parameters
        ----------
        state : dict
            A state from :meth:`state_dict` (or ``checkpoint.load``).
        """
        checked = _restore.check(self, state)
        _restore.apply(self, state, checked)
        self._write_back()

    def save_checkpoint(self, path: str | Path) -> Path:
        """Writes :meth:`state_dict` to ``path`` atomically (see :mod:`.checkpoint`)."""
        return checkpoint.save(path, self.state_dict())

    def load_checkpoint(self, path: str | Path) -> None:
        """Restores a run saved by :meth:`save_checkpoint`; all or nothing.

        Raises :class:`CheckpointError` for a missing, corrupt or mismatched file.
        """
        self.load_state_dict(checkpoint.load(path))


def _wide(out: Any) -> Any:
    """Outputs narrower than float32 (float16, bfloat16), widened for the loss."""
    dtype = getattr(out, "dtype", None)
    if isinstance(out, np.ndarray) and dtype is not None and dtype.itemsize < 4:
        return out.astype(np.float32)
    return out


def _is_torch_loss(loss: Any) -> bool:
    """A torch module or function (``torch.nn.MSELoss()``, ``F.cross_entropy``),
    told by its module name so torch is never imported here."""
    module = getattr(loss, "__module__", None) or type(loss).__module__
    if isinstance(loss, str) or not callable(loss):
        return False
    return module.split(".")[0] == "torch" or type(loss).__module__.split(".")[0] == "torch"

"""Seeded data, trainers and recording callbacks shared by the test_trainer*.py modules."""

from __future__ import annotations

import numpy as np

import ferroptim as fo
from ferroptim.train import Callback, Trainer
from ferroptim.train.models import logistic_regression


def blobs(n: int = 120, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 4-D: (X, integer labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [-2.0, 2.0, 0, 0], [-2.0, -2.0, 0, 0]])
    X = centers[y] + 0.5 * rng.standard_normal((n, 4))
    return X.astype(dtype), y.astype(np.int64)


def logistic_trainer(**kwargs) -> Trainer:
    dtype = kwargs.pop("dtype", np.float32)
    model = logistic_regression(4, 3, seed=0, dtype=dtype)
    opt_kwargs = kwargs.pop("opt_kwargs", {})
    opt = kwargs.pop("optimizer", None) or fo.Adam(model.arena, lr=0.05, **opt_kwargs)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("batch_size", 16)
    return Trainer(model, opt, metrics=kwargs.pop("metrics", ["accuracy"]), **kwargs)


class Recorder(Callback):
    """Keeps a copy of the params after every batch and every epoch."""

    def __init__(self) -> None:
        self.start: np.ndarray | None = None
        self.after_batch: list[np.ndarray] = []
        self.after_epoch: list[np.ndarray] = []
        self.grad_norms: list[float | None] = []

    def on_train_begin(self, trainer) -> None:
        if self.start is None:
            self.start = trainer.get_params()

    def on_batch_end(self, trainer, step, logs) -> None:
        self.after_batch.append(trainer.get_params())
        self.grad_norms.append(trainer.optimizer.last_grad_norm)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self.after_epoch.append(trainer.get_params())

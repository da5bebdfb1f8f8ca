"""A small CNN on scikit-learn's 8x8 digits: torch model, ferroptim optimizer.

torch does the forward and backward passes; ferroptim's AdamW takes the step
over one flat arena that *is* the network's params (no copies per step),
driven by :class:`ferroptim.train.Trainer` with a cosine schedule.

    python examples/cnn_digits.py            # the full run (results: docs/examples.md)
    python examples/cnn_digits.py --quick    # a few epochs, for the tests

The other examples reuse :func:`load_digits_images` and :class:`DigitsCNN`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

import ferroptim as fo
from ferroptim.train import TorchLoss, TorchModel, Trainer


class DigitsCNN(torch.nn.Module):
    """Two conv + pool blocks (8x8 -> 4x4 -> 2x2) and a dense head.

    ``features.*`` is the conv base, ``head.*`` the classifier (for freezing
    and layer-wise lrs by name).
    """

    def __init__(self, n_classes: int = 10, width: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width * 2 * 2, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_digits_images(seed: int = 0, test_size: float = 0.25) -> dict[str, np.ndarray]:
    """The digits as ``(N, 1, 8, 8)`` float32 images in [0, 1], split into a
    stratified train / test pair (``X_train, y_train, X_test, y_test``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    return {"X_train": X_tr, "y_train": y_tr, "X_test": X_te, "y_test": y_te}


def split_validation(
    X: np.ndarray, y: np.ndarray, fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified validation slice of the training set (the test set stays unseen)."""
    from sklearn.model_selection import train_test_split

    X_tr, X_val, y_tr, y_val = train_test_split(
        X, y, test_size=fraction, stratify=y, random_state=seed
    )
    return X_tr, y_tr, X_val, y_val


def train_cnn(
    data: dict[str, np.ndarray],
    *,
    epochs: int,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 32,
    seed: int = 0,
    callbacks: Any = (),
    validation: bool = True,
) -> tuple[Trainer, dict[str, float]]:
    """Trains a fresh :class:`DigitsCNN`; returns the trainer and its test metrics."""
    torch.manual_seed(seed)
    model = TorchModel(DigitsCNN())
    # Biases take no weight decay (fo.exclude_from_weight_decay: "*bias").
    groups = fo.exclude_from_weight_decay(model.arena)
    opt = fo.AdamW(groups, lr=lr, weight_decay=weight_decay)
    n_train = len(data["X_train"])
    if validation:
        X_tr, y_tr, X_val, y_val = split_validation(data["X_train"], data["y_train"], seed=seed)
        n_train = len(X_tr)
    steps = epochs * -(-n_train // batch_size)
    sched = fo.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    trainer = Trainer(
        model,
        opt,
        loss=TorchLoss(torch.nn.CrossEntropyLoss()),
        metrics=["accuracy"],
        scheduler=sched,
        batch_size=batch_size,
        callbacks=list(callbacks),
        seed=seed,
        verbose=0,
    )
    if validation:
        trainer.fit(X_tr, y_tr, epochs=epochs, validation_data=(X_val, y_val))
    else:
        trainer.fit(data["X_train"], data["y_train"], epochs=epochs)
    return trainer, trainer.evaluate(data["X_test"], data["y_test"])


def main(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Trains the CNN; returns the test accuracy and timings."""
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    data = load_digits_images(seed)
    epochs = 3 if quick else 30
    t0 = time.perf_counter()
    trainer, test = train_cnn(data, epochs=epochs, seed=seed)
    wall = time.perf_counter() - t0
    return {
        "example": "cnn_digits",
        "epochs": epochs,
        "params": trainer.model.arena.size,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": trainer.history["val_accuracy"][-1],
        "seconds": round(wall, 1),
        "optimizer_seconds": round(trainer.timing["optimizer"], 2),
        "forward_backward_seconds": round(trainer.timing["forward_backward"], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs (for the tests)")
    parser.add_argument("--seed", type=int, default=0, help="data split and init seed")
    args = parser.parse_args()
    print(json.dumps(main(args.quick, args.seed), indent=2))

"""An LSTM classifier on the 8x8 digits, read row by row (8 steps of 8 pixels).

A two-layer ``torch.nn.LSTM``; the last step's hidden state feeds a linear
head. torch does forward and backward, ferroptim's AdamW (with gradient
clipping in the same pass) takes the step through the Trainer.

    python examples/lstm_digits.py            # the full run (results: docs/examples.md)
    python examples/lstm_digits.py --quick    # a few epochs, for the tests
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import ferroptim as fo
from ferroptim.train import TorchLoss, TorchModel, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnn_digits import load_digits_images, split_validation  # noqa: E402


class DigitsLSTM(torch.nn.Module):
    """``(N, 8, 8)`` rows -> 2-layer LSTM -> last hidden state -> logits."""

    def __init__(self, hidden: int = 64, layers: int = 2, n_classes: int = 10) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.reshape(x.shape[0], 8, 8))  # one image row per step
        return self.head(out[:, -1])


def main(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Trains the LSTM; returns the test accuracy and timings."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = load_digits_images(seed)
    X_tr, y_tr, X_val, y_val = split_validation(data["X_train"], data["y_train"], seed=seed)
    epochs = 4 if quick else 40
    batch_size = 32
    model = TorchModel(DigitsLSTM())
    opt = fo.AdamW(model.arena, lr=5e-3, weight_decay=1e-4, max_grad_norm=1.0)
    steps = epochs * -(-len(X_tr) // batch_size)
    sched = fo.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    trainer = Trainer(
        model,
        opt,
        loss=TorchLoss(torch.nn.CrossEntropyLoss()),
        metrics=["accuracy"],
        scheduler=sched,
        batch_size=batch_size,
        seed=seed,
        verbose=0,
    )
    t0 = time.perf_counter()
    trainer.fit(X_tr, y_tr, epochs=epochs, validation_data=(X_val, y_val))
    wall = time.perf_counter() - t0
    test = trainer.evaluate(data["X_test"], data["y_test"])
    return {
        "example": "lstm_digits",
        "epochs": epochs,
        "params": model.arena.size,
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

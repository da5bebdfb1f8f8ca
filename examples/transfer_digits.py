"""Transfer learning on the digits: pretrain on 0-4, fine-tune on 5-9 from a few labels.

1. Pretrain the CNN of ``cnn_digits.py`` on the digits 0-4 (all their training images).
2. Fine-tune on 5-9 from ``per_class`` labelled images per class: a new head,
   first with the conv base frozen (``opt.freeze``), then unfrozen with
   layer-wise lrs (``fo.layerwise_lr_groups``: each conv block a smaller lr
   than the block above it). Also reported: the accuracy after the frozen
   phase alone, and the same recipe transferring the first conv block only
   (the second one new), since deeper layers are the more task-specific.
3. Against the same CNN trained from scratch on the same few images, for as
   many epochs.

Both are scored on every test image of 5-9, averaged over seeds (each seed
draws its own split, labelled subset and initialisation).

    python examples/transfer_digits.py            # 3 seeds (results: docs/examples.md)
    python examples/transfer_digits.py --quick    # 1 seed, fewer epochs, for the tests
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ferroptim as fo
from ferroptim.train import TorchLoss, TorchModel, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnn_digits import DigitsCNN, load_digits_images  # noqa: E402

# The CNN's two conv blocks (their conv layers), from the input side.
CONV_BLOCKS = ("features.0", "features.3")


def _trainer(model: TorchModel, opt: Any, seed: int, batch_size: int = 16) -> Trainer:
    return Trainer(
        model,
        opt,
        loss=TorchLoss(torch.nn.CrossEntropyLoss()),
        metrics=["accuracy"],
        batch_size=batch_size,
        seed=seed,
        verbose=0,
    )


def pretrain(X: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> DigitsCNN:
    """The CNN trained on the source task (digits 0-4)."""
    torch.manual_seed(seed)
    model = TorchModel(DigitsCNN(n_classes=5))
    opt = fo.AdamW(model.arena, lr=3e-3, weight_decay=1e-2)
    _trainer(model, opt, seed, batch_size=32).fit(X, y, epochs=epochs)
    return model.module


def fine_tune(
    base: DigitsCNN,
    X: np.ndarray,
    y: np.ndarray,
    epochs: tuple[int, int],
    seed: int,
    after_frozen: Any = None,
    blocks: int = 2,
) -> Trainer:
    """A new network taking ``base``'s first ``blocks`` conv blocks (2: the
    whole conv base; 1: the first block only, the second one new).

    Phase 1 trains the new layers (lr 3e-3) with the transferred blocks
    frozen (``opt.freeze``); phase 2 unfreezes them and trains everything
    with layer-wise lrs: head 1e-3, the conv block below 3e-4, the first
    9e-5. ``after_frozen(trainer)`` is called between the two phases.
    """
    torch.manual_seed(seed)
    net = DigitsCNN(n_classes=5)
    for block in CONV_BLOCKS[:blocks]:
        net.get_submodule(block).load_state_dict(base.get_submodule(block).state_dict())
    model = TorchModel(net)
    layers = [model.arena.select(f"{name}.*") for name in (*CONV_BLOCKS, "head")]
    groups = fo.layerwise_lr_groups(layers, lr=1e-3, decay=0.3, weight_decay=1e-2)
    opt = fo.AdamW(groups)
    final_lrs = [g["lr"] for g in opt.param_groups]
    trainer = _trainer(model, opt, seed)
    # Phase 1: the transferred blocks frozen, the new layers at a higher lr.
    for i in range(len(layers)):
        if i < blocks:
            opt.freeze(group=i)
        else:
            opt.param_groups[i]["lr"] = 3e-3
    trainer.fit(X, y, epochs=epochs[0])
    if after_frozen is not None:
        after_frozen(trainer)
    # Phase 2: everything trains, the lower layers slower.
    for i, lr in enumerate(final_lrs):
        if i < blocks:
            opt.unfreeze(group=i)
        opt.param_groups[i]["lr"] = lr
    trainer.fit(X, y, epochs=epochs[1])
    return trainer


def from_scratch(X: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Trainer:
    """The same CNN, randomly initialised, trained on the same few images."""
    torch.manual_seed(seed)
    model = TorchModel(DigitsCNN(n_classes=5))
    opt = fo.AdamW(model.arena, lr=3e-3, weight_decay=1e-2)
    trainer = _trainer(model, opt, seed)
    trainer.fit(X, y, epochs=epochs)
    return trainer


def few_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` random samples of each class in ``y``."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def run_seed(seed: int, per_class: int, quick: bool) -> dict[str, float]:
    data = load_digits_images(seed)
    Xtr, ytr, Xte, yte = data["X_train"], data["y_train"], data["X_test"], data["y_test"]
    src = ytr < 5
    base = pretrain(Xtr[src], ytr[src], epochs=3 if quick else 15, seed=seed)
    tgt, tgt_test = ytr >= 5, yte >= 5
    X5, y5 = Xtr[tgt], ytr[tgt] - 5
    subset = few_labels(y5, per_class, seed)
    Xs, ys = X5[subset], y5[subset]
    phases = (10, 10) if quick else (30, 30)
    Xt, yt = Xte[tgt_test], yte[tgt_test] - 5
    frozen: list[float] = []
    tuned = fine_tune(
        base, Xs, ys, phases, seed, lambda t: frozen.append(t.evaluate(Xt, yt)["accuracy"])
    )
    first_block = fine_tune(base, Xs, ys, phases, seed, blocks=1)
    scratch = from_scratch(Xs, ys, sum(phases), seed)
    return {
        "fine_tuned": tuned.evaluate(Xt, yt)["accuracy"],
        "frozen_base_only": frozen[0],
        "fine_tuned_first_block": first_block.evaluate(Xt, yt)["accuracy"],
        "from_scratch": scratch.evaluate(Xt, yt)["accuracy"],
    }


def main(quick: bool = False, seeds: int = 3, per_class: int = 10) -> dict[str, Any]:
    """Fine-tuned vs. from-scratch test accuracy on 5-9, per seed and mean."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [run_seed(s, per_class, quick) for s in range(1 if quick else seeds)]
    result: dict[str, Any] = {
        "example": "transfer_digits",
        "labelled_per_class": per_class,
        "seeds": len(runs),
        "per_seed": runs,
    }
    for key in ("fine_tuned", "frozen_base_only", "fine_tuned_first_block", "from_scratch"):
        values = [r[key] for r in runs]
        result[f"{key}_mean"] = float(np.mean(values))
        result[f"{key}_std"] = float(np.std(values))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, fewer epochs (for the tests)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds to average over")
    parser.add_argument("--per-class", type=int, default=10, help="labelled images per class")
    args = parser.parse_args()
    print(json.dumps(main(args.quick, args.seeds, args.per_class), indent=2))

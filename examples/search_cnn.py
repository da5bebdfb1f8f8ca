"""Random, grid and Bayesian (TPE) search over the digits CNN's lr, weight decay
and batch size.

``ferroptim tune`` builds its models from ``ferroptim train`` flags, so it
cannot train a custom torch module by itself; this example uses its Python
API for the parts that do not depend on the model (the search space
:func:`ferroptim.tune.load_space`, :func:`ferroptim.tune.suggest`, the samplers
of :func:`ferroptim.tune.make_sampler` and the pruner of
:func:`ferroptim.tune.make_pruner`) and writes the objective itself with
Optuna around the Trainer: each trial trains the CNN of ``cnn_digits.py``,
reports its validation loss every epoch (the median pruner stops poor
trials) and scores its best one. The best configuration of each sampler is
then retrained and scored once on the test set.

    python examples/search_cnn.py            # the full run (results: docs/examples.md)
    python examples/search_cnn.py --quick    # 2 trials per sampler, for the tests
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from ferroptim.train import Callback
from ferroptim.tune import TuneConfig, load_space, make_pruner, make_sampler, suggest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnn_digits import load_digits_images, train_cnn  # noqa: E402

SPACE = {
    "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True, "grid": [1e-3, 3e-3, 1e-2]},
    "weight_decay": {
        "type": "float",
        "low": 1e-5,
        "high": 1e-1,
        "log": True,
        "grid": [1e-4, 1e-2],
    },
    "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
}


class _Report(Callback):
    """Feeds each epoch's validation loss to Optuna; stops pruned trials."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.best = math.inf

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        value = logs["val_loss"]
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"val_loss is {value}")
        self.best = min(self.best, value)
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")


def search(sampler: str, trials: int, epochs: int, seed: int = 0) -> optuna.Study:
    """One in-memory study of ``trials`` trials with the named ``ferroptim tune``
    sampler; a trial's score is its best validation loss (the test set is unseen)."""
    specs = load_space(SPACE)
    cfg = TuneConfig(sampler=sampler, trials=trials, epochs=epochs, seed=seed, metric="val_loss")
    data = load_digits_images(seed)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, specs)
        report = _Report(trial)
        # train_cnn validates on a slice of the training set; its test
        # metrics are not looked at here.
        trainer, _ = train_cnn(data, epochs=epochs, seed=seed, callbacks=[report], **params)
        trial.set_user_attr("val_accuracy", max(trainer.history["val_accuracy"]))
        return report.best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction=cfg.direction, sampler=make_sampler(cfg, specs), pruner=make_pruner(cfg)
    )
    study.optimize(objective, n_trials=trials)
    return study


def main(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Runs the three searches, retrains each best configuration, scores it on test."""
    torch.set_num_threads(1)
    epochs = 2 if quick else 8
    plan = {"random": 2, "grid": 2, "tpe": 2} if quick else {"random": 12, "grid": 18, "tpe": 20}
    data = load_digits_images(seed)
    result: dict[str, Any] = {"example": "search_cnn", "epochs_per_trial": epochs, "samplers": {}}
    t0 = time.perf_counter()
    for sampler, trials in plan.items():
        t1 = time.perf_counter()
        study = search(sampler, trials, epochs, seed)
        states = [t.state.name for t in study.trials]
        best = study.best_trial
        _, test = train_cnn(data, epochs=epochs, seed=seed, **best.params)
        result["samplers"][sampler] = {
            "trials": len(study.trials),
            "pruned": states.count("PRUNED"),
            "best_params": best.params,
            "best_val_loss": best.value,
            "best_val_accuracy": best.user_attrs["val_accuracy"],
            "test_accuracy_of_best": test["accuracy"],
            "seconds": round(time.perf_counter() - t1, 1),
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 trials per sampler (for the tests)")
    parser.add_argument("--seed", type=int, default=0, help="data split, init and sampler seed")
    args = parser.parse_args()
    print(json.dumps(main(args.quick, args.seed), indent=2))

"""TPE against random search on the same budget: `python scripts/compare_samplers.py`.

For each seed, both samplers run `--trials` trials of the default search space
on digits (median pruning off, so both get the same budget of full trials);
the table gives the best validation accuracy each found, and the test
accuracy of that best configuration retrained from its seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ferroptim import tune


def test_accuracy(params: dict, cfg: tune.TuneConfig) -> float:
    from ferroptim.train.cli import _build, build_parser
    from ferroptim.train.trainer import Trainer

    args = build_parser().parse_args(tune.train_argv(params, cfg))
    data, model, optimizer, extra = _build(args)
    trainer = Trainer(
        model,
        optimizer,
        metrics=["accuracy"],
        scheduler=extra["scheduler"],
        batch_size=args.batch_size,
        seed=cfg.seed,
        verbose=0,
    )
    trainer.fit(data.X_train, data.y_train, epochs=cfg.epochs)
    return trainer.evaluate(data.X_test, data.y_test)["accuracy"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--dataset", default="digits")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in a.seeds.split(",")]:
            for sampler in ("random", "tpe"):
                cfg = tune.TuneConfig(
                    dataset=a.dataset,
                    trials=a.trials,
                    sampler=sampler,
                    pruner="none",
                    out=str(Path(tmp) / f"{sampler}-{seed}"),
                    seed=seed,
                    epochs=a.epochs,
                    verbose=0,
                    study=f"{sampler}-{seed}",
                )
                t0 = time.perf_counter()
                study = tune.run(cfg)
                best = study.best_trial
                rows.append(
                    (
                        seed,
                        sampler,
                        best.value,
                        test_accuracy(best.params, cfg),
                        time.perf_counter() - t0,
                    )
                )
                print(f"seed {seed} {sampler:6s} best val {best.value:.4f}", file=sys.stderr)
    print(
        f"| seed | sampler | best val accuracy ({a.trials} trials) | its test accuracy | minutes |"
    )
    print("|---:|---|---:|---:|---:|")
    for seed, sampler, val, test, secs in rows:
        print(f"| {seed} | {sampler} | {val:.4f} | {test:.4f} | {secs / 60:.1f} |")
    for sampler in ("random", "tpe"):
        vals = [r[2] for r in rows if r[1] == sampler]
        print(
            f"| mean | {sampler} | {statistics.mean(vals):.4f} | "
            f"{statistics.mean(r[3] for r in rows if r[1] == sampler):.4f} | |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

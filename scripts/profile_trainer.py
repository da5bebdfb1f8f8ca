"""Where a mini-batch's time goes in the default `ferroptim train` run.

Splits wall time into the model's NumPy forward/backward, the optimizer
step (one Rust call), and the trainer's own bookkeeping (batching,
metrics, logs, callbacks, scheduler): `python scripts/profile_trainer.py`.
"""

from __future__ import annotations

import sys
import time

from ferroptim.train.cli import _build, build_parser
from ferroptim.train.trainer import Trainer


def main() -> int:
    args = build_parser().parse_args(["--verbose", "0", *sys.argv[1:]])
    data, model, optimizer, extra = _build(args)
    trainer = Trainer(
        model,
        optimizer,
        metrics=["accuracy"],
        scheduler=extra["scheduler"],
        batch_size=args.batch_size,
        seed=args.seed,
        verbose=0,
    )
    t0 = time.perf_counter()
    trainer.fit(
        data.X_train, data.y_train, epochs=args.epochs, validation_data=(data.X_val, data.y_val)
    )
    total = time.perf_counter() - t0
    steps = trainer.step
    fb, opt = trainer.timing["forward_backward"], trainer.timing["optimizer"]
    rest = total - fb - opt
    print(f"{steps} mini-batches of {args.batch_size}, {model.arena.size} params, {total:.2f} s")
    print("| part | total s | per batch µs | share |")
    print("|---|---:|---:|---:|")
    for name, t in (
        ("model forward + backward (NumPy)", fb),
        ("optimizer step (Rust)", opt),
        ("trainer (batching, metrics, logs, validation)", rest),
    ):
        print(f"| {name} | {t:.3f} | {t / steps * 1e6:.1f} | {100 * t / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

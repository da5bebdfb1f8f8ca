"""The `ferroptim` command (also `python -m ferroptim`)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferroptim", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="fit small problems with every optimizer (the default)")
    demo.add_argument("--steps", type=int, default=200, help="optimizer steps per problem")
    sub.add_parser("train", help="train a NumPy model (see: ferroptim train --help)")
    sub.add_parser("tune", help="hyperparameter search on Optuna (see: ferroptim tune --help)")
    bench = sub.add_parser("bench", help="benchmark against torch.optim and NumPy")
    bench.add_argument(
        "--optimizers", default="sgd,adam,adamw,rmsprop", help="comma-separated list"
    )
    bench.add_argument("--full", action="store_true", help="add the GPT-2 small case (124M)")
    bench.add_argument("--budget", type=float, default=1.0, help="seconds per case")
    bench.add_argument("--no-threads", action="store_true", help="skip the thread scaling")
    bench.add_argument(
        "--cuda", action="store_true", help="the CUDA path against torch on the GPU (needs CuPy)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from ferroptim.train.cli import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["tune"]:
        from ferroptim.tune import main as tune_main

        return tune_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        from ferroptim import demo

        steps = getattr(args, "steps", 200)
        if steps < 1:
            parser.error("--steps must be >= 1")
        return demo.main(steps)
    if command == "bench":
        from ferroptim import bench

        optimizers = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
        unknown = sorted(set(optimizers) - set(bench.BYTES_PER_PARAM))
        if unknown or not optimizers:
            parser.error(f"--optimizers: unknown {unknown}; choose from sgd, adam, adamw, rmsprop")
        if not args.budget > 0:
            parser.error("--budget must be > 0")
        if args.cuda:
            from ferroptim.cuda import bench as cuda_bench

            return cuda_bench.main(optimizers, args.budget)
        return bench.main(optimizers, args.full, args.budget, not args.no_threads)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

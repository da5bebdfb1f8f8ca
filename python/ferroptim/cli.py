"""The ferroptim command (also: python -m ferroptim)."""

from __future__ import annotations

import argparse
import sys
import textwrap

import ferroptim as fo

DESCRIPTION = """\
ferroptim: Rust-accelerated optimizers for NumPy arrays.

Without a command, runs the demo: fits small problems with every optimizer
and prints the losses, the SIMD level and the thread count."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (not for flags, nor where there is none); descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def _bench_description() -> str:
    from ferroptim import bench_report as report
    from ferroptim.bench import DEFAULT_OPTIMIZERS, cases

    n_opt = len(DEFAULT_OPTIMIZERS)
    shapes, full = cases(False), cases(True)
    quick = len(report.QUICK_CASES) * len(report.QUICK_OPTIMIZERS)
    paragraphs = [
        "Time ferroptim against torch.optim (loop, foreach and fused, when torch is "
        "installed) and an in-place NumPy implementation on this machine, next to a "
        "roofline: an in-place a += b over the same bytes. Prints each median step time "
        "with its spread, the bytes of optimizer state per param, and ratios marked ~ "
        "(no clear difference) or ? (noisy). With AdamW, a low-precision table too: "
        "bfloat16 and 8-bit state, bfloat16 params with master weights or stochastic "
        "rounding, beside torch's fused AdamW on float32 and bfloat16 params.",
        f"The default run has {len(shapes) * n_opt} cases ({len(shapes)} shapes x {n_opt} "
        f"optimizers; --full: {len(full) * n_opt}) and the thread scaling, in about "
        f"{report.DEFAULT_TIME_BUDGET:.0f} s ({report.FULL_TIME_BUDGET:.0f} s with --full). "
        f"--quick: {quick} small cases in about {report.QUICK_TIME_BUDGET:.0f} s. "
        "Setup and warm-up count against the time; every implementation runs at least "
        "4 steps per case, so a tiny budget on the large cases still takes a while.",
        # No-break spaces keep each shape's name on one line.
        "Shapes: "
        + ", ".join(c.name.replace(" ", "\u00a0") for c in full[:-1])
        + f" (--full adds {full[-1].name}).",
    ]
    return "\n\n".join(textwrap.fill(p, 78).replace("\u00a0", " ") for p in paragraphs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferroptim", description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"ferroptim {fo.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,train,tune,bench}")
    demo = sub.add_parser(
        "demo",
        help="fit small problems with every optimizer (the default)",
        description="Fit least squares and logistic regression with every optimizer.",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--steps", type=int, default=200, help="optimizer steps per problem")
    sub.add_parser("train", help="train a NumPy model (see: ferroptim train --help)")
    sub.add_parser("tune", help="hyperparameter search on Optuna (see: ferroptim tune --help)")
    bench = sub.add_parser(
        "bench",
        help="benchmark against torch.optim and NumPy (--quick: under a minute)",
        description=_bench_description(),
        formatter_class=_HelpFormatter,
    )
    bench.add_argument(
        "--optimizers",
        help="comma-separated, any of ferroptim.registry.names() "
        "(default: all four; adam,rmsprop with --quick)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="small cases only, about 20 s, no thread scaling"
    )
    bench.add_argument("--full", action="store_true", help="add the GPT-2 small case (124M)")
    time_group = bench.add_mutually_exclusive_group()
    time_group.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="seconds for the whole run, setup included, shared out over the cases "
        "(default: 120; 300 with --full, 20 with --quick)",
    )
    time_group.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="seconds per case instead (and per thread-scaling point), setup included",
    )
    bench.add_argument("--no-threads", action="store_true", help="skip the thread scaling")
    bench.add_argument(
        "--cuda", action="store_true", help="the CUDA path against torch on the GPU (needs CuPy)"
    )
    return parser


def _bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ferroptim import bench, bench_report, registry

    if args.optimizers is None:
        optimizers = list(bench_report.QUICK_OPTIMIZERS if args.quick else bench.DEFAULT_OPTIMIZERS)
    else:
        optimizers = [o.strip().lower() for o in args.optimizers.split(",") if o.strip()]
    unknown = sorted(set(optimizers) - set(registry.names()))
    if unknown or not optimizers:
        known = ", ".join(registry.names())
        parser.error(f"--optimizers: unknown {unknown}; choose from {known}")
    for flag in ("budget", "time_budget"):
        value = getattr(args, flag)
        if value is not None and not value > 0:  # also refuses nan
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.quick and args.full:
        parser.error("--quick and --full: choose one")
    if args.cuda:
        from ferroptim import bench_cuda as cuda_bench

        # The CUDA bench times each case for a budget, setup not included.
        jobs = len(cuda_bench.cases()) * len(optimizers)
        total = args.time_budget
        if total is None and args.quick:
            total = bench_report.QUICK_TIME_BUDGET
        per_case = args.budget or (total / jobs if total is not None else 1.0)
        return cuda_bench.main(optimizers, per_case)
    return bench.main(
        optimizers,
        args.full,
        args.budget,
        not args.no_threads,
        time_budget=args.time_budget,
        quick=args.quick,
    )


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
        return _bench(parser, args)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

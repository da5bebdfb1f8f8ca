"""The `ferroptim` command (also `python -m ferroptim`)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferroptim", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="fit small problems with every optimizer (the default)")
    demo.add_argument("--steps", type=int, default=200, help="optimizer steps per problem")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        from ferroptim import demo

        steps = getattr(args, "steps", 200)
        if steps < 1:
            parser.error("--steps must be >= 1")
        return demo.main(steps)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``ferroptim train --resume``: the saved run's flags, and the one rule for flags given again.

A resumed run keeps the flags it was started with (saved in its checkpoints).
A flag given again must have its saved value, except those in
:data:`~ferroptim.train.cli.RESUME_MAY_CHANGE`: ``--epochs`` (a new length for
the run, saved for later resumes) and ``--stop-after``, ``--out``,
``--verbose`` (this invocation only).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ferroptim import registry
from ferroptim.train import _precision
from ferroptim.train.cli import (
    RESUME_MAY_CHANGE,
    UsageError,
    _floats,
    _value,
    _widths,
    build_parser,
)

__all__ = ["resume"]


def _explicit(argv: list[str]) -> dict[str, Any]:
    """The flags given on this command line (not their defaults)."""
    p = build_parser()
    for action in p._actions:  # no defaults: only what argv sets lands in the namespace
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv))


def _canonical(args: argparse.Namespace, key: str) -> Any:
    """A flag's effective value, so that "256, 128" equals "256,128" and an
    omitted --lr equals the optimizer's default lr."""
    value = getattr(args, key)
    try:
        if key == "lr" and value is None:
            info = registry.optimizers().get(args.optimizer)
            return info.default_lr if info is not None else None
        if key == "hidden":
            return _widths(value)
        if key == "betas" and value is not None:
            return _floats("--betas", value)
        if key == "loss_scale" and value is not None:
            scale = _precision.check_loss_scale(value)
            return float(scale) if isinstance(scale, (int, float)) else scale
        if key == "opt":
            return sorted((k, _value(v)) for k, _, v in (i.partition("=") for i in value))
    except UsageError:
        pass
    return value


def _show(value: Any) -> str:
    return "(not set)" if value is None or value == [] else str(value)


def resume(
    args: argparse.Namespace, argv: list[str]
) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any]]:
    """(the run's flags, the checkpoint, the config to save) for --resume."""
    from ferroptim.train import checkpoint

    path = Path(args.resume) / "last.npz"
    try:
        saved = checkpoint.load(path)
    except checkpoint.CheckpointError as err:
        raise UsageError(f"--resume: {err}") from None
    config = saved.get("config") if isinstance(saved, dict) else None
    saved_argv = config.get("argv") if isinstance(config, dict) else None
    if not isinstance(saved_argv, list) or not all(isinstance(a, str) for a in saved_argv):
        raise UsageError(f"--resume: {path} was not written by ferroptim train")
    try:
        old = build_parser().parse_args(saved_argv)
        old.epochs = int(config.get("epochs", old.epochs))
        done = int(saved.get("epoch", 0))
    except (UsageError, TypeError, ValueError) as err:
        raise UsageError(f"--resume: {path} holds unreadable flags: {err}") from None
    given = _explicit(argv)
    for key in given:
        if key in RESUME_MAY_CHANGE:
            continue
        now, before = _canonical(args, key), _canonical(old, key)
        if now != before:
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"--resume: {flag} {_show(now)} differs from the saved run's "
                f"{_show(before)}; a resumed run keeps its flags (only --epochs, "
                "--stop-after, --out and --verbose may change): start a new run with --out"
            )
    if "epochs" in given:
        if args.epochs < done:
            raise UsageError(
                f"--epochs {args.epochs}: the run in {args.resume} has already "
                f"completed {done} epochs"
            )
        old.epochs = args.epochs
    old.resume, old.out = args.resume, args.out or args.resume
    old.stop_after, old.verbose = args.stop_after, args.verbose
    return old, saved, {"argv": saved_argv, "epochs": old.epochs}

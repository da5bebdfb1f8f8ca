"""ferroptim train: train a NumPy model from the command line.

With no flags: an MLP on scikit-learn's bundled digits, a progress bar, and a
last line with the test accuracy. When stderr is not a terminal (a log file,
a batch job), one line per epoch is printed there instead of the bar.

--out DIR writes history.csv, curves.png and the checkpoints best.npz and
last.npz; each checkpoint also keeps the flags the run was started with.

--resume DIR continues the run saved in DIR/last.npz exactly where it
stopped, with its saved flags. Flags that change what the run computes (data
set, model, optimizer and its hyperparameters, schedule, batch size, seed,
dtype, patience, ...) may be repeated with their saved values; any other value
is refused (exit 2): start a new run with --out instead. Only these may
change on a resume:
  --epochs N       a new length for the run, saved for later resumes; the lr
                   schedule is stretched over the new length from the current step
  --stop-after N, --out DIR, --verbose N   this invocation only

A bad flag or input is reported in one line before any training, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ferroptim import registry
from ferroptim.train.build import (  # noqa: F401  (re-exported: the CLI's names)
    MAX_PARAMS,
    MAX_WIDTH,
    MODELS,
    SCHEDULES,
    TrainConfig,
    UsageError,
    _floats,
    _value,
    _widths,
    build,
    check_config,
    make_schedule,
    make_trainer,
    optimizer_kwargs,
)


def __getattr__(name: str) -> Any:
    # The tables these names held now live in ferroptim.registry.
    if name == "OPTIMIZERS":
        return {n: info.cls for n, info in registry.optimizers().items()}
    if name == "DEFAULT_LR":
        return {n: info.default_lr for n, info in registry.optimizers().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Flags a resumed run may change; every other flag is part of the run's math.
RESUME_MAY_CHANGE = ("epochs", "stop_after", "out", "verbose", "resume")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; adds "(default: X)" to every option
    whose help does not already say what its default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        if action.default is None or action.default == []:
            return text
        return f"{text} (default: %(default)s)"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The flags of ``ferroptim train`` (onto ``parser`` when given)."""
    p = parser or _Parser(
        prog="ferroptim train", description=__doc__, formatter_class=_HelpFormatter
    )
    d = TrainConfig()  # the defaults, in one place
    p.add_argument(
        "--dataset",
        default=d.dataset,
        help="digits | iris | synthetic-regression | synthetic-classification | "
        "FILE.npz (arrays X, y) | FILE.csv (last column is the label)",
    )
    p.add_argument("--model", default=d.model, help=" | ".join(MODELS))
    p.add_argument(
        "--hidden",
        default=d.hidden,
        metavar="W1,W2",
        help="hidden layer widths of the MLP, comma-separated",
    )
    p.add_argument("--activation", default=d.activation, help="relu | tanh | sigmoid")
    p.add_argument(
        "--dropout", type=float, default=d.dropout, help="dropout after each hidden layer"
    )
    p.add_argument("--optimizer", default=d.optimizer, help=" | ".join(registry.names()))
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: by optimizer, "
        + ", ".join(f"{n} {i.default_lr:g}" for n, i in registry.optimizers().items())
        + ")",
    )
    p.add_argument("--momentum", type=float, default=None, help="(default: the optimizer's)")
    p.add_argument("--weight-decay", type=float, default=None, help="(default: the optimizer's)")
    p.add_argument("--betas", default=None, help="beta1,beta2 (default: the optimizer's)")
    p.add_argument("--eps", type=float, default=None, help="(default: the optimizer's)")
    p.add_argument(
        "--nesterov",
        action="store_true",
        default=None,
        help="Nesterov momentum (SGD; default: off)",
    )
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other optimizer hyperparameter or precision option, e.g. --opt "
        "amsgrad=true, --opt state_dtype=int8 (default: none)",
    )
    p.add_argument("--schedule", default=d.schedule, help=" | ".join(SCHEDULES))
    p.add_argument(
        "--warmup", type=int, default=d.warmup, metavar="STEPS", help="linear warmup steps"
    )
    p.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help="length of the run")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, metavar="N", help="mini-batch size"
    )
    p.add_argument(
        "--max-grad-norm", type=float, default=None, help="clip the grad norm (default: off)"
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=None,
        help="evaluate with an EMA of the weights (default: off)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="N",
        help="early stopping on val loss after N epochs without progress (default: off)",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, metavar="N", help="data split, init, batches, dropout"
    )
    p.add_argument(
        "--dtype",
        default=d.dtype,
        help="the params' dtype: float32 | float64 | bfloat16 | float16 (the low-precision "
        "ones train with float32 master weights unless --opt master_weights=false; "
        "--opt state_dtype=bfloat16|int8 compresses the optimizer's state)",
    )
    p.add_argument(
        "--loss-scale",
        default=d.loss_scale,
        metavar="SCALE",
        help="dynamic | none | a fixed number: scale the loss's grad before the backward "
        "pass, unscale it inside the optimizer's step, skip steps whose grads overflow "
        "(default: dynamic for float16, none otherwise)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder for history.csv, curves.png, checkpoints (default: write nothing)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="folder of a run to continue from its last.npz (default: a new run)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="stop this invocation after N more epochs; continue with --resume "
        "(default: run to --epochs)",
    )
    p.add_argument(
        "--verbose",
        type=int,
        default=d.verbose,
        metavar="N",
        help="0: quiet, 1: a progress bar (one line per epoch when not a terminal)",
    )
    return p


def check_flags(args: argparse.Namespace) -> list[int]:
    """Every check that needs no data (see :func:`ferroptim.train.build.check_config`);
    returns the --hidden widths."""
    return check_config(args)


def _title(config: TrainConfig, optimizer: Any, data: Any) -> Any:
    """curves.png's title; the test score is added when training ends."""
    model = {"mlp": f"MLP {config.hidden_text}", "linear": "linear", "logistic": "logistic"}
    lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    head = (
        f"{Path(config.dataset).name}, {model[config.model]}, "
        f"{type(optimizer).__name__} lr {lr:g}, {config.schedule}"
    )
    metric = "accuracy" if data.task == "classification" else "r2"

    def title(trainer: Any) -> str:
        test = trainer.evaluate(data.X_test, data.y_test)
        return f"{head}: test {metric} {test[metric]:.4f} after {trainer.epoch} epochs"

    return title


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Runs ``ferroptim train`` with parsed ``args`` (``argv``: the command line)."""
    check_flags(args)
    saved = None
    record = {"argv": list(argv), "epochs": args.epochs}
    if args.resume:
        from ferroptim.train.cli_resume import resume

        args, saved, record = resume(args, argv)
    return train(TrainConfig.from_args(args), record, saved=saved, stop_after=args.stop_after)


def train(
    config: TrainConfig,
    record: dict[str, Any] | None = None,
    *,
    saved: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> int:
    """Trains ``config`` as ``ferroptim train`` does: callbacks, outputs, the last line.

    Parameters
    ----------
    config : TrainConfig
        The run.
    record : dict, optional
        Kept in the checkpoints: ``{"argv": [...], "epochs": N}`` makes the run
        resumable with ``ferroptim train --resume``.
    saved : dict, optional
        A checkpoint to continue from.
    stop_after : int, optional
        Stop after this many more epochs.

    Returns
    -------
    int
        0; bad input raises :class:`UsageError`.
    """
    from ferroptim.train import callbacks as C

    setup = build(config)
    data = setup.data
    callbacks: list[Any] = []
    if config.patience is not None:
        callbacks.append(C.EarlyStopping("val_loss", patience=config.patience))
    callbacks.append(C.TerminateOnNaN())
    if config.out:
        out = Path(config.out)
        callbacks += [
            C.CSVLogger(out / "history.csv"),
            C.ModelCheckpoint(out, monitor="val_loss"),
            C.PlotHistory(out / "curves.png", title=_title(config, setup.optimizer, data)),
        ]
    trainer = make_trainer(setup, config, callbacks, record)
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except (ValueError, TypeError) as err:
            raise UsageError(f"--resume: {err}") from None
    stop = config.epochs
    if stop_after is not None:
        stop = min(config.epochs, trainer.epoch + stop_after)
    if config.out:
        Path(config.out).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Keras' meaning: train from the completed epochs up to epoch `stop`.
    trainer.fit(
        data.X_train,
        data.y_train,
        epochs=stop,
        initial_epoch=trainer.epoch,
        validation_data=(data.X_val, data.y_val),
    )
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(data.X_test, data.y_test)
    metric = "accuracy" if data.task == "classification" else "r2"
    where = f"; wrote {config.out}" if config.out else ""
    print(
        f"test {metric}: {test[metric]:.4f} (loss {test['loss']:.4f}) after "
        f"{trainer.epoch} epochs in {elapsed:.1f} s{where}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--distributed" in argv:  # the same run across MPI ranks: docs/distributed.md
        from ferroptim.distributed import train_main

        return train_main(argv)
    try:
        args = build_parser().parse_args(argv)
        return run(args, argv)
    except UsageError as err:
        print(f"ferroptim train: error: {err}", file=sys.stderr)
        return 2

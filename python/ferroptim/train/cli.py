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
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import ferroptim as fo

OPTIMIZERS = {
    "sgd": fo.SGD,
    "adam": fo.Adam,
    "adamw": fo.AdamW,
    "rmsprop": fo.RMSprop,
    "adagrad": fo.Adagrad,
    "adadelta": fo.Adadelta,
    "adamax": fo.Adamax,
    "nadam": fo.NAdam,
    "radam": fo.RAdam,
    "lion": fo.Lion,
}
# Learning rates that suit the built-in models with the default schedule.
DEFAULT_LR = {
    "sgd": 0.05,
    "adam": 3e-3,
    "adamw": 3e-3,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "adadelta": 1.0,
    "adamax": 3e-3,
    "nadam": 3e-3,
    "radam": 3e-3,
    "lion": 3e-4,
}
SCHEDULES = ("constant", "step", "exponential", "inverse-time", "cosine", "onecycle", "linear")
MODELS = ("linear", "logistic", "mlp")


class UsageError(Exception):
    """A bad flag or input: reported in one line, exit code 2."""


# Flags a resumed run may change; every other flag is part of the run's math.
RESUME_MAY_CHANGE = ("epochs", "stop_after", "out", "verbose", "resume")
MAX_WIDTH = 1 << 20
MAX_PARAMS = 1 << 28  # 1 GiB of float32 params, before the optimizer's state


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
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | iris | synthetic-regression | synthetic-classification | "
        "FILE.npz (arrays X, y) | FILE.csv (last column is the label)",
    )
    p.add_argument("--model", default="mlp", help=" | ".join(MODELS))
    p.add_argument(
        "--hidden",
        default="256,128",
        metavar="W1,W2",
        help="hidden layer widths of the MLP, comma-separated",
    )
    p.add_argument("--activation", default="relu", help="relu | tanh | sigmoid")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout after each hidden layer")
    p.add_argument("--optimizer", default="adamw", help=" | ".join(OPTIMIZERS))
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: by optimizer, "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
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
        help="any other optimizer hyperparameter, e.g. --opt amsgrad=true (default: none)",
    )
    p.add_argument("--schedule", default="cosine", help=" | ".join(SCHEDULES))
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS", help="linear warmup steps")
    p.add_argument("--epochs", type=int, default=60, metavar="N", help="length of the run")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="mini-batch size")
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
        "--seed", type=int, default=0, metavar="N", help="data split, init, batches, dropout"
    )
    p.add_argument("--dtype", default="float32", help="float32 | float64")
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
        default=1,
        metavar="N",
        help="0: quiet, 1: a progress bar (one line per epoch when not a terminal)",
    )
    return p


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _floats(flag: str, text: str, n: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected numbers separated by commas, got {text!r}") from None
    if n is not None and len(values) != n:
        raise UsageError(f"{flag}: expected {n} numbers, got {text!r}")
    return values


def optimizer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen optimizer's keyword arguments; flags it does not take are errors."""
    if args.optimizer not in OPTIMIZERS:
        raise UsageError(
            f"--optimizer: unknown {args.optimizer!r}; choose from {', '.join(OPTIMIZERS)}"
        )
    cls = OPTIMIZERS[args.optimizer]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params", "options"}
    given: dict[str, Any] = {}
    for flag, key, value in (
        ("--lr", "lr", DEFAULT_LR[args.optimizer] if args.lr is None else args.lr),
        ("--momentum", "momentum", args.momentum),
        ("--weight-decay", "weight_decay", args.weight_decay),
        ("--betas", "betas", tuple(_floats("--betas", args.betas, 2)) if args.betas else None),
        ("--eps", "eps", args.eps),
        ("--nesterov", "nesterov", args.nesterov),
    ):
        if value is None:
            continue
        if key not in accepted:
            raise UsageError(f"{flag} does not apply to {args.optimizer}")
        given[key] = value
    for item in args.opt:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--opt: expected KEY=VALUE, got {item!r}")
        if key not in accepted:
            raise UsageError(
                f"--opt: {args.optimizer} has no hyperparameter {key!r} "
                f"(it has {', '.join(sorted(accepted))})"
            )
        given[key] = _value(text)
    return given


def make_schedule(name: str, total_steps: int, warmup: int) -> Any:
    """A relative schedule (a factor of each group's lr), with optional warmup."""
    from ferroptim import schedules as S

    if name not in SCHEDULES:
        raise UsageError(f"--schedule: unknown {name!r}; choose from {', '.join(SCHEDULES)}")
    if warmup < 0 or warmup >= max(total_steps, 1):
        raise UsageError(f"--warmup must be in [0, {total_steps}) steps, got {warmup}")
    rest = max(total_steps - warmup, 1)
    main = {
        "constant": lambda: S.constant(),
        "step": lambda: S.step_decay(max(rest // 3, 1), 0.1),
        "exponential": lambda: S.exponential(0.01 ** (1 / rest)),
        "inverse-time": lambda: S.inverse_time(10.0 / rest),
        "cosine": lambda: S.cosine_annealing(rest),
        "linear": lambda: S.linear(1.0, 0.0, rest),
        "onecycle": lambda: _clamped(S.one_cycle(1.0, rest), rest),
    }[name]()
    if warmup == 0:
        return main
    return S.sequential([S.linear(1.0 / warmup, 1.0, warmup), main], [warmup])


def _clamped(schedule: Any, total: int) -> Any:
    """A one-cycle factor that holds its last value past ``total`` steps."""
    from ferroptim import schedules as S

    return S.lambda_schedule(lambda t: schedule(min(t, total - 1)))


def _widths(text: str) -> list[int]:
    """The --hidden widths: whole numbers written as such (no nan, inf or 1e3)."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not all(v.isdigit() and 1 <= int(v) <= MAX_WIDTH for v in items):
        raise UsageError(
            f"--hidden: widths must be whole numbers from 1 to {MAX_WIDTH}, "
            f"separated by commas; got {text!r}"
        )
    return [int(v) for v in items]


def _check_out(out: str) -> None:
    """--out must be a folder this process can create or write into; checked
    before any training, without creating anything yet."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out: cannot create {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out: cannot write into {existing}")


def check_flags(args: argparse.Namespace) -> list[int]:
    """Every check that needs no data, before anything is loaded or written;
    returns the --hidden widths."""
    if args.model not in MODELS:
        raise UsageError(f"--model: unknown {args.model!r}; choose from {', '.join(MODELS)}")
    for flag, value, low in (
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 1),
        ("--seed", args.seed, 0),
        ("--warmup", args.warmup, 0),
        ("--patience", args.patience, 0),
        ("--stop-after", args.stop_after, 1),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not 0 <= args.dropout < 1:  # also refuses nan
        raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.dtype not in ("float32", "float64"):
        raise UsageError(f"--dtype: float32 or float64, got {args.dtype!r}")
    hidden = _widths(args.hidden)
    if args.activation not in ("relu", "tanh", "sigmoid"):
        raise UsageError(f"--activation: relu, tanh or sigmoid, got {args.activation!r}")
    if args.schedule not in SCHEDULES:
        raise UsageError(
            f"--schedule: unknown {args.schedule!r}; choose from {', '.join(SCHEDULES)}"
        )
    optimizer_kwargs(args)
    if args.out:
        _check_out(args.out)
    return hidden


def _n_params(n_in: int, widths: list[int], n_out: int) -> int:
    sizes = [n_in, *widths, n_out]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def _build(
    args: argparse.Namespace, hidden: list[int] | None = None
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(data, model, optimizer, {"scheduler": ...}) for ``args``."""
    from ferroptim.schedules import Scheduler
    from ferroptim.train.data import load_dataset
    from ferroptim.train.models import linear_regression, logistic_regression, mlp

    if hidden is None:
        hidden = check_flags(args)
    kwargs = optimizer_kwargs(args)
    try:
        data = load_dataset(args.dataset, seed=args.seed)
    except ValueError as err:
        raise UsageError(f"--dataset: {err}") from None
    dtype = np.dtype(args.dtype)
    if data.task == "regression" and args.model == "logistic":
        raise UsageError(
            f"--model logistic needs a classification dataset; {args.dataset} is regression"
        )
    if data.task == "classification" and args.model == "linear":
        raise UsageError(f"--model linear is for regression; {args.dataset} is classification")
    widths = hidden if args.model == "mlp" else []
    n_params = _n_params(data.n_features, widths, data.n_outputs)
    if n_params > MAX_PARAMS:
        raise UsageError(
            f"--hidden {args.hidden}: {n_params:,} params, more than this tool's "
            f"{MAX_PARAMS:,}; use narrower layers"
        )
    try:
        if args.model == "linear":
            model = linear_regression(data.n_features, data.n_outputs, seed=args.seed, dtype=dtype)
        elif args.model == "logistic":
            model = logistic_regression(
                data.n_features, data.n_classes, seed=args.seed, dtype=dtype
            )
        else:
            model = mlp(
                data.n_features,
                hidden=tuple(hidden),
                n_outputs=data.n_outputs,
                activation=args.activation,
                dropout=args.dropout,
                seed=args.seed,
                dtype=dtype,
            )
    except MemoryError:
        raise UsageError(f"--hidden {args.hidden}: not enough memory for the model") from None
    if data.task == "regression":
        data.y_train, data.y_val, data.y_test = (
            y.reshape(-1, 1).astype(dtype) for y in (data.y_train, data.y_val, data.y_test)
        )
    groups = fo.exclude_from_weight_decay(model.arena, patterns=("*.b",))
    try:
        optimizer = OPTIMIZERS[args.optimizer](
            groups, max_grad_norm=args.max_grad_norm, ema_decay=args.ema_decay, **kwargs
        )
    except (ValueError, TypeError) as err:
        raise UsageError(f"--optimizer {args.optimizer}: {err}") from None
    except MemoryError:
        raise UsageError("not enough memory for the optimizer's state") from None
    steps_per_epoch = -(-len(data.X_train) // args.batch_size)
    schedule = make_schedule(args.schedule, args.epochs * steps_per_epoch, args.warmup)
    scheduler = Scheduler(optimizer, schedule)
    return data, model, optimizer, {"scheduler": scheduler}


def _title(args: argparse.Namespace, optimizer: Any, data: Any) -> Any:
    """curves.png's title; the test score is added when training ends."""
    model = {"mlp": f"MLP {args.hidden}", "linear": "linear", "logistic": "logistic"}
    lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    head = (
        f"{Path(args.dataset).name}, {model[args.model]}, "
        f"{type(optimizer).__name__} lr {lr:g}, {args.schedule}"
    )
    metric = "accuracy" if data.task == "classification" else "r2"

    def title(trainer: Any) -> str:
        test = trainer.evaluate(data.X_test, data.y_test)
        return f"{head}: test {metric} {test[metric]:.4f} after {trainer.epoch} epochs"

    return title


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Runs ``ferroptim train`` with parsed ``args`` (``argv``: the command line)."""
    from ferroptim.train import callbacks as C
    from ferroptim.train.trainer import Trainer

    check_flags(args)
    saved = None
    config = {"argv": list(argv), "epochs": args.epochs}
    if args.resume:
        from ferroptim.train.cli_resume import resume

        args, saved, config = resume(args, argv)
    hidden = check_flags(args)
    data, model, optimizer, extra = _build(args, hidden)
    callbacks: list[Any] = []
    if args.patience is not None:
        callbacks.append(C.EarlyStopping("val_loss", patience=args.patience))
    callbacks.append(C.TerminateOnNaN())
    if args.out:
        out = Path(args.out)
        callbacks += [
            C.CSVLogger(out / "history.csv"),
            C.ModelCheckpoint(out, monitor="val_loss"),
            C.PlotHistory(out / "curves.png", title=_title(args, optimizer, data)),
        ]
    classification = data.task == "classification"
    trainer = Trainer(
        model,
        optimizer,
        loss="cross_entropy" if classification else "mse",
        metrics=["accuracy"] if classification else ["r2"],
        scheduler=extra["scheduler"],
        batch_size=args.batch_size,
        callbacks=callbacks,
        seed=args.seed,
        verbose=args.verbose,
        config=config,
    )
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except (ValueError, TypeError) as err:
            raise UsageError(f"--resume: {err}") from None
    stop = args.epochs
    if args.stop_after is not None:
        stop = min(args.epochs, trainer.epoch + args.stop_after)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
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
    metric = "accuracy" if classification else "r2"
    where = f"; wrote {args.out}" if args.out else ""
    print(
        f"test {metric}: {test[metric]:.4f} (loss {test['loss']:.4f}) after "
        f"{trainer.epoch} epochs in {elapsed:.1f} s{where}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return run(args, argv)
    except UsageError as err:
        print(f"ferroptim train: error: {err}", file=sys.stderr)
        return 2

"""A training run as a typed config, and the one function that builds it.

``ferroptim train`` turns its flags into a :class:`TrainConfig`; ``ferroptim
tune`` makes one per trial. Both build through :func:`build` /
:func:`build_trainer`, so a search trains exactly what the command line would.
The optimizers come from :mod:`ferroptim.registry`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import ferroptim as fo
from ferroptim import registry
from ferroptim.train import _precision

__all__ = [
    "MODELS",
    "SCHEDULES",
    "Setup",
    "TrainConfig",
    "UsageError",
    "build",
    "build_trainer",
    "check_config",
    "make_schedule",
    "make_trainer",
    "optimizer_kwargs",
]

SCHEDULES = ("constant", "step", "exponential", "inverse-time", "cosine", "onecycle", "linear")
MODELS = ("linear", "logistic", "mlp")
MAX_WIDTH = 1 << 20
MAX_PARAMS = 1 << 28  # 1 GiB of float32 params, before the optimizer's state
# Hyperparameters with a flag of their own; any other goes through --opt.
FLAGGED = {
    "lr": "--lr",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "betas": "--betas",
    "eps": "--eps",
    "nesterov": "--nesterov",
}


class UsageError(Exception):
    """A bad flag or input: reported in one line, exit code 2."""


@dataclass
class TrainConfig:
    """One training run; the fields are the ``ferroptim train`` flags.

    Parameters
    ----------
    dataset : str
        A built-in data set name, or a .npz / .csv file.
    model : str
        ``"linear"``, ``"logistic"`` or ``"mlp"``.
    hidden : str or sequence of int
        The MLP's hidden widths, ``"256,128"`` or ``(256, 128)``.
    activation : str
        ``"relu"``, ``"tanh"`` or ``"sigmoid"``.
    dropout : float
        Dropout after each hidden layer, in [0, 1).
    optimizer : str
        A :mod:`ferroptim.registry` name.
    lr : float or None
        None: the registry's ``default_lr`` for the optimizer.
    momentum, weight_decay, eps : float or None
        None: the optimizer's default.
    betas : str, tuple of two floats, or None
        ``"0.9,0.99"`` or ``(0.9, 0.99)``; None: the optimizer's default.
    nesterov : bool or None
        None: the optimizer's default.
    opt : sequence of str or mapping
        Any other hyperparameter: ``["amsgrad=true"]`` or ``{"amsgrad": True}``.
    schedule : str
        One of :data:`SCHEDULES`.
    warmup : int
        Linear warmup steps.
    epochs : int
        Length of the run.
    batch_size : int
        Mini-batch size.
    max_grad_norm, ema_decay : float or None
        Clipping and weight averaging (None: off).
    patience : int or None
        Early stopping on val loss (None: off).
    seed : int
        Data split, init, batches, dropout.
    dtype : str
        The params' dtype: ``"float32"``, ``"float64"``, ``"bfloat16"`` or ``"float16"``.
    loss_scale : str, float or None
        ``"dynamic"``, ``"none"`` or a fixed scale; None: dynamic for float16 only.
    out : str or None
        Folder for history.csv, curves.png and checkpoints (None: write nothing).
    verbose : int
        0: quiet, 1: a progress bar.
    """

    dataset: str = "digits"
    model: str = "mlp"
    hidden: str | Sequence[int] = "256,128"
    activation: str = "relu"
    dropout: float = 0.2
    optimizer: str = "adamw"
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    betas: str | tuple[float, float] | None = None
    eps: float | None = None
    nesterov: bool | None = None
    opt: Sequence[str] | Mapping[str, Any] = field(default_factory=list)
    schedule: str = "cosine"
    warmup: int = 0
    epochs: int = 60
    batch_size: int = 32
    max_grad_norm: float | None = None
    ema_decay: float | None = None
    patience: int | None = None
    seed: int = 0
    dtype: str = "float32"
    loss_scale: str | float | None = None
    out: str | None = None
    verbose: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The config of parsed ``ferroptim train`` flags (CLI-only flags are dropped)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @property
    def hidden_text(self) -> str:
        """The hidden widths as written on a command line."""
        if isinstance(self.hidden, str):
            return self.hidden
        return ",".join(str(w) for w in self.hidden)


def _config(config: TrainConfig | argparse.Namespace) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_args(config)


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


def _betas(betas: Any) -> tuple[float, ...] | None:
    if betas is None or betas == "":
        return None
    if isinstance(betas, str):
        return tuple(_floats("--betas", betas, 2))
    values = tuple(betas)
    if len(values) != 2:
        raise UsageError(f"--betas: expected 2 numbers, got {betas!r}")
    return values


def _extra(opt: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """--opt as a dict: KEY=VALUE strings parsed, a mapping taken as is."""
    if isinstance(opt, Mapping):
        return dict(opt)
    given = {}
    for item in opt:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--opt: expected KEY=VALUE, got {item!r}")
        given[key] = _value(text)
    return given


def optimizer_kwargs(config: TrainConfig | argparse.Namespace) -> dict[str, Any]:
    """The chosen optimizer's keyword arguments; flags it does not take are errors.

    Parameters
    ----------
    config : TrainConfig or argparse.Namespace
        The run (parsed ``ferroptim train`` flags are accepted too).
    """
    c = _config(config)
    try:
        info = registry.get(c.optimizer)
    except registry.UnknownOptimizerError:
        raise UsageError(
            f"--optimizer: unknown {c.optimizer!r}; choose from {', '.join(registry.names())}"
        ) from None
    given: dict[str, Any] = {}
    for key, value in (
        ("lr", info.default_lr if c.lr is None else c.lr),
        ("momentum", c.momentum),
        ("weight_decay", c.weight_decay),
        ("betas", _betas(c.betas)),
        ("eps", c.eps),
        ("nesterov", c.nesterov),
    ):
        if value is None:
            continue
        if not info.takes(key):
            raise UsageError(f"{FLAGGED[key]} does not apply to {c.optimizer}")
        given[key] = value
    for key, value in _extra(c.opt).items():
        if not info.takes(key) and not _precision.takes_precision_option(info.cls, key):
            known = sorted(info.hyperparameters) + [
                k
                for k in _precision.PRECISION_OPTIONS
                if _precision.takes_precision_option(info.cls, k)
            ]
            raise UsageError(
                f"--opt: {c.optimizer} has no hyperparameter {key!r} (it has {', '.join(known)})"
            )
        given[key] = value
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


def _widths(text: str | Sequence[int]) -> list[int]:
    """The --hidden widths: whole numbers written as such (no nan, inf or 1e3)."""
    if not isinstance(text, str):
        text = ",".join(str(w) for w in text)
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


def check_config(config: TrainConfig | argparse.Namespace) -> list[int]:
    """Every check that needs no data, before anything is loaded or written.

    Parameters
    ----------
    config : TrainConfig or argparse.Namespace
        The run (parsed ``ferroptim train`` flags are accepted too).

    Returns
    -------
    list of int
        The hidden widths. Raises :class:`UsageError` naming the flag.
    """
    c = _config(config)
    if c.model not in MODELS:
        raise UsageError(f"--model: unknown {c.model!r}; choose from {', '.join(MODELS)}")
    for flag, value, low in (
        ("--epochs", c.epochs, 1),
        ("--batch-size", c.batch_size, 1),
        ("--seed", c.seed, 0),
        ("--warmup", c.warmup, 0),
        ("--patience", c.patience, 0),
        ("--stop-after", getattr(config, "stop_after", None), 1),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not 0 <= c.dropout < 1:  # also refuses nan
        raise UsageError(f"--dropout must be in [0, 1), got {c.dropout}")
    if c.dtype not in _precision.DTYPES:
        raise UsageError(f"--dtype: {' | '.join(_precision.DTYPES)}, got {c.dtype!r}")
    _precision.check_loss_scale(c.loss_scale)
    hidden = _widths(c.hidden)
    if c.activation not in ("relu", "tanh", "sigmoid"):
        raise UsageError(f"--activation: relu, tanh or sigmoid, got {c.activation!r}")
    if c.schedule not in SCHEDULES:
        raise UsageError(f"--schedule: unknown {c.schedule!r}; choose from {', '.join(SCHEDULES)}")
    optimizer_kwargs(c)
    if c.out:
        _check_out(c.out)
    return hidden


def _n_params(n_in: int, widths: list[int], n_out: int) -> int:
    sizes = [n_in, *widths, n_out]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


class Setup(NamedTuple):
    """What :func:`build` makes: the data, the model, its optimizer and lr scheduler."""

    data: Any
    model: Any
    optimizer: Any
    scheduler: Any


def _model(c: TrainConfig, data: Any, hidden: list[int], dtype: str) -> Any:
    from ferroptim.train.models import linear_regression, logistic_regression, mlp

    if data.task == "regression" and c.model == "logistic":
        raise UsageError(
            f"--model logistic needs a classification dataset; {c.dataset} is regression"
        )
    if data.task == "classification" and c.model == "linear":
        raise UsageError(f"--model linear is for regression; {c.dataset} is classification")
    widths = hidden if c.model == "mlp" else []
    n_params = _n_params(data.n_features, widths, data.n_outputs)
    if n_params > MAX_PARAMS:
        raise UsageError(
            f"--hidden {c.hidden_text}: {n_params:,} params, more than this tool's "
            f"{MAX_PARAMS:,}; use narrower layers"
        )
    try:
        if c.model == "linear":
            return linear_regression(data.n_features, data.n_outputs, seed=c.seed, dtype=dtype)
        if c.model == "logistic":
            return logistic_regression(data.n_features, data.n_classes, seed=c.seed, dtype=dtype)
        return mlp(
            data.n_features,
            hidden=tuple(hidden),
            n_outputs=data.n_outputs,
            activation=c.activation,
            dropout=c.dropout,
            seed=c.seed,
            dtype=dtype,
        )
    except MemoryError:
        raise UsageError(f"--hidden {c.hidden_text}: not enough memory for the model") from None
    except fo.exceptions.DtypeError as err:  # a dtype this build's arena does not hold
        raise UsageError(f"--dtype {c.dtype}: {err}") from None


def build(config: TrainConfig | argparse.Namespace) -> Setup:
    """Loads the data and makes the model, optimizer and scheduler of a run.

    Parameters
    ----------
    config : TrainConfig or argparse.Namespace
        The run; checked first (:func:`check_config`).

    Returns
    -------
    Setup
        ``(data, model, optimizer, scheduler)``. Raises :class:`UsageError`.
    """
    from ferroptim.schedules import Scheduler
    from ferroptim.train.data import load_dataset

    c = _config(config)
    hidden = check_config(config)
    kwargs = optimizer_kwargs(c)
    try:
        data = load_dataset(c.dataset, seed=c.seed)
    except ValueError as err:
        raise UsageError(f"--dataset: {err}") from None
    model = _model(c, data, hidden, c.dtype)
    if data.task == "regression":
        dtype = _precision.target_dtype(c.dtype)
        data.y_train, data.y_val, data.y_test = (
            y.reshape(-1, 1).astype(dtype) for y in (data.y_train, data.y_val, data.y_test)
        )
    groups = fo.exclude_from_weight_decay(model.arena, patterns=("*.b",))
    try:
        optimizer = registry.get(c.optimizer).cls(
            groups, max_grad_norm=c.max_grad_norm, ema_decay=c.ema_decay, **kwargs
        )
    except (ValueError, TypeError) as err:
        raise UsageError(f"--optimizer {c.optimizer}: {err}") from None
    except MemoryError:
        raise UsageError("not enough memory for the optimizer's state") from None
    steps_per_epoch = -(-len(data.X_train) // c.batch_size)
    schedule = make_schedule(c.schedule, c.epochs * steps_per_epoch, c.warmup)
    return Setup(data, model, optimizer, Scheduler(optimizer, schedule))


def make_trainer(
    setup: Setup,
    config: TrainConfig,
    callbacks: Sequence[Any] = (),
    record: Mapping[str, Any] | None = None,
) -> Any:
    """The :class:`~ferroptim.train.Trainer` of a built run.

    Parameters
    ----------
    setup : Setup
        What :func:`build` returned for ``config``.
    config : TrainConfig
        The run (batch size, seed, verbosity).
    callbacks : sequence of Callback
        Passed to the trainer.
    record : mapping, optional
        Saved in the checkpoints (``ferroptim train`` keeps its command line there).
    """
    from ferroptim.train.trainer import Trainer

    classification = setup.data.task == "classification"
    return Trainer(
        setup.model,
        setup.optimizer,
        loss="cross_entropy" if classification else "mse",
        metrics=["accuracy"] if classification else ["r2"],
        scheduler=setup.scheduler,
        batch_size=config.batch_size,
        callbacks=list(callbacks),
        seed=config.seed,
        verbose=config.verbose,
        config=record,
        loss_scaler=_precision.loss_scaler(config.loss_scale, config.dtype),
    )


def build_trainer(config: TrainConfig, callbacks: Sequence[Any] = ()) -> tuple[Any, Any]:
    """Builds a run and its trainer: what ``ferroptim train`` and ``tune`` both call.

    Parameters
    ----------
    config : TrainConfig
        The run.
    callbacks : sequence of Callback
        Passed to the trainer.

    Returns
    -------
    tuple
        ``(trainer, data)``: fit with ``trainer.fit(data.X_train, data.y_train, ...)``.
        Raises :class:`UsageError` naming the bad field's flag.
    """
    setup = build(config)
    return make_trainer(setup, config, callbacks), setup.data

"""The settings of one ``ferroptim tune`` run and every check made before a trial runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "PRUNERS", "SAMPLERS", "TuneConfig", "TuneError", "WorkerError", "check"]

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes")
PRUNERS = ("median", "halving", "hyperband", "none")
# Validation metrics the trainer logs, per task.
METRICS = {
    "classification": ("val_accuracy", "val_loss"),
    "regression": ("val_r2", "val_loss"),
}


class TuneError(ValueError):
    """Bad tuning input, reported before any trial runs."""


class WorkerError(RuntimeError):
    """A worker process died; the outputs of the finished trials were written."""


@dataclass
class TuneConfig:
    """The settings of one run; the fields are the ``ferroptim tune`` flags."""

    dataset: str = "digits"
    trials: int = 40
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int = 1
    out: str = "tune-run"
    storage: str | None = None
    study: str = "ferroptim"
    space: Any = None
    epochs: int = 15
    seed: int = 0
    metric: str = "val_accuracy"
    retrain_best: bool = False
    heartbeat: int = 5
    grace: int = 15
    verbose: int = 1

    @property
    def direction(self) -> str:
        return "minimize" if self.metric.endswith("loss") else "maximize"

    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{Path(self.out).resolve() / 'study.db'}"


def _check_out(out: Path) -> None:
    """Refuses an --out that cannot become a writable folder (changes nothing)."""
    if out.exists() and not out.is_dir():
        raise TuneError(f"--out: {out} exists and is not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TuneError(f"--out: cannot create {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TuneError(f"--out: cannot write in {parent}")


def _check_storage(cfg: TuneConfig) -> None:
    url = cfg.storage_url()
    memory = url in ("sqlite://", "sqlite:///:memory:") or url.startswith("sqlite:///:memory:?")
    if memory:  # each connection (each heartbeat thread, each worker) gets its own
        raise TuneError(
            f"--storage: {url!r} is private to one connection, so heartbeats, workers and "
            "resuming cannot share it; give a file (sqlite:///PATH) or a database server"
        )


def _shortest_steps(cfg: TuneConfig, specs: dict[str, Any], n_train: int) -> tuple[int, int]:
    """(steps of the shortest trial, its batch size): the largest batch gives the fewest."""
    spec = specs.get("batch_size")
    if spec is None:
        batch = 32  # ferroptim train's default
    elif spec.type == "categorical":
        batch = int(max(spec.choices))
    else:
        batch = int(spec.high)
    return cfg.epochs * -(-n_train // max(batch, 1)), batch


def _probe(cfg: TuneConfig, specs: dict[str, Any]) -> None:
    """Every value of the space, with every optimizer that takes it, must make a
    valid training config (train's own checks, so the two stay in step)."""
    from ferroptim.train.build import UsageError, check_config
    from ferroptim.tune.space import PARAMS, train_config

    def valid(params: dict[str, Any]) -> None:
        check_config(train_config(params, cfg))

    try:
        valid({})
    except UsageError as err:  # the settings tune passes on (seed, epochs)
        raise TuneError(str(err)) from None
    optimizers = specs["optimizer"].choices if "optimizer" in specs else ["adamw"]
    for opt in optimizers:
        for name, spec in specs.items():
            takers = PARAMS[name][1]
            if name == "optimizer" or (takers is not None and opt not in takers):
                continue
            if spec.type == "categorical":
                values = list(spec.choices)
            else:
                values = [spec.low, spec.high, *(spec.grid or [])]
                values = [int(v) for v in values] if spec.type == "int" else values
            for value in values:
                try:
                    valid({"optimizer": opt, name: value})
                except UsageError as err:
                    raise TuneError(f"space: {name} {value!r} with {opt}: {err}") from None


def check(cfg: TuneConfig) -> dict[str, Any]:
    """Every input check, before any trial runs; returns the space to search.

    Parameters
    ----------
    cfg : TuneConfig
        The run's settings. Nothing is created or written here.

    Returns
    -------
    dict
        ``name -> Spec``; for the default space, cut to fit the run.
    """
    from ferroptim.tune.space import fit_default_space, load_space

    if cfg.sampler not in SAMPLERS:
        raise TuneError(f"--sampler: unknown {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")
    if cfg.pruner not in PRUNERS:
        raise TuneError(f"--pruner: unknown {cfg.pruner!r}; choose from {', '.join(PRUNERS)}")
    for name, value, low in (
        ("--trials", cfg.trials, 1),
        ("--workers", cfg.workers, 1),
        ("--epochs", cfg.epochs, 1),
        ("--heartbeat", cfg.heartbeat, 1),
        ("--grace", cfg.grace, 1),
        ("--seed", cfg.seed, 0),
    ):
        if value < low:
            raise TuneError(f"{name} must be >= {low}, got {value}")
    known = sorted({m for ms in METRICS.values() for m in ms})
    if cfg.metric not in known:
        raise TuneError(f"--metric: {', '.join(known)}; got {cfg.metric!r}")
    _check_out(Path(cfg.out))
    _check_storage(cfg)
    specs = load_space(cfg.space)
    try:
        from ferroptim.train.data import load_dataset

        data = load_dataset(cfg.dataset, seed=cfg.seed)
    except ValueError as err:
        raise TuneError(f"--dataset: {err}") from None
    if cfg.metric not in METRICS[data.task]:
        raise TuneError(
            f"--metric: {cfg.dataset} is a {data.task} task, so {' or '.join(METRICS[data.task])}"
            f"; got {cfg.metric!r}"
        )
    n_train = len(data.X_train)
    if cfg.space is None:
        specs = fit_default_space(specs, _shortest_steps(cfg, specs, n_train)[0])
    if cfg.sampler == "grid":
        for spec in specs.values():
            spec.grid_values()
    if cfg.sampler == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise TuneError("--sampler gp needs torch and scipy installed") from None
    if cfg.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise TuneError("--sampler cmaes needs the 'cmaes' package") from None
    _probe(cfg, specs)
    if "warmup" in specs:
        # A trial's warmup must be shorter than its run: check the longest
        # warmup against the fewest steps (the largest batch size).
        spec = specs["warmup"]
        warmup = max(spec.choices) if spec.type == "categorical" else spec.high
        steps, batch = _shortest_steps(cfg, specs, n_train)
        if warmup >= steps:
            raise TuneError(
                f"space: 'warmup' reaches {warmup:g} steps, but a trial of {cfg.epochs} epochs "
                f"at batch size {batch} has only {steps}; lower its 'high' or add epochs"
            )
    return specs

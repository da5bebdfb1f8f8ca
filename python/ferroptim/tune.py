"""`ferroptim tune`: hyperparameter search on Optuna over the trainer.

Optuna is the engine: its samplers (grid, random, TPE, GP, CMA-ES), its
pruners (median, successive halving, Hyperband) fed once per epoch, and its
storages. Workers are processes that share one study through storage: a
SQLite file in the run folder by default, or any Optuna storage URL (for
example ``postgresql://user@host/db``) to spread workers over machines.
Trials whose worker dies are detected by Optuna's heartbeat, marked failed,
and re-queued (``RetryHeartbeatStaleTrialCallback``).

A search space is a dict (or a JSON / YAML file) ``name -> spec``:

.. code-block:: json

    {"optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
     "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true},
     "momentum": {"type": "float", "low": 0.5, "high": 0.99},
     "hidden": {"type": "categorical", "choices": ["64", "128,64"]}}

Names are ``ferroptim train`` flags (``lr``, ``weight_decay``, ``momentum``,
``beta1``, ``beta2``, ``eps``, ``batch_size``, ``schedule``, ``warmup``,
``hidden``, ``dropout``, ``activation``, ``max_grad_norm``, ``optimizer``).
A hyperparameter the sampled optimizer does not take (momentum for Adam) is
not sampled in that trial.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SPACE", "TuneConfig", "load_space", "main", "run"]

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "optimizer": {"type": "categorical", "choices": ["adamw", "adam", "sgd", "rmsprop", "nadam"]},
    "lr": {"type": "float", "low": 1e-4, "high": 3e-1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "schedule": {"type": "categorical", "choices": ["cosine", "constant", "onecycle"]},
    "warmup": {"type": "int", "low": 0, "high": 50},
    "hidden": {"type": "categorical", "choices": ["64", "128,64", "256,128"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes")
PRUNERS = ("median", "halving", "hyperband", "none")
# Search-space name -> (train flag, which optimizers take it; None: all).
PARAMS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "optimizer": ("--optimizer", None),
    "lr": ("--lr", None),
    "weight_decay": (
        "--weight-decay",
        (
            "sgd",
            "adam",
            "adamw",
            "rmsprop",
            "adagrad",
            "adadelta",
            "adamax",
            "nadam",
            "radam",
            "lion",
        ),
    ),
    "momentum": ("--momentum", ("sgd", "rmsprop")),
    "beta1": ("--betas", ("adam", "adamw", "adamax", "nadam", "radam", "lion")),
    "beta2": ("--betas", ("adam", "adamw", "adamax", "nadam", "radam", "lion")),
    "eps": (
        "--eps",
        ("adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam"),
    ),
    "batch_size": ("--batch-size", None),
    "schedule": ("--schedule", None),
    "warmup": ("--warmup", None),
    "hidden": ("--hidden", None),
    "dropout": ("--dropout", None),
    "activation": ("--activation", None),
    "max_grad_norm": ("--max-grad-norm", None),
}


class TuneError(ValueError):
    """Bad tuning input, reported before any trial runs."""


@dataclass
class Spec:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def grid_values(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        if self.step is None:
            raise TuneError(
                f"space: the grid sampler needs 'choices' or a 'step' for {self.name!r}"
            )
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(v) for v in values] if self.type == "int" else values


def load_space(space: str | os.PathLike | dict[str, Any] | None) -> dict[str, Spec]:
    """Reads and checks a search space (dict, or a .json / .yaml / .yml file)."""
    from ferroptim.train.cli import OPTIMIZERS, SCHEDULES

    if space is None:
        raw: Any = DEFAULT_SPACE
    elif isinstance(space, dict):
        raw = space
    else:
        path = Path(space)
        if not path.is_file():
            raise TuneError(f"--space: no such file {path}")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except ImportError:
            raise TuneError("--space: YAML files need PyYAML (pip install pyyaml)") from None
        except Exception as err:
            raise TuneError(f"--space: cannot parse {path}: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise TuneError("space: must be a non-empty mapping name -> spec")
    specs: dict[str, Spec] = {}
    for name, spec in raw.items():
        if name not in PARAMS:
            raise TuneError(f"space: unknown hyperparameter {name!r} (known: {', '.join(PARAMS)})")
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise TuneError(f"space: {name!r} needs a 'type' of float, int or categorical")
        kind = spec["type"]
        extra = set(spec) - {"type", "low", "high", "log", "step", "choices"}
        if extra:
            raise TuneError(f"space: {name!r} has unknown keys {sorted(extra)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TuneError(f"space: {name!r} needs a non-empty list of 'choices'")
            if name == "optimizer":
                unknown = [c for c in choices if c not in OPTIMIZERS]
                if unknown:
                    raise TuneError(f"space: unknown optimizer(s) {unknown}")
            if name == "schedule":
                unknown = [c for c in choices if c not in SCHEDULES]
                if unknown:
                    raise TuneError(f"space: unknown schedule(s) {unknown}")
            specs[name] = Spec(name, kind, choices=list(choices))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise TuneError(f"space: {name!r} needs numeric 'low' and 'high'")
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise TuneError(f"space: {name!r} has an empty or inverted range [{low}, {high}]")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise TuneError(f"space: {name!r} is log-scaled, so 'low' must be > 0, got {low}")
        step = spec.get("step")
        if step is not None and (not isinstance(step, (int, float)) or step <= 0):
            raise TuneError(f"space: {name!r} has a bad 'step' {step!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise TuneError(f"space: {name!r} is an int range, got [{low}, {high}]")
        specs[name] = Spec(name, kind, float(low), float(high), log, step)
    return specs


def suggest(trial: Any, specs: dict[str, Spec]) -> dict[str, Any]:
    """Samples one configuration; skips what the sampled optimizer does not take."""
    params: dict[str, Any] = {}
    order = sorted(specs, key=lambda n: n != "optimizer")
    for name in order:
        spec = specs[name]
        takers = PARAMS[name][1]
        opt = params.get("optimizer", "adamw")
        if takers is not None and opt not in takers:
            continue
        if spec.type == "categorical":
            params[name] = trial.suggest_categorical(name, spec.choices)
        elif spec.type == "int":
            params[name] = trial.suggest_int(
                name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            params[name] = trial.suggest_float(
                name, spec.low, spec.high, step=spec.step, log=spec.log
            )
    return params


def train_argv(params: dict[str, Any], cfg: TuneConfig) -> list[str]:
    """The ``ferroptim train`` flags of one configuration."""
    argv = [
        "--dataset",
        cfg.dataset,
        "--epochs",
        str(cfg.epochs),
        "--seed",
        str(cfg.seed),
        "--verbose",
        "0",
    ]
    betas = [params.get("beta1", 0.9), params.get("beta2", 0.999)]
    for name, value in params.items():
        flag = PARAMS[name][0]
        if name in ("beta1", "beta2"):
            continue
        argv += [flag, str(value)]
    if "beta1" in params or "beta2" in params:
        argv += ["--betas", f"{betas[0]},{betas[1]}"]
    return argv


@dataclass
class TuneConfig:
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


def make_storage(cfg: TuneConfig) -> Any:
    """Optuna's RDB storage with heartbeats; fails here, before any trial, if unreachable."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = cfg.storage_url()
    try:
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                heartbeat_interval=cfg.heartbeat,
                grace_period=cfg.grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except Exception as err:  # sqlalchemy's errors differ per driver
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TuneError(f"--storage: cannot open {url!r}: {msg}") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(cfg: TuneConfig, specs: dict[str, Spec]) -> Any:
    import optuna

    s = optuna.samplers
    if cfg.sampler == "tpe":
        return s.TPESampler(seed=cfg.seed, n_startup_trials=min(10, max(cfg.trials // 4, 1)))
    if cfg.sampler == "random":
        return s.RandomSampler(seed=cfg.seed)
    if cfg.sampler == "grid":
        return s.GridSampler({n: spec.grid_values() for n, spec in specs.items()}, seed=cfg.seed)
    if cfg.sampler == "gp":
        return s.GPSampler(seed=cfg.seed)
    if cfg.sampler == "cmaes":
        return s.CmaEsSampler(seed=cfg.seed, warn_independent_sampling=False)
    raise TuneError(f"--sampler: unknown {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")


def make_pruner(cfg: TuneConfig) -> Any:
    import optuna

    p = optuna.pruners
    return {
        "median": lambda: p.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        "halving": lambda: p.SuccessiveHalvingPruner(),
        "hyperband": lambda: p.HyperbandPruner(min_resource=1, max_resource=cfg.epochs),
        "none": lambda: p.NopPruner(),
    }[cfg.pruner]()


def check(cfg: TuneConfig) -> dict[str, Spec]:
    """Every input check, before any trial runs."""
    if cfg.sampler not in SAMPLERS:
        raise TuneError(f"--sampler: unknown {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")
    if cfg.pruner not in PRUNERS:
        raise TuneError(f"--pruner: unknown {cfg.pruner!r}; choose from {', '.join(PRUNERS)}")
    for name, value, low in (
        ("--trials", cfg.trials, 1),
        ("--workers", cfg.workers, 1),
        ("--epochs", cfg.epochs, 1),
    ):
        if value < low:
            raise TuneError(f"{name} must be >= {low}, got {value}")
    if cfg.metric not in ("val_accuracy", "val_loss", "val_r2"):
        raise TuneError(f"--metric: val_accuracy, val_loss or val_r2, got {cfg.metric!r}")
    specs = load_space(cfg.space)
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
    # Every sampled configuration must be a valid `ferroptim train` command.
    from ferroptim.train.cli import UsageError, build_parser, optimizer_kwargs

    try:
        from ferroptim.train.data import load_dataset

        data = load_dataset(cfg.dataset, seed=cfg.seed)
    except ValueError as err:
        raise TuneError(f"--dataset: {err}") from None
    optimizers = specs["optimizer"].choices if "optimizer" in specs else ["adamw"]
    for opt in optimizers:
        probe = {"optimizer": opt}
        for name, spec in specs.items():
            takers = PARAMS[name][1]
            if name == "optimizer" or (takers is not None and opt not in takers):
                continue
            if spec.type == "categorical":
                probe[name] = spec.choices[0]
            else:
                probe[name] = int(spec.low) if spec.type == "int" else spec.low
        try:
            optimizer_kwargs(build_parser().parse_args(train_argv(probe, cfg)))
        except UsageError as err:
            raise TuneError(f"space: {err}") from None
    if "warmup" in specs:
        # A trial's warmup must be shorter than its run: check the longest
        # warmup against the fewest steps (the largest batch size).
        def top(name: str, default: float) -> float:
            spec = specs.get(name)
            if spec is None:
                return default
            return max(spec.choices) if spec.type == "categorical" else spec.high

        try:
            warmup, batch = float(top("warmup", 0)), int(top("batch_size", 32))
        except (TypeError, ValueError):  # not numbers: the trials will report it
            warmup, batch = -1.0, 1
        steps = cfg.epochs * -(-len(data.X_train) // max(batch, 1))
        if warmup >= steps:
            raise TuneError(
                f"space: 'warmup' reaches {warmup:g} steps, but a trial of {cfg.epochs} epochs "
                f"at batch size {batch} has only {steps}; lower its 'high' or add epochs"
            )
    return specs


_DATA_CACHE: dict[tuple[str, int], Any] = {}


def objective(trial: Any, cfg: TuneConfig, specs: dict[str, Spec]) -> float:
    import optuna

    from ferroptim.train.callbacks import Callback
    from ferroptim.train.cli import UsageError, _build, build_parser
    from ferroptim.train.trainer import Trainer

    trial.set_user_attr("pid", os.getpid())
    params = suggest(trial, specs)
    try:
        args = build_parser().parse_args(train_argv(params, cfg))
        data, model, optimizer, extra = _build(args)
    except UsageError as err:  # fails this trial (caught by optimize), not the study
        raise TuneError(f"trial {trial.number}: {err}") from None
    metric = cfg.metric
    best = [math.inf if cfg.direction == "minimize" else -math.inf]

    class Report(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
            value = logs[metric]
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"{metric} is {value}")
            better = value < best[0] if cfg.direction == "minimize" else value > best[0]
            best[0] = value if better else best[0]
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")

    classification = data.task == "classification"
    trainer = Trainer(
        model,
        optimizer,
        loss="cross_entropy" if classification else "mse",
        metrics=["accuracy"] if classification else ["r2"],
        scheduler=extra["scheduler"],
        batch_size=args.batch_size,
        callbacks=[Report()],
        seed=cfg.seed,
        verbose=0,
    )
    trainer.fit(
        data.X_train, data.y_train, epochs=cfg.epochs, validation_data=(data.X_val, data.y_val)
    )
    return best[0]


def _worker(cfg_dict: dict[str, Any], n_trials: int, index: int = 0) -> None:
    import optuna

    cfg = TuneConfig(**cfg_dict)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    specs = load_space(cfg.space)
    # Same seed in every worker would sample the same configurations twice.
    sampler_cfg = TuneConfig(**{**cfg_dict, "seed": cfg.seed + index})
    study = optuna.load_study(
        study_name=cfg.study,
        storage=make_storage(cfg),
        sampler=make_sampler(sampler_cfg, specs),
        pruner=make_pruner(cfg),
    )
    study.optimize(
        lambda t: objective(t, cfg, specs),
        n_trials=n_trials,
        catch=(ValueError, FloatingPointError),
    )


def _progress(cfg: TuneConfig, total: int):
    if not cfg.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)


def run(cfg: TuneConfig) -> Any:
    """Runs the study to ``cfg.trials`` finished trials; writes the outputs."""
    import optuna
    from optuna.trial import TrialState

    specs = check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = make_storage(cfg)
    study = optuna.create_study(
        study_name=cfg.study,
        storage=storage,
        direction=cfg.direction,
        sampler=make_sampler(cfg, specs),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    done_states = (TrialState.COMPLETE, TrialState.PRUNED)
    already = len(study.get_trials(deepcopy=False, states=done_states))
    remaining = max(cfg.trials - already, 0)
    # Each worker gets its share, so the study ends with exactly cfg.trials.
    shares = [remaining // cfg.workers + (i < remaining % cfg.workers) for i in range(cfg.workers)]
    bar = _progress(cfg, cfg.trials)
    if bar is not None:
        bar.update(already)
    if cfg.workers == 1:

        def tick(study: Any, trial: Any) -> None:
            if bar is not None and trial.state in done_states:
                bar.update(1)

        study.optimize(
            lambda t: objective(t, cfg, specs),
            n_trials=shares[0],
            callbacks=[tick],
            catch=(ValueError, FloatingPointError),
        )
    else:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_worker, args=(asdict(cfg), n, i))
            for i, n in enumerate(shares)
            if n > 0
        ]
        for p in procs:
            p.start()
        seen = already
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            now = len(study.get_trials(deepcopy=False, states=done_states))
            if bar is not None and now > seen:
                bar.update(now - seen)
            seen = now
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"{len(bad)} worker(s) failed (exit codes {bad})")
    if bar is not None:
        bar.close()
    write_outputs(study, out, cfg)
    if cfg.retrain_best and _completed(study):
        from ferroptim.train.cli import main as train_main

        argv = train_argv(study.best_params, cfg)
        argv[argv.index("--verbose") + 1] = str(cfg.verbose)
        train_main(argv + ["--out", str(out / "best-model")])
    return study


def _completed(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def write_outputs(study: Any, out: Path, cfg: TuneConfig) -> None:
    """best.json, trials.csv and three PNG plots."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    with (out / "trials.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "value", "duration_s", *names])
        for t in trials:
            dur = (
                (t.datetime_complete - t.datetime_start).total_seconds()
                if (t.datetime_complete and t.datetime_start)
                else ""
            )
            w.writerow(
                [t.number, t.state.name, t.value, dur, *[t.params.get(n, "") for n in names]]
            )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return
    best = study.best_trial
    (out / "best.json").write_text(
        json.dumps(
            {
                "value": best.value,
                "metric": cfg.metric,
                "params": best.params,
                "trial": best.number,
                "train_command": "ferroptim train " + " ".join(train_argv(best.params, cfg)),
            },
            indent=2,
        )
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.exceptions import ExperimentalWarning

    plots = [
        ("history.png", vis.plot_optimization_history),
        ("parallel_coordinate.png", vis.plot_parallel_coordinate),
    ]
    if len(complete) >= 2 and len(names) >= 2:
        plots.append(("importances.png", vis.plot_param_importances))
    for filename, fn in plots:
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore", ExperimentalWarning)
                ax = fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(10, 6)
            fig.tight_layout()
            fig.savefig(out / filename, dpi=100)
            plt.close(fig)
        except (ValueError, RuntimeError) as err:  # e.g. importances with constant values
            print(f"ferroptim tune: skipped {filename}: {err}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from ferroptim.train.cli import _Parser

    p = _Parser(prog="ferroptim tune", description=__doc__.split("\n\n")[0])
    d = TuneConfig()
    p.add_argument("--dataset", default=d.dataset)
    p.add_argument("--trials", type=int, default=d.trials)
    p.add_argument("--sampler", default=d.sampler, help="|".join(SAMPLERS))
    p.add_argument("--pruner", default=d.pruner, help="|".join(PRUNERS))
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--out", default=d.out)
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: sqlite file OUT/study.db)"
    )
    p.add_argument("--study", default=d.study, help="study name")
    p.add_argument("--space", default=None, help="search space file (.json, .yaml)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--metric", default=d.metric)
    p.add_argument("--retrain-best", action="store_true")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    from ferroptim.train.cli import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = build_parser().parse_args(argv)
        cfg = TuneConfig(
            dataset=a.dataset,
            trials=a.trials,
            sampler=a.sampler,
            pruner=a.pruner,
            workers=a.workers,
            out=a.out,
            storage=a.storage,
            study=a.study,
            space=a.space,
            epochs=a.epochs,
            seed=a.seed,
            metric=a.metric,
            retrain_best=a.retrain_best,
            verbose=a.verbose,
        )
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise TuneError("ferroptim tune needs Optuna: pip install 'ferroptim[tune]'") from None
        study = run(cfg)
    except (UsageError, TuneError) as err:
        print(f"ferroptim tune: error: {err}", file=sys.stderr)
        return 2
    if not _completed(study):  # all pruned or failed: there is no best trial
        print(
            f"ferroptim tune: no trial completed (all pruned or failed); see {cfg.out}/trials.csv",
            file=sys.stderr,
        )
        return 1
    best = study.best_trial
    print(f"best {cfg.metric}: {best.value:.4f} (trial {best.number}) with {best.params}")
    print(f"wrote {cfg.out}/best.json, trials.csv and plots")
    return 0

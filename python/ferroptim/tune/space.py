"""Search spaces: the default space, reading and checking a space, sampling one
configuration, and the ``ferroptim train`` flags of a configuration."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferroptim.tune.config import TuneError

if TYPE_CHECKING:
    from ferroptim.train.build import TrainConfig
    from ferroptim.tune.config import TuneConfig

__all__ = [
    "DEFAULT_SPACE",
    "PARAMS",
    "Spec",
    "load_space",
    "suggest",
    "train_argv",
    "train_config",
]

# "grid": the values the grid sampler tries (ranges have none of their own).
# The warmup range is cut to fit the shortest trial (see fit_default_space).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "optimizer": {"type": "categorical", "choices": ["adamw", "adam", "sgd", "rmsprop", "nadam"]},
    "lr": {
        "type": "float",
        "low": 1e-4,
        "high": 3e-1,
        "log": True,
        "grid": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    },
    "weight_decay": {
        "type": "float",
        "low": 1e-6,
        "high": 1e-1,
        "log": True,
        "grid": [1e-4, 1e-2],
    },
    "momentum": {"type": "float", "low": 0.5, "high": 0.99, "grid": [0.9]},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
    "schedule": {"type": "categorical", "choices": ["cosine", "constant", "onecycle"]},
    "warmup": {"type": "int", "low": 0, "high": 50, "grid": [0, 10, 50]},
    "hidden": {"type": "categorical", "choices": ["64", "128,64", "256,128"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3, "grid": [0.0, 0.2]},
}

# Search-space names of the trainer's own settings -> their train flag.
TRAINER_FLAGS = {
    "optimizer": "--optimizer",
    "batch_size": "--batch-size",
    "schedule": "--schedule",
    "warmup": "--warmup",
    "hidden": "--hidden",
    "dropout": "--dropout",
    "activation": "--activation",
    "max_grad_norm": "--max-grad-norm",
}
TRAINER_BOUNDS: dict[str, tuple[float, bool, float, bool]] = {
    "batch_size": (1.0, False, math.inf, False),
    "warmup": (0.0, False, math.inf, False),
    "dropout": (0.0, False, 1.0, True),
    "max_grad_norm": (0.0, True, math.inf, False),
}
# A tuple hyperparameter is searched value by value: betas as beta1 and beta2.
_PARTS = {"betas": ("beta1", "beta2")}


def _optimizer_params() -> tuple[dict[str, tuple[str, Any]], dict[str, Any]]:
    """Every searchable hyperparameter of the registry's optimizers: (name -> (train
    flag, the optimizers that take it; None: all)), and name -> bounds."""
    from ferroptim import registry
    from ferroptim.train.build import FLAGGED

    params: dict[str, tuple[str, Any]] = {}
    bounds: dict[str, Any] = {}
    everyone = set(registry.names())
    for info in registry.optimizers().values():
        for hp in info.hyperparameters.values():
            if not hp.searchable:
                continue
            takers = registry.takers(hp.name)
            for name in _PARTS.get(hp.name, (hp.name,)):
                flag = FLAGGED.get(hp.name, "--opt")
                params[name] = (flag, None if set(takers) == everyone else takers)
                bounds[name] = hp.bounds
    return params, bounds


_OPT_PARAMS, _OPT_BOUNDS = _optimizer_params()
# Search-space name -> (train flag, which optimizers take it; None: all). The
# optimizers' entries come from ferroptim.registry; "--opt" means --opt NAME=VALUE.
PARAMS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "optimizer": ("--optimizer", None),
    **_OPT_PARAMS,
    **{n: (flag, None) for n, flag in TRAINER_FLAGS.items() if n != "optimizer"},
}
# Numeric hyperparameters: (lowest, lowest excluded, highest, highest excluded).
BOUNDS: dict[str, tuple[float, bool, float, bool]] = {**_OPT_BOUNDS, **TRAINER_BOUNDS}
INTS = ("batch_size", "warmup")
ACTIVATIONS = ("relu", "tanh", "sigmoid")


@dataclass
class Spec:
    """One hyperparameter of a search space (see :func:`load_space`)."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)
    grid: list[Any] | None = None

    def grid_values(self) -> list[Any]:
        """The values the grid sampler tries: the choices, the 'grid' list or the steps."""
        if self.type == "categorical":
            return list(self.choices)
        if self.grid is not None:
            return list(self.grid)
        if self.step is None:
            raise TuneError(
                f"space: the grid sampler needs 'choices', a 'grid' list or a 'step' "
                f"for {self.name!r}"
            )
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(v) for v in values] if self.type == "int" else values

    def raw(self) -> dict[str, Any]:
        """The spec as a space entry again (what workers are handed)."""
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        raw: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        raw.update(log=self.log, step=self.step)
        if self.grid is not None:
            raw["grid"] = list(self.grid)
        return raw


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_bounds(name: str, value: Any, what: str) -> None:
    """Refuses a value ``ferroptim train`` would refuse (or take badly) for ``name``."""
    if name not in BOUNDS:
        return
    lo, lo_open, hi, hi_open = BOUNDS[name]
    if not _is_number(value) or not math.isfinite(value):
        raise TuneError(f"space: {name!r} takes numbers, got {what} {value!r}")
    if name in INTS and value != int(value):
        raise TuneError(f"space: {name!r} takes whole numbers, got {what} {value!r}")
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    bad = value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi)
    if bad:
        span = f"> {lo:g}" if lo_open else f">= {lo:g}"
        if hi != math.inf:
            span = f"in {left}{lo:g}, {hi:g}{right}"
        raise TuneError(f"space: {name!r} must be {span}, got {what} {value!r}")


def _check_choice(name: str, choice: Any) -> None:
    from ferroptim import registry
    from ferroptim.train.build import SCHEDULES

    named = {"optimizer": registry.names(), "schedule": SCHEDULES, "activation": ACTIVATIONS}
    if name in named and choice not in named[name]:
        known = ", ".join(named[name])
        raise TuneError(f"space: unknown {name} {choice!r} in 'choices' (known: {known})")
    if name == "hidden":
        parts = str(choice).split(",") if str(choice).strip() else []
        try:
            ok = not isinstance(choice, bool) and all(
                float(p) >= 1 and float(p).is_integer() for p in parts
            )
        except ValueError:
            ok = False
        if not ok:
            raise TuneError(
                f"space: 'hidden' choices are layer widths like \"128,64\", got {choice!r}"
            )
    _in_bounds(name, choice, "choice")


def _read(space: str | os.PathLike | dict[str, Any] | None) -> Any:
    if space is None:
        return DEFAULT_SPACE
    if isinstance(space, dict):
        return space
    path = Path(space)
    if not path.is_file():
        raise TuneError(f"--space: no such file {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except ImportError:
        raise TuneError("--space: YAML files need PyYAML (pip install pyyaml)") from None
    except Exception as err:
        raise TuneError(f"--space: cannot parse {path}: {err}") from None


def load_space(space: str | os.PathLike | dict[str, Any] | None) -> dict[str, Spec]:
    """Reads and checks a search space.

    Parameters
    ----------
    space : dict, str, os.PathLike or None
        A mapping ``name -> spec``, a .json / .yaml / .yml file holding one, or
        None for :data:`DEFAULT_SPACE`.

    Returns
    -------
    dict
        ``name -> Spec``. Raises :class:`TuneError` naming the bad entry.
    """
    raw = _read(space)
    if not isinstance(raw, dict) or not raw:
        raise TuneError("space: must be a non-empty mapping name -> spec")
    specs: dict[str, Spec] = {}
    for name, spec in raw.items():
        if name not in PARAMS:
            raise TuneError(f"space: unknown hyperparameter {name!r} (known: {', '.join(PARAMS)})")
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise TuneError(f"space: {name!r} needs a 'type' of float, int or categorical")
        kind = spec["type"]
        extra = set(spec) - {"type", "low", "high", "log", "step", "choices", "grid"}
        if extra:
            raise TuneError(f"space: {name!r} has unknown keys {sorted(extra)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TuneError(f"space: {name!r} needs a non-empty list of 'choices'")
            for choice in choices:
                _check_choice(name, choice)
            specs[name] = Spec(name, kind, choices=list(choices))
            continue
        if name not in BOUNDS:
            raise TuneError(f"space: {name!r} is not a number; give it 'choices'")
        low, high = spec.get("low"), spec.get("high")
        if not all(_is_number(v) for v in (low, high)):
            raise TuneError(f"space: {name!r} needs numeric 'low' and 'high'")
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise TuneError(f"space: {name!r} has an empty or inverted range [{low}, {high}]")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise TuneError(f"space: {name!r} is log-scaled, so 'low' must be > 0, got {low}")
        if kind == "float" and name in INTS:
            raise TuneError(f'space: {name!r} takes whole numbers; make it "type": "int"')
        _in_bounds(name, low, "low")
        _in_bounds(name, high, "high")
        step = spec.get("step")
        if step is not None and (not _is_number(step) or not step > 0):
            raise TuneError(f"space: {name!r} has a bad 'step' {step!r}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise TuneError(f"space: {name!r} is an int range, got [{low}, {high}]")
        grid = spec.get("grid")
        if grid is not None:
            if not isinstance(grid, list) or not grid:
                raise TuneError(f"space: {name!r} has a bad 'grid' {grid!r}; give a list")
            for value in grid:
                if not _is_number(value) or not low <= value <= high:
                    raise TuneError(
                        f"space: {name!r} 'grid' value {value!r} is outside [{low}, {high}]"
                    )
                if kind == "int" and value != int(value):
                    raise TuneError(f"space: {name!r} 'grid' value {value!r} is not whole")
            grid = [int(v) for v in grid] if kind == "int" else [float(v) for v in grid]
        specs[name] = Spec(name, kind, float(low), float(high), log, step, grid=grid)
    return specs


def fit_default_space(specs: dict[str, Spec], shortest_steps: int) -> dict[str, Spec]:
    """The default space cut to a run: warmup up to a fifth of the shortest trial.

    Parameters
    ----------
    specs : dict
        The default space as :func:`load_space` returns it.
    shortest_steps : int
        Optimizer steps of the shortest trial (the largest batch size).
    """
    specs = dict(specs)
    warmup = specs.pop("warmup", None)
    cap = min(int(warmup.high), shortest_steps // 5) if warmup is not None else 0
    if warmup is not None and cap >= 1:  # else: too short a run for any warmup
        grid = sorted({v for v in (warmup.grid or []) if v <= cap} | {0, cap})
        specs["warmup"] = Spec("warmup", "int", 0.0, float(cap), grid=grid)
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


def train_config(params: dict[str, Any], cfg: TuneConfig) -> TrainConfig:
    """The :class:`~ferroptim.train.build.TrainConfig` of one configuration (what a trial
    trains; quiet)."""
    from ferroptim.train.build import TrainConfig

    fields: dict[str, Any] = {"dataset": cfg.dataset, "epochs": cfg.epochs, "seed": cfg.seed}
    fields["verbose"] = 0
    extra: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("beta1", "beta2"):
            continue
        if PARAMS[name][0] == "--opt":
            extra[name] = value
        else:
            fields[name] = value
    if "beta1" in params or "beta2" in params:
        fields["betas"] = (params.get("beta1", 0.9), params.get("beta2", 0.999))
    return TrainConfig(**fields, opt=extra)


def train_argv(params: dict[str, Any], cfg: TuneConfig) -> list[str]:
    """The ``ferroptim train`` flags of one configuration (the same run as
    :func:`train_config`, written for a shell: best.json's train command)."""
    argv = ["--dataset", cfg.dataset, "--epochs", str(cfg.epochs)]
    argv += ["--seed", str(cfg.seed), "--verbose", "0"]
    betas = [params.get("beta1", 0.9), params.get("beta2", 0.999)]
    for name, value in params.items():
        if name in ("beta1", "beta2"):
            continue
        flag = PARAMS[name][0]
        argv += ["--opt", f"{name}={value}"] if flag == "--opt" else [flag, str(value)]
    if "beta1" in params or "beta2" in params:
        argv += ["--betas", f"{betas[0]},{betas[1]}"]
    return argv

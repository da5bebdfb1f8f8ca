"""Argument checks shared by the schedules: each raises HyperparameterError naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim.exceptions import HyperparameterError

StepLike = int | np.integer | np.ndarray | Sequence[int]


def _int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, else HyperparameterError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise HyperparameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise HyperparameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval, else HyperparameterError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise HyperparameterError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v <= low if low_open else v < low):
        raise HyperparameterError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v >= high if high_open else v > high):
        raise HyperparameterError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise HyperparameterError(
            f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}"
        )
    return str(value)


def _callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise HyperparameterError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _base(base: float | None, name: str = "base") -> tuple[float, bool]:
    """``(scale, relative)``: a factor schedule (scale 1) when ``base`` is None."""
    if base is None:
        return 1.0, True
    return _real(name, base, low=0.0), False


def _bool(name: str, value: Any) -> bool:
    # Only real booleans: a string such as "no" would be truthy.
    if not isinstance(value, (bool, np.bool_)):
        raise HyperparameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _momenta(lo: Any, hi: Any) -> tuple[float, float]:
    """``(base_momentum, max_momentum)``: both in [0, 1], the base no higher than the max."""
    lo = _real("base_momentum", lo, low=0.0, high=1.0)
    hi = _real("max_momentum", hi, low=0.0, high=1.0)
    if lo > hi:
        raise HyperparameterError(f"base_momentum must be <= max_momentum ({hi}), got {lo}")
    return lo, hi


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise HyperparameterError(f"step must be an integer, got {step!r}")
    if step < 0:
        raise HyperparameterError(f"step must be >= 0, got {step}")
    return int(step)


def _steps(step: Any) -> np.ndarray:
    steps = np.asarray(step)
    if steps.size and steps.dtype.kind not in "iu":
        raise HyperparameterError(f"step must be integers, got an array of dtype {steps.dtype}")
    if steps.size and steps.min() < 0:
        raise HyperparameterError(f"step must be >= 0, got {steps.min()}")
    return steps.astype(np.int64)


def _fmt(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)


def _param_groups(optimizer: Any) -> list[dict[str, Any]]:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise HyperparameterError(
            f"optimizer must have param_groups (a non-empty list of dicts), "
            f"got {type(optimizer).__name__}"
        )
    return groups


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)

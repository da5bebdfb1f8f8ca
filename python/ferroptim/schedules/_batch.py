"""Batch-size schedules: pure ``epoch -> int`` functions, each capped."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ferroptim.exceptions import HyperparameterError
from ferroptim.schedules._checks import StepLike, _fmt, _int, _real, _steps


class BatchSizeSchedule:
    """A pure ``epoch -> batch size`` (an int; an int64 array for an array of epochs)."""

    __slots__ = ("_fn", "name", "max_batch_size")

    def __init__(self, fn: Callable[[int], int], max_batch_size: int, name: str) -> None:
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.name = name

    def __call__(self, epoch: StepLike) -> Any:
        if isinstance(epoch, (np.ndarray, list, tuple)):
            epochs = _steps(epoch)
            out = np.fromiter(
                (self._fn(int(e)) for e in epochs.ravel()), dtype=np.int64, count=epochs.size
            )
            return out.reshape(epochs.shape)
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise HyperparameterError(f"epoch must be a non-negative integer, got {epoch!r}")
        return int(self._fn(int(epoch)))

    def __repr__(self) -> str:
        return f"<BatchSizeSchedule {self.name}>"


def _floor(x: float) -> int:
    """floor, forgiving the rounding error of a product that should be an integer."""
    return math.floor(x + 1e-9 * max(1.0, abs(x)))


def _grown(initial: int, factor: float, k: int, cap: int) -> int:
    """``min(cap, floor(initial * factor**k))`` without overflow."""
    if factor == 1.0 or k == 0:
        return min(cap, initial)
    if k * math.log(factor) > math.log(cap / initial) + 1e-9:
        return cap
    if isinstance(factor, int):
        return min(cap, initial * factor**k)
    return min(cap, _floor(initial * factor**k))


def _check_batch(initial: Any, max_batch_size: Any) -> tuple[int, int]:
    initial = _int("initial", initial, 1)
    cap = _int("max_batch_size", max_batch_size, 1)
    if cap < initial:
        raise HyperparameterError(f"max_batch_size must be >= initial ({initial}), got {cap}")
    return initial, cap


def _growth(name: str, value: Any) -> float | int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return _int(name, value, 1)
    return _real(name, value, low=1.0)


def step_batch_size(
    initial: int, factor: float, every: int, max_batch_size: int
) -> BatchSizeSchedule:
    r"""Multiply the batch size by ``factor`` every ``every`` epochs, capped.

    .. math::
        b_e = \min\bigl(b_{max},\
              \lfloor b_0\,\text{factor}^{\lfloor e / \text{every}\rfloor}\rfloor\bigr)
    """
    initial, cap = _check_batch(initial, max_batch_size)
    factor = _growth("factor", factor)
    every = _int("every", every, 1)
    return BatchSizeSchedule(
        lambda e: _grown(initial, factor, e // every, cap),
        cap,
        f"step_batch_size({_fmt(initial=initial, factor=factor, every=every, max_batch_size=cap)})",
    )


def linear_batch_size(
    initial: int, increment: int, max_batch_size: int, *, every: int = 1
) -> BatchSizeSchedule:
    r"""Grow the batch size by ``increment`` every ``every`` epochs, capped.

    .. math::
        b_e = \min\bigl(b_{max},\
              b_0 + \text{increment}\cdot\lfloor e / \text{every}\rfloor\bigr)
    """
    initial, cap = _check_batch(initial, max_batch_size)
    increment = _int("increment", increment, 0)
    every = _int("every", every, 1)
    return BatchSizeSchedule(
        lambda e: min(cap, initial + increment * (e // every)),
        cap,
        f"linear_batch_size({_fmt(initial=initial, increment=increment, max_batch_size=cap)})",
    )


def exponential_batch_size(initial: int, rate: float, max_batch_size: int) -> BatchSizeSchedule:
    r"""Grow the batch size by ``rate`` per epoch, rounded down and capped.

    .. math:: b_e = \min\bigl(b_{max},\ \lfloor b_0\,\text{rate}^{e}\rfloor\bigr)
    """
    initial, cap = _check_batch(initial, max_batch_size)
    rate = _growth("rate", rate)
    return BatchSizeSchedule(
        lambda e: _grown(initial, rate, e, cap),
        cap,
        f"exponential_batch_size({_fmt(initial=initial, rate=rate, max_batch_size=cap)})",
    )

"""The torch-named schedulers of one pure schedule each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ferroptim.exceptions import HyperparameterError
from ferroptim.lr_scheduler._base import LRScheduler
from ferroptim.schedules import (
    Schedule,
    chained,
    cosine_annealing,
    cosine_warm_restarts,
    exponential,
    lambda_schedule,
    linear,
    multi_step,
    multiplicative,
    polynomial,
    step_decay,
)
from ferroptim.schedules._checks import _callable, _int, _param_groups, _real


def _relative_or_absolute(sched: Schedule, eta_min: float, base: float, make: Any) -> Schedule:
    """torch's ``eta_min`` is an lr, not a factor: with one, a group's schedule is absolute."""
    return sched if eta_min == 0.0 else make(base)


class StepLR(LRScheduler):
    """Decays the lr by ``gamma`` every ``step_size`` steps (``schedules.step_decay``).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    step_size : int
        Steps between decays (>= 1).
    gamma : float
        Factor of each decay (> 0).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        sched = step_decay(step_size, gamma)
        self._start(optimizer, last_epoch, lambda i, b: sched)


class MultiStepLR(LRScheduler):
    """Decays the lr by ``gamma`` at each milestone (:func:`~ferroptim.schedules.multi_step`).

    As in torch, milestones may come in any order, and a repeated milestone
    decays once per repetition.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    milestones : iterable of int
        Steps at which the lr decays.
    gamma : float
        Factor of each decay (> 0).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise HyperparameterError(
                f"milestones must be a list of integers, got {type(milestones).__name__}"
            )
        counts = Counter(_int(f"milestones[{i}]", m, 0) for i, m in enumerate(milestones))
        # A milestone given k times decays k times: one strictly increasing layer per repetition.
        layers = [
            [m for m in sorted(counts) if counts[m] > k]
            for k in range(max(counts.values(), default=0))
        ]
        parts = [multi_step(layer, gamma) for layer in layers] or [multi_step([], gamma)]
        sched = parts[0] if len(parts) == 1 else chained(parts)
        self._start(optimizer, last_epoch, lambda i, b: sched)


class ConstantLR(LRScheduler):
    """Multiplies the lr by ``factor`` for the first ``total_iters`` steps, then by 1.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    factor : float
        The factor in [0, 1] for the first steps.
    total_iters : int
        How many steps the factor lasts (>= 0).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1
    ) -> None:
        f = _real("factor", factor, low=0.0, high=1.0)
        n = _int("total_iters", total_iters, 0)
        sched = Schedule(
            lambda t: f if t < n else 1.0,
            relative=True,
            name=f"constant_lr(factor={f!r}, total_iters={n})",
        )
        self._start(optimizer, last_epoch, lambda i, b: sched)


class LinearLR(LRScheduler):
    """Ramps the lr's factor linearly (:func:`~ferroptim.schedules.linear`), e.g. a warmup.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    start_factor : float
        Factor at step 0, in (0, 1] as torch requires.
    end_factor : float
        Factor from step ``total_iters`` on, in [0, 1].
    total_iters : int
        Length of the ramp (>= 1).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        s = _real("start_factor", start_factor, low=0.0, low_open=True, high=1.0)
        e = _real("end_factor", end_factor, low=0.0, high=1.0)
        sched = linear(s, e, total_iters)
        self._start(optimizer, last_epoch, lambda i, b: sched)


class ExponentialLR(LRScheduler):
    """Decays the lr by ``gamma`` every step (:func:`~ferroptim.schedules.exponential`).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    gamma : float
        Factor per step (> 0).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        sched = exponential(gamma)
        self._start(optimizer, last_epoch, lambda i, b: sched)


class PolynomialLR(LRScheduler):
    """Polynomial decay to 0 over ``total_iters`` steps (:func:`~ferroptim.schedules.polynomial`).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    total_iters : int
        Steps until the lr reaches 0 (>= 1).
    power : float
        Power of the polynomial (>= 0).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        sched = polynomial(total_iters, power)
        self._start(optimizer, last_epoch, lambda i, b: sched)


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing to ``eta_min`` (:func:`~ferroptim.schedules.cosine_annealing`).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    T_max : int
        Half-period of the cosine, in steps (>= 1).
    eta_min : float
        The lowest lr (an lr, the same for every group).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        sched = cosine_annealing(T_max)
        eta = _real("eta_min", eta_min, low=0.0)
        self._start(
            optimizer,
            last_epoch,
            lambda i, b: _relative_or_absolute(
                sched, eta, b, lambda base: cosine_annealing(T_max, eta, base=base)
            ),
        )


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR (:func:`~ferroptim.schedules.cosine_warm_restarts`).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    T_0 : int
        Length of the first cycle, in steps (>= 1).
    T_mult : int
        Growth factor of each cycle's length (>= 1).
    eta_min : float
        The lowest lr (an lr, the same for every group).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self,
        optimizer: Any,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        sched = cosine_warm_restarts(T_0, T_mult)
        eta = _real("eta_min", eta_min, low=0.0)
        self._start(
            optimizer,
            last_epoch,
            lambda i, b: _relative_or_absolute(
                sched, eta, b, lambda base: cosine_warm_restarts(T_0, T_mult, eta, base=base)
            ),
        )


def _per_group(name: str, fn: Any, n: int) -> list[Callable[[int], float]]:
    """One function for every group, or a list with one per group."""
    if isinstance(fn, (list, tuple)):
        if len(fn) != n:
            raise HyperparameterError(
                f"{name} is a list of {len(fn)} functions, but the optimizer has {n} param groups"
            )
        return [_callable(f"{name}[{i}]", f) for i, f in enumerate(fn)]
    return [_callable(name, fn)] * n


class LambdaLR(LRScheduler):
    """The lr's factor is ``lr_lambda(step)`` (:func:`~ferroptim.schedules.lambda_schedule`).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    lr_lambda : callable or list of callables
        ``step -> factor``, one for every group or one per group.
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        fns = _per_group("lr_lambda", lr_lambda, len(_param_groups(optimizer)))
        scheds = [lambda_schedule(f) for f in fns]
        self._start(optimizer, last_epoch, lambda i, b: scheds[i])


class MultiplicativeLR(LRScheduler):
    """Multiplies the lr by ``lr_lambda(step)`` each step (``schedules.multiplicative``).

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    lr_lambda : callable or list of callables
        ``step -> factor``, one for every group or one per group.
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(self, optimizer: Any, lr_lambda: Any, last_epoch: int = -1) -> None:
        fns = _per_group("lr_lambda", lr_lambda, len(_param_groups(optimizer)))
        self._start(optimizer, last_epoch, lambda i, b: multiplicative(fns[i]))

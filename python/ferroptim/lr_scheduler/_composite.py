"""SequentialLR, ChainedScheduler, OneCycleLR and CyclicLR."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from ferroptim.exceptions import HyperparameterError
from ferroptim.lr_scheduler._base import LRScheduler, _MomentumCycle
from ferroptim.schedules import (
    Schedule,
    chained,
    sequential,
)
from ferroptim.schedules._checks import _param_groups
from ferroptim.schedules._cycles import cyclic_lr_parts, one_cycle_lr_parts
from ferroptim.schedules._pure import _milestones


def _pieces(name: str, schedulers: Any, optimizer: Any) -> list[LRScheduler]:
    if isinstance(schedulers, (str, bytes)) or not isinstance(schedulers, Sequence):
        raise HyperparameterError(f"{name} must be a list of schedulers")
    if not schedulers:
        raise HyperparameterError(f"{name} must hold at least one scheduler")
    for i, s in enumerate(schedulers):
        if not isinstance(s, LRScheduler):
            raise HyperparameterError(
                f"{name}[{i}] must be a ferroptim.lr_scheduler scheduler, got {type(s).__name__}"
            )
        if s.optimizer is not optimizer:
            raise HyperparameterError(f"{name}[{i}] drives another optimizer")
        if getattr(s, "_momentum", None) is not None:
            raise HyperparameterError(
                f"{name}[{i}] ({type(s).__name__}) cycles the momentum, which this scheduler "
                "does not drive: build it with cycle_momentum=False"
            )
    return list(schedulers)


def _absolute(sched: Schedule, base: float) -> Schedule:
    if not sched.relative:
        return sched
    return Schedule(lambda t: base * sched(t), name=f"{sched.name} * {base!r}")


class SequentialLR(LRScheduler):
    """One scheduler after another (:func:`~ferroptim.schedules.sequential`).

    Each piece restarts from its own step 0 at its milestone, as in torch.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive (the pieces must drive it too).
    schedulers : list of LRScheduler
        The pieces, in order; they are read, not stepped.
    milestones : list of int
        The steps at which the next piece takes over (one fewer than pieces).
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self,
        optimizer: Any,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        pieces = _pieces("schedulers", schedulers, optimizer)

        def make(i: int, base: float) -> Schedule:
            parts = [p._make_one(i, base) for p in pieces]
            if len({p.relative for p in parts}) > 1:
                parts = [_absolute(p, base) for p in parts]
            return sequential(parts, milestones)

        ms = _milestones("milestones", milestones, minimum=1)
        if len(ms) != len(pieces) - 1:
            raise HyperparameterError(
                f"milestones must have one entry fewer than schedulers: got {len(ms)} "
                f"milestones for {len(pieces)} schedulers"
            )
        self._start(optimizer, last_epoch, make)


class ChainedScheduler(LRScheduler):
    """The product of schedulers (:func:`~ferroptim.schedules.chained`).

    Parameters
    ----------
    schedulers : list of LRScheduler
        The factors; at most one may set lrs outright. They are read, not stepped.
    optimizer : Optimizer, optional
        The optimizer they drive (by default the first one's).
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Any = None) -> None:
        if optimizer is None and isinstance(schedulers, Sequence) and schedulers:
            optimizer = getattr(schedulers[0], "optimizer", None)
        pieces = _pieces("schedulers", schedulers, optimizer)
        absolute = [type(p).__name__ for p in pieces if not all(s.relative for s in p.schedules)]
        if len(absolute) > 1:
            raise HyperparameterError(
                f"schedulers holds {len(absolute)} schedulers that set lrs outright "
                f"({', '.join(absolute)}); a product can take one"
            )
        start = pieces[0].last_epoch
        self._start(
            optimizer,
            start - 1,
            lambda i, b: chained([p._make_one(i, b) for p in pieces]),
        )


class OneCycleLR(_MomentumCycle):
    """The 1cycle policy (:func:`~ferroptim.schedules.one_cycle`), with torch's momentum cycle.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    max_lr : float or list of float
        The peak lr, for every group or one per group.
    total_steps : int, optional
        Length of the cycle; else ``epochs * steps_per_epoch``.
    epochs : int, optional
        Epochs, with ``steps_per_epoch``, when ``total_steps`` is None.
    steps_per_epoch : int, optional
        Steps per epoch, with ``epochs``.
    pct_start : float
        Fraction of the cycle spent raising the lr.
    anneal_strategy : {"cos", "linear"}
        Shape of each phase.
    cycle_momentum : bool
        Cycle ``momentum`` (or ``betas[0]``) inversely to the lr.
    base_momentum : float or list of float
        The lowest momentum, reached at the peak lr.
    max_momentum : float or list of float
        The highest momentum, at the start and the end.
    div_factor : float
        The starting lr is ``max_lr / div_factor``.
    final_div_factor : float
        The final lr is the starting lr divided by this.
    three_phase : bool
        Come back down to the starting lr symmetrically before the final anneal.
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self,
        optimizer: Any,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        n = len(_param_groups(optimizer))
        lr_parts, momentum_parts, total, keys = one_cycle_lr_parts(
            n,
            max_lr,
            total_steps,
            epochs,
            steps_per_epoch,
            pct_start,
            anneal_strategy,
            base_momentum,
            max_momentum,
            div_factor,
            final_div_factor,
            three_phase,
        )
        self._momentum_setup(optimizer, cycle_momentum, momentum_parts)
        self._max_t = total
        self._start(
            optimizer,
            last_epoch,
            lambda i, b: lr_parts[i],
            initial=[k["initial_lr"] for k in keys],
        )
        if last_epoch == -1:
            # As torch: initial_lr = max_lr / div_factor, over any existing one.
            for group, k in zip(_param_groups(optimizer), keys, strict=True):
                group.update(k)
            self.base_values = [k["initial_lr"] for k in keys]
            self._write_momentum_keys()


class CyclicLR(_MomentumCycle):
    """Cyclical lr (:func:`~ferroptim.schedules.cyclic`), with torch's momentum cycle.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer to drive.
    base_lr : float or list of float
        The lower bound of the cycle, for every group or one per group.
    max_lr : float or list of float
        The upper bound of the cycle.
    step_size_up : int
        Steps rising from ``base_lr`` to ``max_lr``.
    step_size_down : int, optional
        Steps falling back (default ``step_size_up``).
    mode : {"triangular", "triangular2", "exp_range"}
        How the amplitude shrinks from cycle to cycle.
    gamma : float
        The ``exp_range`` factor per step.
    scale_fn : callable, optional
        A custom amplitude scale; replaces ``mode``.
    scale_mode : {"cycle", "iterations"}
        Whether ``scale_fn`` takes the cycle number or the step.
    cycle_momentum : bool
        Cycle ``momentum`` (or ``betas[0]``) inversely to the lr.
    base_momentum : float or list of float
        The momentum at the lr's peak.
    max_momentum : float or list of float
        The momentum at ``base_lr``.
    last_epoch : int
        -1 to start afresh, else the step to resume after.
    """

    def __init__(
        self,
        optimizer: Any,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: Literal["cycle", "iterations"] = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        n = len(_param_groups(optimizer))
        lr_parts, momentum_parts, base_lrs = cyclic_lr_parts(
            n,
            base_lr,
            max_lr,
            step_size_up,
            step_size_down,
            mode,
            gamma,
            scale_fn,
            scale_mode,
            base_momentum,
            max_momentum,
        )
        self._momentum_setup(optimizer, cycle_momentum, momentum_parts)
        self._start(optimizer, last_epoch, lambda i, b: lr_parts[i], initial=base_lrs)
        if last_epoch == -1:
            self._write_momentum_keys()

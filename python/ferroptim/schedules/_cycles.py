"""The cyclical schedules: 1cycle and CyclicLR, for the lr and for the momentum."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ferroptim.exceptions import HyperparameterError
from ferroptim.schedules._checks import _bool, _callable, _choice, _fmt, _int, _momenta, _real
from ferroptim.schedules._pure import Schedule


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


def _one_cycle(
    total_steps: int,
    pct_start: float,
    anneal_strategy: str,
    three_phase: bool,
    points: Sequence[tuple[float, float]],
) -> Callable[[int], float]:
    """torch OneCycleLR's phase walk, with each phase's (start, end) values in ``points``."""
    if three_phase:
        ends = [pct_start * total_steps - 1, 2 * pct_start * total_steps - 2, total_steps - 1]
    else:
        ends = [pct_start * total_steps - 1, total_steps - 1]
    anneal = _anneal_cos if anneal_strategy == "cos" else _anneal_linear
    last = len(ends) - 1

    def f(t: int) -> float:
        start_step = 0.0
        for i, (end_step, (lo, hi)) in enumerate(zip(ends, points, strict=True)):
            if t <= end_step or i == last:
                span = end_step - start_step
                pct = min((t - start_step) / span, 1.0) if span else 1.0
                return anneal(lo, hi, pct)
            start_step = end_step
        raise AssertionError("unreachable")

    return f


def _check_one_cycle(
    total_steps: Any, pct_start: Any, anneal_strategy: Any, three_phase: Any
) -> tuple[int, float, str, bool]:
    T = _int("total_steps", total_steps, 2)
    pct = _real("pct_start", pct_start, low=0.0, high=0.5 if three_phase else 1.0)
    strategy = _choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
    return T, pct, strategy, _bool("three_phase", three_phase)


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    r"""The 1cycle policy (torch OneCycleLR), absolute.

    With :math:`v_0` = ``max_lr / div_factor`` and :math:`v_{min}` =
    :math:`v_0` / ``final_div_factor``: anneal (cosine or linear) from
    :math:`v_0` up to ``max_lr`` over the first ``pct_start`` of the steps
    (phase 1 ends at step ``pct_start * total_steps - 1``), then down to
    :math:`v_{min}` at step ``total_steps - 1``. With ``three_phase`` it goes
    back down to :math:`v_0` symmetrically, then to :math:`v_{min}`. The cosine
    anneal from :math:`a` to :math:`b` at fraction :math:`p` of a phase is
    :math:`b + (a - b)(1 + \cos \pi p)/2`.

    torch raises after ``total_steps`` steps (and extrapolates at step
    ``total_steps``); here the value holds at :math:`v_{min}` from step
    ``total_steps - 1`` on.
    """
    T, pct, strategy, three = _check_one_cycle(total_steps, pct_start, anneal_strategy, three_phase)
    peak = _real("max_lr", max_lr, low=0.0, low_open=True)
    div = _real("div_factor", div_factor, low=0.0, low_open=True)
    final_div = _real("final_div_factor", final_div_factor, low=0.0, low_open=True)
    initial = peak / div
    low = initial / final_div
    points = (
        [(initial, peak), (peak, initial), (initial, low)]
        if three
        else [(initial, peak), (peak, low)]
    )
    return Schedule(
        _one_cycle(T, pct, strategy, three, points),
        relative=False,
        name=f"one_cycle({_fmt(max_lr=peak, total_steps=T, pct_start=pct)}"
        f"{', three_phase=True' if three else ''})",
    )


def one_cycle_momentum(
    total_steps: int,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    pct_start: float = 0.3,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    three_phase: bool = False,
) -> Schedule:
    r"""The momentum that torch's OneCycleLR cycles inversely to the lr, absolute.

    Anneals from ``max_momentum`` down to ``base_momentum`` while the lr of
    :func:`one_cycle` (same ``total_steps``, ``pct_start``,
    ``anneal_strategy``, ``three_phase``) rises, and back up while it falls
    (three-phase: stays at ``max_momentum`` in the last phase). Drive it with
    ``Scheduler(opt, ..., key="momentum")``.
    """
    T, pct, strategy, three = _check_one_cycle(total_steps, pct_start, anneal_strategy, three_phase)
    lo, hi = _momenta(base_momentum, max_momentum)
    points = [(hi, lo), (lo, hi), (hi, hi)] if three else [(hi, lo), (lo, hi)]
    return Schedule(
        _one_cycle(T, pct, strategy, three, points),
        relative=False,
        name=f"one_cycle_momentum({_fmt(total_steps=T, base_momentum=lo, max_momentum=hi)})",
    )


def _cyclic_height(
    step_size_up: Any,
    step_size_down: Any,
    mode: Any,
    gamma: Any,
    scale_fn: Any,
    scale_mode: Any,
) -> Callable[[int], tuple[float, float]]:
    """``t -> (h, s)``: torch CyclicLR's triangle height and amplitude scale at step t."""
    up = _int("step_size_up", step_size_up, 1)
    down = up if step_size_down is None else _int("step_size_down", step_size_down, 0)
    mode = _choice("mode", mode, ("triangular", "triangular2", "exp_range"))
    gamma = _real("gamma", gamma, low=0.0, low_open=True)
    scale_mode = _choice("scale_mode", scale_mode, ("cycle", "iterations"))
    if scale_fn is not None:
        fn = _callable("scale_fn", scale_fn)
    elif mode == "triangular":
        fn, scale_mode = (lambda x: 1.0), "cycle"
    elif mode == "triangular2":
        fn, scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
    else:
        fn, scale_mode = (lambda x: gamma**x), "iterations"
    total = float(up + down)
    ratio = up / total

    def scaled(t: int) -> tuple[float, float]:
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        return factor, fn(cycle if scale_mode == "cycle" else t)

    return scaled


def cyclic(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[float], float] | None = None,
    scale_mode: Literal["cycle", "iterations"] = "cycle",
) -> Schedule:
    r"""Cyclical learning rate (torch CyclicLR), absolute.

    .. math::
        c = \lfloor 1 + t / (u + d) \rfloor, \quad x = 1 + t/(u + d) - c, \quad
        h = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases}

    .. math:: v_t = \text{base\_lr} + (\text{max\_lr} - \text{base\_lr})\, h\, s

    with :math:`u, d` = ``step_size_up, step_size_down`` (``down`` defaults to
    ``up``), :math:`r = u/(u+d)`, and the scale :math:`s` = 1 (triangular),
    :math:`2^{1-c}` (triangular2) or :math:`\gamma^t` (exp_range). A custom
    ``scale_fn`` replaces ``mode`` and is evaluated at :math:`c` or :math:`t`
    according to ``scale_mode``.
    """
    lo = _real("base_lr", base_lr, low=0.0)
    hi = _real("max_lr", max_lr, low=lo)
    height = _cyclic_height(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def f(t: int) -> float:
        factor, scale = height(t)
        return lo + (hi - lo) * factor * scale

    return Schedule(f, relative=False, name=f"cyclic({_fmt(base_lr=lo, max_lr=hi, mode=mode)})")


def cyclic_momentum(
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[float], float] | None = None,
    scale_mode: Literal["cycle", "iterations"] = "cycle",
) -> Schedule:
    r"""The momentum that torch's CyclicLR cycles inversely to the lr, absolute.

    :math:`m_t = \text{max\_momentum} - (\text{max\_momentum} - \text{base\_momentum})\,h\,s`
    with :math:`h, s` as in :func:`cyclic`. Drive it with ``key="momentum"``.
    """
    lo, hi = _momenta(base_momentum, max_momentum)
    height = _cyclic_height(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def f(t: int) -> float:
        factor, scale = height(t)
        return hi - (hi - lo) * factor * scale

    return Schedule(
        f,
        relative=False,
        name=f"cyclic_momentum({_fmt(base_momentum=lo, max_momentum=hi, mode=mode)})",
    )


# -- the parts of torch's OneCycleLR and CyclicLR, for ferroptim.lr_scheduler --------


def _each(name: str, value: Any, n: int) -> list[Any]:
    """One value for every param group, or a list with one per group (torch's _format_param)."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise HyperparameterError(
                f"{name} has {len(value)} values, but the optimizer has {n} param groups"
            )
        return list(value)
    return [value] * n


MomentumPart = Callable[[int], tuple[Schedule, dict[str, float]]]


def one_cycle_lr_parts(
    n: int,
    max_lr: Any,
    total_steps: Any,
    epochs: Any,
    steps_per_epoch: Any,
    pct_start: Any,
    anneal_strategy: Any,
    base_momentum: Any,
    max_momentum: Any,
    div_factor: Any,
    final_div_factor: Any,
    three_phase: Any,
) -> tuple[list[Schedule], MomentumPart, int, list[dict[str, float]]]:
    """OneCycleLR's per-group lr schedules, momentum cycles (built on demand), total steps,
    and the group entries torch sets (``initial_lr``, ``max_lr``, ``min_lr``)."""
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise HyperparameterError(
                "total_steps: give total_steps, or both epochs and steps_per_epoch"
            )
        total = _int("epochs", epochs, 1) * _int("steps_per_epoch", steps_per_epoch, 1)
    else:
        total = _int("total_steps", total_steps, 2)
    peaks = _each("max_lr", max_lr, n)
    lrs = [
        one_cycle(p, total, pct_start, anneal_strategy, div_factor, final_div_factor, three_phase)
        for p in peaks
    ]
    div, final_div = float(div_factor), float(final_div_factor)
    keys = [
        {"initial_lr": p / div, "max_lr": float(p), "min_lr": p / div / final_div} for p in peaks
    ]

    def momentum(i: int) -> tuple[Schedule, dict[str, float]]:
        lo = _each("base_momentum", base_momentum, n)[i]
        hi = _each("max_momentum", max_momentum, n)[i]
        sched = one_cycle_momentum(total, lo, hi, pct_start, anneal_strategy, three_phase)
        return sched, {"max_momentum": float(hi), "base_momentum": float(lo)}

    return lrs, momentum, total, keys


def cyclic_lr_parts(
    n: int,
    base_lr: Any,
    max_lr: Any,
    step_size_up: Any,
    step_size_down: Any,
    mode: Any,
    gamma: Any,
    scale_fn: Any,
    scale_mode: Any,
    base_momentum: Any,
    max_momentum: Any,
) -> tuple[list[Schedule], MomentumPart, list[float]]:
    """CyclicLR's per-group lr schedules, momentum cycles (built on demand), and base lrs."""
    lows = _each("base_lr", base_lr, n)
    highs = _each("max_lr", max_lr, n)
    args = (step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    lrs = [cyclic(lo, hi, *args) for lo, hi in zip(lows, highs, strict=True)]

    def momentum(i: int) -> tuple[Schedule, dict[str, float]]:
        lo = _each("base_momentum", base_momentum, n)[i]
        hi = _each("max_momentum", max_momentum, n)[i]
        sched = cyclic_momentum(lo, hi, *args)
        return sched, {"max_momentum": float(hi), "base_momentum": float(lo)}

    return lrs, momentum, [float(x) for x in lows]

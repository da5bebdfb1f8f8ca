"""The pure schedules ``step -> value``, and the Schedule type they share."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ferroptim.exceptions import HyperparameterError
from ferroptim.schedules._checks import (
    StepLike,
    _base,
    _callable,
    _fmt,
    _int,
    _real,
    _step,
    _steps,
)

# -- pure schedules ---------------------------------------------------------


class Schedule:
    """A pure schedule ``step -> float``; ``relative`` says how a Scheduler uses it.

    ``schedule(t)`` takes a non-negative integer and returns a float, or takes
    an integer array (or list) and returns a float64 array of the same shape.
    A value too large for a float is ``inf``.
    Wrap your own function with ``Schedule(fn)`` (absolute values) or
    ``Schedule(fn, relative=True)`` (factors of each group's initial value).
    """

    __slots__ = ("_fn", "relative", "name")

    def __init__(
        self, fn: Callable[[int], float], *, relative: bool = False, name: str | None = None
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise HyperparameterError(f"name must be a string, got {name!r}")
        self._fn = _callable("fn", fn)
        self.relative = bool(relative)
        self.name = name if name is not None else getattr(fn, "__name__", "schedule")

    def __call__(self, step: StepLike) -> Any:
        if isinstance(step, (np.ndarray, list, tuple)):
            steps = _steps(step)
            values = np.fromiter(
                (self._value(int(s)) for s in steps.ravel()), dtype=np.float64, count=steps.size
            )
            return values.reshape(steps.shape)
        return self._value(_step(step))

    def _value(self, t: int) -> float:
        # Python floats raise on overflow (2.0 ** 5000); a schedule says inf instead, which a
        # Scheduler then refuses as it refuses any non-finite value.
        try:
            return float(self._fn(t))
        except OverflowError:
            return math.inf

    def __repr__(self) -> str:
        kind = "relative" if self.relative else "absolute"
        return f"<Schedule {self.name} ({kind})>"


ScheduleLike = Schedule | Callable[[int], float]


def _as_schedule(obj: Any, name: str) -> Schedule:
    """A Schedule as is; a plain callable as an absolute Schedule."""
    if isinstance(obj, Schedule):
        return obj
    return Schedule(_callable(name, obj), relative=False)


def constant(value: float | None = None) -> Schedule:
    r"""A constant: :math:`v_t = \text{value}`.

    With ``value=None`` the schedule is relative with factor 1: it holds each
    group's initial value (useful as a piece of :func:`sequential`).
    """
    v, relative = _base(value, "value")
    return Schedule(lambda t: v, relative=relative, name=f"constant({_fmt(value=value)})")


def step_decay(step_size: int, gamma: float = 0.1, *, base: float | None = None) -> Schedule:
    r"""Decay by ``gamma`` every ``step_size`` steps (torch StepLR).

    .. math:: v_t = \text{base}\cdot\gamma^{\lfloor t / \text{step\_size}\rfloor}
    """
    step_size = _int("step_size", step_size, 1)
    gamma = _real("gamma", gamma, low=0.0, low_open=True)
    b, relative = _base(base)
    return Schedule(
        lambda t: b * gamma ** (t // step_size),
        relative=relative,
        name=f"step_decay({_fmt(step_size=step_size, gamma=gamma, base=base)})",
    )


def multi_step(
    milestones: Sequence[int], gamma: float = 0.1, *, base: float | None = None
) -> Schedule:
    r"""Decay by ``gamma`` at each milestone (torch MultiStepLR).

    .. math:: v_t = \text{base}\cdot\gamma^{\#\{m \in \text{milestones} : m \le t\}}

    ``milestones`` must be strictly increasing non-negative integers.
    """
    ms = _milestones("milestones", milestones, minimum=0)
    gamma = _real("gamma", gamma, low=0.0, low_open=True)
    b, relative = _base(base)
    return Schedule(
        lambda t: b * gamma ** bisect_right(ms, t),
        relative=relative,
        name=f"multi_step({_fmt(milestones=ms, gamma=gamma, base=base)})",
    )


def _milestones(name: str, milestones: Any, minimum: int) -> list[int]:
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise HyperparameterError(
            f"{name} must be a list of integers, got {type(milestones).__name__}"
        )
    ms = [_int(f"{name}[{i}]", m, minimum) for i, m in enumerate(milestones)]
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        raise HyperparameterError(f"{name} must be strictly increasing, got {ms}")
    return ms


def exponential(gamma: float, *, base: float | None = None) -> Schedule:
    r"""Exponential decay (torch ExponentialLR): :math:`v_t = \text{base}\cdot\gamma^t`."""
    gamma = _real("gamma", gamma, low=0.0, low_open=True)
    b, relative = _base(base)
    return Schedule(
        lambda t: b * gamma**t,
        relative=relative,
        name=f"exponential({_fmt(gamma=gamma, base=base)})",
    )


def inverse_time(decay_rate: float, *, base: float | None = None) -> Schedule:
    r"""Inverse-time decay: :math:`v_t = \text{base} / (1 + k\,t)`, :math:`k` = ``decay_rate``."""
    k = _real("decay_rate", decay_rate, low=0.0)
    b, relative = _base(base)
    return Schedule(
        lambda t: b / (1.0 + k * t),
        relative=relative,
        name=f"inverse_time({_fmt(decay_rate=k, base=base)})",
    )


def polynomial(
    total_steps: int, power: float = 1.0, end: float = 0.0, *, base: float | None = None
) -> Schedule:
    r"""Polynomial decay from ``base`` to ``end`` over ``total_steps`` (torch PolynomialLR).

    .. math::
        v_t = (\text{base} - \text{end})\,
              \Bigl(1 - \frac{\min(t, T)}{T}\Bigr)^{p} + \text{end}

    with :math:`T` = ``total_steps`` and :math:`p` = ``power``; it holds
    ``end`` after :math:`T`. torch's PolynomialLR is ``end=0``.
    """
    T = _int("total_steps", total_steps, 1)
    p = _real("power", power, low=0.0)
    end = _real("end", end, low=0.0)
    b, relative = _base(base)
    return Schedule(
        lambda t: (b - end) * (1.0 - min(T, t) / T) ** p + end,
        relative=relative,
        name=f"polynomial({_fmt(total_steps=T, power=p, end=end, base=base)})",
    )


def linear(
    start_factor: float = 1.0 / 3,
    end_factor: float = 1.0,
    total_iters: int = 5,
    *,
    base: float | None = None,
) -> Schedule:
    r"""Linear ramp of the factor over ``total_iters`` steps (torch LinearLR), e.g. a warmup.

    .. math::
        v_t = \text{base}\cdot\Bigl(s + (e - s)\,\frac{\min(t, N)}{N}\Bigr)

    with :math:`s, e` = ``start_factor, end_factor`` and :math:`N` =
    ``total_iters``. Unlike torch, factors above 1 are allowed.
    """
    s = _real("start_factor", start_factor, low=0.0)
    e = _real("end_factor", end_factor, low=0.0)
    N = _int("total_iters", total_iters, 1)
    b, relative = _base(base)
    return Schedule(
        lambda t: b * (s + (e - s) * min(N, t) / N),
        relative=relative,
        name=f"linear({_fmt(start_factor=s, end_factor=e, total_iters=N, base=base)})",
    )


def cosine_annealing(T_max: int, eta_min: float = 0.0, *, base: float | None = None) -> Schedule:
    r"""Cosine annealing (the closed form of torch's CosineAnnealingLR).

    .. math::
        v_t = \eta_{min} + (\text{base} - \eta_{min})\,
              \frac{1 + \cos(\pi t / T_{max})}{2}

    As in torch, the cosine goes on past ``T_max`` (the value climbs back to
    ``base`` at :math:`2T_{max}`); use :func:`warmup_cosine` or
    :func:`polynomial` for a schedule that stays at its end value. torch's
    ``step()`` computes the same values by a recursion, equal to this closed
    form up to rounding.
    """
    T = _int("T_max", T_max, 1)
    eta_min = _real("eta_min", eta_min, low=0.0)
    b, relative = _base(base)
    return Schedule(
        lambda t: eta_min + (b - eta_min) * (1 + math.cos(math.pi * t / T)) / 2,
        relative=relative,
        name=f"cosine_annealing({_fmt(T_max=T, eta_min=eta_min, base=base)})",
    )


def cosine_warm_restarts(
    T_0: int, T_mult: int = 1, eta_min: float = 0.0, *, base: float | None = None
) -> Schedule:
    r"""SGDR: cosine annealing with warm restarts (torch CosineAnnealingWarmRestarts).

    .. math::
        v_t = \eta_{min} + (\text{base} - \eta_{min})\,
              \frac{1 + \cos(\pi\,T_{cur} / T_i)}{2}

    where the :math:`i`-th cycle lasts :math:`T_i = T_0\,T_{mult}^{\,i}` steps
    and :math:`T_{cur}` is the step within the current cycle.
    """
    T_0 = _int("T_0", T_0, 1)
    T_mult = _int("T_mult", T_mult, 1)
    eta_min = _real("eta_min", eta_min, low=0.0)
    b, relative = _base(base)

    def f(t: int) -> float:
        if T_mult == 1:
            T_cur, T_i = t % T_0, T_0
        else:
            T_cur, T_i = t, T_0
            while T_cur >= T_i:
                T_cur -= T_i
                T_i *= T_mult
        return eta_min + (b - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2

    return Schedule(
        f,
        relative=relative,
        name=f"cosine_warm_restarts({_fmt(T_0=T_0, T_mult=T_mult, eta_min=eta_min, base=base)})",
    )


def lambda_schedule(fn: Callable[[int], float], *, base: float | None = None) -> Schedule:
    r"""A user factor function (torch LambdaLR): :math:`v_t = \text{base}\cdot f(t)`."""
    fn = _callable("fn", fn)
    b, relative = _base(base)
    if relative:
        return Schedule(fn, relative=True, name=f"lambda_schedule({_name(fn)})")
    return Schedule(
        lambda t: b * fn(t), relative=False, name=f"lambda_schedule({_name(fn)}, base={b!r})"
    )


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def multiplicative(fn: Callable[[int], float], *, base: float | None = None) -> Schedule:
    r"""Cumulative product of a user factor function (torch MultiplicativeLR).

    .. math:: v_t = \text{base}\cdot\prod_{s=1}^{t} f(s), \qquad v_0 = \text{base}

    The running products are cached, so the first evaluation at step
    :math:`t` calls ``fn`` up to :math:`t` times and later ones are lookups;
    ``fn`` must be a pure function of the step.
    """
    fn = _callable("fn", fn)
    b, relative = _base(base)
    cache = [b]

    def f(t: int) -> float:
        while len(cache) <= t:
            cache.append(cache[-1] * fn(len(cache)))
        return cache[t]

    return Schedule(f, relative=relative, name=f"multiplicative({_name(fn)}{_fmt_base(base)})")


def _fmt_base(base: float | None) -> str:
    return "" if base is None else f", base={base!r}"


def sequential(schedules: Sequence[ScheduleLike], milestones: Sequence[int]) -> Schedule:
    r"""One schedule after another (torch SequentialLR).

    With milestones :math:`m_1 < \dots < m_{n-1}` (:math:`m_0 = 0`),
    :math:`v_t = f_i(t - m_i)` for :math:`m_i \le t < m_{i+1}`: each later
    schedule starts from its own step 0 at its milestone. All pieces must be
    relative, or all absolute.
    """
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise HyperparameterError(f"schedules must be a list, got {type(schedules).__name__}")
    parts = [_as_schedule(s, f"schedules[{i}]") for i, s in enumerate(schedules)]
    if not parts:
        raise HyperparameterError("schedules must hold at least one schedule")
    ms = _milestones("milestones", milestones, minimum=1)
    if len(ms) != len(parts) - 1:
        raise HyperparameterError(
            f"milestones must have one entry fewer than schedules: got {len(ms)} milestones "
            f"for {len(parts)} schedules"
        )
    relative = {p.relative for p in parts}
    if len(relative) != 1:
        raise HyperparameterError(
            "schedules mixes relative and absolute schedules; give every piece a base, or none"
        )
    offsets = [0, *ms]

    def f(t: int) -> float:
        i = bisect_right(ms, t)
        return parts[i](t - offsets[i])

    return Schedule(
        f,
        relative=relative.pop(),
        name=f"sequential([{', '.join(p.name for p in parts)}], milestones={ms})",
    )


def chained(schedules: Sequence[ScheduleLike]) -> Schedule:
    r"""The product of schedules (torch ChainedScheduler): :math:`v_t = \prod_i f_i(t)`.

    Relative when every piece is relative; with an absolute piece the product
    is absolute (an absolute value times factors).
    """
    if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence):
        raise HyperparameterError(f"schedules must be a list, got {type(schedules).__name__}")
    parts = [_as_schedule(s, f"schedules[{i}]") for i, s in enumerate(schedules)]
    if not parts:
        raise HyperparameterError("schedules must hold at least one schedule")

    def f(t: int) -> float:
        value = 1.0
        for p in parts:
            value *= p(t)
        return value

    return Schedule(
        f,
        relative=all(p.relative for p in parts),
        name=f"chained([{', '.join(p.name for p in parts)}])",
    )


def warmup_cosine(
    peak: float,
    warmup_steps: int,
    total_steps: int,
    end: float = 0.0,
    *,
    start: float = 0.0,
) -> Schedule:
    r"""Linear warmup, then cosine decay (absolute).

    With :math:`W` = ``warmup_steps`` and :math:`T` = ``total_steps``:

    .. math::
        v_t = \begin{cases}
        \text{start} + (\text{peak} - \text{start})\,t / W & t < W \\
        \text{end} + (\text{peak} - \text{end})\,
            \bigl(1 + \cos(\pi\,(t - W)/(T - W))\bigr)/2 & W \le t < T \\
        \text{end} & t \ge T
        \end{cases}

    For per-group peaks pass one schedule per group, e.g.
    ``[warmup_cosine(g["lr"], 100, 10_000) for g in opt.param_groups]``.
    """
    peak = _real("peak", peak, low=0.0)
    T = _int("total_steps", total_steps, 1)
    W = _int("warmup_steps", warmup_steps, 0)
    if W > T:
        raise HyperparameterError(f"warmup_steps must be <= total_steps ({T}), got {W}")
    end = _real("end", end, low=0.0)
    start = _real("start", start, low=0.0)

    def f(t: int) -> float:
        if t < W:
            return start + (peak - start) * t / W
        if t < T:
            return end + (peak - end) * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2
        return end

    return Schedule(
        f,
        relative=False,
        name=f"warmup_cosine({_fmt(peak=peak, warmup_steps=W, total_steps=T, end=end)})",
    )

r"""Learning-rate (and any-hyperparameter) schedules, and batch-size schedules.

Two layers, as in optax plus torch.optim.lr_scheduler:

* **Pure schedules.** Every factory (:func:`step_decay`, :func:`cosine_annealing`,
  :func:`one_cycle`, ...) returns a :class:`Schedule`: a pure function
  ``schedule(step) -> float`` with no state, that also maps an integer NumPy
  array to a float64 array. ``step`` counts from 0.
* **A thin stateful wrapper.** :class:`Scheduler` holds the step counter
  ``t`` and writes ``schedule(t)`` into ``optimizer.param_groups[i][key]`` for
  every group, with torch's counter semantics: constructing it applies step 0
  and each :meth:`Scheduler.step` advances by one. :class:`ReduceLROnPlateau`
  is the one schedule that depends on observed metrics, so it is stateful only.

**Relative and absolute schedules** (the one design rule). A schedule is either

* *relative*: its values are factors of each param group's initial value, as
  in torch's StepLR, ExponentialLR, CosineAnnealingLR, LambdaLR, ...; the
  :class:`Scheduler` records each group's starting value as
  ``group["initial_<key>"]`` (``initial_lr`` for the lr, exactly torch's key;
  an existing entry is kept, as torch keeps an existing ``initial_lr``) and
  writes ``initial * schedule(t)``. So one relative schedule drives several
  param groups that start from different learning rates.
* *absolute*: its values are written as they are.

The factories of torch's multiplicative schedulers take a keyword ``base``:
left ``None`` the schedule is relative (its value at the start is typically
1); given a number the schedule is absolute and starts from ``base``. Values
such as ``eta_min`` or ``end`` are in the schedule's own units: a factor
when ``base`` is None, a value otherwise. The schedules defined by absolute
values (:func:`one_cycle`, :func:`cyclic`, :func:`warmup_cosine` and the
momentum cycles) are absolute; pass one per group for per-group peaks. A plain
callable ``step -> value`` counts as absolute; wrap a factor function with
:func:`lambda_schedule` (or ``Schedule(fn, relative=True)``) to make it
relative. ``schedule.relative`` says which kind a schedule is.

>>> import numpy as np, ferroptim as fo
>>> from ferroptim import schedules as S
>>> opt = fo.SGD([{"params": [np.zeros(3)], "lr": 0.1}, {"params": [np.zeros(2)], "lr": 0.01}])
>>> sched = S.Scheduler(opt, S.cosine_annealing(T_max=100))   # relative: scales both groups
>>> sched.get_last_lr()
[0.1, 0.01]
>>> S.warmup_cosine(1e-3, warmup_steps=10, total_steps=100)(np.arange(3))   # absolute, vectorized
array([0.    , 0.0001, 0.0002])

**Batch-size schedules** (:func:`step_batch_size`, :func:`linear_batch_size`,
:func:`exponential_batch_size`) are pure functions ``epoch -> int`` for a
training loop, each capped by ``max_batch_size``.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "BatchSizeSchedule",
    "ReduceLROnPlateau",
    "Schedule",
    "Scheduler",
    "chained",
    "constant",
    "cosine_annealing",
    "cosine_warm_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential",
    "exponential_batch_size",
    "inverse_time",
    "lambda_schedule",
    "linear",
    "linear_batch_size",
    "multi_step",
    "multiplicative",
    "one_cycle",
    "one_cycle_momentum",
    "polynomial",
    "sequential",
    "step_batch_size",
    "step_decay",
    "warmup_cosine",
]

StepLike = int | np.integer | np.ndarray | Sequence[int]


# -- argument checks -------------------------------------------------------


def _int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
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
    """``value`` as a finite float in the given interval, else ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
    ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return str(value)


def _callable(name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise ValueError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _base(base: float | None, name: str = "base") -> tuple[float, bool]:
    """``(scale, relative)``: a factor schedule (scale 1) when ``base`` is None."""
    if base is None:
        return 1.0, True
    return _real(name, base), False


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f"step must be an integer, got {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


def _steps(step: Any) -> np.ndarray:
    steps = np.asarray(step)
    if steps.size and steps.dtype.kind not in "iu":
        raise ValueError(f"step must be integers, got an array of dtype {steps.dtype}")
    if steps.size and steps.min() < 0:
        raise ValueError(f"step must be >= 0, got {steps.min()}")
    return steps.astype(np.int64)


def _fmt(**kwargs: Any) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)


# -- pure schedules ---------------------------------------------------------


class Schedule:
    """A pure schedule ``step -> float``; ``relative`` says how a Scheduler uses it.

    ``schedule(t)`` takes a non-negative integer and returns a float, or takes
    an integer array (or list) and returns a float64 array of the same shape.
    Wrap your own function with ``Schedule(fn)`` (absolute values) or
    ``Schedule(fn, relative=True)`` (factors of each group's initial value).
    """

    __slots__ = ("_fn", "relative", "name")

    def __init__(
        self, fn: Callable[[int], float], *, relative: bool = False, name: str | None = None
    ) -> None:
        self._fn = _callable("fn", fn)
        self.relative = bool(relative)
        self.name = name if name is not None else getattr(fn, "__name__", "schedule")

    def __call__(self, step: StepLike) -> Any:
        if isinstance(step, (np.ndarray, list, tuple)):
            steps = _steps(step)
            fn = self._fn
            values = np.fromiter(
                (fn(int(s)) for s in steps.ravel()), dtype=np.float64, count=steps.size
            )
            return values.reshape(steps.shape)
        return float(self._fn(_step(step)))

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
        raise ValueError(f"{name} must be a list of integers, got {type(milestones).__name__}")
    ms = [_int(f"{name}[{i}]", m, minimum) for i, m in enumerate(milestones)]
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        raise ValueError(f"{name} must be strictly increasing, got {ms}")
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
    end = _real("end", end)
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
    eta_min = _real("eta_min", eta_min)
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
    eta_min = _real("eta_min", eta_min)
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
    return T, pct, strategy, bool(three_phase)


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
    peak = _real("max_lr", max_lr)
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
    lo = _real("base_momentum", base_momentum)
    hi = _real("max_momentum", max_momentum)
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
    lo = _real("base_lr", base_lr)
    hi = _real("max_lr", max_lr)
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
    lo = _real("base_momentum", base_momentum)
    hi = _real("max_momentum", max_momentum)
    height = _cyclic_height(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def f(t: int) -> float:
        factor, scale = height(t)
        return hi - (hi - lo) * factor * scale

    return Schedule(
        f,
        relative=False,
        name=f"cyclic_momentum({_fmt(base_momentum=lo, max_momentum=hi, mode=mode)})",
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
        raise ValueError(f"schedules must be a list, got {type(schedules).__name__}")
    parts = [_as_schedule(s, f"schedules[{i}]") for i, s in enumerate(schedules)]
    if not parts:
        raise ValueError("schedules must hold at least one schedule")
    ms = _milestones("milestones", milestones, minimum=1)
    if len(ms) != len(parts) - 1:
        raise ValueError(
            f"milestones must have one entry fewer than schedules: got {len(ms)} milestones "
            f"for {len(parts)} schedules"
        )
    relative = {p.relative for p in parts}
    if len(relative) != 1:
        raise ValueError(
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
        raise ValueError(f"schedules must be a list, got {type(schedules).__name__}")
    parts = [_as_schedule(s, f"schedules[{i}]") for i, s in enumerate(schedules)]
    if not parts:
        raise ValueError("schedules must hold at least one schedule")

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
    peak = _real("peak", peak)
    T = _int("total_steps", total_steps, 1)
    W = _int("warmup_steps", warmup_steps, 0)
    if W > T:
        raise ValueError(f"warmup_steps must be <= total_steps ({T}), got {W}")
    end = _real("end", end)
    start = _real("start", start)

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


# -- the stateful wrapper ----------------------------------------------------


def _param_groups(optimizer: Any) -> list[dict[str, Any]]:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ValueError(
            f"optimizer must have param_groups (a non-empty list of dicts), "
            f"got {type(optimizer).__name__}"
        )
    return groups


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Scheduler:
    """Writes ``schedule(t)`` into ``group[key]`` of every param group, step after step.

    ``schedule`` is one schedule for every group, or a list with one per group;
    ``key`` is any numeric hyperparameter (``"lr"``, ``"momentum"``,
    ``"weight_decay"``, ...). Group ``i`` gets

    * ``initial_i * schedule_i(t)`` for a relative schedule, where
      ``initial_i = group["initial_<key>"]``, set to the group's current value
      on construction unless the group already has it (as torch does with
      ``initial_lr``);
    * ``schedule_i(t)`` for an absolute one.

    Counter semantics are torch's: construction applies step 0
    (``last_epoch == t == 0``), and each :meth:`step` (call it after
    ``optimizer.step``) advances by one and applies the new value, which
    takes effect at the next ``optimizer.step``.
    """

    def __init__(
        self,
        optimizer: Any,
        schedule: ScheduleLike | Sequence[ScheduleLike],
        key: str = "lr",
    ) -> None:
        groups = _param_groups(optimizer)
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != len(groups):
                raise ValueError(
                    f"schedule is a list of {len(schedule)} schedules, but the optimizer has "
                    f"{len(groups)} param groups"
                )
            schedules = [_as_schedule(s, f"schedule[{i}]") for i, s in enumerate(schedule)]
        else:
            schedules = [_as_schedule(schedule, "schedule")] * len(groups)
        initial_key = f"initial_{key}"
        for i, group in enumerate(groups):
            if key not in group:
                known = sorted(k for k in group if k not in ("params", "param_names"))
                raise ValueError(f"key {key!r} is not in param group {i} (it has {known})")
            if not _is_number(group[key]):
                raise ValueError(
                    f"key {key!r} of param group {i} holds {group[key]!r}, not a number"
                )
            if initial_key in group and not _is_number(group[initial_key]):
                raise ValueError(
                    f"param group {i} has {initial_key}={group[initial_key]!r}, not a number"
                )
        for group in groups:
            group.setdefault(initial_key, float(group[key]))
        self.optimizer = optimizer
        self.key = key
        self.initial_key = initial_key
        self.schedules = schedules
        self.base_values = [float(g[initial_key]) for g in groups]
        self.last_epoch = -1
        self._last_values: list[float] = []
        self.step()

    @property
    def t(self) -> int:
        """The current step: 0 after construction, +1 per :meth:`step`."""
        return self.last_epoch

    def values_at(self, t: int) -> list[float]:
        """The value each group gets at step ``t`` (pure: writes nothing)."""
        t = _step(t)
        values = []
        for i, (sched, base) in enumerate(zip(self.schedules, self.base_values, strict=True)):
            v = sched(t) * base if sched.relative else sched(t)
            if not math.isfinite(v):
                raise ValueError(f"the schedule of param group {i} gave {v} at step {t}")
            values.append(v)
        return values

    def step(self) -> None:
        """Advances ``t`` by one and writes the new values into the param groups."""
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        groups = _param_groups(self.optimizer)
        if len(groups) != len(self.schedules):
            raise ValueError(
                f"the optimizer has {len(groups)} param groups, but this scheduler was built "
                f"for {len(self.schedules)}"
            )
        values = self.values_at(self.last_epoch)
        for group, v in zip(groups, values, strict=True):
            group[self.key] = v
        self._last_values = values

    def get_last_value(self) -> list[float]:
        """The values last written, one per param group."""
        return list(self._last_values)

    def get_last_lr(self) -> list[float]:
        """Alias of :meth:`get_last_value` (torch's name)."""
        return self.get_last_value()

    def state_dict(self) -> dict[str, Any]:
        """``{"key", "last_epoch", "base_values"}``: the counter and each group's initial value.

        The schedules themselves are pure functions and are not saved: build the
        scheduler with the same schedules, then load.
        """
        return {
            "key": self.key,
            "last_epoch": self.last_epoch,
            "base_values": list(self.base_values),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the counter and initial values, and writes the values for that step."""
        if not isinstance(state_dict, Mapping) or not {"key", "last_epoch", "base_values"} <= set(
            state_dict
        ):
            raise ValueError("state_dict must be a dict with 'key', 'last_epoch', 'base_values'")
        if state_dict["key"] != self.key:
            raise ValueError(
                f"state_dict is for key {state_dict['key']!r}, this scheduler sets {self.key!r}"
            )
        last_epoch = _int("state_dict['last_epoch']", state_dict["last_epoch"], 0)
        bases = list(state_dict["base_values"])
        if len(bases) != len(self.schedules):
            raise ValueError(
                f"state_dict has {len(bases)} base_values, this scheduler has "
                f"{len(self.schedules)} param groups"
            )
        bases = [_real(f"state_dict['base_values'][{i}]", b) for i, b in enumerate(bases)]
        self.base_values = bases
        self.last_epoch = last_epoch
        for group, b in zip(_param_groups(self.optimizer), bases, strict=True):
            group[self.initial_key] = b
        self._apply()

    def __repr__(self) -> str:
        names = sorted({s.name for s in self.schedules})
        return f"Scheduler(key={self.key!r}, t={self.last_epoch}, schedules={names})"


class ReduceLROnPlateau:
    """Reduces the lr when a metric stops improving (torch ReduceLROnPlateau).

    ``step(metric)``: the metric is *better* than the best so far when it beats it
    by more than ``threshold``:

    * ``mode="min"``: ``metric < best * (1 - threshold)`` (``rel``) or
      ``metric < best - threshold`` (``abs``);
    * ``mode="max"``: ``metric > best * (1 + threshold)`` or ``metric > best + threshold``.

    A better metric becomes the best and resets the count of bad steps; any
    other adds one. During a cooldown (``cooldown`` steps after a reduction)
    bad steps are not counted. When the count exceeds ``patience``, every
    group's lr becomes ``max(lr * factor, min_lr_i)`` (unless it would change
    by no more than ``eps``), the cooldown starts and the count resets.
    ``min_lr`` is one number or one per group. Construction leaves the lrs alone.
    """

    def __init__(
        self,
        optimizer: Any,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        groups = _param_groups(optimizer)
        self.optimizer = optimizer
        self.mode = _choice("mode", mode, ("min", "max"))
        self.factor = _real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = _int("patience", patience, 0)
        self.threshold = _real("threshold", threshold, low=0.0)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _int("cooldown", cooldown, 0)
        self.eps = _real("eps", eps, low=0.0)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(
                    f"min_lr has {len(min_lr)} entries, the optimizer has "
                    f"{len(groups)} param groups"
                )
            self.default_min_lr: float | None = None
            self.min_lrs = [_real(f"min_lr[{i}]", m, low=0.0) for i, m in enumerate(min_lr)]
        else:
            self.default_min_lr = _real("min_lr", min_lr, low=0.0)
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            if not _is_number(group.get("lr")):
                raise ValueError(f"param group {i} has no numeric 'lr'")
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [float(g["lr"]) for g in groups]

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` counts as an improvement over ``best``."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric: Any) -> None:
        """Feeds one metric value (a loss for ``mode="min"``)."""
        try:
            current = float(metric)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metric must be a number, got {metric!r}") from err
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [float(g["lr"]) for g in _param_groups(self.optimizer)]

    def _reduce_lr(self) -> None:
        groups = _param_groups(self.optimizer)
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(
                    f"the optimizer has {len(groups)} param groups, but min_lr has "
                    f"{len(self.min_lrs)} entries"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def get_last_lr(self) -> list[float]:
        """The lrs after the last step, one per param group."""
        return list(self._last_lr)

    get_last_value = get_last_lr

    _STATE = ("last_epoch", "best", "num_bad_epochs", "cooldown_counter", "min_lrs")
    _CONFIG = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")

    def state_dict(self) -> dict[str, Any]:
        """The counters, the best metric and the settings, as a plain dict."""
        state = {k: getattr(self, k) for k in self._CONFIG + self._STATE}
        state["min_lrs"] = list(self.min_lrs)
        state["default_min_lr"] = self.default_min_lr
        state["last_lr"] = list(self._last_lr)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved (the lrs live in the optimizer's state)."""
        if not isinstance(state_dict, Mapping):
            raise ValueError("state_dict must be a dict")
        missing = [k for k in self._CONFIG + self._STATE if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict lacks {missing}")
        sd = state_dict
        default_min_lr = sd.get("default_min_lr")
        new = ReduceLROnPlateau(
            self.optimizer,
            mode=sd["mode"],
            factor=sd["factor"],
            patience=sd["patience"],
            threshold=sd["threshold"],
            threshold_mode=sd["threshold_mode"],
            cooldown=sd["cooldown"],
            min_lr=list(sd["min_lrs"]) if default_min_lr is None else default_min_lr,
            eps=sd["eps"],
        )
        new.last_epoch = _int("last_epoch", sd["last_epoch"], 0)
        best = sd["best"]
        if not _is_number(best) or math.isnan(best):
            raise ValueError(f"state_dict['best'] must be a number, got {best!r}")
        new.best = float(best)
        new.num_bad_epochs = _int("num_bad_epochs", sd["num_bad_epochs"], 0)
        new.cooldown_counter = _int("cooldown_counter", sd["cooldown_counter"], 0)
        if "last_lr" in sd:
            new._last_lr = [float(x) for x in sd["last_lr"]]
        self.__dict__.update(new.__dict__)


# -- batch-size schedules ----------------------------------------------------


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
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
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
        raise ValueError(f"max_batch_size must be >= initial ({initial}), got {cap}")
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

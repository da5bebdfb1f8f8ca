"""Loss scaling for float16 training, as ``torch.amp.GradScaler`` does it.

float16 grads underflow to zero below about 6e-8: the loss is multiplied by a
large scale before the backward pass, so the grads come out scaled, and the
optimizer divides them back inside its fused step (``grad_scale=1/scale``).
The same fused pass checks the grads for NaN and Inf (with the grad norm, no
extra pass over the grads): a step whose grads overflowed changes nothing, and
the scale backs off. After ``growth_interval`` clean steps in a row it grows
(:class:`DynamicLossScaler`; :class:`LossScaler` keeps one scale).

>>> import numpy as np, ferroptim as fo
>>> w = np.zeros(3, np.float32)
>>> opt = fo.AdamW([w], lr=1e-3)
>>> scaler = fo.DynamicLossScaler()
>>> seed = scaler.scale(1.0)  # d(scaled loss)/d(loss): start the backward pass with it
>>> scaler.step(opt, [np.full(3, seed, np.float32)])
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ferroptim.exceptions import GradError, HyperparameterError, ParamError, StateDictError
from ferroptim.optimizer import Optimizer

__all__ = ["DynamicLossScaler", "LossScaler"]

# The keys of torch.amp.GradScaler.state_dict(): either scaler loads the other's.
_STATE_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
_F32_MAX = float(np.finfo(np.float32).max)


def _f32(x: float) -> float:
    # torch keeps the scale in a float32 tensor: each product rounds to float32.
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float32(x))


def _scale_arg(name: str, value: Any) -> float:
    """A scale given by the user: > 0 and finite once rounded to float32."""
    scale = _f32(_positive(name, value))
    if not 0.0 < scale < math.inf:
        raise HyperparameterError(f"{name}: must be within float32's range, got {value!r}")
    return scale


def _positive(name: str, value: Any, low: float = 0.0) -> float:
    """``value`` as a float: finite and > ``low``, else a HyperparameterError naming it."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    if not (number and math.isfinite(value) and value > low):
        raise HyperparameterError(f"{name}: must be a finite number > {low:g}, got {value!r}")
    return float(value)


def _interval(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise HyperparameterError(f"growth_interval: must be an integer >= 1, got {value!r}")
    return int(value)


class LossScaler:
    """A fixed loss scale: grads unscaled inside the fused step, non-finite steps skipped.

    Each iteration: seed the backward pass with :meth:`scale` (or multiply the
    loss by it), then call :meth:`step` with the scaled grads. The step divides
    them by the scale inside the optimizer's fused pass (``grad_scale=1/scale``)
    and skips itself when they hold NaN or Inf. :class:`DynamicLossScaler` also
    moves the scale.

    Parameters
    ----------
    init_scale : float, default 2.0**16
        The scale (rounded to float32, as torch keeps it).
    """

    def __init__(self, init_scale: float = 2.0**16) -> None:
        self._scale = _scale_arg("init_scale", init_scale)
        # The outcome of the steps not yet applied to the scale (step(update=False)):
        # None, or whether any of them was skipped.
        self._found_inf: bool | None = None

    def get_scale(self) -> float:
        """The current scale (torch's name)."""
        return self._scale

    @property
    def scale_value(self) -> float:
        """The current scale."""
        return self._scale

    def scale(self, loss: Any) -> Any:
        """``loss * scale``: what to run the backward pass on.

        The product keeps ``loss``'s type (a float, a NumPy array or scalar, a
        torch tensor): a float16 loss times 2**16 overflows float16, so scale a
        float32 loss, or seed the backward pass with ``scale(1.0)``.
        """
        return loss * self._scale

    def step(self, optimizer: Optimizer, grads: Any = None, *, update: bool = True) -> bool:
        """Steps ``optimizer`` on the scaled ``grads``, unscaled inside its fused step.

        Parameters
        ----------
        optimizer : ferroptim.Optimizer
            The optimizer to step; its own options (clipping, accumulation, ...)
            see the unscaled grads.
        grads : list or dict, optional
            The grads of the scaled loss, as :meth:`Optimizer.step` takes them
            (None for an optimizer built on a ParamArena).
        update : bool, default True
            Move the scale now. False when several optimizers step on the grads of
            one scaled loss: call :meth:`update` once after the last of them.

        Returns
        -------
        bool
            True if the params were updated; False for a step skipped for
            non-finite grads and for the calls that only accumulate
            (``accumulate=k``: the scale moves only when the k-th call steps).
        """
        if not isinstance(optimizer, Optimizer):
            raise ParamError(
                f"optimizer: must be a ferroptim Optimizer, got {type(optimizer).__name__}"
            )
        inverse = 1.0 / self._scale if self._scale > 0.0 else math.inf
        if inverse > _F32_MAX:
            # float32 grads times 1/scale would be Inf: no step can be taken.
            raise GradError(
                f"the loss scale fell to {self._scale:g} after steps skipped one after "
                "another: the grads are NaN or Inf at any scale"
            )
        skipped = optimizer.skipped_steps
        applied = optimizer.step(grads, grad_scale=inverse, skip_nonfinite=True)
        found_inf = optimizer.skipped_steps != skipped
        if applied or found_inf:  # a step was taken or refused, not only accumulated
            self._found_inf = bool(self._found_inf) or found_inf
            if update:
                self.update()
        return bool(applied)

    def update(self, new_scale: float | None = None) -> None:
        """Moves the scale by the steps since the last update, or sets it.

        :meth:`step` calls it (unless ``update=False``), so torch code that calls
        ``scaler.update()`` after ``scaler.step(...)`` changes nothing more.

        Parameters
        ----------
        new_scale : float, optional
            Set the scale to this instead (the clean-step count is kept, as in
            torch); pending step outcomes are dropped.
        """
        if new_scale is not None:
            self._scale = _scale_arg("new_scale", new_scale)
        elif self._found_inf is not None:
            self._move(self._found_inf)
        self._found_inf = None

    def _move(self, found_inf: bool) -> None:
        """A fixed scale does not move."""

    def state_dict(self) -> dict[str, Any]:
        """``{"scale": ...}``."""
        return {"scale": self._scale}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads :meth:`state_dict`; all or nothing."""
        self._load(_checked(state_dict, ("scale",)))

    def _load(self, state_dict: Mapping[str, Any]) -> None:
        try:
            scale = _scale_arg("scale", state_dict["scale"])
        except HyperparameterError as e:
            raise StateDictError(f"state_dict: {e}") from None
        self._scale = scale
        self._found_inf = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self._scale:g})"


class DynamicLossScaler(LossScaler):
    """Dynamic loss scaling: torch.amp.GradScaler's rule on a ferroptim optimizer.

    As :class:`LossScaler`, and after each step (:meth:`update` runs inside
    :meth:`step`) the scale moves:

    - a skipped step: ``scale *= backoff_factor``, the clean-step count restarts;
    - ``growth_interval`` clean steps in a row: ``scale *= growth_factor``.

    The scale is a float32 number, rounded as torch rounds it, so the sequence
    of scales equals GradScaler's on the same finite/non-finite pattern, and the
    state_dict has GradScaler's keys (either loads the other's).

    Parameters
    ----------
    init_scale : float, default 2.0**16
        The first scale.
    growth_factor : float, default 2.0
        Multiplies the scale after ``growth_interval`` clean steps; > 1.
    backoff_factor : float, default 0.5
        Multiplies the scale after a skipped step; in (0, 1).
    growth_interval : int, default 2000
        Clean steps in a row before the scale grows.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        growth, backoff, interval = _factors(growth_factor, backoff_factor, growth_interval)
        super().__init__(init_scale)
        self._growth_factor = growth
        self._backoff_factor = backoff
        self._growth_interval = interval
        self._growth_tracker = 0

    @property
    def growth_factor(self) -> float:
        """Multiplies the scale after ``growth_interval`` clean steps."""
        return self._growth_factor

    @property
    def backoff_factor(self) -> float:
        """Multiplies the scale after a skipped step."""
        return self._backoff_factor

    @property
    def growth_interval(self) -> int:
        """Clean steps in a row before the scale grows."""
        return self._growth_interval

    def _move(self, found_inf: bool) -> None:
        # torch's _amp_update_scale_, step for step.
        if found_inf:
            self._scale = _f32(self._scale * self._backoff_factor)
            self._growth_tracker = 0
        elif self._growth_tracker + 1 == self._growth_interval:
            grown = _f32(self._scale * self._growth_factor)
            if math.isfinite(grown):  # as torch: never grow to Inf
                self._scale = grown
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1

    def state_dict(self) -> dict[str, Any]:
        """The scale and its settings, with torch.amp.GradScaler's keys."""
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads :meth:`state_dict` (this class's or torch's GradScaler's); all or nothing."""
        state_dict = _checked(state_dict, _STATE_KEYS)
        tracker = state_dict["_growth_tracker"]
        try:
            growth, backoff, interval = _factors(
                state_dict["growth_factor"],
                state_dict["backoff_factor"],
                state_dict["growth_interval"],
            )
            bad = isinstance(tracker, bool) or not isinstance(tracker, (int, np.integer))
            if bad or not 0 <= tracker < interval:
                raise HyperparameterError(
                    f"_growth_tracker: must be an integer in [0, growth_interval), got {tracker!r}"
                )
        except HyperparameterError as e:
            raise StateDictError(f"state_dict: {e}") from None
        self._load(state_dict)  # checks the scale before anything changes
        self._growth_factor = growth
        self._backoff_factor = backoff
        self._growth_interval = interval
        self._growth_tracker = int(tracker)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scale={self._scale:g}, growth_factor="
            f"{self._growth_factor:g}, backoff_factor={self._backoff_factor:g}, "
            f"growth_interval={self._growth_interval}, clean_steps={self._growth_tracker})"
        )


def _factors(growth: Any, backoff: Any, interval: Any) -> tuple[float, float, int]:
    """growth_factor, backoff_factor and growth_interval, checked as torch checks them."""
    grow = _positive("growth_factor", growth, 1.0)
    back = _positive("backoff_factor", backoff)
    if back >= 1.0:
        raise HyperparameterError(f"backoff_factor: must be in (0, 1), got {backoff!r}")
    return grow, back, _interval(interval)


def _checked(state_dict: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(state_dict, Mapping):
        raise StateDictError(f"state_dict: must be a dict, got {type(state_dict).__name__}")
    missing = [k for k in keys if k not in state_dict]
    if missing:
        raise StateDictError(f"state_dict: missing {', '.join(missing)}")
    return state_dict

"""Rprop (torch.optim.Rprop)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["Rprop"]


class Rprop(Optimizer):
    """Rprop: per-element step sizes that grow while the grad keeps its sign.

    Each step, per element (p the param, d its step size, prev the last grad used)::

        g = grad + weight_decay * p + l1 * sign(p)     (-grad under maximize)
        f = eta_plus if g * prev > 0, eta_minus if g * prev < 0, else 1
        d = clamp(d * f, step_min, step_max)           (d starts at lr)
        g = 0 where g * prev < 0                       (the sign flipped: no move)
        p = p - sign(g) * d;   prev = g

    Same names and defaults as torch.optim.Rprop, plus ``weight_decay`` and
    ``l1`` (both off by default). ``lr`` only sets the first step size.
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 1e-2
        The initial step size of every element.
    etas : tuple[float, float], default (0.5, 1.2)
        (eta_minus, eta_plus): step-size factors on a sign change and on a
        kept sign, 0 < eta_minus < 1 < eta_plus.
    step_sizes : tuple[float, float], default (1e-6, 50.0)
        (step_min, step_max): bounds of the step sizes, 0 <= step_min <= step_max.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    weight_decay : float, default 0.0
        L2 penalty added to the grad (torch's Rprop has none).
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    """

    _engine_class = _core.Rprop

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
        *,
        maximize: bool = False,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        max_grad_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
        skip_nonfinite: bool = False,
        ema_decay: float | None = None,
        ema_equal_weights: bool = False,
        accumulate: int = 1,
        accumulate_mean: bool = True,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        state_dtype: str | None = None,
        master_weights: bool = True,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "etas": etas,
                "step_sizes": step_sizes,
                "maximize": maximize,
                "weight_decay": weight_decay,
                "l1": l1,
            },
            **step_options(locals()),
        )

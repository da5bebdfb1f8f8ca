"""RMSprop (torch.optim.RMSprop)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, plain or centered, with optional momentum.

    Each step, per element (p the param, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)     (-grad under maximize)
        s = alpha * s + (1 - alpha) * g**2
        a = alpha * a + (1 - alpha) * g                (centered only)
        d = sqrt(s - a**2) + eps   (centered),   sqrt(s) + eps   (otherwise)
        b = momentum * b + g / d,   p = p - lr * b     (momentum > 0)
        p = p - lr * g / d                             (momentum = 0)

    Same names and defaults as torch.optim.RMSprop, plus ``l1``.
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 1e-2
        The learning rate.
    alpha : float, default 0.99
        Decay rate of the squared-grad average.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the grad.
    momentum : float, default 0.0
        Momentum factor (0: none).
    centered : bool, default False
        Normalize by the grad's estimated variance.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    """

    _engine_class = _core.RMSprop

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
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
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
                "maximize": maximize,
                "l1": l1,
            },
            **step_options(locals()),
        )

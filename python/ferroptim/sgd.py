"""Stochastic gradient descent (torch.optim.SGD)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD with momentum, dampening and Nesterov momentum.

    Each step, per element (p the param, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)     (-grad under maximize)
        b = g                                 at the first step
        b = momentum * b + (1 - dampening) * g   after
        p = p - lr * (g + momentum * b)          with nesterov
        p = p - lr * b                           with momentum > 0
        p = p - lr * g                           otherwise

    Same names and defaults as torch.optim.SGD, plus ``l1``.
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 1e-3
        The learning rate.
    momentum : float, default 0.0
        Momentum factor (0: plain SGD).
    dampening : float, default 0.0
        Dampening of the momentum buffer's new grads.
    weight_decay : float, default 0.0
        L2 penalty added to the grad.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0, dampening 0).
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    """

    _engine_class = _core.SGD

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
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
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
                "maximize": maximize,
                "l1": l1,
            },
            **step_options(locals()),
        )

"""RAdam (torch.optim.RAdam)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["RAdam"]


class RAdam(Optimizer):
    """RAdam: Adam with a rectified adaptive learning rate.

    Each step, per element (p the param, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)   (or decoupled: p = p * (1 - lr * weight_decay))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        rho_inf = 2 / (1 - beta2) - 1,   rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        r = sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        p = p - lr * m / (1 - beta1**t) * r * sqrt(1 - beta2**t) / (sqrt(v) + eps)   if rho > 5
        p = p - lr * m / (1 - beta1**t)                                              otherwise

    Same names and defaults as torch.optim.RAdam, plus ``l1``.
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 1e-3
        The learning rate.
    betas : tuple[float, float], default (0.9, 0.999)
        Decay rates of the first and second moments.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        Weight decay (L2 penalty, or decoupled).
    decoupled_weight_decay : bool, default False
        Decay the weights directly, as AdamW.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    """

    _engine_class = _core.RAdam

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
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
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "decoupled_weight_decay": decoupled_weight_decay,
                "maximize": maximize,
                "l1": l1,
            },
            **step_options(locals()),
        )

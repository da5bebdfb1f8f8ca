"""Adamax (torch.optim.Adamax)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """Adamax: Adam with an infinity-norm second moment.

    Each step, per element (p the param, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)     (-grad under maximize)
        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1**t) * m / u

    Same names and defaults as torch.optim.Adamax, plus ``l1``.
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 2e-3
        The learning rate.
    betas : tuple[float, float], default (0.9, 0.999)
        Decay rates of the first moment and the infinity norm.
    eps : float, default 1e-8
        Added to |g|.
    weight_decay : float, default 0.0
        L2 penalty added to the grad.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    """

    _engine_class = _core.Adamax

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
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
                "maximize": maximize,
                "l1": l1,
            },
            **step_options(locals()),
        )

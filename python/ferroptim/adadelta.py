"""Adadelta (torch.optim.Adadelta)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta: step sizes from running averages of squared grads and updates.

    .. math::
        g_t &= \pm\nabla_t + \lambda\,\theta_{t-1} + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        v_t &= \rho v_{t-1} + (1-\rho)\,g_t^2 \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &= \rho u_{t-1} + (1-\rho)\,\Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \gamma\,\Delta_t

    Same names and defaults as torch.optim.Adadelta, plus ``l1`` (λ₁ above) and the step
    options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.Adadelta

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        l1: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "rho": rho,
                "eps": eps,
                "weight_decay": weight_decay,
                "maximize": maximize,
                "l1": l1,
            },
            **options,
        )

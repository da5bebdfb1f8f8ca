"""Stochastic gradient descent (torch.optim.SGD)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD with momentum, dampening and Nesterov momentum.

    .. math::
        g_t &= \pm\nabla_t + \lambda\,\theta_{t-1} + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        b_t &= g_t \ (t = 1), \qquad b_t = \mu\,b_{t-1} + (1-\tau)\,g_t \ (t > 1) \\
        d_t &= g_t + \mu\,b_t \ \text{(nesterov)}, \quad b_t \ \text{(momentum)}, \quad g_t \\
        \theta_t &= \theta_{t-1} - \gamma\,d_t

    Same names and defaults as torch.optim.SGD, plus ``l1`` (λ₁ above) and the
    step options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.SGD

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        l1: float = 0.0,
        **options: Any,
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
            **options,
        )

"""Adamax (torch.optim.Adamax)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax: Adam with an infinity-norm second moment.

    .. math::
        g_t &= \pm\nabla_t + \lambda\,\theta_{t-1} + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t \\
        u_t &= \max(\beta_2 u_{t-1},\ |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,\frac{m_t}{u_t}

    Same names and defaults as torch.optim.Adamax, plus ``l1`` (λ₁ above) and the step
    options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.Adamax

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
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
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "maximize": maximize,
                "l1": l1,
            },
            **options,
        )

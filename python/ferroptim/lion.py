"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms")."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["Lion"]


class Lion(Optimizer):
    r"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        g_t &= \pm\nabla_t + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        c_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t \\
        \theta_t &= \theta_{t-1}\,(1 - \gamma\lambda) - \gamma\,\mathrm{sign}(c_t) \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2)\,g_t

    Defaults from the paper, plus ``l1`` (λ₁ above) and the step
    options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.Lion

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
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
                "weight_decay": weight_decay,
                "maximize": maximize,
                "l1": l1,
            },
            **options,
        )

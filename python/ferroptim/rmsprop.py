"""RMSprop (torch.optim.RMSprop)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop, plain or centered, with optional momentum.

    .. math::
        g_t &= \pm\nabla_t + \lambda\,\theta_{t-1} + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        s_t &= \alpha s_{t-1} + (1-\alpha)\,g_t^2, \qquad
        a_t = \alpha a_{t-1} + (1-\alpha)\,g_t \ \text{(centered)} \\
        d_t &= \sqrt{s_t - a_t^2} + \epsilon \ \text{(centered)}, \quad \sqrt{s_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t / d_t, \quad \theta_t = \theta_{t-1} - \gamma b_t
              \quad (\mu > 0) \\
        \theta_t &= \theta_{t-1} - \gamma\,g_t / d_t \quad (\mu = 0)

    Same names and defaults as torch.optim.RMSprop, plus ``l1`` and the step options
    of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.RMSprop

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        l1: float = 0.0,
        **options: Any,
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
            **options,
        )

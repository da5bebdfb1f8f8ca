"""AdamW (torch.optim.AdamW): Adam with decoupled weight decay."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["AdamW"]


class AdamW(Optimizer):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter).

    .. math::
        \theta' &= \theta_{t-1}\,(1 - \gamma\lambda) \\
        g_t &= \pm\nabla_t + \lambda_1\,\mathrm{sign}(\theta_{t-1}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2 \\
        \theta_t &= \theta' - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    (with :math:`\max(\hat v_{t-1}, v_t)` in place of :math:`v_t` under amsgrad).
    Same names and defaults as torch.optim.AdamW, plus ``l1`` and the step options
    of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.Adam

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
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
                "amsgrad": amsgrad,
                "maximize": maximize,
                "decoupled_weight_decay": True,
                "l1": l1,
            },
            **options,
        )

"""Adam (torch.optim.Adam)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["Adam"]


class Adam(Optimizer):
    r"""Adam, with optional AMSGrad and coupled or decoupled weight decay.

    .. math::
        g_t &= \pm\nabla_t + \lambda\,\theta_{t-1} + \lambda_1\,\mathrm{sign}(\theta_{t-1})
              \quad (\lambda \text{ only when coupled}) \\
        \theta' &= \theta_{t-1}\,(1 - \gamma\lambda) \quad \text{(decoupled only)} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2, \qquad
              \hat v_t = \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)} \\
        \theta_t &= \theta' - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Same names and defaults as torch.optim.Adam, plus ``l1`` (λ₁ above) and the
    step options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.Adam

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
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
                "decoupled_weight_decay": decoupled_weight_decay,
                "l1": l1,
            },
            **options,
        )

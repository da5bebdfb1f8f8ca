"""RAdam (torch.optim.RAdam)."""

from __future__ import annotations

from typing import Any

from ferroptim import _core
from ferroptim.optimizer import Optimizer

__all__ = ["RAdam"]


class RAdam(Optimizer):
    r"""RAdam: Adam with a rectified adaptive learning rate.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2 \\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t} \\
        \theta_t &= \theta_{t-1} - \gamma\,\frac{m_t}{1-\beta_1^t}\,
            \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\, r_t \quad (\rho_t > 5), \qquad
        \theta_{t-1} - \gamma\,\frac{m_t}{1-\beta_1^t} \quad \text{otherwise} \\
        r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    with :math:`g_t = \pm\nabla_t + \lambda\theta_{t-1} + \lambda_1\mathrm{sign}(\theta_{t-1})`
    (or decoupled decay :math:`\theta \leftarrow \theta(1-\gamma\lambda)`).

    Same names and defaults as torch.optim.RAdam, plus ``l1`` (λ₁ above) and the step
    options of :class:`~ferroptim.optimizer.Optimizer` (clipping, EMA, accumulation).
    """

    _engine_class = _core.RAdam

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
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
                "decoupled_weight_decay": decoupled_weight_decay,
                "maximize": maximize,
                "l1": l1,
            },
            **options,
        )

"""NAdam (torch.optim.NAdam)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["NAdam"]


class NAdam(Optimizer):
    """NAdam: Adam with Nesterov momentum and a momentum-decay schedule.

    Each step, per element (p the param, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)   (or decoupled: p = p * (1 - lr * weight_decay))
        mu(t) = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay)),   mu_product = mu(1) * ... * mu(t)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        d = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr * (1 - mu(t)) / (1 - mu_product) * g / d
              - lr * mu(t+1) / (1 - mu_product * mu(t+1)) * m / d

    Same names and defaults as torch.optim.NAdam, plus ``l1``. mu_product is
    kept as a float32 scalar, as torch keeps it under its default dtype, so that
    float64 runs give torch's numbers; ``mu_product_dtype="float64"`` keeps it
    in full precision (torch with a float64 default dtype).
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 2e-3
        The learning rate.
    betas : tuple[float, float], default (0.9, 0.999)
        Decay rates of the first and second moments.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        Weight decay (L2 penalty, or decoupled).
    momentum_decay : float, default 4e-3
        The psi of the momentum schedule.
    decoupled_weight_decay : bool, default False
        Decay the weights directly, as AdamW.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    mu_product_dtype : {"float32", "float64"}, default "float32"
        Precision of mu_product: torch's default dtype, or full precision.
    """

    _engine_class = _core.NAdam

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        l1: float = 0.0,
        mu_product_dtype: str = "float32",
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
                "momentum_decay": momentum_decay,
                "decoupled_weight_decay": decoupled_weight_decay,
                "maximize": maximize,
                "l1": l1,
                "mu_product_dtype": mu_product_dtype,
            },
            **step_options(locals()),
        )

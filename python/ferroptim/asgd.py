"""ASGD (torch.optim.ASGD)."""

from __future__ import annotations

from ferroptim import _core
from ferroptim._params import ParamsLike
from ferroptim.optimizer import Optimizer, step_options

__all__ = ["ASGD"]


class ASGD(Optimizer):
    """ASGD: SGD with a decaying step size and a running average of the params.

    Each step, per element (p the param, ax its average, t its step count)::

        g = grad + weight_decay * p + l1 * sign(p)     (-grad under maximize)
        p = p * (1 - lambd * eta) - eta * g
        ax = p                       if mu == 1
        ax = ax + mu * (p - ax)      otherwise

    then, per param, for the next step (step 1 uses eta = lr, mu = 1)::

        eta = lr / (1 + lambd * lr * t)**alpha
        mu = 1 / max(1, t - t0)

    Same names and defaults as torch.optim.ASGD, plus ``l1``. The average is
    the state ``ax``. As torch keeps eta and mu as scalars of its default
    dtype, they are rounded to float32, so that float64 runs give torch's
    numbers; ``scalar_dtype="float64"`` keeps them in full precision (torch
    with a float64 default dtype).
    The step options below (clipping, EMA, accumulation) apply in the same pass.

    Parameters
    ----------
    params : list, dict or ParamArena
        Arrays, named arrays, param-group dicts or an arena (see Optimizer).
    lr : float, default 1e-2
        The learning rate.
    lambd : float, default 1e-4
        Decay term: shrinks the params and the step size.
    alpha : float, default 0.75
        Power of the step-size decay.
    t0 : float, default 1e6
        The step after which averaging starts.
    weight_decay : float, default 0.0
        L2 penalty added to the grad.
    maximize : bool, default False
        Maximize the objective: step along the grad.
    l1 : float, default 0.0
        L1 penalty: adds l1 * sign(p) to the grad (0: off).
    scalar_dtype : {"float32", "float64"}, default "float32"
        Precision of eta and mu: torch's default dtype, or full precision.
    """

    _engine_class = _core.ASGD

    def __init__(
        self,
        params: ParamsLike,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        l1: float = 0.0,
        scalar_dtype: str = "float32",
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
                "lambd": lambd,
                "alpha": alpha,
                "t0": t0,
                "weight_decay": weight_decay,
                "maximize": maximize,
                "l1": l1,
                "scalar_dtype": scalar_dtype,
            },
            **step_options(locals()),
        )

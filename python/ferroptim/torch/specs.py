"""The table the ferroptim.torch classes are made from: one row per optimizer.

Each row gives torch's signature (names, order, defaults) for the class of the
same name, the Rust engine that steps it, and how its state differs in torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ferroptim import _core

__all__ = ["DOCS", "SPECS", "Spec", "numpydoc_type"]


@dataclass(frozen=True)
class Spec:
    """One optimizer class: its engine and torch's signature for it."""

    name: str
    engine: Any
    positional: tuple[tuple[str, Any], ...]  # after ``params``, in torch's order
    keyword: tuple[tuple[str, Any], ...]  # keyword-only
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set by the class (AdamW)
    keeps_step: bool = True  # torch's SGD keeps no "step"
    initial_state: tuple[str, str] | None = None  # Adagrad: (slot, the group key it starts at)
    summary: str = ""
    # Engine-only hypers torch lacks (Rprop's weight_decay): not in the param groups.
    engine_defaults: Mapping[str, Any] = field(default_factory=dict)
    # The engine option that rounds per-param scalars (NAdam's mu_product,
    # ASGD's eta and mu) as torch does: to torch's default dtype at step time.
    scalar_dtype_option: str | None = None
    docs: Mapping[str, str] = field(default_factory=dict)  # DOCS entries this class words otherwise


_BETAS = (0.9, 0.999)
_ADAM_FLAGS = (
    ("foreach", None),
    ("maximize", False),
    ("capturable", False),
    ("differentiable", False),
    ("fused", None),
)
SPECS = (
    Spec(
        "SGD",
        _core.SGD,
        (("lr", 1e-3), ("momentum", 0), ("dampening", 0), ("weight_decay", 0), ("nesterov", False)),
        (("maximize", False), ("foreach", None), ("differentiable", False), ("fused", None)),
        keeps_step=False,
        summary="Stochastic gradient descent, with momentum and Nesterov momentum.",
    ),
    Spec(
        "Adam",
        _core.Adam,
        (("lr", 1e-3), ("betas", _BETAS), ("eps", 1e-8), ("weight_decay", 0), ("amsgrad", False)),
        (*_ADAM_FLAGS, ("decoupled_weight_decay", False)),
        summary="Adam (Kingma & Ba), optionally AMSGrad.",
    ),
    Spec(
        "AdamW",
        _core.Adam,
        (
            ("lr", 1e-3),
            ("betas", _BETAS),
            ("eps", 1e-8),
            ("weight_decay", 1e-2),
            ("amsgrad", False),
        ),
        _ADAM_FLAGS,
        fixed={"decoupled_weight_decay": True},
        summary="Adam with decoupled weight decay (Loshchilov & Hutter).",
    ),
    Spec(
        "Adamax",
        _core.Adamax,
        (("lr", 2e-3), ("betas", _BETAS), ("eps", 1e-8), ("weight_decay", 0), ("foreach", None)),
        (("maximize", False), ("differentiable", False), ("capturable", False)),
        summary="Adamax: Adam with the infinity norm.",
    ),
    Spec(
        "NAdam",
        _core.NAdam,
        (
            ("lr", 2e-3),
            ("betas", _BETAS),
            ("eps", 1e-8),
            ("weight_decay", 0),
            ("momentum_decay", 4e-3),
            ("decoupled_weight_decay", False),
        ),
        _ADAM_FLAGS[:4],
        scalar_dtype_option="mu_product_dtype",
        summary="NAdam: Adam with Nesterov momentum.",
    ),
    Spec(
        "RAdam",
        _core.RAdam,
        (
            ("lr", 1e-3),
            ("betas", _BETAS),
            ("eps", 1e-8),
            ("weight_decay", 0),
            ("decoupled_weight_decay", False),
        ),
        _ADAM_FLAGS[:4],
        summary="RAdam: Adam with a rectified adaptive lr.",
    ),
    Spec(
        "RMSprop",
        _core.RMSprop,
        (
            ("lr", 1e-2),
            ("alpha", 0.99),
            ("eps", 1e-8),
            ("weight_decay", 0),
            ("momentum", 0),
            ("centered", False),
            ("capturable", False),
            ("foreach", None),
            ("maximize", False),
            ("differentiable", False),
        ),
        (),
        summary="RMSprop, optionally centered and with momentum.",
    ),
    Spec(
        "Adagrad",
        _core.Adagrad,
        (
            ("lr", 1e-2),
            ("lr_decay", 0),
            ("weight_decay", 0),
            ("initial_accumulator_value", 0),
            ("eps", 1e-10),
            ("foreach", None),
        ),
        (("maximize", False), ("differentiable", False), ("fused", None)),
        initial_state=("sum", "initial_accumulator_value"),
        summary="Adagrad.",
    ),
    Spec(
        "Adadelta",
        _core.Adadelta,
        (("lr", 1.0), ("rho", 0.9), ("eps", 1e-6), ("weight_decay", 0), ("foreach", None)),
        (("capturable", False), ("maximize", False), ("differentiable", False)),
        summary="Adadelta.",
    ),
    Spec(
        "Lion",
        _core.Lion,
        (("lr", 1e-4), ("betas", (0.9, 0.99)), ("weight_decay", 0)),
        (("maximize", False), *(f for f in _ADAM_FLAGS if f[0] != "maximize")),
        summary="Lion (Chen et al.): the sign of an interpolated momentum. Not in torch.optim; "
        "its state is 'exp_avg', as in lion-pytorch.",
    ),
    Spec(
        "Rprop",
        _core.Rprop,
        (("lr", 1e-2), ("etas", (0.5, 1.2)), ("step_sizes", (1e-6, 50))),
        (("capturable", False), ("foreach", None), ("maximize", False), ("differentiable", False)),
        engine_defaults={"weight_decay": 0.0},
        summary="Rprop: per-element step sizes grown or shrunk by the sign of the grad.",
    ),
    Spec(
        "ASGD",
        _core.ASGD,
        (
            ("lr", 1e-2),
            ("lambd", 1e-4),
            ("alpha", 0.75),
            ("t0", 1e6),
            ("weight_decay", 0),
            ("foreach", None),
            ("maximize", False),
            ("differentiable", False),
            ("capturable", False),
        ),
        (),
        scalar_dtype_option="scalar_dtype",
        docs={"alpha": "Power of the step-size decay."},
        summary="ASGD: SGD with a decaying step size and a running average of the params "
        "(state 'ax'; 'eta' and 'mu' are 0-d tensors, as in torch).",
    ),
)


DOCS = {
    "lr": "The learning rate (a float or a 0-d tensor).",
    "betas": "Decay rates of the running averages.",
    "eps": "Added for numerical stability.",
    "weight_decay": "Weight decay (L2 penalty; decoupled for AdamW).",
    "amsgrad": "Use the running maximum of the second moment (AMSGrad).",
    "momentum": "Momentum factor.",
    "dampening": "Dampening of the momentum.",
    "nesterov": "Nesterov momentum.",
    "momentum_decay": "NAdam's momentum decay.",
    "decoupled_weight_decay": "Decoupled (AdamW-style) weight decay.",
    "alpha": "Smoothing constant of the squared-grad average.",
    "centered": "Normalize by the estimated variance of the grad.",
    "lr_decay": "Decay of the lr with the step count.",
    "initial_accumulator_value": "Initial value of the sum of squares.",
    "rho": "Decay rate of the running averages.",
    "etas": "Rprop's (decrease, increase) factors of the step sizes.",
    "step_sizes": "Rprop's (min, max) step sizes.",
    "lambd": "ASGD's decay term: shrinks the params and the step size.",
    "t0": "The step after which ASGD starts averaging.",
    "maximize": "Maximize the objective.",
    "foreach": "torch's implementation flag: accepted, no effect.",
    "fused": "torch's implementation flag: accepted, no effect.",
    "capturable": "torch's flag: only False is supported.",
    "differentiable": "torch's flag: only False is supported.",
}


def numpydoc_type(default: Any) -> str:
    """The numpydoc type of a hyperparameter, from its default."""
    if default is None:
        return "bool or None"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, tuple):
        return "tuple[float, float]"
    return "float"

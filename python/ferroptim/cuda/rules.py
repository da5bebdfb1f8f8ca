"""Per-step scalars of every update rule, for the CUDA kernels.

The CPU engine computes these in Rust (``src/kernels/<rule>.rs``, ``scalars``);
the CUDA engine computes the same numbers here, in float64, and the kernel
rounds them to the param's dtype exactly as the CPU kernel does. Each rule
returns the prelude (see :func:`prelude`) followed by its own scalars, in the
order ``kernels.cu`` reads them. Hyperparameters were validated by the Rust
engine's ``validate_group`` before they get here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RULES", "Rule", "prelude"]


def prelude(
    h: dict[str, Any], *, decoupled: bool = False, average_weight: float = 0.0
) -> list[float]:
    """Grad sign, coupled L2, L1, decoupled decay, averaging weight."""
    wd = float(h.get("weight_decay", 0.0))
    decoupled = decoupled and wd != 0.0
    return [
        -1.0 if h.get("maximize", False) else 1.0,
        0.0 if decoupled else wd,
        float(h.get("l1", 0.0)),
        1.0 - float(h["lr"]) * wd if decoupled else 1.0,
        average_weight,
    ]


@dataclass(frozen=True)
class Rule:
    """One optimizer's kernel name, state slots and scalars."""

    kernel: str
    slots: tuple[str, ...]
    used: Callable[[dict[str, Any]], tuple[bool, bool, bool]]
    # (hyper, step, fresh slots, aux before) -> (rule scalars, aux after, decoupled)
    scalars: Callable[[dict[str, Any], int, tuple[bool, ...], float], tuple[list[float], float]]
    decoupled: Callable[[dict[str, Any]], bool] = lambda h: False
    aux: tuple[str, float] | None = None


def _betas(h: dict[str, Any]) -> tuple[float, float]:
    b1, b2 = h["betas"]
    return float(b1), float(b2)


def _sgd(h, step, fresh, aux):
    momentum = float(h["momentum"])
    mode = 0 if momentum == 0.0 else (1 if fresh[0] else 2)
    return [
        mode,
        1.0 if h["nesterov"] else 0.0,
        momentum,
        1.0 - float(h["dampening"]),
        -float(h["lr"]),
    ], aux


def _adam(h, step, fresh, aux):
    b1, b2 = _betas(h)
    lr = float(h["lr"])
    bc1 = 1.0 - b1**step
    bc2 = 1.0 - b2**step
    return [
        1.0 if h["amsgrad"] else 0.0,
        1.0 - b1,
        b2,
        1.0 - b2,
        -(lr / bc1),
        math.sqrt(bc2),
        float(h["eps"]),
    ], aux


def _rmsprop(h, step, fresh, aux):
    alpha = float(h["alpha"])
    momentum = float(h["momentum"])
    return [
        1.0 if h["centered"] else 0.0,
        1.0 if momentum > 0.0 else 0.0,
        alpha,
        1.0 - alpha,
        float(h["eps"]),
        momentum,
        -float(h["lr"]),
    ], aux


def _adagrad(h, step, fresh, aux):
    lr = float(h["lr"])
    clr = lr / (1.0 + (step - 1.0) * float(h["lr_decay"]))
    return [
        1.0 if fresh[0] else 0.0,
        float(h["initial_accumulator_value"]),
        -clr,
        float(h["eps"]),
    ], aux


def _adadelta(h, step, fresh, aux):
    rho = float(h["rho"])
    return [rho, 1.0 - rho, float(h["eps"]), -float(h["lr"])], aux


def _adamax(h, step, fresh, aux):
    b1, b2 = _betas(h)
    bc = 1.0 - b1**step
    return [1.0 - b1, b2, float(h["eps"]), -(float(h["lr"]) / bc)], aux


def _nadam_mu(h, t: float) -> float:
    b1, _ = _betas(h)
    return b1 * (1.0 - 0.5 * 0.96 ** (t * float(h["momentum_decay"])))


def _nadam(h, step, fresh, aux):
    b1, b2 = _betas(h)
    lr = float(h["lr"])
    t = float(step)
    bc2 = 1.0 - b2**t
    mu_t = _nadam_mu(h, t)
    mu_next = _nadam_mu(h, t + 1.0)
    if h.get("mu_product_dtype", "float32") == "float32":
        # As the Rust core: torch rounds mu_product to its default dtype.
        mu_product = float(np.float32(aux) * np.float32(mu_t))
    else:
        mu_product = aux * mu_t
    mu_product_next = mu_product * mu_next
    return [
        1.0 - b1,
        b2,
        1.0 - b2,
        bc2,
        float(h["eps"]),
        -lr * (1.0 - mu_t) / (1.0 - mu_product),
        (-lr * mu_next) / (1.0 - mu_product_next),
    ], mu_product


def _radam(h, step, fresh, aux):
    b1, b2 = _betas(h)
    t = float(step)
    bc1 = 1.0 - b1**t
    bc2 = 1.0 - b2**t
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * b2**t / bc2
    rectified = rho_t > 5.0
    rect = (
        math.sqrt(
            (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        )
        if rectified
        else 1.0
    )
    return [
        1.0 if rectified else 0.0,
        1.0 - b1,
        b2,
        1.0 - b2,
        bc1,
        float(h["lr"]),
        math.sqrt(bc2),
        float(h["eps"]),
        rect,
    ], aux


def _lion(h, step, fresh, aux):
    b1, b2 = _betas(h)
    return [b1, 1.0 - b1, b2, 1.0 - b2, -float(h["lr"])], aux


def _flag(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda h: bool(h.get(key, False))


# Keyed by the Rust engine class name (ferroptim._core.<name>).
RULES: dict[str, Rule] = {
    "SGD": Rule(
        "sgd", ("momentum_buffer",), lambda h: (float(h["momentum"]) != 0.0, False, False), _sgd
    ),
    "Adam": Rule(
        "adam",
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        lambda h: (True, True, bool(h["amsgrad"])),
        _adam,
        _flag("decoupled_weight_decay"),
    ),
    "RMSprop": Rule(
        "rmsprop",
        ("square_avg", "momentum_buffer", "grad_avg"),
        lambda h: (True, float(h["momentum"]) > 0.0, bool(h["centered"])),
        _rmsprop,
    ),
    "Adagrad": Rule("adagrad", ("sum",), lambda h: (True, False, False), _adagrad),
    "Adadelta": Rule(
        "adadelta", ("square_avg", "acc_delta"), lambda h: (True, True, False), _adadelta
    ),
    "Adamax": Rule("adamax", ("exp_avg", "exp_inf"), lambda h: (True, True, False), _adamax),
    "NAdam": Rule(
        "nadam",
        ("exp_avg", "exp_avg_sq"),
        lambda h: (True, True, False),
        _nadam,
        _flag("decoupled_weight_decay"),
        aux=("mu_product", 1.0),
    ),
    "RAdam": Rule(
        "radam",
        ("exp_avg", "exp_avg_sq"),
        lambda h: (True, True, False),
        _radam,
        _flag("decoupled_weight_decay"),
    ),
    "Lion": Rule("lion", ("exp_avg",), lambda h: (True, False, False), _lion, lambda h: True),
}

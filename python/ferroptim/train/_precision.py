"""``--dtype`` and ``--loss-scale``: low-precision params and loss scaling for a run.

bfloat16 and float16 params live in the arena in that dtype; the optimizer
updates them (with float32 master weights by default: ``--opt
master_weights=false`` and ``--opt stochastic_rounding=true`` change that) and
``--opt state_dtype=bfloat16|int8`` compresses its state. The model computes in
float32 from bfloat16 params and in float16 from float16 params; float16
grads need loss scaling, on by default for float16 (``--loss-scale dynamic``).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "PRECISION_OPTIONS",
    "check_loss_scale",
    "loss_scaler",
    "takes_precision_option",
    "target_dtype",
]

DTYPES = ("float32", "float64", "bfloat16", "float16")
# Optimizer keywords of the precision options (every optimizer class takes them
# where the core supports them): accepted by --opt when the class takes them.
PRECISION_OPTIONS = ("state_dtype", "master_weights", "stochastic_rounding", "seed")


def _usage(message: str) -> Exception:
    from ferroptim.train.build import UsageError  # build imports this module

    return UsageError(message)


def check_loss_scale(value: Any) -> str | float | None:
    """``--loss-scale`` as ``"dynamic"``, ``None`` (``none``) or a number > 0 (a
    fixed scale); ``value`` None is the default: dynamic for float16 only."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lower() in ("dynamic", "none"):
        return value.strip().lower()
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _usage(f"--loss-scale: dynamic, none or a number > 0, got {value!r}") from None
    if number is not None and not (math.isfinite(number) and 0 < number < 3.4e38):
        raise _usage(f"--loss-scale: a fixed scale must be a number > 0, got {value!r}")
    return number


def loss_scaler(value: Any, dtype: str) -> Any:
    """The run's loss scaler (a :class:`ferroptim.amp.LossScaler`), or None."""
    from ferroptim.amp import DynamicLossScaler, LossScaler

    scale = check_loss_scale(value)
    if scale is None:
        scale = "dynamic" if dtype == "float16" else "none"
    if scale == "none":
        return None
    if scale == "dynamic":
        return DynamicLossScaler()
    return LossScaler(float(scale))


def takes_precision_option(cls: type, key: str) -> bool:
    """Whether ``--opt key=...`` is a precision option ``cls`` takes."""
    if key not in PRECISION_OPTIONS:
        return False
    return key in inspect.signature(cls.__init__).parameters  # type: ignore[misc]


def target_dtype(dtype: str) -> np.dtype:
    """Regression targets: in the dtype the model computes in, at least float32."""
    return np.dtype(np.float64 if dtype == "float64" else np.float32)

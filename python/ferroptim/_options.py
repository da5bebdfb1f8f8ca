"""The step options every optimizer class takes, and their shared docs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["STEP_OPTIONS", "STEP_OPTIONS_DOC", "step_options"]

# The keyword-only options every optimizer class takes, in signature order.
STEP_OPTIONS = (
    "max_grad_norm",
    "norm_type",
    "clip_value",
    "skip_nonfinite",
    "ema_decay",
    "ema_equal_weights",
    "accumulate",
    "accumulate_mean",
    "foreach",
    "fused",
    "capturable",
    "differentiable",
    "state_dtype",
    "master_weights",
    "stochastic_rounding",
    "seed",
)

#: Appended to the Parameters section of every optimizer class's docstring.
STEP_OPTIONS_DOC = """\
max_grad_norm : float or None, default None
    Clip the global grad norm of each step to this (torch's clip_grad_norm_).
norm_type : float, default 2.0
    The norm for ``max_grad_norm``: 2 or inf.
clip_value : float or None, default None
    Clamp every grad element to [-clip_value, clip_value].
skip_nonfinite : bool, default False
    A step whose grads hold NaN or Inf changes nothing and returns False.
ema_decay : float or None, default None
    Keep an average of the weights: a += (1 - ema_decay) * (p - a).
ema_equal_weights : bool, default False
    Keep the plain mean of the stepped weights instead (SWA).
accumulate : int, default 1
    Sum the grads of this many ``step`` calls; update on every k-th.
accumulate_mean : bool, default True
    Average the accumulated grads (True) or use their sum.
foreach, fused : bool or None, default None
    torch's implementation flags: accepted, no effect (every step is fused).
capturable, differentiable : bool, default False
    torch's flags: only False is supported.
state_dtype : {None, "float32", "bfloat16", "int8"}, default None
    How the state is stored: float32 (None: the params' compute dtype),
    bfloat16, or 8-bit codes with a float32 scale per block of 256 (about
    2 bytes per param for Adam's two moments instead of 8).
master_weights : bool, default True
    float16/bfloat16 params keep float32 master weights in the state and
    are written back rounded; False updates the 16-bit params directly.
stochastic_rounding : bool, default False
    Without master weights, round the params (and bfloat16 state)
    stochastically instead of to nearest, so small updates are not lost.
seed : int, default 0
    Seeds stochastic rounding: the same seed gives the same bits on any
    number of threads.
"""


def step_options(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The step options out of a subclass ``__init__``'s ``locals()``."""
    return {k: namespace[k] for k in STEP_OPTIONS}

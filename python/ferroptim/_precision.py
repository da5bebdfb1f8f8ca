"""Low-precision params and compressed state: the options' checks, and the
bfloat16 dtype (``ml_dtypes.bfloat16``, the one JAX and TensorFlow use).

The rounding, the 8-bit codes and the master weights live in the Rust core
(``crates/ferroptim-core/src/kernels/lowp.rs``); this module only checks
what the user asked for and tells the core which NumPy dtype is bfloat16.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ferroptim import _core
from ferroptim.exceptions import DtypeError, HyperparameterError

__all__ = ["STATE_DTYPES", "bfloat16", "check_precision", "is_low_precision", "refuse_on_gpu"]

STATE_DTYPES = ("float32", "bfloat16", "int8")
_HALF = np.dtype(np.float16)


@functools.cache
def bfloat16() -> np.dtype | None:
    """NumPy's bfloat16 dtype, or None without ml_dtypes (``pip install ml_dtypes``).
    Cached: grad checks call it per grad."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def register() -> None:
    """Tells the core bfloat16's type number (assigned when ml_dtypes loads)."""
    dtype = bfloat16()
    if dtype is not None:
        _core.register_bfloat16(dtype.num)


def is_low_precision(dtype: Any) -> bool:
    """float16 or bfloat16: computed in float32, state in the float32 arena."""
    dtype = np.dtype(dtype)
    return dtype == _HALF or dtype == bfloat16()


def check_precision(
    state_dtype: Any, master_weights: Any, stochastic_rounding: Any, seed: Any
) -> dict[str, Any]:
    """The options, checked, as the engine's ``set_precision`` takes them."""
    if state_dtype is None:
        state_dtype = "float32"
    if not isinstance(state_dtype, str) or state_dtype not in STATE_DTYPES:
        raise HyperparameterError(
            f"state_dtype: must be None, 'float32', 'bfloat16' or 'int8', got {state_dtype!r}"
        )
    if state_dtype == "bfloat16" and bfloat16() is None:
        raise DtypeError("state_dtype='bfloat16' needs ml_dtypes: pip install ml_dtypes")
    for name, value in (
        ("master_weights", master_weights),
        ("stochastic_rounding", stochastic_rounding),
    ):
        if not isinstance(value, (bool, np.bool_)):
            raise HyperparameterError(f"{name}: must be True or False, got {value!r}")
    if (
        isinstance(seed, (bool, np.bool_))
        or not isinstance(seed, (int, np.integer))
        or not 0 <= int(seed) < 2**64
    ):
        raise HyperparameterError(f"seed: must be an integer in [0, 2**64), got {seed!r}")
    return {
        "state_dtype": state_dtype,
        "master_weights": bool(master_weights),
        "stochastic_rounding": bool(stochastic_rounding),
        "seed": int(seed),
    }


def refuse_on_gpu(precision: dict[str, Any]) -> None:
    """The CUDA engine keeps float32 state and float32 master weights of
    float16 params, rounded to nearest; the other options are CPU-only."""
    if precision["state_dtype"] != "float32":
        raise HyperparameterError(
            f"state_dtype: '{precision['state_dtype']}' is not supported by the CUDA engine "
            "(CPU only): use state_dtype='float32' with CuPy params"
        )
    if not precision["master_weights"] or precision["stochastic_rounding"]:
        raise HyperparameterError(
            "master_weights=False and stochastic_rounding=True are not supported by the CUDA "
            "engine (CPU only): its float16 params keep float32 master weights"
        )

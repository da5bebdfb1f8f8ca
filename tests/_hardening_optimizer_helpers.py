"""Bit patterns and named params shared by the test_hardening_optimizer*.py modules."""

from __future__ import annotations

from typing import Any

import numpy as np

F32, F64 = np.float32, np.float64


def named(dtype: Any = F64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(dtype),
        "bias": rng.standard_normal(4).astype(dtype),
    }

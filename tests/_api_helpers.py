"""Params, grad streams and comparisons shared by the test_api*.py modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import ferroptim as fo

F32, F64 = np.float32, np.float64

FACTORIES: dict[str, Callable[..., fo.Optimizer]] = {
    "sgd": lambda p, **kw: fo.SGD(p, **{"lr": 0.1, "momentum": 0.9, **kw}),
    "sgd_nesterov": lambda p, **kw: fo.SGD(
        p, **{"lr": 0.05, "momentum": 0.9, "nesterov": True, **kw}
    ),
    "adam": lambda p, **kw: fo.Adam(p, **{"lr": 0.01, **kw}),
    "adam_amsgrad": lambda p, **kw: fo.Adam(p, **{"lr": 0.01, "amsgrad": True, **kw}),
    "adamw": lambda p, **kw: fo.AdamW(p, **{"lr": 0.01, **kw}),
    "rmsprop": lambda p, **kw: fo.RMSprop(
        p, **{"lr": 0.01, "momentum": 0.5, "centered": True, **kw}
    ),
}
KINDS = list(FACTORIES)


def deep_equal(a: Any, b: Any) -> bool:
    """Structural equality, arrays compared by dtype, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(deep_equal, a, b))
    return type(a) is type(b) and a == b


def make_params(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(50_000).astype(F32),
        rng.standard_normal((3, 4)).astype(F32),
        rng.standard_normal(7),
    ]


def grad_stream(params: list[np.ndarray], n: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(n)]


def assert_params_equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype and g.shape == w.shape, i
        assert np.array_equal(g, w), i

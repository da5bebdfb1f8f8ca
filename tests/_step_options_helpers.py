"""Optimizer factories, params and grads shared by the test_step_options*.py modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

F32, F64 = np.float32, np.float64
INF = float("inf")
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
SHAPES: list[tuple[int, ...]] = [(), (7,), (33, 17), (40000,)]

# name -> (ferroptim factory, torch factory), same hyperparameters on both. The torch
# factory takes the torch module first: only tests that got it from the fixture call it.
PAIRS: dict[str, tuple[Callable[..., fo.Optimizer], Callable[..., Any]]] = {
    "adamw": (
        lambda p, **o: fo.AdamW(p, lr=0.01, weight_decay=0.05, **o),
        lambda torch, p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05, foreach=False),
    ),
    "adam_amsgrad": (
        lambda p, **o: fo.Adam(p, lr=0.01, amsgrad=True, **o),
        lambda torch, p: torch.optim.Adam(p, lr=0.01, amsgrad=True, foreach=False),
    ),
    "sgd": (
        lambda p, **o: fo.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **o),
        lambda torch, p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, foreach=False),
    ),
    "rmsprop": (
        lambda p, **o: fo.RMSprop(p, lr=0.01, centered=True, **o),
        lambda torch, p: torch.optim.RMSprop(p, lr=0.01, centered=True, foreach=False),
    ),
    "adagrad": (
        lambda p, **o: fo.Adagrad(p, lr=0.05, weight_decay=0.1, **o),
        lambda torch, p: torch.optim.Adagrad(p, lr=0.05, weight_decay=0.1, foreach=False),
    ),
    "adadelta": (
        lambda p, **o: fo.Adadelta(p, lr=1.0, **o),
        lambda torch, p: torch.optim.Adadelta(p, lr=1.0, foreach=False),
    ),
    "adamax": (
        lambda p, **o: fo.Adamax(p, lr=0.01, **o),
        lambda torch, p: torch.optim.Adamax(p, lr=0.01, foreach=False),
    ),
    "nadam": (
        lambda p, **o: fo.NAdam(p, lr=0.01, **o),
        lambda torch, p: torch.optim.NAdam(p, lr=0.01, foreach=False),
    ),
    "radam": (
        lambda p, **o: fo.RAdam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, **o),
        lambda torch, p: torch.optim.RAdam(
            p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, foreach=False
        ),
    ),
}
# Every optimizer, for the options that need no torch reference.
FACTORIES: dict[str, Callable[..., fo.Optimizer]] = {
    **{name: pair[0] for name, pair in PAIRS.items()},
    "lion": lambda p, **o: fo.Lion(p, lr=0.01, weight_decay=0.1, **o),
}


def make_params(dtype: Any, seed: int = 0, shapes: list[tuple[int, ...]] = SHAPES) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]


def make_grads(
    rng: np.random.Generator, dtype: Any, shapes: list[tuple[int, ...]] = SHAPES
) -> list[Any]:
    scale = 10.0 ** rng.uniform(-3.5, 0.5)  # the clip binds on some steps only
    return [np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in shapes]


def bits(arrays: list[np.ndarray]) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


def state_equal(a: Any, b: Any) -> bool:
    """Deep equality; arrays by dtype, shape and bits."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)

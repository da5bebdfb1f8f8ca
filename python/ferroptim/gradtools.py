"""Gradient tools: global norm, clipping and a finite check over many arrays.

Each is one call into Rust over all the arrays, with the GIL released. Norms
are summed in float64 over fixed blocks combined pairwise in a fixed order,
so the result is bitwise the same for any thread count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ferroptim import _core

__all__ = ["all_finite", "clip_grad_norm", "clip_grad_value", "grad_norm"]


def _arrays(grads: Any) -> list[np.ndarray]:
    if isinstance(grads, np.ndarray):
        return [grads]
    if isinstance(grads, Mapping):
        return [g for g in grads.values() if g is not None]
    if isinstance(grads, Iterable):
        return [g for g in grads if g is not None]
    return [grads]


def grad_norm(grads: Any, norm_type: float = 2.0) -> float:
    """The norm of all grads taken together: ``sqrt(sum(g**2))`` or ``max|g|``."""
    return _core.grad_norm(_arrays(grads), float(norm_type))


def clip_grad_norm(
    grads: Any, max_norm: float, norm_type: float = 2.0, per_tensor: bool = False
) -> float | list[float]:
    r"""Scales the grads in place so their norm is at most ``max_norm``.

    .. math:: g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g\rVert + 10^{-6}}\right)

    as ``torch.nn.utils.clip_grad_norm_``. With ``per_tensor=True`` each
    array is clipped by its own norm. Returns the norm (or the list of
    per-array norms) before clipping.
    """
    return _core.clip_grad_norm(_arrays(grads), float(max_norm), float(norm_type), per_tensor)


def clip_grad_value(grads: Any, clip_value: float) -> None:
    """Clamps every element to ``[-clip_value, clip_value]`` in place."""
    _core.clip_grad_value(_arrays(grads), float(clip_value))


def all_finite(grads: Any) -> bool:
    """True when no element is NaN or infinite."""
    return _core.all_finite(_arrays(grads))

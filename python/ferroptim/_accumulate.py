"""Grad accumulation (``accumulate=k``): sum k calls' grads, update on the k-th.

Every call checks all of its grads before it touches a buffer, and the k-th
call hands the engine fresh sums (buffer + this call's grad) rather than
adding in place: if the engine refuses the step (a bad hyperparameter, a
read-only param, no memory for the state), the counter and the buffers are
exactly as they were, and the same call can be retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ferroptim._params import on_gpu
from ferroptim._precision import is_low_precision
from ferroptim.exceptions import DtypeError, GradError

__all__ = ["Accumulation", "check_grads"]


def check_grads(
    grads: Sequence[Any],
    labels: Sequence[str],
    dtypes: Sequence[np.dtype],
    shapes: Sequence[tuple[int, ...]],
    gpu: bool,
) -> None:
    """The engine's grad checks, with its messages, before anything is buffered."""
    if len(grads) != len(labels):
        raise GradError(f"got {len(grads)} grads for {len(labels)} params")
    kind = "GPU" if gpu else "NumPy"
    for g, label, dtype, shape in zip(grads, labels, dtypes, shapes):
        if g is None:
            continue
        # A NumPy scalar would pass a dtype check, but `+=` on it rebinds
        # instead of adding in place: insist on arrays of the right kind.
        right_kind = on_gpu(g) if gpu else isinstance(g, np.ndarray) and not on_gpu(g)
        if not right_kind:
            module = type(g).__module__
            what = "a GPU array" if on_gpu(g) else f"{module}.{type(g).__name__}"
            what = what.removeprefix("builtins.")  # as the engine names types
            raise DtypeError(f"grad for param {label} must be a {kind} {dtype} array, got {what}")
        if g.dtype != dtype and not (g.dtype == np.float32 and is_low_precision(dtype)):
            allowed = f"{dtype} (or float32)" if is_low_precision(dtype) else str(dtype)
            raise DtypeError(f"grad for param {label} has dtype {g.dtype}, the param has {allowed}")
        if tuple(g.shape) != tuple(shape):
            raise GradError(
                f"grad for param {label} has shape {list(g.shape)}, the param has shape "
                f"{list(shape)}"
            )


class Accumulation:
    """The pending micro-batch grads: ``calls`` so far, one buffer per engine param
    (None where no grad came yet in this cycle)."""

    def __init__(self) -> None:
        self.calls = 0
        self.buffers: list[Any] = []

    def _padded(self, n: int) -> list[Any]:
        # Params added by add_param_group mid-cycle have no buffer yet.
        return self.buffers + [None] * (n - len(self.buffers))

    def add(self, grads: Sequence[Any]) -> None:
        """Buffers a non-final call's (checked) grads."""
        if self.calls == 0:
            self.buffers = [None if g is None else _buffer(g) for g in grads]
            self.calls = 1
            return
        buffers = self._padded(len(grads))
        # Allocate first, so that running out of memory leaves the buffers alone;
        # the in-place adds that follow cannot fail on checked grads.
        fresh = {i: _buffer(g) for i, g in enumerate(grads) if g is not None and buffers[i] is None}
        for i, g in enumerate(grads):
            if g is not None and i not in fresh:
                buffers[i] += g
        for i, copy in fresh.items():
            buffers[i] = copy
        self.buffers = buffers
        self.calls += 1

    def totals(self, grads: Sequence[Any]) -> list[Any]:
        """The sums to step on at the k-th call; the buffers are not touched."""
        buffers = self._padded(len(grads))
        return [b if g is None else g if b is None else _sum(b, g) for b, g in zip(buffers, grads)]

    def reset(self) -> None:
        """After the k-th call's step went through."""
        self.calls = 0
        self.buffers = []


def _buffer(g: Any) -> Any:
    """A copy to sum into: 16-bit grads are summed in float32 (the engine
    takes float32 grads for 16-bit params), so no micro-batch is rounded away."""
    if isinstance(g, np.ndarray) and g.dtype.itemsize == 2:
        return g.astype(np.float32)
    return g.copy()


def _sum(b: Any, g: Any) -> Any:
    # Not `b + g`: on 0-d arrays that gives a NumPy scalar, which the engine refuses.
    total = b.copy()
    total += g
    return total

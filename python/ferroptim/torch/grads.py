"""How grads reach the engine, for :class:`~ferroptim.torch.optim.TorchOptimizer`.

New grad tensors each step (torch's default ``zero_grad()``) go by address
(``data_ptr()`` after three cheap checks, about 0.25 us a tensor, where a NumPy
view costs 1 us); the same grads seen again get NumPy views, checked by the
engine once and stepped by their addresses after that; anything else (None,
strided or sparse grads) goes through the checked views, which name the
culprit.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from ferroptim.exceptions import DtypeError, GradError
from ferroptim.torch import lowp as _lowp

__all__ = ["GradIntake", "PTR"]

# The engine checks that a grad's dtype suits its param.
_GRAD_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# The C methods themselves, not ``methodcaller``: a Parameter's method lookup
# (a Python subclass) doubled the cost (10000 params: 1.2 ms -> 0.5-0.9 ms a pass).
PTR = torch.Tensor.data_ptr
_CONTIGUOUS = torch.Tensor.is_contiguous
_NUMEL = torch.Tensor.numel
_DTYPE = operator.attrgetter("dtype")


def _in_place(view: Any, param: Any) -> bool:
    """Whether the engine reads grad ``view`` of ``param`` where it lies."""
    flags = view.flags
    return (
        view.dtype == param.dtype
        and view.size == param.size
        and flags.c_contiguous
        and flags.aligned
    )


class GradIntake:
    """The grad-reading half of TorchOptimizer (a mixin over its attributes:
    ``_engine``, ``_entries``, ``_singles``, ``_single_pos``, ``_grads``,
    ``_gcache``, ``_gaddr``, ``_meta``)."""

    _engine: Any
    _entries: list[Any]
    _singles: list[Any]
    _single_pos: list[int]
    _grads: list[Any]
    _gcache: list[Any]
    _gaddr: tuple[list[Any], list[int | None]] | None
    _meta: tuple[list[Any], list[int]] | None

    def _step_views(self, groups: list[dict[str, Any]]) -> None:
        """Steps the grads' NumPy views: checked by the engine the first time,
        by address after that while the list holds the same views (the engine's
        check of a NumPy array costs more than the step of a small tensor)."""
        views, cached = self._grads, self._gaddr
        if cached is not None and len(cached[0]) == len(views):
            if all(map(operator.is_, views, cached[0])):
                # The copy in `cached` keeps these views, so their memory, alive.
                self._engine.step_addresses_unchecked(cached[1], groups)
                return
        self._gaddr = None
        self._engine.step(views, groups)
        # By address later only what the engine reads in place: the param's dtype
        # and size, C-contiguous and aligned (it steps a copy of anything else).
        if all(v is None or _in_place(v, e.array) for v, e in zip(views, self._entries)):
            addresses = [None if v is None else v.__array_interface__["data"][0] for v in views]
            self._gaddr = (list(views), addresses)

    def _addresses(self, grads: list[Any]) -> list[int] | None:
        """The grads' addresses if each is a dense contiguous tensor of its param's
        dtype and size (60 ns a ``data_ptr()``, 1 µs a NumPy view), else None."""
        if len(self._single_pos) != len(self._grads) or not grads:
            return None  # flattened runs: no per-tensor work to save
        if self._meta is None:
            self._meta = (list(map(_DTYPE, self._singles)), list(map(_NUMEL, self._singles)))
        dtypes, sizes = self._meta
        try:
            # `None` grads or sparse ones raise here: the general path handles them.
            if not all(map(_CONTIGUOUS, grads)):
                return None
            if list(map(_DTYPE, grads)) != dtypes or list(map(_NUMEL, grads)) != sizes:
                return None
            return list(map(PTR, grads))
        except (AttributeError, TypeError, RuntimeError):
            return None

    def _new_grads(self, grads: list[Any]) -> None:
        try:  # the common case, in one comprehension: CPU float grads without autograd
            views = [None if g is None else g.numpy() for g in grads]
        except (AttributeError, TypeError, RuntimeError):
            try:  # bfloat16 grads: torch's numpy() refuses them, an int16 view does not
                views = [None if g is None else _lowp.numpy_view(g) for g in grads]
            except (AttributeError, TypeError, RuntimeError):  # name the culprit
                views = [None if g is None else self._slow_view(g, k) for k, g in enumerate(grads)]
        if len(self._single_pos) == len(self._grads):  # no arena runs: positions 0..n-1
            self._grads = views
        else:
            for pos, v in zip(self._single_pos, views):
                self._grads[pos] = v
        self._gcache = grads

    def _slow_view(self, g: Any, k: int) -> Any:
        try:
            return g.numpy()
        except (AttributeError, TypeError, RuntimeError):
            return self._grad_view(g, self._entries[self._single_pos[k]].members[0].label)

    @staticmethod
    def _grad_view(g: Any, lab: str) -> Any:
        """A NumPy view of a grad that the fast path could not take, or why not."""
        if not isinstance(g, torch.Tensor) or g.layout != torch.strided:
            raise GradError(f"grad of param {lab} must be a dense tensor (sparse grads: no)")
        if g.device.type != "cpu" or g.dtype not in _GRAD_DTYPES:
            raise DtypeError(
                f"grad of param {lab} is a {g.dtype} tensor on {g.device}: it must be a "
                "CPU tensor of its param's dtype (or float32 for a 16-bit param)"
            )
        return _lowp.numpy_view(g)

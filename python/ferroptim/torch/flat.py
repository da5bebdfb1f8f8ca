"""Flattened mode: a model's params and grads as views into one ParamArena.

After :func:`flatten`, every ``p.data`` is a view into ``arena.data`` and every
``p.grad`` a view into ``arena.grad``. torch's backward adds into an existing
``.grad`` in place, so the grads land in the arena, and a ferroptim.torch
optimizer over these params steps the arena's contiguous runs (usually one)
with no per-tensor work.

Something that rebinds a tensor (``model.zero_grad()`` sets grads to None;
``p.data = ...``) breaks a view. Each step checks the links with two C-level
passes over the params (about 0.1-0.3 us per tensor) and repairs any that
broke: a new grad or new values are copied into the arena and the view put
back; a grad that is None counts as zero (all params of a run step together).
``flatten(..., check_links=False)`` skips the check, for code that never
rebinds them (zero the grads with the optimizer's ``zero_grad`` or
``FlatParams.zero_grad``): a step then does no per-tensor work at all.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ferroptim._precision import bfloat16
from ferroptim.arena import ParamArena
from ferroptim.exceptions import DtypeError, ParamError

__all__ = ["FlatParams", "flatten", "owner"]

_GRAD = operator.attrgetter("grad")
_PTR = torch.Tensor.data_ptr  # the C method: a Parameter's lookup doubled the cost
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_PARAM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# A flattened param carries (its FlatParams, its index) in this attribute: the
# FlatParams lives as long as the model does (a WeakKeyDictionary cannot hold
# tensors: it compares keys with ==).
_ATTR = "_ferroptim_flat"


def owner(p: Any) -> tuple[FlatParams, int] | None:
    """The :class:`FlatParams` holding ``p`` and its index there, or None."""
    own = getattr(p, _ATTR, None)
    # A deep copy of a flattened model copies the attribute (and a copy of the
    # FlatParams), not the link: its params hold storage of their own.
    if own is None or own[0].data_views[own[1]].data_ptr() != p.data_ptr():
        return None
    return own


def check_tensor(p: Any, what: str) -> None:
    """Refuses what ferroptim.torch cannot update in place: GPU tensors,
    non-float dtypes, non-contiguous layouts."""
    if not isinstance(p, torch.Tensor):
        raise ParamError(f"{what} must be a torch.Tensor, got {type(p).__name__}")
    if p.device.type != "cpu":
        raise ParamError(
            f"{what} is on {p.device}: ferroptim.torch updates CPU tensors (GPU tensors are "
            "not verified yet: move the model to the CPU, or use torch.optim on the GPU)"
        )
    if p.dtype not in _PARAM_DTYPES:
        raise DtypeError(
            f"{what} has dtype {p.dtype}: ferroptim.torch takes float32, float64, float16 or "
            "bfloat16"
        )
    if p.dtype == torch.bfloat16 and bfloat16() is None:
        raise DtypeError(f"{what} is bfloat16, which needs ml_dtypes: pip install ml_dtypes")
    if p.layout != torch.strided:
        raise ParamError(f"{what} has layout {p.layout}: only dense (strided) tensors")
    if not p.is_contiguous():
        raise ParamError(
            f"{what} is not contiguous (e.g. channels_last): it is updated in place through a "
            "NumPy view, so make the model's params contiguous first"
        )


class FlatParams:
    """The params of a model, as views into one :class:`~ferroptim.ParamArena`.

    Parameters
    ----------
    arena : ParamArena
        The buffers: ``arena.data`` holds the values, ``arena.grad`` the grads.
    tensors : list of torch.Tensor
        The params, in arena order.
    names : list of str
        Their names in the arena.
    check_links : bool
        Whether each step checks (and repairs) the links (see the module docs).
    """

    def __init__(
        self, arena: ParamArena, tensors: list[Any], names: list[str], check_links: bool = True
    ) -> None:
        self.check_links = bool(check_links)
        self.arena = arena
        self.tensors = tensors
        self.names = names
        self.data_views = [torch.from_numpy(arena.params[n]) for n in names]
        self.grad_views = [torch.from_numpy(arena.grads[n]) for n in names]
        self.ptrs = [t.data_ptr() for t in self.data_views]

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return f"FlatParams({len(self)} params, {self.arena.size} {self.arena.dtype} values)"

    def zero_grad(self) -> None:
        """Zeroes every grad in place (one fill of the arena's grad buffer)."""
        self.arena.grad.fill(0)
        self._relink_grads()

    def sync(self) -> None:
        """Repairs broken links (see the module docs); a no-op when none broke."""
        if not self.check_links:
            return
        if list(map(_PTR, self.tensors)) != self.ptrs:
            self._relink_data()
        if not all(map(operator.is_, map(_GRAD, self.tensors), self.grad_views)):
            self._relink_grads()

    def _relink_data(self) -> None:
        # Check every param before changing any.
        for name, p, view in zip(self.names, self.tensors, self.data_views):
            if p.data_ptr() != view.data_ptr() and (p.dtype, p.shape) != (view.dtype, view.shape):
                raise ParamError(
                    f"param {name!r} became {p.dtype} {tuple(p.shape)} after flatten(), the "
                    f"arena holds {view.dtype} {tuple(view.shape)}: flatten the model again "
                    "and make a new optimizer"
                )
        with torch.no_grad():
            for p, view in zip(self.tensors, self.data_views):
                if p.data_ptr() != view.data_ptr():
                    view.copy_(p.detach())
                    p.data = view

    def _relink_grads(self) -> None:
        with torch.no_grad():
            for p, view in zip(self.tensors, self.grad_views):
                g = p.grad
                if g is view:
                    continue
                if g is None:
                    view.zero_()
                else:
                    view.copy_(g.detach())
                p.grad = view


def _named(params: Any) -> list[tuple[str, Any]]:
    if isinstance(params, torch.nn.Module):
        return list(params.named_parameters())
    if isinstance(params, torch.Tensor):
        return [("0", params)]
    items = list(params) if isinstance(params, Iterable) else None
    if items is None:
        raise ParamError(f"flatten() takes a Module or params, got {type(params).__name__}")
    if items and all(isinstance(i, tuple) and len(i) == 2 for i in items):
        return [(str(n), p) for n, p in items]
    return [(str(i), p) for i, p in enumerate(items)]


def flatten(params: Any, dtype: Any = None, check_links: bool = True) -> FlatParams:
    """Makes the params (and grads) of ``params`` views into one ParamArena.

    Parameters
    ----------
    params : torch.nn.Module, or iterable of tensors or of (name, tensor)
        What to flatten; a module's params are taken with their names.
    dtype : torch.dtype, optional
        The arena's dtype (float32 or float64); by default the params' own,
        which must then be one dtype.
    check_links : bool, default True
        Check at each step that every ``p.data`` and ``p.grad`` is still its
        arena view, and repair it if not; False skips the check (see above).

    Returns
    -------
    FlatParams
        The arena and the params; build the optimizer on the same params as
        usual (``AdamW(model.parameters())``): it finds the arena itself.
    """
    named = _named(params)
    if not named:
        raise ParamError("flatten(): no params")
    seen: set[int] = set()
    for name, p in named:
        check_tensor(p, f"param {name!r}")
        if id(p) in seen:
            raise ParamError(f"param {name!r} is given twice")
        seen.add(id(p))
        if owner(p) is not None:
            raise ParamError(f"param {name!r} is already flattened")
    dtypes = {p.dtype for _, p in named} if dtype is None else {dtype}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _NUMPY_DTYPES:
        raise DtypeError(
            f"flatten(): the params have dtypes {sorted(map(str, dtypes))}: one arena holds one "
            "dtype (float32 or float64; float16/bfloat16 params step without flatten()); pass "
            "dtype= or cast the model first"
        )
    np_dtype = _NUMPY_DTYPES[next(iter(dtypes))]
    arena = ParamArena({name: tuple(p.shape) for name, p in named}, np_dtype)
    flat = FlatParams(arena, [p for _, p in named], [n for n, _ in named], check_links)
    with torch.no_grad():
        for (_, p), data, grad in zip(named, flat.data_views, flat.grad_views):
            data.copy_(p.detach())
            if p.grad is not None:
                grad.copy_(p.grad.detach())
            if p.dtype != data.dtype:
                p.grad = None  # .data cannot change dtype under an existing grad
            p.data = data
            p.grad = grad
    for i, p in enumerate(flat.tensors):
        setattr(p, _ATTR, (flat, i))
    return flat

"""Flattened mode: a model's params and grads as views into one ParamArena.

After :func:`flatten`, every ``p.data`` is a view into ``arena.data`` and every
``p.grad`` a view into ``arena.grad``. torch's backward adds into an existing
``.grad`` in place, so the grads land in the arena, and a ferroptim.torch
optimizer over these params steps the arena's contiguous runs (usually one).

Rebinding a tensor breaks a view: ``model.zero_grad()`` sets grads to None,
``p.data = ...`` replaces the values, and C++ code rebinds too (a
``backward(create_graph=True)`` makes new grad tensors, as do DDP's
gradient-as-bucket-view, ``Tensor.set_`` and ``torch.utils.swap_tensors``).
The next step (or ``zero_grad``) repairs a broken link: a new grad or new
values are copied into the arena and the view put back; a grad that is None
counts as zero (all params of a run step together).

By default (``check_links=True``) each step checks every param's links with
two C-level passes (about 0.35 us per tensor), so nothing is missed.
``flatten(..., check_links=False)`` makes each ``nn.Parameter`` a
:class:`LinkedParameter`, whose ``.grad`` and ``.data`` setters note a
rebinding done from Python, and a step repairs only what was noted: no
per-tensor work at all, for code that does none of the C++ rebinding above.
(torch's C functions check a subclass for ``__torch_function__``: about
0.25 us more per call on a LinkedParameter than on an ``nn.Parameter``.)
Tensors that are not exactly ``nn.Parameter`` are checked at every step.
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

__all__ = ["FlatParams", "LinkedParameter", "flatten", "owner"]

_PTR = torch.Tensor.data_ptr  # the C method: a Parameter's lookup doubled the cost
# torch's own slots for .grad and .data, which LinkedParameter's properties wrap.
_GRAD_SLOT = torch._C.TensorBase.grad
_DATA_SLOT = torch._C.TensorBase.data
_GRAD_GET = _GRAD_SLOT.__get__  # torch's getter, not LinkedParameter's property
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_PARAM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# A flattened param carries (its FlatParams, its index) in this attribute: the
# FlatParams lives as long as the model does (a WeakKeyDictionary cannot hold
# tensors: it compares keys with ==).
_ATTR = "_ferroptim_flat"


def owner(p: Any) -> tuple[FlatParams, int] | None:
    """The :class:`FlatParams` holding ``p`` and its index there, or None."""
    own = getattr(p, _ATTR, None)
    # A copy that carries the attribute (pickling a param with its __dict__)
    # does not carry the link: its params hold storage of their own.
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


class LinkedParameter(torch.nn.Parameter):
    """An ``nn.Parameter`` whose ``.data`` and ``.grad`` are views into a
    flattened arena (:func:`flatten` makes them): setting either one is noted,
    and the next step copies the new value into the arena and restores the
    view. Otherwise it is an ``nn.Parameter``.
    """

    def __repr__(self) -> str:
        # A plain Parameter's (torch's repr names a subclass twice).
        text = repr(_DATA_SLOT.__get__(self))
        return "Parameter containing:\n" + (
            text[:-1] + ", requires_grad=True)" if self.requires_grad else text
        )

    @property  # type: ignore[override]
    def grad(self) -> Any:
        return _GRAD_GET(self)

    @grad.setter
    def grad(self, value: Any) -> None:
        _GRAD_SLOT.__set__(self, value)
        _note(self)

    @grad.deleter
    def grad(self) -> None:
        _GRAD_SLOT.__set__(self, None)
        _note(self)

    @property  # type: ignore[override]
    def data(self) -> Any:
        return _DATA_SLOT.__get__(self)

    @data.setter
    def data(self, value: Any) -> None:
        _DATA_SLOT.__set__(self, value)
        _note(self)


def _note(p: Any) -> None:
    own = p.__dict__.get(_ATTR)
    if own is not None:
        own[0].rebound.add(own[1])


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
        Whether each step checks every link, not only those rebound through
        Python (see the module docs).
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
        # Indices of params rebound through a LinkedParameter setter, and of
        # the params whose setters are not guarded (not an exact nn.Parameter).
        self.rebound: set[int] = set()
        self.unguarded = [i for i, p in enumerate(tensors) if type(p) is not LinkedParameter]

    def __len__(self) -> int:
        return len(self.tensors)

    def __repr__(self) -> str:
        return f"FlatParams({len(self)} params, {self.arena.size} {self.arena.dtype} values)"

    def zero_grad(self) -> None:
        """Zeroes every grad in place (one fill of the arena's grad buffer)."""
        self.sync()
        self.arena.grad.fill(0)

    def sync(self) -> None:
        """Repairs broken links (see the module docs); a no-op when none broke."""
        broken = self._broken()
        if broken:
            self._repair(broken)

    def _broken(self) -> list[int]:
        """The params whose links may have broken: those noted by the setters,
        plus every one that a scan finds broken (all with ``check_links``)."""
        tensors, ptrs, grads = self.tensors, self.ptrs, self.grad_views
        scan: Any = self.unguarded
        if self.check_links:
            # Two C-level passes; each param is looked at again only if one failed.
            intact = list(map(_PTR, tensors)) == ptrs and all(
                map(operator.is_, map(_GRAD_GET, tensors), grads)
            )
            scan = [] if intact else range(len(tensors))
        found = [
            i for i in scan if _PTR(tensors[i]) != ptrs[i] or _GRAD_GET(tensors[i]) is not grads[i]
        ]
        return sorted(self.rebound.union(found))

    def _repair(self, indices: list[int]) -> None:
        """Puts the arena views back into the params at ``indices``, copying
        new values and grads in (a None grad: zeros)."""
        tensors, ptrs = self.tensors, self.ptrs
        # Check every param before changing any.
        for i in indices:
            p, view = tensors[i], self.data_views[i]
            if _PTR(p) != ptrs[i] and (p.dtype, p.shape) != (view.dtype, view.shape):
                raise ParamError(
                    f"param {self.names[i]!r} became {p.dtype} {tuple(p.shape)} after flatten(), "
                    f"the arena holds {view.dtype} {tuple(view.shape)}: flatten the model again "
                    "and make a new optimizer"
                )
        with torch.no_grad():
            for i in indices:
                p, view, gview = tensors[i], self.data_views[i], self.grad_views[i]
                if _PTR(p) != ptrs[i]:
                    view.copy_(p.detach())
                    _DATA_SLOT.__set__(p, view)
                g = _GRAD_GET(p)
                if g is not gview:
                    if g is None:
                        gview.zero_()
                    else:
                        gview.copy_(g.detach())
                    _GRAD_SLOT.__set__(p, gview)
        self.rebound.clear()


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
        arena view, and repair it if not. False makes the params
        LinkedParameters and repairs only the rebinding done
        through their setters: a step does no per-tensor work (see above:
        not with ``backward(create_graph=True)``).

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
    for _, p in named:
        if not check_links and type(p) is torch.nn.Parameter:
            # Guards .grad and .data (torch swaps classes the same way for
            # UninitializedParameter: the layout is the same).
            p.__class__ = LinkedParameter
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

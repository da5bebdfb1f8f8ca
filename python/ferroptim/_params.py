"""The forms ``params`` and ``grads`` may take, and the helpers that read them."""

from __future__ import annotations

import fnmatch
import operator
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.exceptions import DtypeError, ParamError

__all__ = ["Array", "Grads", "ParamsLike"]


class Array(Protocol):
    """A NumPy array, or a CuPy array for the CUDA engine."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...


#: What ``step`` takes: a list in param order, or a dict name -> grad for named params.
Grads = Sequence[Array | None] | Mapping[str, Array | None]

#: What an optimizer is built on (see :class:`~ferroptim.optimizer.Optimizer`).
ParamsLike = (
    ParamArena
    | ArenaGroup
    | Mapping[str, Array]
    | Iterable[Array]
    | Iterable[tuple[str, Array]]
    | Iterable[Mapping[str, Any]]
)


class Member(NamedTuple):
    """One user-level param inside an engine param: elements ``[lo, hi)``."""

    key: Any
    lo: int
    hi: int
    shape: tuple[int, ...]


def label(key: Any) -> str:
    """How the Rust engine names a param in its errors: ``'bias'`` or ``#1``."""
    return repr(key) if isinstance(key, str) else f"#{key}"


def gpu_probe(params: Any) -> list[Any]:
    """The arrays that tell which engine ``params`` needs (an arena: its buffer)."""
    if isinstance(params, ParamArena):
        return [params.data]
    if isinstance(params, ArenaGroup):
        return [params.arena.data]
    return split_params(params)[1]


def on_gpu(x: Any) -> bool:
    """A GPU array (CuPy, or the emulated kind used in tests)?

    Imports neither CuPy nor :mod:`ferroptim.cuda`, so a CPU step never loads the
    CUDA package: GPU arrays expose ``__cuda_array_interface__``, and an emulated
    one can only exist once ``ferroptim.cuda.emulate`` has been imported.
    """
    if type(x) is np.ndarray:
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    emulate = sys.modules.get("ferroptim.cuda.emulate")
    return emulate is not None and isinstance(x, emulate.DeviceArray)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or GPU array."""
    if type(x) is np.ndarray:
        return x.copy()
    if hasattr(x, "get"):  # CuPy
        return x.get()
    return np.array(x, copy=True).view(np.ndarray)


def split_params(params: Any) -> tuple[list[str] | None, list[Any]]:
    """``(names or None, arrays)`` from the forms ``params`` may take."""
    if isinstance(params, np.ndarray) or on_gpu(params):
        return None, [params]
    if isinstance(params, (ParamArena, ArenaGroup)):
        return list(params.names), []
    if isinstance(params, Mapping):
        names = list(params.keys())
        for name in names:
            if not isinstance(name, str):
                raise ParamError(f"param names must be strings, got {name!r}")
        return names, list(params.values())
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise DtypeError(
            f"params must be arrays, a list of arrays or a dict name -> array, "
            f"got {type(params).__name__}"
        )
    items = list(params)
    if items and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in items):
        return [x[0] for x in items], [x[1] for x in items]
    return None, items


def as_groups(params: Any) -> list[dict[str, Any]]:
    if isinstance(params, np.ndarray) or on_gpu(params):
        raise DtypeError(
            "params must be a list of arrays, a list of dicts or a dict name -> array, "
            "got a single array (wrap it in a list)"
        )
    if isinstance(params, (ParamArena, ArenaGroup, Mapping)):
        groups = [{"params": params}]
    elif isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
        items = list(params)
        if items and all(isinstance(x, Mapping) for x in items):
            groups = [dict(x) for x in items]
        elif any(isinstance(x, Mapping) for x in items):
            raise ParamError("params mixes param-group dicts with arrays")
        else:
            groups = [{"params": items}]
    else:
        raise DtypeError(f"params must be a list or a dict, got {type(params).__name__}")
    for group in groups:
        p = group.get("params")
        if (
            p is not None
            and not isinstance(p, (np.ndarray, Mapping, ParamArena, ArenaGroup))
            and not on_gpu(p)
        ):
            group["params"] = list(p)
    if not any(_has_params(g.get("params", [])) for g in groups):
        raise ParamError("optimizer got an empty parameter list")
    return groups


def _has_params(params: Any) -> bool:
    if isinstance(params, (ParamArena, ArenaGroup)):
        return len(params) > 0
    names, arrays = split_params(params)
    return bool(arrays)


def select(opt: Any, selectors: Iterable[Any], group: int | None) -> list[int]:
    """Engine-param indices of ``opt`` for names, patterns, indices or a group."""
    keys = opt._key_list
    wanted: set[Any] = set()
    if group is not None:
        if not 0 <= group < len(opt._group_keys):
            raise ParamError(f"group: no param group {group}")
        wanted.update(opt._group_keys[group])
    for sel in selectors:
        if isinstance(sel, str):
            hits = [k for k in keys if isinstance(k, str) and fnmatch.fnmatchcase(k, sel)]
            if not hits:
                raise ParamError(f"no param matches {sel!r}")
            wanted.update(hits)
        elif isinstance(sel, int) and not opt._named and 0 <= sel < len(keys):
            wanted.add(sel)
        else:
            raise ParamError(f"no param {sel!r}")
    indices = []
    for i, members in enumerate(opt._members):
        inside = [m.key in wanted for m in members]
        if all(inside):
            indices.append(i)
        elif any(inside):
            names = [str(m.key) for m in members]
            raise ParamError(
                f"params {names} share one arena run: freeze all of them, or give "
                "the ones to freeze their own param group"
            )
    return indices


def check_groups(opt: Any) -> None:
    """Refuses edits of ``param_groups`` the engine cannot follow: it steps
    the arrays it was given, so a replaced ``"params"`` or a reordered group
    list would silently train other arrays or mix up hyperparameters."""
    groups = opt.param_groups
    if len(groups) != len(opt._given):
        raise ParamError(
            f"the optimizer has {len(opt._given)} param groups, param_groups holds "
            f"{len(groups)}: add groups with add_param_group, never remove one"
        )
    for gid, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise DtypeError(f"param group {gid} must be a dict, got {type(group).__name__}")
    if not all(map(operator.is_, groups, (g[0] for g in opt._given))):
        raise ParamError(
            "param groups were reordered or replaced: the optimizer steps the groups it "
            "was given, in order; edit hyperparameters in place, use add_param_group, "
            "or build a new optimizer"
        )
    for gid, (group, _, arrays) in enumerate(opt._given):
        now = group.get("params")
        # The same arrays in a new list is no edit: only identities count.
        same = (
            isinstance(now, (list, tuple))
            and len(now) == len(arrays)
            and all(map(operator.is_, now, arrays))
        )
        if not same:
            raise ParamError(
                f"param_groups[{gid}]['params'] was replaced or edited: the optimizer "
                "keeps stepping the arrays it was given; use add_param_group, or build a "
                "new optimizer"
            )

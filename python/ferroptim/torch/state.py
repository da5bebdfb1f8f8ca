"""Optimizer state in torch's format, to and from the Rust engine's.

The engine keeps each engine param's state as ``{"step": int, slot: array}``
plus the numbers its class's ``AUX`` names (NAdam's ``mu_product``, ASGD's
``eta`` and ``mu``). torch keeps, per param tensor, ``{"step": 0-d float
tensor, number: 0-d float tensor, slot: tensor}`` under the same names. An
engine param is one tensor, or, in flattened mode, a run of an arena holding
several tensors (:class:`Member` says where each sits in it). The
low-precision options' state (master weights, bfloat16 or 8-bit slots) is
described in :mod:`ferroptim.torch.lowp`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ferroptim.exceptions import StateDictError
from ferroptim.torch import lowp

if TYPE_CHECKING:
    from ferroptim.torch.optim import TorchOptimizer

__all__ = ["Entry", "Member", "StateView", "as_saved", "export", "scalar_names", "to_engine"]


@dataclass
class Member:
    """One param tensor inside an engine param: elements ``[lo, hi)``."""

    tensor: Any
    lo: int
    hi: int
    shape: tuple[int, ...]
    label: str


@dataclass
class Entry:
    """One engine param: the array it updates and the tensors it holds."""

    array: np.ndarray
    group: int
    members: list[Member]
    flat: Any = None  # the FlatParams of an arena run, else None
    grad: np.ndarray | None = field(default=None)  # an arena run's grad slice
    offset: int = 0  # an arena run's start in the arena


def scalar_names(engine: Any) -> tuple[str, ...]:
    """The per-param numbers an engine's state holds besides its slots: ``step``
    and its ``AUX`` (NAdam's mu_product, ASGD's eta and mu)."""
    return ("step", *(name for name, _ in engine.AUX))


def scalar_dtype() -> torch.dtype:
    """The dtype torch keeps ``step`` in (float64 under a float64 default dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def export(opt: TorchOptimizer) -> dict[Any, dict[str, Any]]:
    """Every param's state in torch's format, as fresh tensors."""
    spec = opt._spec
    out: dict[Any, dict[str, Any]] = {}
    sdt = scalar_dtype()
    for entry, st in zip(opt._entries, opt._engine.state()):
        slots = {k: v for k, v in st.items() if isinstance(v, np.ndarray)}
        group = opt.param_groups[entry.group]
        for m in entry.members:
            if not slots:
                if spec.initial_state is None:
                    continue
                # torch's Adagrad makes its state in __init__, before any step.
                value = float(group[spec.initial_state[1]])
                dtype = m.tensor.dtype
                out[m.tensor] = {
                    "step": torch.zeros((), dtype=sdt),
                    spec.initial_state[0]: torch.full(m.shape, value, dtype=dtype),
                }
                continue
            d: dict[str, Any] = {}
            if spec.keeps_step:
                d["step"] = torch.tensor(float(st["step"]), dtype=sdt)
            for key, value in st.items():
                if key == "step" or isinstance(value, np.ndarray):
                    continue
                d[key] = torch.tensor(float(value), dtype=sdt)
            if m.lo % lowp.QBLOCK and any(k.endswith(lowp.SCALES) for k in slots):
                # 8-bit codes of a tensor that starts inside a block: where, so
                # they are never read against another block grid.
                d[lowp.BLOCK_OFFSET] = torch.tensor(float(m.lo % lowp.QBLOCK), dtype=sdt)
            for key, arr in slots.items():
                if key.endswith(lowp.SCALES):  # 8-bit scales: the blocks the member overlaps
                    part = arr[m.lo // lowp.QBLOCK : -(-m.hi // lowp.QBLOCK)]
                else:
                    part = arr.reshape(-1)[m.lo : m.hi].reshape(m.shape)
                # A run's slice is copied: torch.save would store the whole run per view.
                d[key] = lowp.from_numpy(part.copy() if entry.flat is not None else part)
            out[m.tensor] = d
    return out


def as_saved(
    opt: TorchOptimizer, state_dict: Mapping[str, Any], loaded: Mapping[Any, Any]
) -> dict[Any, Any]:
    """``loaded`` (torch's load_state_dict result, keyed by param) with the AUX
    numbers and the tensors as saved: torch casts them to the param's dtype,
    which would round a float64 eta or mu_product of a float32 param, the
    float32 master weights or 8-bit scales of a bfloat16 one, and turn bfloat16
    state or 8-bit codes into floats. ``step`` stays torch's."""
    out = dict(loaded)
    saved = state_dict.get("state")
    if not isinstance(saved, Mapping):
        return out
    # torch has checked that the saved groups hold as many params as ours.
    ids = (i for g in state_dict["param_groups"] for i in g["params"])
    params = (p for g in opt.param_groups for p in g["params"])
    for idx, p in zip(ids, params):
        raw, cast = saved.get(idx), out.get(p)
        if isinstance(cast, Mapping) and isinstance(raw, Mapping):
            keep = [k for k in cast if k != "step" and _is_cast_of(cast[k], raw.get(k))]
            out[p] = {**cast, **{k: raw[k] for k in keep}}
    return out


def _is_cast_of(cast: Any, raw: Any) -> bool:
    """Whether ``cast`` is torch's cast of ``raw`` (and not, say, a load
    pre-hook's own value): tensors of one shape, equal in ``cast``'s dtype."""
    if not all(isinstance(v, torch.Tensor) for v in (cast, raw)) or cast.shape != raw.shape:
        return False
    if cast.dtype == raw.dtype:
        return cast is raw
    return torch.equal(raw.detach().cpu().to(cast.dtype), cast.detach().cpu())


def _plain_entry(
    m: Member, value: Any, slots: list[str], scalars: tuple[str, ...], state_dtype: str
) -> dict[str, Any]:
    """One member's torch-format state as engine values (floats, NumPy arrays)."""
    if not isinstance(value, Mapping):
        raise StateDictError(f"state of param {m.label} must be a dict, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if v is None:  # torch's SGD may keep momentum_buffer=None
            continue
        if key not in slots and key not in scalars:
            raise StateDictError(
                f"state of param {m.label} has {key!r}, which this optimizer does not keep "
                f"(it keeps {', '.join([*scalars, *slots])}): is it a state_dict of another "
                "optimizer?"
            )
        if isinstance(v, torch.Tensor):
            if v.is_complex() or v.dtype == torch.bool:
                raise StateDictError(
                    f"state {key!r} of param {m.label} has dtype {v.dtype}: it must hold real "
                    "numbers"
                )
            v = v.detach().cpu()
            if key not in slots:
                if v.numel() != 1:
                    raise StateDictError(f"{key} of param {m.label} must be one number")
                out[key] = v.item()
                continue
            v = lowp.slot_to_engine(key, v, m.tensor, state_dtype, m.label)
        out[key] = v
    return out


def to_engine(opt: TorchOptimizer, states: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """Engine states for every engine param from torch-format states keyed by
    tensor (a param left out starts fresh)."""
    result = []
    names = list(opt._spec.engine.state_names)
    slots = [*names, *(n + lowp.SCALES for n in names), lowp.MASTER]
    scalars = (*scalar_names(opt._spec.engine), lowp.BLOCK_OFFSET)
    sdt = opt.precision["state_dtype"]
    for entry in opt._entries:
        parts = [(m, states.get(m.tensor)) for m in entry.members]
        if sdt != "float32":  # torch's Adagrad state before a step: the engine makes its own
            parts = [(m, {} if _is_initial(opt, entry, v) else v) for m, v in parts]
        parts = [(m, _plain_entry(m, v, slots, scalars, sdt) if v else {}) for m, v in parts]
        parts = [(m, _block_grid(entry, m, st)) for m, st in parts]
        if entry.flat is None:
            result.append(parts[0][1])
        else:
            result.append(_merge(parts))
    return result


def _block_grid(entry: Entry, m: Member, st: dict[str, Any]) -> dict[str, Any]:
    """``st`` without ``block_offset``, after checking that its 8-bit codes sit
    in their blocks as they will here (codes only mean something against the
    block scales they were coded with)."""
    saved = st.pop(lowp.BLOCK_OFFSET, 0)
    if not any(k.endswith(lowp.SCALES) for k in st):
        return st
    ours = m.lo % lowp.QBLOCK
    if saved != ours:
        where = "a flattened run" if entry.flat is not None else "a tensor of its own"
        raise StateDictError(
            f"the 8-bit state of param {m.label} was saved starting {saved:g} elements into a "
            f"block of {lowp.QBLOCK}; here ({where}) it starts {ours} in: its codes would be "
            "read against other block scales. Load it with the same flatten() layout, or save "
            "it with state_dtype='float32' first"
        )
    return st


def _is_initial(opt: TorchOptimizer, entry: Entry, value: Any) -> bool:
    """Whether ``value`` is the state torch's Adagrad makes before any step
    (``step`` 0, the accumulator full of ``initial_accumulator_value``)."""
    init = opt._spec.initial_state
    if init is None or not isinstance(value, Mapping) or set(value) != {"step", init[0]}:
        return False
    step, acc = value["step"], value[init[0]]
    start = float(opt.param_groups[entry.group][init[1]])
    return (
        isinstance(acc, torch.Tensor)
        and float(step) == 0
        and bool((acc.detach().cpu() == start).all())  # start in acc's dtype
    )


def _merge(parts: list[tuple[Member, dict[str, Any]]]) -> dict[str, Any]:
    """One arena run's engine state from the states of its tensors."""
    present = [st for _, st in parts if st]
    if not present:
        return {}
    labels = [m.label for m, _ in parts]
    if len(present) != len(parts):
        raise StateDictError(
            f"params {labels} are flattened into one arena run, so they step together: their "
            "states must all be present (load it without flatten(), or flatten after loading)"
        )
    merged: dict[str, Any] = {}
    for key in present[0]:
        values = [st.get(key) for st in present]
        if key.endswith(lowp.SCALES):
            merged[key] = _merge_scales(parts, key)
        elif any(isinstance(v, np.ndarray) for v in values):
            pieces = []
            for (m, _), v in zip(parts, values):
                if v is None or np.shape(v) != m.shape:
                    raise StateDictError(
                        f"state {key!r} of param {m.label} has shape {np.shape(v)}, the param "
                        f"has shape {m.shape}"
                    )
                pieces.append(np.asarray(v).reshape(-1))
            merged[key] = np.concatenate(pieces) if pieces else np.zeros(0)
        else:
            if len({repr(v) for v in values}) != 1:
                raise StateDictError(
                    f"params {labels} are flattened into one arena run, so their saved {key!r} "
                    f"must be equal, got {sorted(map(str, set(values)))}"
                )
            merged[key] = values[0]
    return merged


def _merge_scales(parts: list[tuple[Member, dict[str, Any]]], key: str) -> np.ndarray:
    """A run's 8-bit block scales from its tensors' (each holds the blocks it
    overlaps; neighbours share the block on their boundary)."""
    q = lowp.QBLOCK
    merged = np.zeros(-(-parts[-1][0].hi // q), dtype=np.float32)
    for m, st in parts:
        value = np.asarray(st.get(key), dtype=np.float32).reshape(-1)
        first, last = m.lo // q, -(-m.hi // q)
        if value.shape != (last - first,):
            raise StateDictError(
                f"state {key!r} of param {m.label} holds {value.size} block scales, its place "
                f"in the flattened run needs {last - first}"
            )
        merged[first:last] = value
    return merged


class StateView(MutableMapping):
    """``optimizer.state``: param tensor -> its state in torch's format.

    Read from the engine (a fresh copy after each step); an assignment
    ``opt.state[p] = {...}`` is loaded into the engine before the next use,
    as torch's ``ZeroRedundancyOptimizer.load_state_dict`` does. Changing a
    tensor of a state in place does not reach the engine.
    """

    def __init__(self, opt: TorchOptimizer) -> None:
        self._opt = opt

    def _snap(self) -> dict[Any, dict[str, Any]]:
        return self._opt._snapshot()

    def __getitem__(self, p: Any) -> dict[str, Any]:
        return self._snap().get(p, {})

    def __contains__(self, p: object) -> bool:
        return p in self._snap()

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._snap()))

    def __len__(self) -> int:
        return len(self._snap())

    def __setitem__(self, p: Any, value: Mapping[str, Any]) -> None:
        self._opt._stage(p, value)

    def __delitem__(self, p: Any) -> None:
        self._opt._stage(p, {})

    def __repr__(self) -> str:
        return f"StateView({len(self)} params with state)"

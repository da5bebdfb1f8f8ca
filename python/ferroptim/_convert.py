"""Converting a state_dict between ``state_dtype`` s: ``ferroptim.convert_state_dict``.

An optimizer refuses a state_dict whose slots are stored otherwise than its
``state_dtype`` says (8-bit codes read as float32 numbers would be garbage,
and a silent conversion would hide a lossy step). This module does the
conversion when it is asked for: each slot is decoded to float32 and stored
again as float32, bfloat16 (rounded to nearest even) or 8-bit codes with
per-block scales (the core's own codec, ``_core.quantize_blockwise``), so
float32 -> int8 -> float32 gives exactly the dequantized values. Master
weights, averages, steps and everything else are copied as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from ferroptim import _core
from ferroptim._params import Member, label
from ferroptim._precision import bfloat16, check_precision
from ferroptim.exceptions import HyperparameterError, StateDictError

__all__ = ["convert_state_dict"]

# As the core stores an 8-bit slot: `<slot>_absmax` holds one scale per block.
SCALES_SUFFIX = "_absmax"
QBLOCK = 256


def convert_state_dict(
    state_dict: Mapping[str, Any], state_dtype: str | None, optimizer: Any, seed: int = 0
) -> dict[str, Any]:
    """A copy of ``state_dict`` whose state slots are stored as ``state_dtype``.

    Load the result into an optimizer built with that ``state_dtype``; the
    input is left unchanged. Converting to the dtype a slot already has
    copies it exactly; to int8 rounds stochastically (seeded) as a step does.

    Parameters
    ----------
    state_dict : dict
        An optimizer's ``state_dict()``, saved with any ``state_dtype``.
    state_dtype : {None, "float32", "bfloat16", "int8"}
        How the returned state stores the slots (None: float32).
    optimizer : Optimizer subclass or instance
        What the state is for: its class says which slots are non-negative
        (second moments, coded without a sign). For a ParamArena's 8-bit
        state pass the optimizer itself: neighbouring params share blocks,
        and only it knows where each param starts in its block.
    seed : int, default 0
        Seeds the stochastic rounding of 8-bit codes.

    Returns
    -------
    dict
        The converted state_dict (new arrays throughout).

    >>> sd = convert_state_dict(opt.state_dict(), "float32", optimizer=fo.AdamW)
    >>> fo.AdamW(params).load_state_dict(sd)
    """
    cls = _optimizer_class(optimizer)
    target = check_precision(state_dtype, True, False, seed)["state_dtype"]
    if target != "float32" and not cls._engine_class.compressible:
        raise HyperparameterError(
            f"state_dtype: {cls.__name__} keeps its state in the params' precision, "
            f"so it cannot be '{target}'; use 'float32'"
        )
    if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("state"), Mapping):
        raise StateDictError("state_dict must be a dict with a 'state' dict, as state_dict() gives")
    theirs, ours = state_dict.get("optimizer"), _kind(cls)
    if theirs is not None and theirs != ours:
        raise StateDictError(f"this state_dict is from a {theirs} optimizer, not a {ours}")
    state = state_dict["state"]
    for key, entry in state.items():
        if not isinstance(entry, Mapping):
            raise StateDictError(f"state of param {label(key)} must be a dict")
    converted: dict[Any, dict[str, Any]] = {k: dict(e) for k, e in state.items()}
    slots = list(cls._engine_class.state_names)
    signed = {s: not nn for s, nn in zip(slots, cls._engine_class.non_negative_slots)}
    for run in _runs(state, optimizer):
        for slot in slots:
            if any(slot in state[m.key] for m in run):
                _convert_run(state, converted, run, slot, signed[slot], target, int(seed))
    # Everything but the state (groups, accumulation buffers) is copied as it is.
    out = {k: copy.deepcopy(v) for k, v in state_dict.items() if k != "state"}
    out["state"] = {
        k: {s: v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v) for s, v in e.items()}
        for k, e in converted.items()
    }
    return out


def _optimizer_class(optimizer: Any) -> type:
    from ferroptim.optimizer import Optimizer

    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    if not issubclass(cls, Optimizer) or getattr(cls, "_engine_class", None) is None:
        raise HyperparameterError(
            f"optimizer: must be a ferroptim optimizer class or instance, got {optimizer!r}"
        )
    return cls


def _kind(cls: type) -> str:
    """The class name a state_dict records (as ``_state.kind``, from a class)."""
    for c in cls.__mro__:
        if cls._registry.get(c.__name__) is c:
            return c.__name__
    return cls.__name__


def _runs(state: Mapping[Any, Any], optimizer: Any) -> list[list[Member]]:
    """The params of ``state`` cut into the tensors the engine stores as one
    (a ParamArena's run of params shares 8-bit blocks), with each param's place."""
    runs: list[list[Member]] = []
    placed = set()
    for members in getattr(optimizer, "_members", []):
        run = [m for m in members if m.key in state]
        if run:
            runs.append(run)
            placed.update(m.key for m in run)
    for key, entry in state.items():
        if key not in placed:
            runs.append([Member(key, 0, _size(key, entry), ())])
    return runs


def _size(key: Any, entry: Mapping[str, Any]) -> int:
    """Elements of a param, from its state's arrays (without an optimizer instance)."""
    sizes = {
        np.size(v)
        for s, v in entry.items()
        if isinstance(v, np.ndarray) and not str(s).endswith(SCALES_SUFFIX)
    }
    if len(sizes) > 1:
        raise StateDictError(f"state of param {label(key)} holds arrays of different sizes")
    return sizes.pop() if sizes else 0


def _convert_run(
    state: Mapping[Any, Any],
    out: dict[Any, dict[str, Any]],
    run: list[Member],
    slot: str,
    signed: bool,
    target: str,
    seed: int,
) -> None:
    """Re-stores ``slot`` of every param of one run as ``target``."""
    values = []
    for m in run:
        entry = state[m.key]
        if slot not in entry:
            raise StateDictError(
                f"state of param {label(m.key)} has no {slot!r}, which the params stored "
                "with it have"
            )
        values.append(_decode(m, entry, slot, signed))
    if all(_stored_as(state[m.key], slot) == target for m in run):
        return  # already stored so: copied exactly, not re-rounded
    if any(v.dtype == np.float64 for v in values) and target != "float32":
        m = run[[v.dtype for v in values].index(np.dtype(np.float64))]
        raise StateDictError(
            f"state {slot!r} of param {label(m.key)} is float64 (a float64 param's): float64 "
            f"params keep float64 state, state_dtype='{target}' does not apply to them"
        )
    if target == "int8":
        _encode_run(out, run, values, slot, signed, seed)
        return
    for m, v in zip(run, values):
        shape = np.shape(state[m.key][slot])
        entry = out[m.key]
        entry.pop(slot + SCALES_SUFFIX, None)
        entry.pop("block_offset", None)  # only 8-bit codes sit in blocks
        wide = v.dtype == np.float64  # a float64 param's state stays float64
        dtype = np.float64 if wide else (np.float32 if target == "float32" else bfloat16())
        entry[slot] = v.astype(dtype).reshape(shape)


def _stored_as(entry: Mapping[str, Any], slot: str) -> str:
    if slot + SCALES_SUFFIX in entry:
        return "int8"
    dtype = getattr(entry[slot], "dtype", None)
    if dtype is not None and dtype == bfloat16():
        return "bfloat16"
    return "float32"


def _decode(m: Member, entry: Mapping[str, Any], slot: str, signed: bool) -> np.ndarray:
    """Param ``m``'s ``slot`` as flat float32 values (float64 left as it is)."""
    value = entry[slot]
    what = f"state {slot!r} of param {label(m.key)}"
    if not isinstance(value, np.ndarray):
        raise StateDictError(f"{what} must be an array, got {type(value).__name__}")
    if slot + SCALES_SUFFIX in entry:
        if value.dtype != np.uint8:
            raise StateDictError(f"{what} must hold 8-bit codes (dtype uint8), got {value.dtype}")
        scales = np.ascontiguousarray(entry[slot + SCALES_SUFFIX], dtype=np.float32).reshape(-1)
        # A param of an arena run starts inside a block: pad it to the block's
        # start (as saved; a hand-made entry: as this optimizer would place it).
        pad = int(entry.get("block_offset", m.lo % QBLOCK))
        codes = np.concatenate([np.zeros(pad, np.uint8), value.reshape(-1)])
        if scales.size != -(-codes.size // QBLOCK):
            raise StateDictError(
                f"{what}: {value.size} codes starting {pad} into a block need "
                f"{-(-codes.size // QBLOCK)} scales, got {scales.size} (the 8-bit state of "
                "a ParamArena converts with optimizer=<the optimizer itself>)"
            )
        return np.asarray(_core.dequantize_blockwise(codes, scales, signed))[pad:]
    if value.dtype == bfloat16():
        return value.astype(np.float32).reshape(-1)
    if value.dtype.kind not in "fiu":
        raise StateDictError(f"{what} must hold real numbers, got dtype {value.dtype}")
    wide = value.dtype == np.float64
    return value.astype(np.float64 if wide else np.float32).reshape(-1)


def _encode_run(
    out: dict[Any, dict[str, Any]],
    run: list[Member],
    values: list[np.ndarray],
    slot: str,
    signed: bool,
    seed: int,
) -> None:
    """8-bit codes of one run, quantized whole (its params share blocks)."""
    size = max(m.hi for m in run)
    flat = np.zeros(size, np.float32)
    for m, v in zip(run, values):
        flat[m.lo : m.lo + v.size] = v
    try:
        codes, scales = _core.quantize_blockwise(flat, signed, seed)
    except ValueError as err:
        keys = ", ".join(label(m.key) for m in run)
        raise StateDictError(f"state {slot!r} of param {keys}: {err}") from err
    for m, v in zip(run, values):
        entry = out[m.key]
        entry.pop("block_offset", None)  # set again below for this optimizer's grid
        shape = np.shape(entry[slot])
        entry[slot] = np.asarray(codes)[m.lo : m.lo + v.size].reshape(shape).copy()
        entry[slot + SCALES_SUFFIX] = np.asarray(scales)[
            m.lo // QBLOCK : -(-(m.lo + v.size) // QBLOCK)
        ].copy()
        if m.lo % QBLOCK:
            entry["block_offset"] = m.lo % QBLOCK

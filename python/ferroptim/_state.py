"""``state_dict`` and ``load_state_dict`` of :class:`~ferroptim.optimizer.Optimizer`.

A state_dict names the optimizer class it came from (``"optimizer"``), and
keys everything per param (by name for named params, else by index): the
state and the pending accumulation buffers alike. Loading checks everything
(the class, the names, every value's kind, shape and dtype) before it
changes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferroptim._compat import plain
from ferroptim._params import Member, label, to_numpy
from ferroptim._precision import bfloat16
from ferroptim.exceptions import StateDictError

if TYPE_CHECKING:
    from ferroptim.optimizer import Optimizer

__all__ = ["load_state_dict", "state_dict"]

# Group keys that are not hyperparameters.
PARAM_KEYS = ("params", "param_names")
# Per-param scalars every engine may keep, besides its slots.
_COUNTS = ("step", "n_averaged", "block_offset")
# master_param: the float32 master weights of float16 params (CUDA engine).
_COMMON = ("step", "n_averaged", "averaged_param", "master_param")
# 8-bit state: the key of a slot's per-block scales, and the block size.
SCALES_SUFFIX = "_absmax"
QBLOCK = 256
# 8-bit state of a param that starts inside a block (an arena run's member):
# how far in, so its codes are never read against another block grid.
BLOCK_OFFSET = "block_offset"
# Array dtypes whose values are real numbers the engine can take.
_REAL_KINDS = "fiu"


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy() if value.ndim else plain(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return plain(value)


def kind(opt: Optimizer) -> str:
    """The class a state_dict records: the nearest ferroptim class (a user's
    subclass of Adam saves and loads as an Adam)."""
    registry = type(opt)._registry
    for cls in type(opt).__mro__:
        if registry.get(cls.__name__) is cls:
            return cls.__name__
    return type(opt).__name__


def slots_needed(
    opt: Optimizer, group: Mapping[str, Any], cache: dict[Any, list[str]]
) -> list[str]:
    """The state arrays ``opt``'s class keeps after one step under ``group``'s
    hyperparameters, from a one-element probe (``cache``: one probe per settings)."""
    hypers = {k: v for k, v in group.items() if k not in PARAM_KEYS}
    key = tuple(sorted((k, repr(v)) for k, v in hypers.items()))
    if key not in cache:
        engine = opt._engine_class()
        engine.add_params([np.zeros(1)], 0, ["probe"])
        engine.step([np.ones(1)], [hypers])
        cache[key] = [k for k, v in engine.state()[0].items() if isinstance(v, np.ndarray)]
    return [k for k in cache[key] if k not in _COMMON]


def state_dict(opt: Optimizer) -> dict[str, Any]:
    engine_states = opt._engine.state()
    state: dict[Any, dict[str, Any]] = {}
    for st, members in zip(engine_states, opt._members):
        if len(st) == 1 and st["step"] == 0:
            continue
        for m in members:
            entry: dict[str, Any] = {"step": st["step"]}
            if m.lo % QBLOCK and any(k.endswith(SCALES_SUFFIX) for k in st):
                entry[BLOCK_OFFSET] = m.lo % QBLOCK
            for slot, values in st.items():
                if slot.endswith(SCALES_SUFFIX):
                    # 8-bit state: the scales of the blocks the member overlaps.
                    entry[slot] = values[m.lo // QBLOCK : -(-m.hi // QBLOCK)].copy()
                elif isinstance(values, np.ndarray):
                    entry[slot] = values.reshape(-1)[m.lo : m.hi].reshape(m.shape)
                else:  # step, n_averaged, the class's AUX numbers: one per run
                    entry[slot] = values
            state[m.key] = entry
    groups = []
    for group, keys in zip(opt.param_groups, opt._group_keys):
        saved = {k: _copy(v) for k, v in group.items() if k not in PARAM_KEYS}
        saved["params"] = list(keys)
        groups.append(saved)
    result: dict[str, Any] = {"state": state, "param_groups": groups, "optimizer": opt._kind()}
    acc = opt._accumulation
    if acc.calls:
        # Mid-cycle micro-batch grads, so a resumed run updates exactly as this one.
        buffers: dict[Any, np.ndarray] = {}
        for b, members in zip(acc.buffers, opt._members):
            if b is None:
                continue
            flat = to_numpy(b).reshape(-1)
            for m in members:
                buffers[m.key] = flat[m.lo : m.hi].reshape(m.shape).copy()
        result["accumulation"] = {"calls": acc.calls, "buffers": buffers}
    return result


def _check_class(opt: Optimizer, sd: Mapping[str, Any]) -> bool:
    """Refuses a state_dict of another optimizer class; True if it names one."""
    theirs = sd.get("optimizer")
    if theirs is None:
        return False
    ours = opt._kind()
    if not isinstance(theirs, str):
        raise StateDictError(f"state_dict['optimizer'] must be a class name, got {theirs!r}")
    if theirs != ours:
        raise StateDictError(
            f"this state_dict is from a {theirs} optimizer, not a {ours}: load it into a "
            f"{theirs} (a {ours} would misread its state)"
        )
    return True


def _numbers(opt: Optimizer) -> tuple[str, ...]:
    """The per-param numbers ``opt``'s class carries besides ``step`` (its engine's
    AUX: NAdam's mu_product, ASGD's eta and mu)."""
    return tuple(name for name, _ in opt._engine_class.AUX)


def _check_entry(opt: Optimizer, key: Any, entry: Any) -> None:
    """One param's saved state: real numbers only, no bool counts, known slots."""
    if not isinstance(entry, Mapping):
        raise StateDictError(f"state of param {label(key)} must be a dict")
    known = list(opt._engine_class.state_names)
    numbers = _numbers(opt)
    for slot, value in entry.items():
        if slot in _COUNTS or slot in numbers:
            if isinstance(value, (bool, np.bool_)) or np.iscomplexobj(value):
                raise StateDictError(
                    f"{slot} of param {label(key)} must be a real number, got {value!r}"
                )
            continue
        if (
            isinstance(slot, str)
            and slot not in known
            and slot not in _COMMON
            and slot.removesuffix(SCALES_SUFFIX) not in known
        ):
            raise StateDictError(
                f"state of param {label(key)} has {slot!r}, which {opt._kind()} does not keep "
                f"(it keeps {', '.join(known)}){_guess(opt, entry)}"
            )
        dtype = getattr(value, "dtype", None)
        if isinstance(dtype, np.dtype) and dtype.kind not in _REAL_KINDS and dtype != bfloat16():
            raise StateDictError(
                f"state {slot!r} of param {label(key)} has dtype {dtype}: it must hold real "
                "numbers (a complex, bool, string or object array is refused, not converted)"
            )


def _guess(opt: Optimizer, entry: Mapping[str, Any]) -> str:
    """``": is this a state_dict of X?"`` from the slots ``entry`` holds."""
    numbers = _numbers(opt)
    slots = {k for k in entry if k not in _COMMON and k not in _COUNTS and k not in numbers}
    fits = [
        name
        for name, cls in sorted(type(opt)._registry.items())
        if name != opt._kind() and slots <= set(cls._engine_class.state_names)
    ]
    return f": is this a state_dict of {' or '.join(fits)}?" if fits else ""


def _check_slots_present(
    opt: Optimizer, gid: int, hypers: Mapping[str, Any], state: Any, cache: dict[Any, Any]
) -> None:
    """A state_dict that names no class (hand-made, or older) must hold every slot
    this class keeps at these settings: Lion's state alone is no Adam state."""
    needed = slots_needed(opt, {**opt.param_groups[gid], **hypers}, cache)
    for key, entry in state:
        if entry and entry.get("step", 0):
            missing = [s for s in needed if s not in entry]
            if missing:
                raise StateDictError(
                    f"state of param {label(key)} lacks {missing}, which {opt._kind()} keeps at "
                    f"these settings{_guess(opt, entry)}"
                )


def load_state_dict(opt: Optimizer, sd: Mapping[str, Any]) -> None:
    if not isinstance(sd, Mapping) or not {"state", "param_groups"} <= set(sd):
        raise StateDictError("a state_dict is a dict with 'state' and 'param_groups'")
    named_class = _check_class(opt, sd)
    saved_groups = list(sd["param_groups"])
    saved_state = sd["state"]
    if not isinstance(saved_state, Mapping):
        raise StateDictError("state_dict['state'] must be a dict")
    if len(saved_groups) != len(opt.param_groups):
        raise StateDictError(
            f"the state_dict has {len(saved_groups)} param groups, "
            f"the optimizer has {len(opt.param_groups)}"
        )
    # Our key -> the saved state's key for the same param.
    saved_key: dict[Any, Any] = {}
    new_hypers = []
    for gid, (ours, saved, mine) in enumerate(zip(opt.param_groups, saved_groups, opt._group_keys)):
        if not isinstance(saved, Mapping) or "params" not in saved:
            raise StateDictError(f"param group {gid} of the state_dict has no 'params'")
        theirs = list(saved["params"])
        if opt._named:
            if set(theirs) != set(mine) or len(theirs) != len(mine):
                missing = sorted(map(str, set(mine) - set(theirs)))
                extra = sorted(map(str, set(theirs) - set(mine)))
                raise StateDictError(
                    f"param group {gid}: names differ (missing {missing}, unexpected {extra})"
                )
            saved_key.update((k, k) for k in mine)
        elif len(theirs) != len(mine):
            raise StateDictError(
                f"param group {gid} has {len(theirs)} params in the state_dict, "
                f"{len(mine)} in the optimizer"
            )
        else:
            saved_key.update(zip(mine, theirs))
        hypers = {k: _copy(v) for k, v in saved.items() if k not in PARAM_KEYS}
        try:
            opt._engine_class.validate_group({**ours, **hypers})
        except ValueError as err:
            raise StateDictError(f"param group {gid}: {err}") from err
        new_hypers.append(hypers)
    unknown = set(saved_state) - set(saved_key.values())
    if unknown:
        raise StateDictError(f"state for unknown params: {sorted(map(str, unknown))}")
    for key in opt._key_list:
        entry = saved_state.get(saved_key[key])
        if entry is not None:
            _check_entry(opt, key, entry)
    if not named_class:
        cache: dict[Any, list[str]] = {}
        for gid, (keys, hypers) in enumerate(zip(opt._group_keys, new_hypers)):
            entries = [(k, saved_state.get(saved_key[k])) for k in keys]
            _check_slots_present(opt, gid, hypers, entries, cache)
    states = [
        _merge_state(
            opt, [(m, _block_grid(opt, m, saved_state.get(saved_key[m.key]))) for m in members]
        )
        for members in opt._members
    ]
    acc_calls, acc_buffers = _load_accumulation(opt, sd.get("accumulation"), saved_key)
    opt._engine.load_state(states)
    for group, hypers in zip(opt.param_groups, new_hypers):
        group.update(hypers)
    opt._accumulation.calls = acc_calls
    opt._accumulation.buffers = acc_buffers


def _load_accumulation(
    opt: Optimizer, acc: Any, saved_key: Mapping[Any, Any]
) -> tuple[int, list[Any]]:
    """``(calls, buffers)`` from a saved ``"accumulation"`` entry, every buffer
    checked against its param (shape, a dtype of real numbers)."""
    if acc is None:
        return 0, []
    if not isinstance(acc, Mapping) or not {"calls", "buffers"} <= set(acc):
        raise StateDictError("accumulation: must be a dict with 'calls' and 'buffers'")
    calls = acc["calls"]
    if isinstance(calls, (bool, np.bool_)) or not isinstance(calls, (int, np.integer)):
        raise StateDictError(f"accumulation: 'calls' must be an integer, got {calls!r}")
    calls = int(calls)
    if not 0 <= calls < opt.accumulate:
        raise StateDictError(
            f"accumulation: {calls} pending calls do not fit accumulate={opt.accumulate}"
        )
    raw = acc["buffers"]
    if isinstance(raw, (list, tuple)) and not opt._named and opt._arena is None:
        # Older state_dicts kept one buffer per position; for unnamed params
        # (matched by position anyway) position i is param i.
        if len(raw) != len(opt._members):
            raise StateDictError(f"accumulation: {len(raw)} buffers for {len(opt._members)} params")
        raw = {k: b for k, b in zip(saved_key.values(), raw) if b is not None}
    elif not isinstance(raw, Mapping):
        raise StateDictError(
            "accumulation: 'buffers' must be a dict param -> grad sum (a list by position, "
            "from an older ferroptim, cannot be matched to named params: load it at an "
            "update boundary, without 'accumulation')"
        )
    unknown = set(raw) - set(saved_key.values())
    if unknown:
        raise StateDictError(
            f"accumulation: buffers for unknown params {sorted(map(str, unknown))}"
        )
    buffers: list[Any] = []
    for i, members in enumerate(opt._members):
        parts = [(m, raw.get(saved_key[m.key])) for m in members]
        given = [p for p in parts if p[1] is not None]
        if not given:
            buffers.append(None)
            continue
        if len(given) != len(parts):
            raise StateDictError(
                f"accumulation: params {[str(m.key) for m, _ in parts]} share one arena run, "
                "so their buffers must all be present"
            )
        pieces = [_buffer(m, b, opt._dtypes[i]) for m, b in parts]
        host = pieces[0] if len(pieces) == 1 else np.concatenate([p.reshape(-1) for p in pieces])
        if opt._arena is not None:
            host = host.reshape(-1)
        buffers.append(opt._device_copy(host))
    return calls, buffers


def _buffer(m: Member, value: Any, dtype: np.dtype) -> np.ndarray:
    what = f"accumulation buffer of param {label(m.key)}"
    if not isinstance(value, np.ndarray):
        raise StateDictError(f"{what} must be a NumPy array, got {type(value).__name__}")
    if value.dtype.kind not in _REAL_KINDS:
        raise StateDictError(f"{what} has dtype {value.dtype}: it must hold real numbers")
    if value.shape != m.shape:
        raise StateDictError(f"{what} has shape {value.shape}, the param has shape {m.shape}")
    return np.array(value, dtype=dtype, order="C")


def _merge_state(opt: Optimizer, parts: list[tuple[Member, Any]]) -> dict[str, Any]:
    """One engine param's state from the saved states of its members."""
    present = [(m, st) for m, st in parts if st]
    if not present:
        return {}
    if opt._arena is None:
        return dict(present[0][1])
    # An arena run: every member must be present, agree on the scalars
    # (step, n_averaged, ...) and hold every array.
    if len(present) != len(parts):
        raise StateDictError(
            f"params {[str(m.key) for m, _ in parts]} share one arena run, so their "
            "saved states must all be present"
        )
    merged: dict[str, Any] = {}
    keys = {k for _, st in present for k in st}
    scalars = {k for k in keys if not any(isinstance(st.get(k), np.ndarray) for _, st in present)}
    for key in sorted(scalars):
        values = {st.get(key) for _, st in present}
        if len(values) != 1:
            raise StateDictError(
                f"params {[str(m.key) for m, _ in parts]} share one arena run, so their "
                f"saved {key!r} must be equal, got {sorted(map(str, values))}"
            )
        merged[key] = values.pop()
    for slot in sorted(keys - scalars):
        if slot.endswith(SCALES_SUFFIX):
            merged[slot] = _merge_scales(parts, slot)
            continue
        pieces = []
        for m, st in parts:
            if slot not in st:
                raise StateDictError(f"state of param {m.key!r} lacks {slot!r}")
            value = st[slot]
            if np.shape(value) != m.shape:
                raise StateDictError(
                    f"state {slot!r} of param {m.key!r} has shape {np.shape(value)}, "
                    f"the param has shape {m.shape}"
                )
            try:
                # Stored values as they are (bfloat16 bits, 8-bit codes), numbers as float64.
                exact = isinstance(value, np.ndarray) and value.dtype in (np.uint8, bfloat16())
                pieces.append(np.asarray(value, dtype=None if exact else np.float64).reshape(-1))
            except (TypeError, ValueError) as err:
                raise StateDictError(f"state {slot!r} of param {m.key!r}: {err}") from err
        merged[slot] = np.concatenate(pieces)
    return merged


def _merge_scales(parts: list[tuple[Member, Any]], slot: str) -> np.ndarray:
    """An arena run's 8-bit block scales from its members' (each holds the
    blocks it overlaps; neighbours share the blocks on their boundary)."""
    blocks = -(-max(m.hi for m, _ in parts) // QBLOCK)
    merged = np.zeros(blocks, dtype=np.float32)
    for m, st in parts:
        first, last = m.lo // QBLOCK, -(-m.hi // QBLOCK)
        value = np.asarray(st.get(slot), dtype=np.float32).reshape(-1)
        if value.shape != (last - first,):
            raise StateDictError(
                f"state {slot!r} of param {m.key!r} holds {value.size} block scales, "
                f"its place in the arena needs {last - first}"
            )
        merged[first:last] = value
    return merged


def _block_grid(opt: Optimizer, m: Member, entry: Any) -> Any:
    """``entry`` without its ``block_offset``, after checking that its 8-bit
    codes sit in their blocks as this optimizer's will: a param's codes are
    only meaningful against the block scales they were coded with."""
    if not entry:
        return entry
    if not any(str(k).endswith(SCALES_SUFFIX) for k in entry):
        return {k: v for k, v in entry.items() if k != BLOCK_OFFSET}
    saved = entry.get(BLOCK_OFFSET, 0)
    ours = m.lo % QBLOCK if opt._arena is not None else 0
    if saved != ours:
        raise StateDictError(
            f"the 8-bit state of param {label(m.key)} was saved starting {saved} elements into "
            f"a block of {QBLOCK}; here it starts {ours} in: its codes would be read against "
            "other block scales. Load it into the same layout (the same ParamArena, or plain "
            "params), or convert it first: fo.convert_state_dict(sd, 'float32', <the saving "
            "optimizer>), then fo.convert_state_dict(that, 'int8', <this optimizer>)"
        )
    return {k: v for k, v in entry.items() if k != BLOCK_OFFSET}

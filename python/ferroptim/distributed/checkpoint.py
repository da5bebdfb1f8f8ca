"""Sharded optimizer state <-> the single-process, name-keyed state_dict.

:func:`gather_state` joins every rank's slices of each param's state into
the state_dict the single-process optimizer gives (``{"state": {name:
{...}}, "param_groups": [...], "optimizer": class}``), so a checkpoint saved
at N ranks loads into a plain optimizer, and :func:`scatter_state` takes a
rank's slices back out of such a state_dict, at any world size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ferroptim._state import PARAM_KEYS
from ferroptim.exceptions import StateDictError

if TYPE_CHECKING:
    from ferroptim.distributed.zero import DistributedOptimizer

__all__ = ["gather_state", "scatter_state"]


def _groups(dopt: DistributedOptimizer) -> list[dict[str, Any]]:
    opt = dopt.optimizer
    out = []
    for group, keys in zip(opt.param_groups, opt._group_keys):
        saved = {k: v for k, v in group.items() if k not in PARAM_KEYS}
        saved["params"] = list(keys)
        out.append(saved)
    return out


def _accumulation(dopt: DistributedOptimizer) -> dict[str, Any] | None:
    """The pending micro-batch sums over every rank, keyed by name (collective)."""
    calls = int(dopt.comm.allreduce_values([dopt._calls], "max")[0])
    if calls == 0:
        return None
    arena = dopt.arena
    total = np.zeros_like(arena.grad) if dopt._buffer is None else dopt._buffer.copy()
    dopt.comm.allreduce(total)
    buffers = {n: total[a:b].reshape(arena.shapes[n]).copy() for n, (a, b) in arena.offsets.items()}
    return {"calls": calls, "buffers": buffers}


def gather_state(dopt: DistributedOptimizer) -> dict[str, Any]:
    """The whole optimizer's state_dict on every rank; collective."""
    opt = dopt.optimizer
    if dopt.stage == 0:
        result = opt.state_dict()
        result.pop("accumulation", None)
    else:
        local: list[tuple[str, int, dict[str, Any]]] = []
        if dopt.shard is not None:
            states = dopt.shard.state_dict()["state"]
            for i, piece in enumerate(dopt.pieces):
                if i in states:
                    local.append((piece.name, piece.start, states[i]))
        parts: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for rank_parts in dopt.comm.allgather_objects(local):
            for name, start, entry in rank_parts:
                parts.setdefault(name, []).append((start, entry))
        state: dict[str, dict[str, Any]] = {}
        arena = dopt.arena
        for name in arena.names:
            if name in parts:
                state[name] = _join(name, sorted(parts[name], key=lambda p: p[0]), arena)
        _fill_empty(opt, arena, state)
        result = {"state": state, "param_groups": _groups(dopt), "optimizer": opt._kind()}
    acc = _accumulation(dopt)
    if acc is not None:
        result["accumulation"] = acc
    return result


def _fill_empty(opt: Any, arena: Any, state: dict[str, dict[str, Any]]) -> None:
    """Params with no elements sit in no rank's slice; the single-process
    state_dict still has an entry for them when their arena run stepped."""
    for members in opt._members:
        stepped = next((state[m.key] for m in members if m.key in state), None)
        if stepped is None:
            continue
        for m in members:
            if m.key not in state and arena.params[m.key].size == 0:
                state[m.key] = {
                    k: np.zeros(arena.shapes[m.key], v.dtype)
                    if isinstance(v, np.ndarray) and v.ndim
                    else v
                    for k, v in stepped.items()
                }


def _join(name: str, parts: list[tuple[int, dict[str, Any]]], arena: Any) -> dict[str, Any]:
    shape = arena.shapes[name]
    size = int(np.prod(shape))
    entry: dict[str, Any] = {}
    for key, value in parts[0][1].items():
        if isinstance(value, np.ndarray) and value.ndim:
            joined = np.concatenate([p[1][key].reshape(-1) for p in parts])
            if joined.size != size:
                raise StateDictError(
                    f"state {key!r} of param {name!r}: the ranks' slices hold {joined.size} "
                    f"values, the param has {size}"
                )
            entry[key] = joined.reshape(shape)
        else:  # step, n_averaged, mu_product: equal in every slice of a param
            entry[key] = value
    return entry


def _check_groups(dopt: DistributedOptimizer, sd: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The saved hyperparameters per group, checked against the optimizer's groups."""
    opt = dopt.optimizer
    saved_groups = list(sd["param_groups"])
    if len(saved_groups) != len(opt.param_groups):
        raise StateDictError(
            f"the state_dict has {len(saved_groups)} param groups, "
            f"the optimizer has {len(opt.param_groups)}"
        )
    hypers = []
    for gid, (saved, keys) in enumerate(zip(saved_groups, opt._group_keys)):
        if not isinstance(saved, Mapping) or "params" not in saved:
            raise StateDictError(f"param group {gid} of the state_dict has no 'params'")
        if sorted(map(str, saved["params"])) != sorted(map(str, keys)):
            raise StateDictError(f"param group {gid}: the names differ from the optimizer's")
        h = {k: v for k, v in saved.items() if k not in PARAM_KEYS}
        try:
            opt._engine_class.validate_group({**opt.param_groups[gid], **h})
        except ValueError as err:
            raise StateDictError(f"param group {gid}: {err}") from err
        hypers.append(h)
    return hypers


def _slice(entry: Mapping[str, Any], name: str, start: int, length: int, size: int):
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, np.ndarray) and value.ndim:
            if value.size != size:
                raise StateDictError(
                    f"state {key!r} of param {name!r} has {value.size} values, the param has {size}"
                )
            out[key] = value.reshape(-1)[start : start + length]
        else:
            out[key] = value
    return out


def _load_accumulation(dopt: DistributedOptimizer, acc: Any) -> tuple[int, np.ndarray | None]:
    if acc is None:
        return 0, None
    if not isinstance(acc, Mapping) or not {"calls", "buffers"} <= set(acc):
        raise StateDictError("accumulation: must be a dict with 'calls' and 'buffers'")
    calls = int(acc["calls"])
    if not 0 <= calls < dopt.accumulate:
        raise StateDictError(
            f"accumulation: {calls} pending calls do not fit accumulate={dopt.accumulate}"
        )
    arena = dopt.arena
    buffer = np.zeros_like(arena.grad)
    # The sums are in global units: rank 0 holds them, the others add zeros.
    if dopt.comm.rank == 0:
        for name, value in acc["buffers"].items():
            if name not in arena.offsets:
                raise StateDictError(f"accumulation: buffer for unknown param {name!r}")
            a, b = arena.offsets[name]
            if np.size(value) != b - a:
                raise StateDictError(f"accumulation: buffer of {name!r} has the wrong size")
            buffer[a:b] = np.asarray(value).reshape(-1)
    return calls, buffer


def scatter_state(dopt: DistributedOptimizer, sd: Any) -> None:
    """Loads this rank's part of a whole state_dict; all or nothing on this rank."""
    if not isinstance(sd, Mapping) or not {"state", "param_groups"} <= set(sd):
        raise StateDictError("a state_dict is a dict with 'state' and 'param_groups'")
    opt = dopt.optimizer
    theirs = sd.get("optimizer")
    if theirs is not None and theirs != opt._kind():
        raise StateDictError(f"this state_dict is from a {theirs} optimizer, not a {opt._kind()}")
    hypers = _check_groups(dopt, sd)
    calls, buffer = _load_accumulation(dopt, sd.get("accumulation"))
    plain = {k: v for k, v in sd.items() if k != "accumulation"}
    if dopt.stage == 0:
        opt.load_state_dict(plain)
    else:
        saved = sd["state"]
        if not isinstance(saved, Mapping):
            raise StateDictError("state_dict['state'] must be a dict")
        unknown = set(saved) - set(dopt.arena.offsets)
        if unknown:
            raise StateDictError(f"state for unknown params: {sorted(map(str, unknown))}")
        if dopt.shard is not None:
            state = {}
            for i, p in enumerate(dopt.pieces):
                entry = saved.get(p.name)
                if entry:
                    size = int(np.prod(dopt.arena.shapes[p.name]))
                    state[i] = _slice(entry, p.name, p.start, p.hi - p.lo, size)
            groups = []
            for sgroup, keys, gid in zip(
                dopt.shard.param_groups, dopt.shard._group_keys, dopt._shard_gids
            ):
                base = {k: v for k, v in sgroup.items() if k not in PARAM_KEYS}
                groups.append({**base, **hypers[gid], "params": list(keys)})
            dopt.shard.load_state_dict(
                {"state": state, "param_groups": groups, "optimizer": opt._kind()}
            )
        for group, h in zip(opt.param_groups, hypers):
            group.update(h)
    dopt._calls, dopt._buffer = calls, buffer

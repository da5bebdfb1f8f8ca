"""The base class: torch.optim's param-group API over a Rust engine.

An optimizer holds ``param_groups`` (a list of dicts, as in torch) and a Rust
engine that owns the state. ``step`` hands the grads and the current groups to
the engine in one call; the engine checks everything before it writes
anything, so a failed step leaves params and state as they were.

The engine sees "engine params": the user's arrays one for one, or, for an
optimizer built on a :class:`~ferroptim.arena.ParamArena`, a few contiguous
runs of the arena's buffer. ``_members`` maps each engine param back to the
user-level params it holds, for ``state_dict`` and ``step_counts``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.exceptions import DtypeError, GradError, ParamError, StateDictError

__all__ = ["Optimizer"]

# Group keys that are not hyperparameters.
_PARAM_KEYS = ("params", "param_names")


class _Member(NamedTuple):
    """One user-level param inside an engine param: elements ``[lo, hi)``."""

    key: Any
    lo: int
    hi: int
    shape: tuple[int, ...]


class Optimizer:
    """Common machinery of every ferroptim optimizer.

    ``params`` is a list of arrays, a list of param-group dicts, a dict
    ``name -> array`` (named params), a list of ``(name, array)`` pairs, or a
    :class:`ParamArena`. A group's ``"params"`` may be any of these, or
    ``arena.select(names)``.
    """

    _engine_class: ClassVar[Any]

    def __init__(self, params: Any, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._engine_class.validate_group(self.defaults)
        self._engine = self._engine_class()
        self._lock = threading.RLock()
        self.param_groups: list[dict[str, Any]] = []
        self._members: list[list[_Member]] = []
        self._group_keys: list[list[Any]] = []
        self._arena: ParamArena | None = None
        self._arena_grads: list[np.ndarray] = []
        groups = _as_groups(params)
        first = groups[0]["params"]
        self._named = isinstance(first, (ParamArena, ArenaGroup)) or (
            _split_params(first)[0] is not None
        )
        for group in groups:
            self.add_param_group(group)

    # -- params -----------------------------------------------------------

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Adds a group; keys it lacks take the optimizer's defaults."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise ParamError("a param group must be a dict with a 'params' entry")
        group = dict(param_group)
        gid = len(self.param_groups)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._engine_class.validate_group(group)
        source = group["params"]
        if isinstance(source, ParamArena):
            source = source.all()
        with self._lock:
            if isinstance(source, ArenaGroup):
                self._add_arena_group(group, gid, source)
            else:
                self._add_array_group(group, gid, source)
            self.param_groups.append(group)

    def _check_names(self, names: list[str]) -> None:
        taken = set(self._keys())
        for name in names:
            if name in taken:
                raise ParamError(f"param name {name!r} is given twice")
            taken.add(name)

    def _add_array_group(self, group: dict[str, Any], gid: int, source: Any) -> None:
        names, arrays = _split_params(source)
        if not arrays:
            raise ParamError(f"param group {gid} has no params")
        if self._arena is not None:
            raise ParamError("this optimizer is built on a ParamArena: add arena.select(...)")
        if (names is not None) != self._named:
            raise ParamError(
                "mix of named and unnamed params: give every group a dict name -> array, "
                "or none of them"
            )
        start = len(self._keys())
        if names is not None:
            self._check_names(names)
            keys: list[Any] = list(names)
            labels = [repr(n) for n in names]
        else:
            keys = list(range(start, start + len(arrays)))
            labels = [f"#{k}" for k in keys]
        self._engine.add_params(arrays, gid, labels)
        group["params"] = arrays
        if names is not None:
            group["param_names"] = names
        self._members += [[_Member(k, 0, a.size, a.shape)] for k, a in zip(keys, arrays)]
        self._group_keys.append(keys)

    def _add_arena_group(self, group: dict[str, Any], gid: int, source: ArenaGroup) -> None:
        arena = source.arena
        if not source.names:
            raise ParamError(f"param group {gid} has no params")
        if self.param_groups and self._arena is not arena:
            raise ParamError("every param group must come from the same ParamArena")
        self._check_names(source.names)
        runs, grads, members = [], [], []
        for run in source.runs():
            lo, hi = arena.offsets[run[0]][0], arena.offsets[run[-1]][1]
            runs.append(arena.data[lo:hi])
            grads.append(arena.grad[lo:hi])
            members.append(
                [
                    _Member(n, arena.offsets[n][0] - lo, arena.offsets[n][1] - lo, arena.shapes[n])
                    for n in run
                ]
            )
        labels = [repr(r[0]) if len(r) == 1 else f"{r[0]!r}..{r[-1]!r}" for r in source.runs()]
        self._engine.add_params(runs, gid, labels)
        self._arena = arena
        self._arena_grads += grads
        self._members += members
        group["params"] = [arena.params[n] for n in source.names]
        group["param_names"] = list(source.names)
        self._group_keys.append(list(source.names))

    @property
    def params(self) -> list[np.ndarray]:
        """Every param, group after group: the order ``step`` expects grads in."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def param_names(self) -> list[str] | None:
        """The names of the params in order, or None for unnamed params."""
        return self._keys() if self._named else None

    def _keys(self) -> list[Any]:
        return [k for keys in self._group_keys for k in keys]

    # -- stepping ---------------------------------------------------------

    def step(self, grads: Any = None) -> None:
        """Updates every param in place from its grad.

        ``grads`` is a list in the order of :attr:`params`, or, for named
        params, a dict ``name -> grad``. A ``None`` grad (or a name left out)
        skips that param: its state and step count do not move. An optimizer
        built on a :class:`ParamArena` takes no argument: the grads are the
        arena's.
        """
        if self._arena is not None:
            if grads is not None:
                raise GradError(
                    "this optimizer is built on a ParamArena: write the grads into "
                    "arena.grads[name] (or arena.grad) and call step() with no argument"
                )
            grads = self._arena_grads
        elif grads is None:
            raise GradError("step() needs the grads: a list in param order, or a dict by name")
        elif isinstance(grads, Mapping):
            grads = self._grads_by_name(grads)
        elif isinstance(grads, np.ndarray):
            raise DtypeError("grads must be a list of arrays (one per param), got one array")
        with self._lock:
            self._engine.step(grads, self.param_groups)

    def _grads_by_name(self, grads: Mapping[str, Any]) -> list[Any]:
        if not self._named:
            raise GradError("grads were given by name, but the params have no names")
        names = self._keys()
        unknown = set(grads) - set(names)
        if unknown:
            raise GradError(f"grads given for unknown params: {sorted(map(str, unknown))}")
        return [grads.get(name) for name in names]

    @property
    def step_counts(self) -> list[int]:
        """How many steps each param has taken (None grads do not count)."""
        steps = self._engine.steps()
        return [s for s, members in zip(steps, self._members) for _ in members]

    # -- state ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {key: {...}}, "param_groups": [...]}`` with fresh copies.

        Keys are param names for named params, else indices in param order.
        """
        with self._lock:
            engine_states = self._engine.state()
            state: dict[Any, dict[str, Any]] = {}
            for st, members in zip(engine_states, self._members):
                if len(st) == 1 and st["step"] == 0:
                    continue
                for m in members:
                    entry: dict[str, Any] = {"step": st["step"]}
                    for slot, values in st.items():
                        if slot != "step":
                            entry[slot] = values.reshape(-1)[m.lo : m.hi].reshape(m.shape)
                    state[m.key] = entry
            groups = []
            for group, keys in zip(self.param_groups, self._group_keys):
                saved = {k: _copy(v) for k, v in group.items() if k not in _PARAM_KEYS}
                saved["params"] = list(keys)
                groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads state and hyperparameters; all or nothing, and by copy.

        Named params are matched by name, so the params may have been given
        in another order; unnamed params are matched by position.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise StateDictError("a state_dict is a dict with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise StateDictError("state_dict['state'] must be a dict")
        if len(saved_groups) != len(self.param_groups):
            raise StateDictError(
                f"the state_dict has {len(saved_groups)} param groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        # Our key -> the saved state's key for the same param.
        saved_key: dict[Any, Any] = {}
        new_hypers = []
        for gid, (ours, saved, mine) in enumerate(
            zip(self.param_groups, saved_groups, self._group_keys)
        ):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise StateDictError(f"param group {gid} of the state_dict has no 'params'")
            theirs = list(saved["params"])
            if self._named:
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
            hypers = {k: _copy(v) for k, v in saved.items() if k not in _PARAM_KEYS}
            try:
                self._engine_class.validate_group({**ours, **hypers})
            except ValueError as err:
                raise StateDictError(f"param group {gid}: {err}") from err
            new_hypers.append(hypers)
        unknown = set(saved_state) - set(saved_key.values())
        if unknown:
            raise StateDictError(f"state for unknown params: {sorted(map(str, unknown))}")
        states = [
            self._merge_state([(m, saved_state.get(saved_key[m.key])) for m in members])
            for members in self._members
        ]
        with self._lock:
            self._engine.load_state(states)
            for group, hypers in zip(self.param_groups, new_hypers):
                group.update(hypers)

    def _merge_state(self, parts: list[tuple[_Member, Any]]) -> dict[str, Any]:
        """One engine param's state from the saved states of its members."""
        for m, st in parts:
            if st is not None and not isinstance(st, Mapping):
                raise StateDictError(f"state of param {m.key!r} must be a dict")
        present = [(m, st) for m, st in parts if st]
        if not present:
            return {}
        if self._arena is None:
            return dict(present[0][1])
        # An arena run: every member must agree on the step and hold every slot.
        steps = {st.get("step", 0) for _, st in present}
        if len(steps) != 1 or len(present) != len(parts):
            raise StateDictError(
                f"params {[str(m.key) for m, _ in parts]} share one arena run, so their "
                "saved states must all be present with the same step"
            )
        merged: dict[str, Any] = {"step": steps.pop()}
        slots = {k for _, st in present for k in st if k != "step"}
        for slot in sorted(slots):
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
                    pieces.append(np.asarray(value, dtype=np.float64).reshape(-1))
                except (TypeError, ValueError) as err:
                    raise StateDictError(f"state {slot!r} of param {m.key!r}: {err}") from err
            merged[slot] = np.concatenate(pieces)
        return merged

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in _PARAM_KEYS):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return list(value)
    return value


def _split_params(params: Any) -> tuple[list[str] | None, list[Any]]:
    """``(names or None, arrays)`` from the forms ``params`` may take."""
    if isinstance(params, np.ndarray):
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


def _as_groups(params: Any) -> list[dict[str, Any]]:
    if isinstance(params, np.ndarray):
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
        if p is not None and not isinstance(p, (np.ndarray, Mapping, ParamArena, ArenaGroup)):
            group["params"] = list(p)
    if not any(_has_params(g.get("params", [])) for g in groups):
        raise ParamError("optimizer got an empty parameter list")
    return groups


def _has_params(params: Any) -> bool:
    if isinstance(params, (ParamArena, ArenaGroup)):
        return len(params) > 0
    names, arrays = _split_params(params)
    return bool(arrays)

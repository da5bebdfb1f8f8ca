"""The base class: torch.optim's param-group API over a Rust engine.

An optimizer holds ``param_groups`` (a list of dicts, as in torch) and a Rust
engine that owns the state. ``step`` hands the grads and the current groups to
the engine in one call; the engine checks everything before it writes
anything, so a failed step leaves params and state as they were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from ferroptim.exceptions import DtypeError, GradError, ParamError, StateDictError

__all__ = ["Optimizer"]

# Group keys that are not hyperparameters.
_PARAM_KEYS = ("params", "param_names")


class Optimizer:
    """Common machinery of every ferroptim optimizer.

    ``params`` is a list of arrays, a list of param-group dicts, a dict
    ``name -> array`` (named params), or a list of ``(name, array)`` pairs.
    Groups may themselves hold a dict of named arrays under ``"params"``.
    """

    _engine_class: ClassVar[Any]

    def __init__(self, params: Any, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self._engine_class.validate_group(self.defaults)
        self._engine = self._engine_class()
        self._lock = threading.RLock()
        self.param_groups: list[dict[str, Any]] = []
        self._names: list[str] | None = None
        groups = _as_groups(params)
        self._named = _is_named(groups[0]["params"])
        for group in groups:
            self.add_param_group(group)

    # -- params -----------------------------------------------------------

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Adds a group; keys it lacks take the optimizer's defaults."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise ParamError("a param group must be a dict with a 'params' entry")
        group = dict(param_group)
        names, arrays = _split_params(group["params"])
        gid = len(self.param_groups)
        if not arrays:
            raise ParamError(f"param group {gid} has no params")
        if (names is not None) != self._named:
            raise ParamError(
                "mix of named and unnamed params: give every group a dict name -> array, "
                "or none of them"
            )
        if names is not None:
            taken = set(self._names or ())
            for name in names:
                if name in taken:
                    raise ParamError(f"param name {name!r} is given twice")
                taken.add(name)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._engine_class.validate_group(group)
        with self._lock:
            start = self._engine.num_params
            labels = (
                [repr(n) for n in names]
                if names is not None
                else [f"#{start + i}" for i in range(len(arrays))]
            )
            self._engine.add_params(arrays, gid, labels)
            group["params"] = arrays
            if names is not None:
                group["param_names"] = names
                self._names = (self._names or []) + names
            self.param_groups.append(group)

    @property
    def params(self) -> list[np.ndarray]:
        """Every param, group after group: the order ``step`` expects grads in."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def param_names(self) -> list[str] | None:
        """The names of the params in order, or None for unnamed params."""
        return list(self._names) if self._names is not None else None

    # -- stepping ---------------------------------------------------------

    def step(self, grads: Any = None) -> None:
        """Updates every param in place from its grad.

        ``grads`` is a list in the order of :attr:`params`, or, for named
        params, a dict ``name -> grad``. A ``None`` grad (or a name left out)
        skips that param: its state and step count do not move.
        """
        if grads is None:
            raise GradError("step() needs the grads: a list in param order, or a dict by name")
        if isinstance(grads, Mapping):
            grads = self._grads_by_name(grads)
        elif isinstance(grads, np.ndarray):
            raise DtypeError("grads must be a list of arrays (one per param), got one array")
        with self._lock:
            self._engine.step(grads, self.param_groups)

    def _grads_by_name(self, grads: Mapping[str, Any]) -> list[Any]:
        if self._names is None:
            raise GradError("grads were given by name, but the params have no names")
        unknown = set(grads) - set(self._names)
        if unknown:
            raise GradError(f"grads given for unknown params: {sorted(map(str, unknown))}")
        return [grads.get(name) for name in self._names]

    @property
    def step_counts(self) -> list[int]:
        """How many steps each param has taken (None grads do not count)."""
        return list(self._engine.steps())

    # -- state ------------------------------------------------------------

    def _keys(self) -> list[Any]:
        return list(self._names) if self._names is not None else list(range(len(self.params)))

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {key: {...}}, "param_groups": [...]}`` with fresh copies.

        Keys are param names for named params, else indices in param order.
        """
        with self._lock:
            states = self._engine.state()
            keys = self._keys()
            state = {k: s for k, s in zip(keys, states) if len(s) > 1 or s["step"] > 0}
            groups = []
            start = 0
            for group in self.param_groups:
                n = len(group["params"])
                saved = {k: _copy(v) for k, v in group.items() if k not in _PARAM_KEYS}
                saved["params"] = keys[start : start + n]
                groups.append(saved)
                start += n
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
        keys = self._keys()
        new_hypers = []
        start = 0
        for gid, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise StateDictError(f"param group {gid} of the state_dict has no 'params'")
            n = len(ours["params"])
            mine = keys[start : start + n]
            theirs = list(saved["params"])
            start += n
            if self._names is not None:
                if set(theirs) != set(mine) or len(theirs) != len(mine):
                    missing = sorted(set(mine) - set(theirs))
                    extra = sorted(set(theirs) - set(mine))
                    raise StateDictError(
                        f"param group {gid}: names differ (missing {missing}, unexpected {extra})"
                    )
            elif len(theirs) != n:
                raise StateDictError(
                    f"param group {gid} has {len(theirs)} params in the state_dict, "
                    f"{n} in the optimizer"
                )
            hypers = {k: _copy(v) for k, v in saved.items() if k not in _PARAM_KEYS}
            merged = {**ours, **hypers}
            try:
                self._engine_class.validate_group(merged)
            except ValueError as err:
                raise StateDictError(f"param group {gid}: {err}") from err
            new_hypers.append(hypers)
        if self._names is None:
            # Positional: the saved keys of group i are matched in order.
            saved_keys = [k for g in saved_groups for k in g["params"]]
        else:
            saved_keys = keys
        unknown = set(saved_state) - set(saved_keys)
        if unknown:
            raise StateDictError(f"state for unknown params: {sorted(map(str, unknown))}")
        states = [dict(saved_state.get(k, {})) for k in saved_keys]
        with self._lock:
            self._engine.load_state(states)
            for group, hypers in zip(self.param_groups, new_hypers):
                group.update(hypers)

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


def _is_named(params: Any) -> bool:
    names, _ = _split_params(params)
    return names is not None


def _split_params(params: Any) -> tuple[list[str] | None, list[Any]]:
    """``(names or None, arrays)`` from the forms ``params`` may take."""
    if isinstance(params, np.ndarray):
        return None, [params]
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
    if isinstance(params, Mapping):
        groups = [{"params": dict(params)}]
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
        if p is not None and not isinstance(p, (np.ndarray, Mapping)):
            group["params"] = list(p)
    if not groups or not any(len(_split_params(g.get("params", []))[1]) for g in groups):
        raise ParamError("optimizer got an empty parameter list")
    return groups

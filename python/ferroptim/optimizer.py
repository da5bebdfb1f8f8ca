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

import contextlib
import fnmatch
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.exceptions import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)

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

    Params are NumPy arrays (the Rust engine) or CuPy arrays on one GPU (the
    CUDA engine of :mod:`ferroptim.cuda`); the API is the same.

    ``params`` is a list of arrays, a list of param-group dicts, a dict
    ``name -> array`` (named params), a list of ``(name, array)`` pairs, or a
    :class:`ParamArena`. A group's ``"params"`` may be any of these, or
    ``arena.select(names)``.

    Options every optimizer takes (keyword-only), all applied inside the one
    Rust pass of a step:

    - ``max_grad_norm``: clip the global grad norm of the step to this value
      (as ``torch.nn.utils.clip_grad_norm_``; ``norm_type`` 2 or ``inf``). The
      norm is one extra read of the grads; the scaling is fused into the update.
    - ``clip_value``: clamp every grad element to ``[-clip_value, clip_value]``.
    - ``skip_nonfinite``: a step whose grads hold NaN or Inf changes nothing;
      ``step`` returns False and :attr:`skipped_steps` counts it.
    - ``ema_decay``: keep an exponential moving average of the weights
      (``a += (1 - decay)(p - a)``, starting from the first stepped weights);
      ``ema_equal_weights=True`` keeps their plain mean instead (SWA). Swap it
      in with ``with opt.averaged_params(): ...``.
    - ``accumulate=k``: sum (``accumulate_mean=False``) or average the grads of
      k calls to ``step`` and update on every k-th call.
    """

    _engine_class: ClassVar[Any]

    def __init__(
        self,
        params: Any,
        defaults: Mapping[str, Any],
        *,
        max_grad_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
        skip_nonfinite: bool = False,
        ema_decay: float | None = None,
        ema_equal_weights: bool = False,
        accumulate: int = 1,
        accumulate_mean: bool = True,
    ) -> None:
        self.defaults = dict(defaults)
        self._engine_class.validate_group(self.defaults)
        groups = _as_groups(params)
        # CuPy params get the CUDA engine; it speaks the Rust engine's interface.
        first_gpu = next(
            (a for g in groups for a in _gpu_probe(g.get("params", [])) if _on_gpu(a)), None
        )
        if first_gpu is not None:
            from ferroptim import cuda

            self._engine = cuda.make_engine(self._engine_class, first_gpu)
        else:
            self._engine = self._engine_class()
        self._gpu = first_gpu is not None
        self._engine.configure(
            max_grad_norm=max_grad_norm,
            norm_type=float(norm_type),
            clip_value=clip_value,
            skip_nonfinite=bool(skip_nonfinite),
            ema_decay=ema_decay,
            ema_equal=bool(ema_equal_weights),
        )
        self._averaging = ema_decay is not None or bool(ema_equal_weights)
        if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
            raise HyperparameterError(f"accumulate: must be an integer >= 1, got {accumulate!r}")
        self.accumulate = accumulate
        self.accumulate_mean = bool(accumulate_mean)
        self._acc: list[np.ndarray | None] = []
        self._acc_calls = 0
        self.num_updates = 0
        self._lock = threading.RLock()
        self.param_groups: list[dict[str, Any]] = []
        self._members: list[list[_Member]] = []
        self._group_keys: list[list[Any]] = []
        self._arena: ParamArena | None = None
        self._arena_grads: list[np.ndarray] = []
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
        if not self._gpu and any(_on_gpu(a) for a in arrays):
            raise DtypeError(
                f"param group {gid} holds GPU arrays, but this optimizer's params are NumPy "
                "arrays: keep every param of one optimizer on the same device"
            )
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

    def step(self, grads: Any = None) -> bool:
        """Updates every param in place from its grad; True if it did.

        ``grads`` is a list in the order of :attr:`params`, or, for named
        params, a dict ``name -> grad``. A ``None`` grad (or a name left out)
        skips that param: its state and step count do not move. An optimizer
        built on a :class:`ParamArena` takes no argument: the grads are the
        arena's. Returns False for a step skipped for non-finite grads, and
        for the calls that only accumulate (``accumulate=k``).
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
        elif isinstance(grads, np.ndarray) or _on_gpu(grads):
            raise DtypeError("grads must be a list of arrays (one per param), got one array")
        with self._lock:
            if self.accumulate > 1:
                return self._accumulate(grads)
            applied = self._engine.step(grads, self.param_groups)
            self.num_updates += applied
            return applied

    def _accumulate(self, grads: Any) -> bool:
        """Adds this call's grads to the buffers; steps on every k-th call."""
        grads = list(grads)
        if len(grads) != len(self._members):
            raise GradError(f"got {len(grads)} grads for {len(self._members)} params")
        # Check the grads the way a step would before touching the buffers.
        for i, g in enumerate(grads):
            if g is None:
                continue
            kind = "GPU" if self._gpu else "NumPy"
            # A NumPy scalar would pass a dtype check, but `+=` on it rebinds
            # instead of adding in place: insist on arrays of the right kind.
            right_kind = _on_gpu(g) if self._gpu else isinstance(g, np.ndarray) and not _on_gpu(g)
            if not right_kind or g.dtype != self._engine_dtype(i):
                raise DtypeError(
                    f"grads[{i}] must be a {kind} {self._engine_dtype(i)} array, got "
                    f"{g.dtype if hasattr(g, 'dtype') else type(g).__name__} "
                    f"({'GPU' if _on_gpu(g) else type(g).__name__})"
                )
            shape = self._engine_shape(i)
            if g.shape != shape:
                raise GradError(f"grads[{i}] has shape {g.shape}, the param has shape {shape}")
        if len(self._acc) != len(grads):
            self._acc = [None] * len(grads)
        first = self._acc_calls == 0
        for i, g in enumerate(grads):
            if g is None:
                if first:
                    self._acc[i] = None
                continue
            buf = self._acc[i]
            # Indexing and += work alike on NumPy and CuPy buffers.
            if buf is None or first:
                if buf is None or buf.shape != g.shape:
                    buf = g.copy()
                else:
                    buf[...] = g
                self._acc[i] = buf
            else:
                buf += g
        self._acc_calls += 1
        if self._acc_calls < self.accumulate:
            return False
        self._acc_calls = 0
        scale = 1.0 / self.accumulate if self.accumulate_mean else 1.0
        applied = self._engine.step(list(self._acc), self.param_groups, scale)
        self.num_updates += applied
        self._acc = [None] * len(grads)
        return applied

    def _device_copy(self, host: np.ndarray) -> Any:
        """``host`` on the params' device (itself for a CPU optimizer)."""
        return self._engine.device.to_device(host) if self._gpu else host

    def _engine_shape(self, i: int) -> tuple[int, ...]:
        members = self._members[i]
        if self._arena is None:
            return members[0].shape
        return (members[-1].hi,)

    def _engine_dtype(self, i: int) -> np.dtype:
        if self._arena is not None:
            return self._arena.dtype
        return self.params[i].dtype

    # -- options ----------------------------------------------------------

    @property
    def skipped_steps(self) -> int:
        """Steps skipped because their grads held NaN or Inf (``skip_nonfinite``)."""
        return self._engine.skipped_steps

    @property
    def last_grad_norm(self) -> float | None:
        """The global grad norm of the last step (with ``max_grad_norm`` or
        ``skip_nonfinite``), before clipping."""
        return self._engine.last_grad_norm

    @contextlib.contextmanager
    def averaged_params(self) -> Iterator[None]:
        """Swaps the averaged weights into the params, and back on exit.

        >>> with opt.averaged_params():
        ...     evaluate(model)
        """
        if not self._averaging:
            raise ParamError(
                "no averaged weights: construct with ema_decay=... or ema_equal_weights"
            )
        with self._lock:
            self._engine.swap_averages()
            try:
                yield
            finally:
                self._engine.swap_averages()

    # -- freezing ---------------------------------------------------------

    def _select(self, selectors: Iterable[Any], group: int | None) -> list[int]:
        """Engine-param indices for names, patterns, indices or a group."""
        keys = self._keys()
        wanted: set[Any] = set()
        if group is not None:
            if not 0 <= group < len(self._group_keys):
                raise ParamError(f"group: no param group {group}")
            wanted.update(self._group_keys[group])
        for sel in selectors:
            if isinstance(sel, str):
                hits = [k for k in keys if isinstance(k, str) and fnmatch.fnmatchcase(k, sel)]
                if not hits:
                    raise ParamError(f"no param matches {sel!r}")
                wanted.update(hits)
            elif isinstance(sel, int) and not self._named and 0 <= sel < len(keys):
                wanted.add(sel)
            else:
                raise ParamError(f"no param {sel!r}")
        indices = []
        for i, members in enumerate(self._members):
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

    def freeze(self, *params: Any, group: int | None = None) -> None:
        """Freezes params (names, fnmatch patterns, or indices) or a whole group:
        they take no step and get no state until :meth:`unfreeze`."""
        self._engine.set_frozen(self._select(params, group), True)

    def unfreeze(self, *params: Any, group: int | None = None) -> None:
        """Undoes :meth:`freeze`."""
        self._engine.set_frozen(self._select(params, group), False)

    @property
    def frozen(self) -> list[Any]:
        """Keys (names or indices) of the frozen params."""
        return [
            m.key
            for flag, members in zip(self._engine.frozen(), self._members)
            if flag
            for m in members
        ]

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
                        if isinstance(values, np.ndarray):
                            entry[slot] = values.reshape(-1)[m.lo : m.hi].reshape(m.shape)
                        else:  # step, n_averaged, NAdam's mu_product: one per run
                            entry[slot] = values
                    state[m.key] = entry
            groups = []
            for group, keys in zip(self.param_groups, self._group_keys):
                saved = {k: _copy(v) for k, v in group.items() if k not in _PARAM_KEYS}
                saved["params"] = list(keys)
                groups.append(saved)
            result: dict[str, Any] = {"state": state, "param_groups": groups}
            if self._acc_calls:
                # Mid-cycle micro-batch grads, so a resumed run updates exactly as this one.
                result["accumulation"] = {
                    "calls": self._acc_calls,
                    "buffers": [None if b is None else _to_numpy(b) for b in self._acc],
                }
        return result

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
        acc = state_dict.get("accumulation")
        acc_calls, acc_buffers = 0, []
        if acc is not None:
            try:
                acc_calls = int(acc["calls"])
                acc_buffers = [
                    None
                    if b is None
                    else self._device_copy(np.array(b, dtype=self._engine_dtype(i)))
                    for i, b in enumerate(acc["buffers"])
                ]
            except (KeyError, TypeError, ValueError) as err:
                raise StateDictError(f"accumulation: {err}") from err
            if not 0 <= acc_calls < self.accumulate or len(acc_buffers) != len(self._members):
                raise StateDictError(
                    f"accumulation: {acc_calls} calls and {len(acc_buffers)} buffers do not fit "
                    f"accumulate={self.accumulate} over {len(self._members)} params"
                )
        with self._lock:
            self._engine.load_state(states)
            for group, hypers in zip(self.param_groups, new_hypers):
                group.update(hypers)
            self._acc_calls = acc_calls
            self._acc = acc_buffers

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
        # An arena run: every member must be present, agree on the scalars
        # (step, n_averaged, ...) and hold every array.
        if len(present) != len(parts):
            raise StateDictError(
                f"params {[str(m.key) for m, _ in parts]} share one arena run, so their "
                "saved states must all be present"
            )
        merged: dict[str, Any] = {}
        keys = {k for _, st in present for k in st}
        scalars = {
            k for k in keys if not any(isinstance(st.get(k), np.ndarray) for _, st in present)
        }
        for key in sorted(scalars):
            values = {st.get(key) for _, st in present}
            if len(values) != 1:
                raise StateDictError(
                    f"params {[str(m.key) for m, _ in parts]} share one arena run, so their "
                    f"saved {key!r} must be equal, got {sorted(map(str, values))}"
                )
            merged[key] = values.pop()
        for slot in sorted(keys - scalars):
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


def _gpu_probe(params: Any) -> list[Any]:
    """The arrays that tell which engine ``params`` needs (an arena: its buffer)."""
    if isinstance(params, ParamArena):
        return [params.data]
    if isinstance(params, ArenaGroup):
        return [params.arena.data]
    return _split_params(params)[1]


def _on_gpu(x: Any) -> bool:
    """A GPU array (CuPy, or the emulated kind used in tests)? Never imports CuPy."""
    if isinstance(x, np.ndarray) and type(x) is np.ndarray:
        return False
    from ferroptim import cuda

    return cuda.is_device_array(x)


def _to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or GPU array."""
    if type(x) is np.ndarray:
        return x.copy()
    if hasattr(x, "get"):  # CuPy
        return x.get()
    return np.array(x, copy=True).view(np.ndarray)


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return list(value)
    return value


def _split_params(params: Any) -> tuple[list[str] | None, list[Any]]:
    """``(names or None, arrays)`` from the forms ``params`` may take."""
    if isinstance(params, np.ndarray) or _on_gpu(params):
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
    if isinstance(params, np.ndarray) or _on_gpu(params):
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
            and not _on_gpu(p)
        ):
            group["params"] = list(p)
    if not any(_has_params(g.get("params", [])) for g in groups):
        raise ParamError("optimizer got an empty parameter list")
    return groups


def _has_params(params: Any) -> bool:
    if isinstance(params, (ParamArena, ArenaGroup)):
        return len(params) > 0
    names, arrays = _split_params(params)
    return bool(arrays)

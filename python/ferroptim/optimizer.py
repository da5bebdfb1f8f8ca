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

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, overload

import numpy as np

from ferroptim import _state
from ferroptim._accumulate import Accumulation, check_grads
from ferroptim._averaging import AveragingAndFreezing
from ferroptim._compat import check_torch_flags, plain_hypers
from ferroptim._options import STEP_OPTIONS_DOC, step_options
from ferroptim._params import (
    Grads,
    Member,
    ParamsLike,
    as_groups,
    check_groups,
    gpu_probe,
    label,
    on_gpu,
    split_params,
)
from ferroptim._precision import check_precision, refuse_on_gpu
from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.exceptions import DtypeError, GradError, HyperparameterError, ParamError

__all__ = ["STEP_OPTIONS_DOC", "Optimizer", "step_options"]


class Optimizer(AveragingAndFreezing):
    """Common machinery of every ferroptim optimizer.

    Params are NumPy arrays (the Rust engine) or CuPy arrays on one GPU (the
    CUDA engine of :mod:`ferroptim.cuda`); the API is the same.

    ``params`` is a list of arrays, a list of param-group dicts, a dict
    ``name -> array`` (named params), a list of ``(name, array)`` pairs, or a
    :class:`ParamArena`. A group's ``"params"`` may be any of these, or
    ``arena.select(names)``. Every option is applied inside the one Rust pass
    of a step.

    Parameters
    ----------
    params : list, dict or ParamArena
        The params to update in place (see above).
    defaults : dict
        The hyperparameters of groups that do not set them.
    """

    _engine_class: ClassVar[Any]
    # Every optimizer class by name, for telling a user whose state_dict they hold.
    _registry: ClassVar[dict[str, type[Optimizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("ferroptim.") and "_engine_class" in cls.__dict__:
            Optimizer._registry[cls.__name__] = cls
        doc = cls.__dict__.get("__doc__")
        if doc and "----------" in doc and "max_grad_norm :" not in doc:
            cls.__doc__ = inspect.cleandoc(doc) + "\n" + STEP_OPTIONS_DOC.rstrip("\n")

    def __init__(
        self,
        params: ParamsLike,
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
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        state_dtype: str | None = None,
        master_weights: bool = True,
        stochastic_rounding: bool = False,
        seed: int = 0,
    ) -> None:
        check_torch_flags(foreach, fused, capturable, differentiable)
        self.precision = check_precision(state_dtype, master_weights, stochastic_rounding, seed)
        self.defaults = plain_hypers(defaults)
        self._engine_class.validate_group(self.defaults)
        if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
            raise HyperparameterError(f"accumulate: must be an integer >= 1, got {accumulate!r}")
        groups = as_groups(params)
        # CuPy params get the CUDA engine; it speaks the Rust engine's interface.
        first_gpu = next(
            (a for g in groups for a in gpu_probe(g.get("params", [])) if on_gpu(a)), None
        )
        if first_gpu is not None:
            from ferroptim import cuda

            refuse_on_gpu(self.precision)
            self._engine = cuda.make_engine(self._engine_class, first_gpu)
        else:
            self._engine = self._engine_class()
            self._engine.set_precision(**self.precision)
        self._gpu = first_gpu is not None
        # Kept: step(skip_nonfinite=True) turns the engine's option on for one call.
        self._engine_options = dict(
            max_grad_norm=max_grad_norm,
            norm_type=norm_type,
            clip_value=clip_value,
            skip_nonfinite=bool(skip_nonfinite),
            ema_decay=ema_decay,
            ema_equal=bool(ema_equal_weights),
        )
        self._engine.configure(**self._engine_options)
        self._averaging = ema_decay is not None or bool(ema_equal_weights)
        self._swapped = False  # inside averaged_params()
        self.accumulate = accumulate
        self.accumulate_mean = bool(accumulate_mean)
        self._accumulation = Accumulation()
        self.num_updates = 0
        self._lock = threading.RLock()
        self.param_groups: list[dict[str, Any]] = []
        # Per engine param: its members, its label in errors, its dtype.
        self._members: list[list[Member]] = []
        self._labels: list[str] = []
        self._dtypes: list[np.dtype] = []
        # Per group: its keys, and what the engine was given (to notice edits).
        self._group_keys: list[list[Any]] = []
        self._given: list[tuple[dict[str, Any], list[Any], tuple[Any, ...]]] = []
        # Every key in order, and the names as a set: kept as groups come, so
        # that adding a group costs its own size, not the optimizer's.
        self._key_list: list[Any] = []
        self._name_set: set[str] = set()
        self._arena: ParamArena | None = None
        self._arena_grads: list[np.ndarray] = []
        first = groups[0]["params"]
        self._named = isinstance(first, (ParamArena, ArenaGroup)) or (
            split_params(first)[0] is not None
        )
        for group in groups:
            self.add_param_group(group)

    # -- params -----------------------------------------------------------

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Adds a group; keys it lacks take the optimizer's defaults."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise ParamError("a param group must be a dict with a 'params' entry")
        group = plain_hypers(param_group, skip=_state.PARAM_KEYS)
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
            self._given.append((group, group["params"], tuple(group["params"])))

    def _check_names(self, names: list[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if name in self._name_set or name in seen:
                raise ParamError(f"param name {name!r} is given twice")
            seen.add(name)

    def _register(
        self, keys: list[Any], members: list[list[Member]], labels: list[str], dtypes: list[Any]
    ) -> None:
        self._members += members
        self._labels += labels
        self._dtypes += dtypes
        self._group_keys.append(keys)
        self._key_list += keys
        if self._named:
            self._name_set.update(keys)

    def _add_array_group(self, group: dict[str, Any], gid: int, source: Any) -> None:
        names, arrays = split_params(source)
        if not arrays:
            raise ParamError(f"param group {gid} has no params")
        if not self._gpu and any(on_gpu(a) for a in arrays):
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
        start = len(self._key_list)
        if names is not None:
            self._check_names(names)
            keys: list[Any] = list(names)
        else:
            keys = list(range(start, start + len(arrays)))
        labels = [label(k) for k in keys]
        self._engine.add_params(arrays, gid, labels)
        group["params"] = arrays
        if names is not None:
            group["param_names"] = names
        members = [[Member(k, 0, a.size, a.shape)] for k, a in zip(keys, arrays)]
        self._register(keys, members, labels, [a.dtype for a in arrays])

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
                    Member(n, arena.offsets[n][0] - lo, arena.offsets[n][1] - lo, arena.shapes[n])
                    for n in run
                ]
            )
        labels = [repr(r[0]) if len(r) == 1 else f"{r[0]!r}..{r[-1]!r}" for r in source.runs()]
        self._engine.add_params(runs, gid, labels)
        self._arena = arena
        self._arena_grads += grads
        group["params"] = [arena.params[n] for n in source.names]
        group["param_names"] = list(source.names)
        self._register(list(source.names), members, labels, [arena.dtype] * len(runs))

    @property
    def params(self) -> list[np.ndarray]:
        """Every param, group after group: the order ``step`` expects grads in."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def arena(self) -> ParamArena | None:
        """The :class:`ParamArena` the params live in (read-only), or None when the
        optimizer was given arrays."""
        return self._arena

    @property
    def param_names(self) -> list[str] | None:
        """The names of the params in order, or None for unnamed params."""
        return list(self._key_list) if self._named else None

    def _keys(self) -> list[Any]:
        return self._key_list

    def _check_groups(self) -> None:
        check_groups(self)

    # -- stepping ---------------------------------------------------------

    @overload
    def step(
        self, grads: Grads | None = None, *, grad_scale: float = ..., skip_nonfinite: bool = ...
    ) -> bool: ...

    @overload
    def step(
        self,
        grads: Grads | None = None,
        *,
        closure: Callable[[], Any],
        grad_scale: float = ...,
        skip_nonfinite: bool = ...,
    ) -> Any: ...

    @overload
    def step(self, grads: Callable[[], Any]) -> Any: ...  # opt.step(closure), as in torch

    def step(
        self,
        grads: Any = None,
        closure: Callable[[], Any] | None = None,
        *,
        grad_scale: float = 1.0,
        skip_nonfinite: bool = False,
    ) -> Any:
        """Updates every param in place from its grad; True if it did.

        Parameters
        ----------
        grads : list or dict, optional
            A list in the order of :attr:`params`, or, for named params, a dict
            ``name -> grad``. A None grad (or a name left out) skips that param:
            its state and step count do not move. Not given for an optimizer
            built on a :class:`ParamArena`: the grads are the arena's.
        closure : callable, optional
            As in torch: called first (with no argument), it computes the loss
            and returns either ``loss`` or ``(loss, grads)``. Grads it returns
            are used (then ``grads`` must not be given); otherwise the step
            uses ``grads`` or the arena's grads, which the closure may have
            filled. ``opt.step(closure)`` with a callable as the only argument
            works too.
        grad_scale : float, default 1.0
            Multiplies the grads inside the fused step (a loss scaler's 1/scale).
            Under ``accumulate=k``, the k-th call's value applies to the sum.
        skip_nonfinite : bool, default False
            Skip this step if its grads hold NaN or Inf, as the option of the same
            name does for every step (the check is fused with the grad norm).

        Returns
        -------
        bool or the closure's loss
            Without a closure: False for a step skipped for non-finite grads,
            and for the calls that only accumulate (``accumulate=k``), else
            True. With a closure: its loss, as torch returns it.
        """
        if callable(grads) and closure is None:
            grads, closure = None, grads
        self._check_not_swapped("step()")
        number = isinstance(grad_scale, (int, float, np.floating))
        if not (number and 0 < grad_scale < float("inf")):
            raise HyperparameterError(f"grad_scale: must be a finite number > 0, got {grad_scale}")
        per_call = (float(grad_scale), bool(skip_nonfinite))
        if closure is None:
            return self._step(grads, *per_call)
        out = closure()
        loss = out
        if isinstance(out, tuple) and len(out) == 2:
            if grads is not None:
                raise GradError("the closure returned grads, and step() was given grads too")
            loss, grads = out
        self._step(grads, *per_call)
        return loss

    def _step(self, grads: Any, grad_scale: float = 1.0, skip_nonfinite: bool = False) -> bool:
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
        elif isinstance(grads, np.ndarray) or on_gpu(grads):
            raise DtypeError("grads must be a list of arrays (one per param), got one array")
        with self._lock:
            self._check_not_swapped("step()")
            self._check_groups()
            toggle = skip_nonfinite and not self._engine_options["skip_nonfinite"]
            if toggle:
                self._engine.configure(**{**self._engine_options, "skip_nonfinite": True})
            try:
                if self.accumulate > 1:
                    return self._accumulate(list(grads), grad_scale)
                applied = self._engine.step(grads, self.param_groups, grad_scale)
            finally:
                if toggle:
                    self._engine.configure(**self._engine_options)
            self.num_updates += applied
            return applied

    def _accumulate(self, grads: list[Any], grad_scale: float = 1.0) -> bool:
        """Buffers this call's grads; steps on every k-th call. A failed call
        (a bad grad, or a step the engine refuses) leaves the buffers as they were."""
        acc = self._accumulation
        check_grads(grads, self._labels, self._dtypes, self._shapes(), self._gpu)
        if not self._gpu:
            # The engine's own checks too (a grad sharing memory with a param).
            self._engine.check_grads(grads)
        if acc.calls + 1 < self.accumulate:
            acc.add(grads)
            return False
        scale = (1.0 / self.accumulate if self.accumulate_mean else 1.0) * grad_scale
        applied = self._engine.step(acc.totals(grads), self.param_groups, scale)
        acc.reset()
        self.num_updates += applied
        return applied

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zeroes the arena's grads of an optimizer built on a :class:`ParamArena`.

        Otherwise a no-op: grads are passed to :meth:`step`, the optimizer keeps
        none. ``set_to_none`` is accepted for torch code; arena grads are views
        into one buffer, so they are zeroed either way. Grads pending under
        ``accumulate=k`` are kept.
        """
        with self._lock:
            for g in self._arena_grads:
                g.fill(0)

    def _shapes(self) -> list[tuple[int, ...]]:
        if self._arena is None:
            return [members[0].shape for members in self._members]
        return [(members[-1].hi,) for members in self._members]

    def _device_copy(self, host: np.ndarray) -> Any:
        """``host`` on the params' device (itself for a CPU optimizer)."""
        return self._engine.device.to_device(host) if self._gpu else host

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

    def _grads_by_name(self, grads: Mapping[str, Any]) -> list[Any]:
        if not self._named:
            raise GradError("grads were given by name, but the params have no names")
        unknown = set(grads) - self._name_set
        if unknown:
            raise GradError(f"grads given for unknown params: {sorted(map(str, unknown))}")
        return [grads.get(name) for name in self._key_list]

    @property
    def step_counts(self) -> list[int]:
        """How many steps each param has taken (None grads do not count)."""
        steps = self._engine.steps()
        return [s for s, members in zip(steps, self._members) for _ in members]

    # -- state ------------------------------------------------------------

    def _kind(self) -> str:
        return _state.kind(self)

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {key: {...}}, "param_groups": [...], "optimizer": name}``,
        with fresh copies.

        Keys are param names for named params, else indices in param order.
        ``"optimizer"`` is the class name: a state_dict loads only into its own
        class. Mid-cycle under ``accumulate=k``, ``"accumulation"`` holds the
        pending grad sums, keyed like the state.
        """
        with self._lock:
            self._check_groups()
            return _state.state_dict(self)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Loads state and hyperparameters; all or nothing, and by copy.

        Named params are matched by name, so the params may have been given
        in another order; unnamed params are matched by position. A state_dict
        of another optimizer class is refused.
        """
        with self._lock:
            self._check_not_swapped("load_state_dict()")
            self._check_groups()
            _state.load_state_dict(self, state_dict)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in _state.PARAM_KEYS):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


Optimizer.__doc__ = inspect.cleandoc(Optimizer.__doc__ or "") + "\n" + STEP_OPTIONS_DOC.rstrip("\n")

"""``torch.optim.Optimizer`` subclasses stepped by ferroptim's Rust engine.

One base class, :class:`TorchOptimizer`, and one table, ``SPECS``: each row
makes a class with torch's name, signature, defaults and state names. The
param groups are torch's own (so ``zero_grad``, ``add_param_group``, hooks and
every ``torch.optim.lr_scheduler`` work); each step reads the hyperparameters
from them afresh and hands the engine zero-copy NumPy views of the CPU tensors,
in one call for all params.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ferroptim._compat import check_torch_flags, plain
from ferroptim._precision import check_precision
from ferroptim.exceptions import ParamError, StateDictError
from ferroptim.torch import flat as _flatten
from ferroptim.torch import lowp as _lowp
from ferroptim.torch import state as _state
from ferroptim.torch.grads import PTR, GradIntake
from ferroptim.torch.specs import DOCS, SPECS, Spec, numpydoc_type
from ferroptim.torch.state import Entry, Member, StateView

__all__ = [
    "ASGD",
    "SGD",
    "SPECS",
    "Adadelta",
    "Adagrad",
    "Adam",
    "Adamax",
    "AdamW",
    "Lion",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "Spec",
    "TorchOptimizer",
]

_GRAD = operator.attrgetter("grad")
_NOT_HYPERS = ("params", "param_names")


class TorchOptimizer(GradIntake, torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step is ferroptim's one Rust pass.

    ``param_groups``, hooks and ``state_dict``'s format are torch's;
    ``state`` is read from the engine (see :class:`~ferroptim.torch.state.StateView`).
    Params must be float32, float64, float16 or bfloat16 CPU tensors,
    contiguous; grads in the param's dtype (or float32 for 16-bit params). A
    param group may carry ``"l1"`` (ferroptim's L1 penalty, default 0).

    Parameters
    ----------
    params : iterable
        Tensors, ``(name, tensor)`` pairs or param-group dicts, as for torch.
    defaults : dict
        The hyperparameters of groups that do not set them.
    precision : dict, optional
        ``state_dtype``, ``master_weights``, ``stochastic_rounding`` and ``seed``
        (see :mod:`ferroptim.torch.lowp`); not in the param groups.
    """

    _spec: Spec

    def __init__(
        self, params: Any, defaults: Mapping[str, Any], precision: Mapping[str, Any] | None = None
    ) -> None:
        self.precision = check_precision(**{**dict(_lowp.KEYWORDS), **(precision or {})})
        check_torch_flags(
            defaults.get("foreach"),
            defaults.get("fused"),
            defaults.get("capturable", False),
            defaults.get("differentiable", False),
        )
        self._base = {"l1": 0.0, **self._spec.engine_defaults, **self._spec.fixed}
        self._spec.engine.validate_group(self._hypers(defaults))
        self._engine = self._new_engine()
        self._entries: list[Entry] = []
        self._member_of: dict[Any, int] = {}  # tensor -> its entry's index
        self._singles: list[Any] = []  # tensors stepped one by one, and where
        self._single_pos: list[int] = []  # their grads go in the engine's list
        self._ptrs: list[int] = []
        self._gcache: list[Any] = []  # the grad objects the views below were made of
        self._meta: tuple[list[Any], list[int]] | None = None  # the singles' dtypes and sizes
        self._last: list[Any] = []  # the previous step's grad objects
        self._grads: list[Any] = []  # the engine's grads list (views, None, arena slices)
        self._gaddr: tuple[list[Any], list[int | None]] | None = None  # see _step_views
        self._flats: list[Any] = []
        self._pending: dict[Any, Any] = {}
        self._snap: dict[Any, dict[str, Any]] | None = None
        super().__init__(params, {**defaults, **self._spec.fixed})

    # -- hyperparameters and params ---------------------------------------

    def _new_engine(self) -> Any:
        engine = self._spec.engine()
        engine.set_precision(**self.precision)
        return engine

    def _hypers(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The engine's view of a group: plain numbers, ferroptim's extras."""
        hypers = dict(self._base)
        if self._spec.scalar_dtype_option is not None:
            hypers[self._spec.scalar_dtype_option] = str(_state.scalar_dtype())[6:]
        for key, value in group.items():
            if key not in _NOT_HYPERS:
                hypers[key] = plain(value)
        return hypers

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group (torch's checks and defaults), registered with the engine."""
        gid = len(self.param_groups)
        super().add_param_group(param_group)
        try:
            self._register(self.param_groups[gid], gid)
        except BaseException:
            del self.param_groups[gid:]
            raise

    def _register(self, group: dict[str, Any], gid: int) -> None:
        check_torch_flags(
            group.get("foreach"),
            group.get("fused"),
            group.get("capturable", False),
            group.get("differentiable", False),
        )
        self._spec.engine.validate_group(self._hypers(group))
        tensors = group["params"]
        names = group.get("param_names")
        start = sum(len(g["params"]) for g in self.param_groups[:gid])
        labels = (
            [repr(n) for n in names] if names else [str(start + j) for j in range(len(tensors))]
        )
        for p, lab in zip(tensors, labels):
            _flatten.check_tensor(p, f"param {lab}")
        entries = []
        runs: dict[int, list[tuple[int, Any, str]]] = {}
        for p, lab in zip(tensors, labels):
            own = _flatten.owner(p)
            if own is None:
                n = p.numel()
                entries.append(
                    Entry(_lowp.numpy_view(p), gid, [Member(p, 0, n, tuple(p.shape), lab)])
                )
            else:
                runs.setdefault(id(own[0]), []).append((own[1], own[0], lab))
        for items in runs.values():
            entries += _runs(gid, sorted(items, key=lambda t: t[0]))
        elabels = [
            e.members[0].label
            if len(e.members) == 1
            else f"{e.members[0].label}..{e.members[-1].label}"
            for e in entries
        ]
        self._engine.add_params([e.array for e in entries], gid, elabels)
        base = len(self._entries)
        for k, e in enumerate(entries):
            self._entries.append(e)
            for m in e.members:
                self._member_of[m.tensor] = base + k
            if e.flat is None:
                self._singles.append(e.members[0].tensor)
                self._meta = None
                self._single_pos.append(base + k)
                self._ptrs.append(e.members[0].tensor.data_ptr())
                self._gcache.append(None)
                self._grads.append(None)
            else:
                self._grads.append(e.grad)
                if all(f is not e.flat for f in self._flats):
                    self._flats.append(e.flat)
        self._snap = None

    def _rebuild(self) -> None:
        """A new engine over fresh views, the state carried over: some tensor's
        storage was replaced (``p.data = ...``, ``model.to(...)``)."""
        for p, lab in zip(
            self._singles, (self._entries[i].members[0].label for i in self._single_pos)
        ):
            _flatten.check_tensor(p, f"param {lab}")
        engine = self._new_engine()
        arrays = [
            e.array if e.flat is not None else _lowp.numpy_view(e.members[0].tensor)
            for e in self._entries
        ]
        for gid in range(len(self.param_groups)):
            idx = [i for i, e in enumerate(self._entries) if e.group == gid]
            engine.add_params(
                [arrays[i] for i in idx], gid, [self._entries[i].members[0].label for i in idx]
            )
        try:
            engine.load_state(self._engine.state())
        except ValueError as err:
            raise ParamError(
                f"a param changed shape after it was given to the optimizer ({err}): make a new "
                "optimizer for the new params"
            ) from err
        self._engine = engine
        for e, a in zip(self._entries, arrays):
            e.array = a
        self._ptrs = [p.data_ptr() for p in self._singles]
        self._gcache = [None] * len(self._singles)
        self._gaddr = None
        self._meta = None
        for pos in self._single_pos:
            self._grads[pos] = None

    # -- stepping -----------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Updates every param that has a grad, in place; returns the closure's loss.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called with grad enabled).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._flush()
        for flat in self._flats:
            flat.sync()
        if list(map(PTR, self._singles)) != self._ptrs:
            self._rebuild()
        grads = list(map(_GRAD, self._singles))
        groups = [self._hypers(g) for g in self.param_groups]
        # New grads each step (torch's default): by address; the same ones again: views.
        fresh = not all(map(operator.is_, grads, self._gcache))
        again = len(self._last) == len(grads) and all(map(operator.is_, grads, self._last))
        self._last = grads
        addresses = self._addresses(grads) if fresh and not again else None
        if addresses is not None:
            self._engine.step_addresses_unchecked(addresses, groups)
        else:
            if fresh:
                self._new_grads(grads)
            self._step_views(groups)
        self._snap = None
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch's; grads of flattened params are zeroed in place either way
        (they are views into the arena that backward writes into)."""
        for p in self._singles:
            g = p.grad
            if g is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad_(False)
                g.zero_()
        if set_to_none:
            # Drop the cached views too: they would keep the old grads' memory alive.
            self._gaddr = None
            self._gcache = [None] * len(self._singles)
            self._last = []
            for pos in self._single_pos:
                self._grads[pos] = None
        for flat in self._flats:
            flat.sync()  # first: a grad rebound since the last step is this step's to zero
        for e in self._entries:
            if e.grad is not None:
                e.grad.fill(0)

    # -- state --------------------------------------------------------------

    @property  # type: ignore[override]
    def state(self) -> StateView:
        """Param tensor -> its state, in torch's format (see StateView)."""
        return StateView(self)

    @state.setter
    def state(self, value: Mapping[Any, Any]) -> None:
        # torch's __init__ sets an empty defaultdict; anything else is loaded.
        for p, v in dict(value).items():
            self._stage(p, v)

    def _snapshot(self) -> dict[Any, dict[str, Any]]:
        self._flush()
        if self._snap is None:
            self._snap = _state.export(self)
        return self._snap

    def _stage(self, p: Any, value: Any) -> None:
        if p not in self._member_of:
            raise ParamError("state for a tensor that is not a param of this optimizer")
        if not isinstance(value, Mapping):
            raise StateDictError(f"a param's state must be a dict, got {type(value).__name__}")
        self._pending[p] = dict(value)
        self._snap = None

    def _flush(self) -> None:
        if not self._pending:
            return
        current = _state.export(self)
        current.update(self._pending)
        self._pending = {}
        self._snap = None
        self._load({p: v for p, v in current.items() if v})

    def _load(self, states: Mapping[Any, Any]) -> None:
        try:
            self._engine.load_state(_state.to_engine(self, states))
        except StateDictError:
            raise
        except (ValueError, TypeError) as err:
            raise StateDictError(str(err)) from err

    def state_dict(self) -> dict[str, Any]:
        """torch's format: ``{"state": {index: {...}}, "param_groups": [...]}``,
        ``step`` a 0-d float tensor; loads into the torch.optim class of the same name."""
        self._snap = None
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state_dict of this class or of the torch.optim class of the
        same name; all or nothing."""
        self._flush()
        old_groups = self.param_groups
        super().load_state_dict(state_dict)
        loaded = self.__dict__.pop("state", None) or {}
        try:
            loaded = _state.as_saved(self, state_dict, loaded)
            for gid, group in enumerate(self.param_groups):
                try:
                    self._spec.engine.validate_group(self._hypers(group))
                except ValueError as err:
                    raise StateDictError(f"param group {gid}: {err}") from err
            self._load(loaded)
        except BaseException:
            self.param_groups = old_groups
            raise
        finally:
            self._snap = None


def _runs(gid: int, items: list[tuple[int, Any, str]]) -> list[Entry]:
    """Entries for the flattened params of one group: runs of neighbours in the arena."""
    entries: list[Entry] = []
    for index, flat, lab in items:
        name = flat.names[index]
        lo, hi = flat.arena.offsets[name]
        shape = flat.arena.shapes[name]
        e = entries[-1] if entries else None
        if e is not None and e.offset + e.members[-1].hi == lo:
            e.members.append(Member(flat.tensors[index], lo - e.offset, hi - e.offset, shape, lab))
            e.array = flat.arena.data[e.offset : hi]
            e.grad = flat.arena.grad[e.offset : hi]
        else:
            m = Member(flat.tensors[index], 0, hi - lo, shape, lab)
            arrays = flat.arena.data[lo:hi], flat.arena.grad[lo:hi]
            entries.append(Entry(arrays[0], gid, [m], flat, arrays[1], lo))
    return entries


def _make(spec: Spec) -> type[TorchOptimizer]:
    P = inspect.Parameter
    sig = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD)]
        + [P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in spec.positional]
        + [P(n, P.KEYWORD_ONLY, default=d) for n, d in (*spec.keyword, *_lowp.KEYWORDS)]
    )

    def __init__(self: TorchOptimizer, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        params = values.pop("params")
        precision = {k: values.pop(k) for k, _ in _lowp.KEYWORDS}
        TorchOptimizer.__init__(self, params, values, precision)

    __init__.__signature__ = sig  # type: ignore[attr-defined]
    lines = [
        spec.summary,
        "",
        f"Same signature, defaults, state names and state_dict format as "
        f"torch.optim.{spec.name}; the step is ferroptim's Rust engine (see TorchOptimizer). "
        "The last four options are ferroptim's low-precision ones (not in the param groups).",
        "",
        "Parameters",
        "----------",
        "params : iterable",
        "    Tensors, (name, tensor) pairs or param-group dicts.",
    ]
    for name, default in spec.positional + spec.keyword:
        doc = spec.docs.get(name, DOCS[name])
        lines += [f"{name} : {numpydoc_type(default)}, default {default!r}", f"    {doc}"]
    lines += [
        "state_dtype : str or None, default None",
        f"    {_lowp.DOCS['state_dtype']}",
        "master_weights : bool, default True",
        f"    {_lowp.DOCS['master_weights']}",
        "stochastic_rounding : bool, default False",
        f"    {_lowp.DOCS['stochastic_rounding']}",
        "seed : int, default 0",
        f"    {_lowp.DOCS['seed']}",
    ]
    cls = type(
        spec.name,
        (TorchOptimizer,),
        {
            "__init__": __init__,
            "_spec": spec,
            "__doc__": "\n".join(lines),
            "__module__": __name__,
            "__qualname__": spec.name,
        },
    )
    __init__.__qualname__ = f"{spec.name}.__init__"
    return cls


_CLASSES = {spec.name: _make(spec) for spec in SPECS}
SGD = _CLASSES["SGD"]
Adam = _CLASSES["Adam"]
AdamW = _CLASSES["AdamW"]
Adamax = _CLASSES["Adamax"]
NAdam = _CLASSES["NAdam"]
RAdam = _CLASSES["RAdam"]
RMSprop = _CLASSES["RMSprop"]
Adagrad = _CLASSES["Adagrad"]
Adadelta = _CLASSES["Adadelta"]
Lion = _CLASSES["Lion"]
Rprop = _CLASSES["Rprop"]
ASGD = _CLASSES["ASGD"]

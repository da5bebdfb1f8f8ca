"""An optax-style functional form of every optimizer, for params kept immutable.

For code that never updates arrays in place (JAX habits, functional training
loops, several candidate updates from one state), each optimizer has a
factory here giving a :class:`FunctionalOptimizer` with two pure functions::

    >>> import numpy as np
    >>> from ferroptim import functional as F
    >>> tx = F.adamw(lr=1e-3, weight_decay=0.01)
    >>> params = {"w": np.zeros(3, np.float32), "b": np.zeros(1, np.float32)}
    >>> state = tx.init(params)
    >>> grads = {"w": np.ones(3, np.float32), "b": np.ones(1, np.float32)}
    >>> new_params, new_state = tx.update(grads, state, params)
    >>> new_params["w"], params["w"]   # the input is untouched
    (array([-0.001, -0.001, -0.001], dtype=float32), array([0., 0., 0.], dtype=float32))

``update`` returns new params, where optax returns updates to add: the
update rules here (decoupled weight decay, amsgrad, NAdam's schedule, ...)
are not all of the form ``p + u`` in floating point, and returning the
params keeps the results bitwise equal to the in-place optimizers.

How it works: ``update`` copies the params, builds the optimizer class on the
copies, loads the state, takes one step with the same Rust kernels, and
returns the stepped copies and the new state. N functional updates therefore
equal N in-place steps bitwise (tested for every optimizer). The cost over an
in-place step is one copy of the params and of the state, and building the
optimizer: use the classes directly where speed matters.

Params and grads ("pytrees") are a list or tuple of NumPy arrays, or a dict
``name -> array``; the grads have the params' structure (a ``None`` grad
skips that param, as in ``step``). The new params have the structure of the
params given. Nothing given to ``init`` or ``update`` is modified.

The state (:class:`OptState`) is a NamedTuple holding the optimizer's
``state_dict()``: plain dicts and lists whose arrays are read-only copies,
so a state can be kept, reused, compared or saved (``ferroptim.save``), and
an ``update`` never changes one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ferroptim.exceptions import GradError, HyperparameterError, ParamError
from ferroptim.optimizer import Optimizer

# Besides these, one factory per optimizer of ferroptim.registry, named as
# there (``adamw``, ...), made on first use by the module's __getattr__ below:
# a new optimizer class exported from ferroptim needs no edit here.
_NAMED = ["FunctionalOptimizer", "OptState", "from_optimizer"]

Params = list[np.ndarray] | tuple[np.ndarray, ...] | dict[str, np.ndarray]


class OptState(NamedTuple):
    """The state of a functional optimizer: the optimizer's ``state_dict()``, frozen.

    Parameters
    ----------
    state_dict : dict
        ``{"state": ..., "param_groups": ...}`` as ``Optimizer.state_dict()``
        gives it; its arrays are read-only copies.
    """

    state_dict: dict[str, Any]


def _frozen(value: Any) -> Any:
    """A deep copy whose arrays are read-only (so no one can change a state in place)."""
    if isinstance(value, np.ndarray):
        out = value.copy()
        out.flags.writeable = False
        return out
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_frozen(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _leaves(name: str, tree: Any, error: type[Exception]) -> tuple[list[Any] | None, list[Any]]:
    """``(names or None, arrays)`` of a list/tuple/dict pytree."""
    if isinstance(tree, Mapping):
        for k in tree:
            if not isinstance(k, str):
                raise error(f"{name}: dict keys must be strings (param names), got {k!r}")
        return list(tree), list(tree.values())
    if isinstance(tree, (list, tuple)):
        return None, list(tree)
    raise error(
        f"{name} must be a list or tuple of arrays, or a dict name -> array; "
        f"got {type(tree).__name__}"
    )


def _copies(names: list[str] | None, arrays: list[Any]) -> list[np.ndarray]:
    out = []
    for i, a in enumerate(arrays):
        label = repr(names[i]) if names is not None else f"[{i}]"
        if not isinstance(a, np.ndarray):
            raise ParamError(f"params{label} must be a NumPy array, got {type(a).__name__}")
        out.append(np.array(a, copy=True, order="C"))
    return out


def _rebuild(template: Any, names: list[str] | None, arrays: list[np.ndarray]) -> Any:
    if names is not None:
        return dict(zip(names, arrays, strict=True))
    return tuple(arrays) if isinstance(template, tuple) else list(arrays)


class FunctionalOptimizer:
    """``init(params) -> state`` and ``update(grads, state, params) -> (new_params, new_state)``.

    Made by :func:`from_optimizer` or a factory (:func:`adamw`, :func:`sgd`, ...).

    Parameters
    ----------
    optimizer_class : type
        A ferroptim optimizer class, e.g. ``ferroptim.AdamW``.
    hypers : dict
        Its keyword arguments (hyperparameters and step options).
    """

    def __init__(self, optimizer_class: type[Optimizer], hypers: Mapping[str, Any]) -> None:
        self.optimizer_class = optimizer_class
        self.hypers = dict(hypers)

    def _build(self, params: Any) -> tuple[Optimizer, list[str] | None, list[np.ndarray]]:
        names, arrays = _leaves("params", params, ParamError)
        if not arrays:
            raise ParamError("params is empty")
        copies = _copies(names, arrays)
        opt = self.optimizer_class(_rebuild(params, names, copies), **self.hypers)
        return opt, names, copies

    def init(self, params: Params) -> OptState:
        """The state before the first update (``params`` is only read).

        Parameters
        ----------
        params : list, tuple or dict of numpy.ndarray
            The params the state is for.
        """
        opt, _, _ = self._build(params)
        return OptState(_frozen(opt.state_dict()))

    def update(self, grads: Any, state: OptState, params: Params) -> tuple[Params, OptState]:
        """One step: new params and a new state; ``grads``, ``state`` and ``params`` stay as given.

        Parameters
        ----------
        grads : list, tuple or dict of numpy.ndarray
            One grad per param, in the params' structure (``None`` skips a param).
        state : OptState
            The state from :meth:`init` or the previous :meth:`update`.
        params : list, tuple or dict of numpy.ndarray
            The current params.
        """
        if not isinstance(state, OptState):
            raise HyperparameterError(
                f"state must be the OptState from init() or update(), got {type(state).__name__}"
            )
        opt, names, copies = self._build(params)
        grad_names, grad_list = _leaves("grads", grads, GradError)
        if grad_names != names and (grad_names is None or names is None):
            raise GradError("grads must have the params' structure (both lists or both dicts)")
        if names is not None:
            assert grad_names is not None
            if set(grad_names) != set(names):
                missing = sorted(set(names) - set(grad_names))
                extra = sorted(set(grad_names) - set(names))
                raise GradError(f"grads: names differ (missing {missing}, unexpected {extra})")
            step_grads: Any = dict(zip(grad_names, grad_list, strict=True))
        else:
            if len(grad_list) != len(copies):
                raise GradError(f"got {len(grad_list)} grads for {len(copies)} params")
            step_grads = grad_list
        opt.load_state_dict(state.state_dict)
        opt.step(step_grads)
        return _rebuild(params, names, copies), OptState(_frozen(opt.state_dict()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hypers.items())
        return f"functional.{self.optimizer_class.__name__}({args})"


def from_optimizer(optimizer_class: type[Optimizer], **hypers: Any) -> FunctionalOptimizer:
    """The functional form of any ferroptim optimizer class.

    The hyperparameters are checked now, on a one-element param.

    Parameters
    ----------
    optimizer_class : type
        A subclass of ``ferroptim.Optimizer``, e.g. ``ferroptim.AdamW``.
    **hypers
        Its keyword arguments: hyperparameters and step options.
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise HyperparameterError(
            f"optimizer_class must be a ferroptim optimizer class, got {optimizer_class!r}"
        )
    try:
        optimizer_class([np.zeros(1)], **hypers)  # checks the hyperparameters
    except TypeError as err:  # an unknown keyword: name the class, not Optimizer.__init__
        raise HyperparameterError(f"{optimizer_class.__name__}: {err}") from err
    return FunctionalOptimizer(optimizer_class, hypers)


def _factory(name: str, cls: type[Optimizer]) -> Callable[..., FunctionalOptimizer]:
    """``name(**hypers)``: the functional form of ``cls``, with ``cls``'s signature."""

    def make(*args: Any, **hypers: Any) -> FunctionalOptimizer:
        try:
            bound = signature.bind(*args, **hypers)
        except TypeError as err:
            raise HyperparameterError(f"{name}(): {err}") from err
        named = dict(bound.arguments)
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:  # the step options
                named.update(named.pop(param.name, {}))
        return from_optimizer(cls, **named)

    full = inspect.signature(cls.__init__)
    signature = full.replace(parameters=list(full.parameters.values())[2:])  # not self, params
    make.__name__ = make.__qualname__ = name
    make.__signature__ = signature.replace(return_annotation="FunctionalOptimizer")  # type: ignore[attr-defined]
    make.__doc__ = (
        f"The functional form of :class:`ferroptim.{cls.__name__}`: "
        f"``init`` and ``update`` over NumPy pytrees.\n\n"
        f"Takes {cls.__name__}'s arguments, less ``params``: "
        f"see ``help(ferroptim.{cls.__name__})``."
    )
    return make


# name -> (class, its factory): each factory is made once, so F.adam is F.adam.
_made: dict[str, tuple[type[Optimizer], Callable[..., FunctionalOptimizer]]] = {}


def _factories() -> dict[str, Callable[..., FunctionalOptimizer]]:
    # Imported here: ferroptim imports this module before its optimizer classes.
    from ferroptim import registry

    out = {}
    for name, info in registry.optimizers().items():
        if name not in _made or _made[name][0] is not info.cls:
            _made[name] = (info.cls, _factory(name, info.cls))
        out[name] = _made[name][1]
    return out


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted([*_NAMED, *_factories()])
    factory = _factories().get(name) if not name.startswith("_") else None
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return factory


def __dir__() -> list[str]:
    return sorted({*globals(), *_factories()})

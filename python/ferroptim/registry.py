"""The optimizer registry: one table read by ``ferroptim train``, ``tune`` and ``bench``.

Every :class:`~ferroptim.Optimizer` subclass exported in ``ferroptim.__all__`` is
registered under its lower-case class name. Its hyperparameters, their types
and defaults are read from the class's signature (:func:`inspect.signature`),
so a new optimizer needs no entry here: export it from ``ferroptim`` and the
three tools know it. Two optional tables refine what the signature cannot say:

- :data:`TRAIN_LR`: an lr that suits the built-in models of ``ferroptim train``
  (default: the class's own default lr);
- :data:`RANGES`: the valid range of a numeric hyperparameter, by name (the
  ones a search space may sample); a hyperparameter without one can still be
  set (``ferroptim train --opt``), but not searched.

>>> from ferroptim import registry
>>> info = registry.get("adamw")
>>> info.cls.__name__, info.default_lr, info.hyperparameters["betas"].default
('AdamW', 0.003, (0.9, 0.999))
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

__all__ = [
    "RANGES",
    "TRAIN_LR",
    "Hyperparameter",
    "OptimizerInfo",
    "UnknownOptimizerError",
    "get",
    "names",
    "optimizers",
    "takers",
]

# Learning rates that suit ferroptim train's built-in models with its default
# schedule; an optimizer not listed trains with its signature's default lr.
TRAIN_LR: dict[str, float] = {
    "sgd": 0.05,
    "adam": 3e-3,
    "adamw": 3e-3,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "adadelta": 1.0,
    "adamax": 3e-3,
    "nadam": 3e-3,
    "radam": 3e-3,
    "lion": 3e-4,
}

INF = math.inf
# name -> (lowest, lowest excluded, highest, highest excluded), for every
# optimizer that has a hyperparameter of that name (for a tuple such as betas:
# each of its values).
RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "lr": (0.0, True, INF, False),
    "weight_decay": (0.0, False, INF, False),
    "momentum": (0.0, False, 1.0, True),
    "dampening": (0.0, False, 1.0, False),
    "betas": (0.0, False, 1.0, True),
    "eps": (0.0, True, INF, False),
    "alpha": (0.0, False, 1.0, True),
    "rho": (0.0, False, 1.0, True),
    "lr_decay": (0.0, False, INF, False),
    "initial_accumulator_value": (0.0, False, INF, False),
    "momentum_decay": (0.0, False, INF, False),
    "l1": (0.0, False, INF, False),
}


class UnknownOptimizerError(ValueError):
    """A name that is not in the registry (the message lists the known ones)."""


@dataclass(frozen=True)
class Hyperparameter:
    """One keyword argument of an optimizer class.

    Parameters
    ----------
    name : str
        The keyword, e.g. ``"weight_decay"``.
    type : type
        ``float``, ``int``, ``bool``, ``str`` or ``tuple`` (of floats, e.g. betas).
    default : Any
        The class's default.
    bounds : tuple or None
        ``(low, low_excluded, high, high_excluded)`` from :data:`RANGES`, or None.
    """

    name: str
    type: type
    default: Any
    bounds: tuple[float, bool, float, bool] | None = None

    @property
    def searchable(self) -> bool:
        """A number (or tuple of numbers) with a known range: a search space may sample it."""
        return self.bounds is not None and self.type in (float, int, tuple)


@dataclass(frozen=True)
class OptimizerInfo:
    """What the tools need to know about one optimizer.

    Parameters
    ----------
    name : str
        The registry name (the class name in lower case), e.g. ``"adamw"``.
    cls : type
        The :class:`~ferroptim.Optimizer` subclass.
    default_lr : float
        The lr ``ferroptim train`` uses when none is given.
    hyperparameters : Mapping
        ``name -> Hyperparameter`` of the class's own keywords, in signature order
        (the options every optimizer shares, such as ``max_grad_norm``, are left out).
    """

    name: str
    cls: type
    default_lr: float
    hyperparameters: Mapping[str, Hyperparameter] = field(default_factory=dict)

    def takes(self, name: str) -> bool:
        """True when the class has the hyperparameter ``name``."""
        return name in self.hyperparameters


def _kind(default: Any, annotation: Any) -> type:
    if default is not inspect.Parameter.empty and default is not None:
        return bool if isinstance(default, bool) else type(default)
    text = str(annotation)  # annotations are strings (from __future__ import annotations)
    for word, kind in (("bool", bool), ("float", float), ("int", int), ("str", str)):
        if word in text:
            return kind
    return object


def _info(name: str, cls: type, shared: set[str]) -> OptimizerInfo:
    hypers: dict[str, Hyperparameter] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in shared or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hypers[p.name] = Hyperparameter(
            p.name, _kind(p.default, p.annotation), p.default, RANGES.get(p.name)
        )
    lr = TRAIN_LR.get(name, hypers["lr"].default if "lr" in hypers else None)
    if not isinstance(lr, (int, float)):
        raise TypeError(f"{cls.__name__}: no default lr; add one to ferroptim.registry.TRAIN_LR")
    return OptimizerInfo(name, cls, float(lr), hypers)


@cache
def _table() -> dict[str, OptimizerInfo]:
    import ferroptim as fo

    # The keywords of Optimizer itself (params, defaults, clipping, averaging,
    # accumulation, torch's flags) are options, not a class's hyperparameters.
    shared = set(inspect.signature(fo.Optimizer.__init__).parameters)
    table = {}
    for export in fo.__all__:
        cls = getattr(fo, export)
        if isinstance(cls, type) and issubclass(cls, fo.Optimizer) and cls is not fo.Optimizer:
            table[cls.__name__.lower()] = _info(cls.__name__.lower(), cls, shared)
    return table


def optimizers() -> dict[str, OptimizerInfo]:
    """Every registered optimizer: ``name -> OptimizerInfo``, in ``ferroptim.__all__`` order."""
    return dict(_table())


def names() -> tuple[str, ...]:
    """The registered names, e.g. ``("sgd", "adadelta", ...)``."""
    return tuple(_table())


def get(name: str) -> OptimizerInfo:
    """The optimizer registered as ``name`` (case-insensitive).

    Parameters
    ----------
    name : str
        A registry name such as ``"adamw"``.

    Returns
    -------
    OptimizerInfo
        Raises :class:`UnknownOptimizerError` naming the known optimizers.
    """
    table = _table()
    key = name.lower() if isinstance(name, str) else name
    if key not in table:
        raise UnknownOptimizerError(f"optimizer: unknown {name!r}; choose from {', '.join(table)}")
    return table[key]


def takers(hyperparameter: str) -> tuple[str, ...]:
    """The names of the optimizers that have ``hyperparameter``."""
    return tuple(n for n, info in _table().items() if info.takes(hyperparameter))

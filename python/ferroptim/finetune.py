"""Fine-tuning helpers that build param groups.

Freezing lives on the optimizer (:meth:`Optimizer.freeze`); these helpers
decide which params go in which group, by name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from ferroptim.arena import ParamArena
from ferroptim.exceptions import HyperparameterError, ParamError

__all__ = ["DEFAULT_NO_DECAY", "exclude_from_weight_decay", "layerwise_lr_groups"]

#: Names that conventionally take no weight decay: biases and norm scales.
DEFAULT_NO_DECAY = ("*bias", "*.b", "b", "*norm*", "*ln*", "*bn*", "*.gamma", "*.beta")


def _names(params: Mapping[str, Any] | ParamArena) -> list[str]:
    return list(params.names) if isinstance(params, ParamArena) else list(params)


def _subset(params: Mapping[str, Any] | ParamArena, names: list[str]) -> Any:
    if isinstance(params, ParamArena):
        return params.select(names)
    return {n: params[n] for n in names}


def exclude_from_weight_decay(
    params: Mapping[str, Any] | ParamArena,
    patterns: Sequence[str] = DEFAULT_NO_DECAY,
    **group_options: Any,
) -> list[dict[str, Any]]:
    """Two param groups: names matching no pattern keep the optimizer's weight
    decay; names matching any fnmatch pattern get ``weight_decay=0``.

    >>> groups = exclude_from_weight_decay({"fc.w": w, "fc.bias": b})
    >>> opt = AdamW(groups, lr=1e-3, weight_decay=0.05)
    """
    names = _names(params)
    if not names:
        raise ParamError("params: no params given")
    no_decay = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    decay = [n for n in names if n not in set(no_decay)]
    groups = []
    if decay:
        groups.append({"params": _subset(params, decay), **group_options})
    if no_decay:
        groups.append({"params": _subset(params, no_decay), "weight_decay": 0.0, **group_options})
    return groups


def layerwise_lr_groups(
    layers: Sequence[Any],
    lr: float,
    decay: float,
    **group_options: Any,
) -> list[dict[str, Any]]:
    r"""One group per layer, from the input side to the output side; the last
    layer gets ``lr`` and each layer below it ``decay`` times the one above:

    .. math:: \mathrm{lr}_i = \mathrm{lr}\cdot\mathrm{decay}^{L-1-i}

    ``layers`` is an ordered list whose items are what a group's ``"params"``
    takes (a dict of named arrays, a list of arrays, ``arena.select(...)``).
    """
    if not layers:
        raise ParamError("layers: no layers given")
    if not (lr >= 0 and lr < float("inf")):
        raise HyperparameterError(f"lr: must be a finite number >= 0, got {lr}")
    if not 0 < decay <= 1:
        raise HyperparameterError(f"decay: must be in (0, 1], got {decay}")
    n = len(layers)
    return [
        {"params": layer, "lr": lr * decay ** (n - 1 - i), **group_options}
        for i, layer in enumerate(layers)
    ]

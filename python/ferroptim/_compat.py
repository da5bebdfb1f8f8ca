"""What torch code passes that means nothing (or something impossible) here.

torch's optimizers take implementation flags (``foreach``, ``fused``,
``capturable``, ``differentiable``) and accept a 0-d ``Tensor`` as ``lr``.
ferroptim always runs one fused pass over NumPy/CuPy arrays, so the first two
flags are no-ops, the last two can only be False, and 0-d hyperparameters
become plain Python numbers (so ``state_dict`` hands back floats, never a
tensor that would tie a checkpoint to torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferroptim.exceptions import HyperparameterError

__all__ = ["check_torch_flags", "plain", "plain_hypers"]

_WHY_NOT = {
    "capturable": "CUDA-graph capture of torch tensors does not apply: ferroptim updates "
    "NumPy/CuPy arrays in place",
    "differentiable": "there is no autograd through a ferroptim step",
}


def check_torch_flags(
    foreach: bool | None, fused: bool | None, capturable: bool, differentiable: bool
) -> None:
    """Accepts torch's no-op flags; refuses the ones ferroptim cannot honour."""
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool):
            raise HyperparameterError(f"{name}: must be None, True or False, got {value!r}")
    for name, value in (("capturable", capturable), ("differentiable", differentiable)):
        if value is True:
            raise HyperparameterError(f"{name}=True is not supported: {_WHY_NOT[name]}")
        if value is not False:
            raise HyperparameterError(f"{name}: must be False, got {value!r}")


def plain(value: Any) -> Any:
    """``value`` with 0-d arrays, NumPy scalars and 0-d tensors as Python numbers.

    Never imports torch: anything 0-d with ``.item()`` qualifies. Other values
    come back as they are, for the engine's check to name.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (tuple, list):
        return type(value)(plain(v) for v in value)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        try:
            return value.item()
        except Exception:  # a broken .item(): leave it to the engine's check
            return value
    return value


def plain_hypers(group: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``group`` with every hyperparameter made plain (see :func:`plain`)."""
    return {k: (v if k in skip else plain(v)) for k, v in group.items()}

"""The errors ferroptim raises. Each subclasses ValueError or TypeError."""

from ferroptim._core import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)

__all__ = [
    "DtypeError",
    "GradError",
    "HyperparameterError",
    "ParamError",
    "StateDictError",
]

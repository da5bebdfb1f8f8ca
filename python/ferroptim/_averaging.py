"""Averaged weights (EMA/SWA) swapped into the params, and freezing: the
parts of :class:`~ferroptim.optimizer.Optimizer` that act on whole params
without stepping them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ferroptim._params import select
from ferroptim.exceptions import ParamError

__all__ = ["AveragingAndFreezing"]


class AveragingAndFreezing:
    """Mixed into :class:`~ferroptim.optimizer.Optimizer` (which sets the
    attributes used here)."""

    _averaging: bool
    _swapped: bool
    _engine: Any
    _lock: Any
    _members: list[Any]

    @contextlib.contextmanager
    def averaged_params(self) -> Iterator[None]:
        """Swaps the averaged weights into the params, and back on exit.

        ``step`` and ``load_state_dict`` are refused inside: they would mix the
        averaged weights into training.

        >>> with opt.averaged_params():
        ...     evaluate(model)
        """
        if not self._averaging:
            raise ParamError(
                "no averaged weights: construct with ema_decay=... or ema_equal_weights"
            )
        with self._lock:
            self._check_not_swapped("averaged_params()")
            self._engine.swap_averages()
            self._swapped = True
            try:
                yield
            finally:
                self._swapped = False
                self._engine.swap_averages()

    def _check_not_swapped(self, what: str) -> None:
        if self._swapped:
            raise ParamError(
                f"{what} inside `with opt.averaged_params():` would mix the averaged "
                "weights into training: leave the block first"
            )

    # -- freezing ---------------------------------------------------------

    def freeze(self, *params: Any, group: int | None = None) -> None:
        """Freezes params (names, fnmatch patterns, or indices) or a whole group:
        they take no step and get no state until :meth:`unfreeze`."""
        self._engine.set_frozen(select(self, params, group), True)

    def unfreeze(self, *params: Any, group: int | None = None) -> None:
        """Undoes :meth:`freeze`."""
        self._engine.set_frozen(select(self, params, group), False)

    @property
    def frozen(self) -> list[Any]:
        """Keys (names or indices) of the frozen params."""
        return [
            m.key
            for flag, members in zip(self._engine.frozen(), self._members)
            if flag
            for m in members
        ]

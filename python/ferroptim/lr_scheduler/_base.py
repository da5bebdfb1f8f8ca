"""LRScheduler, the base of the torch-named schedulers, and the momentum cycling."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ferroptim.exceptions import HyperparameterError
from ferroptim.schedules import (
    Schedule,
    Scheduler,
)
from ferroptim.schedules._checks import _int, _param_groups, _step
from ferroptim.schedules._cycles import MomentumPart


class LRScheduler(Scheduler):
    """Base of the torch-named schedulers: a Scheduler on ``"lr"`` with torch's ``last_epoch``.

    A subclass checks its arguments, then calls :meth:`_start` with a
    function ``make(i, base_lr) -> Schedule`` that gives group ``i``'s schedule.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose ``param_groups[i]["lr"]`` this scheduler sets.
    last_epoch : int
        -1 (the default) starts at step 0; ``k >= 0`` resumes at step ``k + 1``
        and needs ``initial_lr`` in every group, as in torch.
    """

    _make_one: Callable[[int, float], Schedule]
    _max_t: int | None = None

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        raise TypeError("LRScheduler is a base class: use StepLR, CosineAnnealingLR, ...")

    def _start(
        self,
        optimizer: Any,
        last_epoch: Any,
        make_one: Callable[[int, float], Schedule],
        *,
        initial: Sequence[float] | None = None,
    ) -> None:
        last_epoch = _int("last_epoch", last_epoch, -1)
        self._make_one = make_one
        self._setup(
            optimizer,
            "lr",
            last_epoch + 1,
            self._rebuild,
            resume=last_epoch != -1,
            initial=initial,
        )

    def _rebuild(self, bases: list[float]) -> list[Schedule]:
        return [self._make_one(i, b) for i, b in enumerate(bases)]

    def _values(self, t: Any, schedules: list[Schedule], bases: list[float]) -> list[float]:
        if self._max_t is not None and t > self._max_t:
            raise HyperparameterError(
                f"{type(self).__name__}: tried to step {t} times, but total_steps is {self._max_t}"
            )
        return super()._values(t, schedules, bases)

    @property
    def base_lrs(self) -> list[float]:
        """Each group's initial lr (torch's attribute)."""
        return list(self.base_values)

    def get_lr(self) -> list[float]:
        """The lrs of the current step, computed afresh (prefer :meth:`get_last_lr`)."""
        return self.values_at(self.last_epoch)

    def step(self, epoch: int | None = None) -> None:
        """Advances one step (or, deprecated as in torch, jumps to step ``epoch``).

        Parameters
        ----------
        epoch : int, optional
            Jump to this step instead; an integer only.
        """
        if epoch is None:
            super().step()
            return
        warnings.warn(
            "passing epoch to step() is deprecated (as in torch): call step() with no argument",
            UserWarning,
            stacklevel=2,
        )
        t = _step(epoch)
        values = self._values(t, self.schedules, self.base_values)
        self._commit(t, values, self._extra(t))


class _MomentumCycle(LRScheduler):
    """An lr scheduler that also cycles ``momentum`` or ``betas[0]``, as torch's cyclic ones."""

    _momentum: list[Schedule] | None = None
    _momentum_key = "momentum"
    _momentum_keys: list[dict[str, float]]

    def _momentum_setup(self, optimizer: Any, cycle: Any, make: MomentumPart) -> None:
        """Checks and builds the momentum cycles (before anything is written)."""
        self._momentum = None
        self._momentum_keys = []
        if isinstance(cycle, bool) and not cycle:
            return
        if not isinstance(cycle, bool):
            raise HyperparameterError(f"cycle_momentum must be True or False, got {cycle!r}")
        groups = _param_groups(optimizer)
        defaults = getattr(optimizer, "defaults", groups[0])
        if "momentum" not in defaults and "betas" not in defaults:
            raise HyperparameterError(
                "cycle_momentum: the optimizer has neither 'momentum' nor 'betas'; "
                "pass cycle_momentum=False"
            )
        self._momentum_key = "betas" if "betas" in defaults else "momentum"
        parts = [make(i) for i in range(len(groups))]
        self._momentum = [p[0] for p in parts]
        self._momentum_keys = [p[1] for p in parts]

    def _write_momentum_keys(self) -> None:
        """torch's ``max_momentum``/``base_momentum`` group entries, when cycling."""
        if self._momentum is None:
            return
        for group, k in zip(_param_groups(self.optimizer), self._momentum_keys, strict=True):
            group.update(k)

    def _extra(self, t: int) -> Any:
        if self._momentum is None:
            return None
        groups = _param_groups(self.optimizer)
        validate = getattr(getattr(self.optimizer, "_engine_class", None), "validate_group", None)
        out = []
        for i, (group, sched) in enumerate(zip(groups, self._momentum, strict=True)):
            m = sched(t)
            value: Any = (m, *group["betas"][1:]) if self._momentum_key == "betas" else m
            if validate is not None:
                try:
                    validate({**group, self._momentum_key: value})
                except ValueError as err:
                    raise HyperparameterError(
                        f"the momentum cycle of param group {i} gave {m} at step {t}, which "
                        f"the optimizer refuses ({err})"
                    ) from err
            out.append(value)
        return out

    def _commit(self, t: int, values: list[float], extra: Any) -> None:
        super()._commit(t, values, extra)
        if extra is not None:
            for group, value in zip(_param_groups(self.optimizer), extra, strict=True):
                group[self._momentum_key] = value

"""The stateful wrappers: Scheduler (any schedule, any key) and ReduceLROnPlateau."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from ferroptim.exceptions import HyperparameterError, StateDictError
from ferroptim.schedules._checks import (
    _choice,
    _int,
    _is_number,
    _param_groups,
    _real,
    _step,
)
from ferroptim.schedules._pure import Schedule, ScheduleLike, _as_schedule


class Scheduler:
    """Writes ``schedule(t)`` into ``group[key]`` of every param group, step after step.

    Group ``i`` gets

    * ``initial_i * schedule_i(t)`` for a relative schedule, where
      ``initial_i = group["initial_<key>"]``, set to the group's current value
      on construction unless the group already has it (as torch does with
      ``initial_lr``);
    * ``schedule_i(t)`` for an absolute one.

    Counter semantics are torch's: construction applies step 0
    (``last_epoch == t == 0``), and each :meth:`step` (call it after
    ``optimizer.step``) advances by one and applies the new value, which
    takes effect at the next ``optimizer.step``.

    A value that is not finite, or that the optimizer would refuse (a
    negative lr, say), raises HyperparameterError; a failed construction,
    :meth:`step` or :meth:`load_state_dict` changes nothing, neither the
    counter nor the param groups.

    Parameters
    ----------
    optimizer : Optimizer
        Anything with ``param_groups`` (a list of dicts), e.g. a ferroptim optimizer.
    schedule : Schedule, callable, or list of them
        One schedule for every group, or a list with one per group.
    key : str
        The group entry to write: ``"lr"``, ``"momentum"``, ``"weight_decay"``, ...
    """

    def __init__(
        self,
        optimizer: Any,
        schedule: ScheduleLike | Sequence[ScheduleLike],
        key: str = "lr",
    ) -> None:
        n = len(_param_groups(optimizer))
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != n:
                raise HyperparameterError(
                    f"schedule is a list of {len(schedule)} schedules, but the optimizer has "
                    f"{n} param groups"
                )
            schedules = [_as_schedule(s, f"schedule[{i}]") for i, s in enumerate(schedule)]
        else:
            schedules = [_as_schedule(schedule, "schedule")] * n
        self._setup(optimizer, key, 0, lambda bases: schedules)

    def _setup(
        self,
        optimizer: Any,
        key: str,
        t: int,
        make: Callable[[list[float]], list[Schedule]],
        *,
        resume: bool = False,
        initial: Sequence[float] | None = None,
    ) -> None:
        """Checks everything, then records ``initial_<key>`` and applies step ``t``.

        ``make(bases)`` gives one schedule per group from the groups' initial
        values. ``resume`` requires ``initial_<key>`` in every group (torch's
        rule for ``last_epoch != -1``). ``initial`` replaces the groups' current
        values as the initial values of groups that have none.
        """
        groups = _param_groups(optimizer)
        if not isinstance(key, str) or not key:
            raise HyperparameterError(f"key must be a non-empty string, got {key!r}")
        initial_key = f"initial_{key}"
        for i, group in enumerate(groups):
            if key not in group:
                known = sorted(k for k in group if k not in ("params", "param_names"))
                raise HyperparameterError(f"key {key!r} is not in param group {i} (it has {known})")
            if not _is_number(group[key]):
                raise HyperparameterError(
                    f"key {key!r} of param group {i} holds {group[key]!r}, not a number"
                )
            if initial_key in group and not _is_number(group[initial_key]):
                raise HyperparameterError(
                    f"param group {i} has {initial_key}={group[initial_key]!r}, not a number"
                )
            if resume and initial_key not in group:
                raise HyperparameterError(
                    f"last_epoch: resuming needs {initial_key!r} in every param group, "
                    f"param group {i} has none"
                )
        current = [g[key] for g in groups] if initial is None else list(initial)
        bases = [float(g.get(initial_key, c)) for g, c in zip(groups, current, strict=True)]
        schedules = make(bases)
        self.optimizer = optimizer
        self.key = key
        self.initial_key = initial_key
        values = self._values(t, schedules, bases)
        extra = self._extra(t)
        # Nothing has failed: now write.
        for group, base in zip(groups, bases, strict=True):
            group.setdefault(initial_key, base)
        self.schedules = schedules
        self.base_values = bases
        self._commit(t, values, extra)

    def _extra(self, t: int) -> Any:
        """What a subclass writes besides ``key`` at step ``t`` (checked, not written yet)."""
        return None

    def _commit(self, t: int, values: list[float], extra: Any) -> None:
        """Writes step ``t``: cannot fail, everything was checked."""
        self.last_epoch = t
        self._write(values)

    def _rebuild(self, bases: list[float]) -> list[Schedule]:
        """The schedules for new initial values (a subclass may build them from the bases)."""
        return self.schedules

    @property
    def t(self) -> int:
        """The current step: 0 after construction, +1 per :meth:`step`."""
        return self.last_epoch

    def _values(self, t: Any, schedules: list[Schedule], bases: list[float]) -> list[float]:
        """Each group's value at step ``t``, checked as the optimizer checks it; writes nothing."""
        t = _step(t)
        groups = _param_groups(self.optimizer)
        if len(groups) != len(schedules):
            raise HyperparameterError(
                f"the optimizer has {len(groups)} param groups, but this scheduler was built "
                f"for {len(schedules)}"
            )
        engine = getattr(self.optimizer, "_engine_class", None)
        validate = getattr(engine, "validate_group", None)
        values = []
        for i, (sched, base, group) in enumerate(zip(schedules, bases, groups, strict=True)):
            v = sched(t) * base if sched.relative else sched(t)
            if not math.isfinite(v):
                raise HyperparameterError(f"the schedule of param group {i} gave {v} at step {t}")
            if validate is not None:
                try:
                    validate({**group, self.key: v})
                except ValueError as err:
                    raise HyperparameterError(
                        f"the schedule of param group {i} gave {self.key}={v} at step {t}, "
                        f"which the optimizer refuses ({err})"
                    ) from err
            values.append(v)
        return values

    def values_at(self, t: int) -> list[float]:
        """The value each group gets at step ``t`` (pure: writes nothing)."""
        return self._values(t, self.schedules, self.base_values)

    def step(self) -> None:
        """Advances ``t`` by one and writes the new values; a failed step changes nothing."""
        t = self.last_epoch + 1
        values = self._values(t, self.schedules, self.base_values)
        self._commit(t, values, self._extra(t))

    def _write(self, values: list[float]) -> None:
        for group, v in zip(_param_groups(self.optimizer), values, strict=True):
            group[self.key] = v
        self._last_values = values

    def get_last_value(self) -> list[float]:
        """The values last written, one per param group."""
        return list(self._last_values)

    def get_last_lr(self) -> list[float]:
        """Alias of :meth:`get_last_value` (torch's name)."""
        return self.get_last_value()

    def state_dict(self) -> dict[str, Any]:
        """``{"key", "last_epoch", "base_values"}``: the counter and each group's initial value.

        The schedules themselves are pure functions and are not saved: build the
        scheduler with the same schedules, then load.
        """
        return {
            "key": self.key,
            "last_epoch": self.last_epoch,
            "base_values": list(self.base_values),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the counter and initial values, and writes the values for that step.

        All or nothing: a state_dict that does not fit, or a step whose values
        the optimizer would refuse, changes nothing.
        """
        if not isinstance(state_dict, Mapping) or not {
            "key",
            "last_epoch",
            "base_values",
        } <= set(state_dict):
            raise StateDictError(
                "state_dict must be a dict with 'key', 'last_epoch', 'base_values'"
            )
        if state_dict["key"] != self.key:
            raise StateDictError(
                f"state_dict is for key {state_dict['key']!r}, this scheduler sets {self.key!r}"
            )
        try:
            last_epoch = _int("state_dict['last_epoch']", state_dict["last_epoch"], 0)
            bases = list(state_dict["base_values"])
            if len(bases) != len(self.schedules):
                raise StateDictError(
                    f"state_dict has {len(bases)} base_values, this scheduler has "
                    f"{len(self.schedules)} param groups"
                )
            bases = [_real(f"state_dict['base_values'][{i}]", b) for i, b in enumerate(bases)]
        except (HyperparameterError, TypeError) as err:
            raise StateDictError(str(err)) from err
        schedules = self._rebuild(bases)
        values = self._values(last_epoch, schedules, bases)
        extra = self._extra(last_epoch)
        for group, b in zip(_param_groups(self.optimizer), bases, strict=True):
            group[self.initial_key] = b
        self.schedules = schedules
        self.base_values = bases
        self._commit(last_epoch, values, extra)

    def __repr__(self) -> str:
        names = sorted({s.name for s in self.schedules})
        return f"{type(self).__name__}(key={self.key!r}, t={self.last_epoch}, schedules={names})"


class ReduceLROnPlateau:
    """Reduces the lr when a metric stops improving (torch ReduceLROnPlateau).

    ``step(metric)``: the metric is *better* than the best so far when it beats it
    by more than ``threshold``:

    * ``mode="min"``: ``metric < best * (1 - threshold)`` (``rel``) or
      ``metric < best - threshold`` (``abs``);
    * ``mode="max"``: ``metric > best * (1 + threshold)`` or ``metric > best + threshold``.

    A better metric becomes the best and resets the count of bad steps; any
    other adds one. During a cooldown (``cooldown`` steps after a reduction)
    bad steps are not counted. When the count exceeds ``patience``, every
    group's lr becomes ``max(lr * factor, min_lr_i)`` (unless it would change
    by no more than ``eps``), the cooldown starts and the count resets.
    ``min_lr`` is one number or one per group. Construction leaves the lrs alone.
    """

    def __init__(
        self,
        optimizer: Any,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        groups = _param_groups(optimizer)
        self.optimizer = optimizer
        self.mode = _choice("mode", mode, ("min", "max"))
        self.factor = _real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = _int("patience", patience, 0)
        self.threshold = _real("threshold", threshold, low=0.0)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _int("cooldown", cooldown, 0)
        self.eps = _real("eps", eps, low=0.0)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise HyperparameterError(
                    f"min_lr has {len(min_lr)} entries, the optimizer has "
                    f"{len(groups)} param groups"
                )
            self.default_min_lr: float | None = None
            self.min_lrs = [_real(f"min_lr[{i}]", m, low=0.0) for i, m in enumerate(min_lr)]
        else:
            self.default_min_lr = _real("min_lr", min_lr, low=0.0)
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            if not _is_number(group.get("lr")):
                raise HyperparameterError(f"param group {i} has no numeric 'lr'")
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [float(g["lr"]) for g in groups]

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` counts as an improvement over ``best``."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return a < best * (1.0 - self.threshold)
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric: Any) -> None:
        """Feeds one metric value (a loss for ``mode="min"``); a failed step changes nothing."""
        try:
            current = float(metric)
        except (TypeError, ValueError) as err:
            raise HyperparameterError(f"metric must be a number, got {metric!r}") from err
        groups = _param_groups(self.optimizer)
        for i, group in enumerate(groups):
            if not _is_number(group.get("lr")):
                raise HyperparameterError(f"param group {i} has no numeric 'lr'")
        # Work on copies of the counters, so that an error below leaves them as they were.
        best, bad, cooldown = self.best, self.num_bad_epochs, self.cooldown_counter
        if self.is_better(current, best):
            best, bad = current, 0
        else:
            bad += 1
        if cooldown > 0:
            cooldown -= 1
            bad = 0
        min_lrs, new_lrs = self.min_lrs, None
        if bad > self.patience:
            min_lrs, new_lrs = self._reduced(groups)
            cooldown, bad = self.cooldown, 0
        self.last_epoch += 1
        self.best, self.num_bad_epochs, self.cooldown_counter = best, bad, cooldown
        self.min_lrs = min_lrs
        if new_lrs is not None:
            for group, lr in zip(groups, new_lrs, strict=True):
                if lr is not None:
                    group["lr"] = lr
        self._last_lr = [float(g["lr"]) for g in groups]

    def _reduced(self, groups: list[dict[str, Any]]) -> tuple[list[float], list[float | None]]:
        """``(min_lrs, new lrs)`` of a reduction, None where a group's lr stays."""
        min_lrs = self.min_lrs
        if len(groups) != len(min_lrs):
            if self.default_min_lr is None:
                raise HyperparameterError(
                    f"the optimizer has {len(groups)} param groups, but min_lr has "
                    f"{len(min_lrs)} entries"
                )
            min_lrs = [self.default_min_lr] * len(groups)
        new_lrs: list[float | None] = []
        for group, min_lr in zip(groups, min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            new_lrs.append(new if old - new > self.eps else None)
        return min_lrs, new_lrs

    def get_last_lr(self) -> list[float]:
        """The lrs after the last step, one per param group."""
        return list(self._last_lr)

    get_last_value = get_last_lr

    _STATE = ("last_epoch", "best", "num_bad_epochs", "cooldown_counter", "min_lrs")
    _CONFIG = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")

    def state_dict(self) -> dict[str, Any]:
        """The counters, the best metric and the settings, as a plain dict."""
        state = {k: getattr(self, k) for k in self._CONFIG + self._STATE}
        state["min_lrs"] = list(self.min_lrs)
        state["default_min_lr"] = self.default_min_lr
        state["last_lr"] = list(self._last_lr)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` saved (the lrs live in the optimizer's state)."""
        if not isinstance(state_dict, Mapping):
            raise StateDictError("state_dict must be a dict")
        missing = [k for k in self._CONFIG + self._STATE if k not in state_dict]
        if missing:
            raise StateDictError(f"state_dict lacks {missing}")
        try:
            new = self._from_state(state_dict)
        except (HyperparameterError, TypeError) as err:
            raise StateDictError(f"state_dict: {err}") from err
        self.__dict__.update(new.__dict__)

    def _from_state(self, sd: Mapping[str, Any]) -> ReduceLROnPlateau:
        """A new plateau scheduler on this optimizer, as ``sd`` describes it."""
        default_min_lr = sd.get("default_min_lr")
        new = ReduceLROnPlateau(
            self.optimizer,
            mode=sd["mode"],
            factor=sd["factor"],
            patience=sd["patience"],
            threshold=sd["threshold"],
            threshold_mode=sd["threshold_mode"],
            cooldown=sd["cooldown"],
            min_lr=list(sd["min_lrs"]) if default_min_lr is None else default_min_lr,
            eps=sd["eps"],
        )
        new.last_epoch = _int("last_epoch", sd["last_epoch"], 0)
        best = sd["best"]
        if not _is_number(best) or math.isnan(best):
            raise HyperparameterError(f"best must be a number, got {best!r}")
        new.best = float(best)
        new.num_bad_epochs = _int("num_bad_epochs", sd["num_bad_epochs"], 0)
        new.cooldown_counter = _int("cooldown_counter", sd["cooldown_counter"], 0)
        if "last_lr" in sd:
            new._last_lr = [_real(f"last_lr[{i}]", x) for i, x in enumerate(sd["last_lr"])]
        return new

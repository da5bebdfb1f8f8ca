"""The twin-optimizer rig and factories shared by the test_errors*.py modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

F32, F64 = np.float32, np.float64

# Each factory builds a stateful configuration, so there is real state to lose.
FACTORIES: dict[str, Callable[[Any], fo.Optimizer]] = {
    "sgd": lambda p: fo.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, l1=1e-3),
    "sgd_nesterov": lambda p: fo.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda p: fo.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01),
    "adamw": lambda p: fo.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: fo.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
}
KINDS = list(FACTORIES)
NAMES = ["w", "bias", "c64"]


def assert_state_dicts_equal(got: dict, want: dict, groups: bool = True) -> None:
    assert set(got) == set(want)
    assert set(got["state"]) == set(want["state"])
    for key, want_entry in want["state"].items():
        got_entry = got["state"][key]
        assert set(got_entry) == set(want_entry), key
        for slot, value in want_entry.items():
            if isinstance(value, np.ndarray):
                other = got_entry[slot]
                assert isinstance(other, np.ndarray), (key, slot)
                assert other.dtype == value.dtype, (key, slot)
                assert other.shape == value.shape, (key, slot)
                assert np.array_equal(other, value), (key, slot)
            else:
                assert got_entry[slot] == value, (key, slot)
    if groups:
        assert got["param_groups"] == want["param_groups"]


class Rig:
    """An optimizer with three stepped params, and a twin that saw the same steps.

    Params: ``#0`` float32 (5,) living inside a larger buffer ``abuf`` (so
    overlapping views can be made), ``#1`` float32 (2, 3), ``#2`` float64 (4,).
    """

    def __init__(self, kind: str, named: bool = False, good_steps: int = 3) -> None:
        self.kind = kind
        self.named = named
        self.rng = np.random.default_rng(1234)
        self.abuf = np.zeros(15, F32)
        a = self.abuf[5:10]
        a[:] = self.rng.standard_normal(5)
        b = self.rng.standard_normal((2, 3)).astype(F32)
        c = self.rng.standard_normal(4)
        self.params = [a, b, c]
        self.twin_params = [p.copy() for p in self.params]
        self.opt = FACTORIES[kind](self._wrap(self.params))
        self.twin = FACTORIES[kind](self._wrap(self.twin_params))
        for _ in range(good_steps):
            self.good_step()

    def _wrap(self, arrays: list[np.ndarray]) -> Any:
        return dict(zip(NAMES, arrays, strict=True)) if self.named else list(arrays)

    def label(self, i: int) -> str:
        return repr(NAMES[i]) if self.named else f"#{i}"

    def grads(self) -> list[np.ndarray]:
        return [self.rng.standard_normal(p.shape).astype(p.dtype) for p in self.params]

    def good_step(self) -> None:
        g = self.grads()
        self.opt.step(g)
        self.twin.step([x.copy() for x in g])

    def assert_unchanged(self, groups: bool = True) -> None:
        """Params, state and step counts equal the twin's, bit for bit."""
        assert self.opt.step_counts == self.twin.step_counts
        assert len(self.opt.params) == len(self.twin.params)
        for mine, theirs in zip(self.opt.params, self.twin.params, strict=True):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
            assert np.array_equal(mine, theirs)
        for mine, theirs in zip(self.params, self.twin_params, strict=True):
            assert np.array_equal(mine, theirs)
        assert_state_dicts_equal(self.opt.state_dict(), self.twin.state_dict(), groups)

    def assert_nothing_lost(self) -> None:
        """Unchanged now, and still in lockstep with the twin after more steps."""
        self.assert_unchanged()
        self.good_step()
        self.good_step()
        self.assert_unchanged()


def check_raises(
    call: Callable[[], Any], exc: type[Exception], base: type[Exception], *words: str
) -> str:
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, base)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message

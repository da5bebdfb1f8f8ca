"""Hardening of the optimizer classes (issue 11 items 1, 4, 8, 14, 15, 17): a
failed call changes nothing, state_dicts say whose they are, and lax
conversions are refused. Items 18 and 20 and issue 12 items 4 and 7 are in
test_hardening_optimizer_api.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _hardening_optimizer_helpers import F32, F64, named
from ferroptim.exceptions import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)


def bits(x: Any) -> Any:
    """Deep, bitwise snapshot of arrays, dicts and lists."""
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [bits(v) for v in x]
    return x


def grads_for(params: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}


# -- 11.1: a failed accumulating call changes nothing -----------------------------


@pytest.mark.parametrize("breakage", ["bad_lr", "read_only"])
def test_accumulate_failed_final_call_keeps_counter_and_buffers(breakage: str) -> None:
    params, twin_params = named(), named()
    opt = fo.Adam(params, lr=0.1, accumulate=3)
    twin = fo.Adam(twin_params, lr=0.1, accumulate=3)
    micro = [grads_for(params, s) for s in range(3)]
    for g in micro[:2]:
        assert opt.step(g) is False
        assert twin.step(g) is False
    before_state, before_params = bits(opt.state_dict()), bits(params)
    if breakage == "bad_lr":
        opt.param_groups[0]["lr"] = -1.0
        with pytest.raises(HyperparameterError, match="lr"):
            opt.step(micro[2])
        opt.param_groups[0]["lr"] = 0.1
    else:
        params["bias"].setflags(write=False)
        with pytest.raises(ParamError, match="read-only"):
            opt.step(micro[2])
        params["bias"].setflags(write=True)
    assert bits(opt.state_dict()) == before_state
    assert bits(params) == before_params
    # Retrying the same call gives exactly what an untroubled run gives.
    assert opt.step(micro[2]) is True
    assert twin.step(micro[2]) is True
    assert bits(params) == bits(twin_params)
    assert bits(opt.state_dict()) == bits(twin.state_dict())


def test_accumulate_bad_grad_on_a_middle_call_adds_nothing() -> None:
    params = named()
    opt = fo.SGD(params, lr=0.1, accumulate=3)
    opt.step(grads_for(params, 1))
    before = bits(opt.state_dict())
    bad = grads_for(params, 2)
    bad["bias"] = bad["bias"].astype(F32)  # the last grad is wrong: the first must not be added
    with pytest.raises(DtypeError, match="'bias'"):
        opt.step(bad)
    assert bits(opt.state_dict()) == before


# -- 11.4: accumulation buffers keyed like the state, checked at load -------------


def test_accumulation_buffers_follow_names_not_positions() -> None:
    params = named()
    opt = fo.SGD(params, lr=0.5, accumulate=2)
    g0 = grads_for(params, 3)
    opt.step(g0)
    saved = opt.state_dict()
    assert set(saved["accumulation"]["buffers"]) == {"w", "bias"}
    # The same params given in the other order, with other shapes' positions.
    reordered = {"bias": params["bias"].copy(), "w": params["w"].copy()}
    resumed = fo.SGD(reordered, lr=0.5, accumulate=2)
    resumed.load_state_dict(saved)
    g1 = grads_for(params, 4)
    assert opt.step(g1) is True
    assert resumed.step(g1) is True
    for k in params:
        assert params[k].tobytes() == reordered[k].tobytes(), k


@pytest.mark.parametrize(
    ("buffer", "words"),
    [
        (np.zeros((2, 4)), ["'bias'", "shape"]),
        (np.zeros(4, complex), ["'bias'", "complex128"]),
        (np.array(["a", "b", "c", "d"]), ["'bias'", "<U1"]),
    ],
)
def test_accumulation_buffer_checked_at_load(buffer: np.ndarray, words: list[str]) -> None:
    params = named()
    opt = fo.SGD(params, lr=0.5, accumulate=2)
    opt.step(grads_for(params, 3))
    saved = opt.state_dict()
    saved["accumulation"]["buffers"]["bias"] = buffer
    target = fo.SGD(named(), lr=0.5, accumulate=2)
    before = bits(target.state_dict())
    with pytest.raises(StateDictError) as info:
        target.load_state_dict(saved)
    for word in words:
        assert word in str(info.value)
    assert bits(target.state_dict()) == before


def test_accumulation_by_position_refused_for_named_params() -> None:
    params = named()
    opt = fo.SGD(params, lr=0.5, accumulate=2)
    opt.step(grads_for(params, 3))
    saved = opt.state_dict()
    saved["accumulation"]["buffers"] = list(saved["accumulation"]["buffers"].values())
    with pytest.raises(StateDictError, match="position"):
        fo.SGD(named(), lr=0.5, accumulate=2).load_state_dict(saved)


# -- 11.8: a state_dict of another class is refused, naming both --------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [(fo.Adam, fo.AdamW), (fo.AdamW, fo.Adam), (fo.Adam, fo.NAdam), (fo.SGD, fo.RMSprop)],
    ids=lambda c: c.__name__,
)
def test_state_dict_of_another_class_refused(src: type, dst: type) -> None:
    kwargs = {"momentum": 0.9} if src is fo.SGD else {}
    opt = src([np.zeros(3)], lr=0.1, **kwargs)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    assert saved["optimizer"] == src.__name__
    target = dst([np.zeros(3)], lr=0.1)
    before = bits(target.state_dict())
    with pytest.raises(StateDictError) as info:
        target.load_state_dict(saved)
    assert src.__name__ in str(info.value) and dst.__name__ in str(info.value)
    assert bits(target.state_dict()) == before


@pytest.mark.parametrize(("src", "dst"), [(fo.Lion, fo.Adam), (fo.Adam, fo.Lion)])
def test_hand_made_state_dict_with_other_slots_refused(src: type, dst: type) -> None:
    opt = src([np.zeros(3)], lr=0.1)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    del saved["optimizer"]  # as a hand-made or older state_dict
    with pytest.raises(StateDictError) as info:
        dst([np.zeros(3)], lr=0.1).load_state_dict(saved)
    assert src.__name__ in str(info.value) and dst.__name__ in str(info.value)


def test_state_dict_without_class_of_the_same_class_loads() -> None:
    opt = fo.Adam([np.zeros(3)], lr=0.1, amsgrad=True)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    del saved["optimizer"]
    twin = fo.Adam([np.zeros(3)], lr=0.1)
    twin.load_state_dict(saved)
    assert twin.step_counts == [1]


def test_subclass_saves_as_its_ferroptim_class() -> None:
    class MyAdam(fo.Adam):
        pass

    opt = MyAdam([np.zeros(3)], lr=0.1)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    assert saved["optimizer"] == "Adam"
    fo.Adam([np.zeros(3)], lr=0.1).load_state_dict(saved)


# -- 11.14: lax conversion -------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "value", "word"),
    [
        ("exp_avg", np.full(3, 1 + 1j), "complex128"),
        ("exp_avg", np.array([1.0, 2.0, 3.0], dtype=object), "object"),
        ("exp_avg", np.array(["1", "2", "3"]), "<U1"),
        ("step", True, "step"),
        ("step", np.bool_(True), "step"),
    ],
)
def test_state_values_that_are_not_real_numbers_refused(slot: str, value: Any, word: str) -> None:
    opt = fo.Adam({"w": np.zeros(3)}, lr=0.1)
    opt.step({"w": np.ones(3)})
    saved = opt.state_dict()
    saved["state"]["w"][slot] = value
    target = fo.Adam({"w": np.zeros(3)}, lr=0.1)
    target.step({"w": np.ones(3)})
    before = bits(target.state_dict())
    with pytest.raises(StateDictError) as info:
        target.load_state_dict(saved)
    assert "'w'" in str(info.value) and word in str(info.value)
    assert bits(target.state_dict()) == before


def test_complex_state_refused_in_an_arena_run() -> None:
    arena = fo.ParamArena({"a": (2,), "b": (3,)}, F64)
    opt = fo.Adam(arena, lr=0.1)
    arena.grad[...] = 1.0
    opt.step()
    saved = opt.state_dict()
    saved["state"]["b"]["exp_avg"] = saved["state"]["b"]["exp_avg"] + 1j
    with pytest.raises(StateDictError, match="'b'.*complex"):
        fo.Adam(fo.ParamArena({"a": (2,), "b": (3,)}, F64), lr=0.1).load_state_dict(saved)


@pytest.mark.parametrize(
    "arrays",
    [
        {"w": np.ones(3) + 1j},
        {"w": np.array(["a", "b"])},
        {"w": np.array([1.0, None], dtype=object)},
        {"w": [[1.0, 2.0], [3.0]]},
    ],
    ids=["complex", "str", "object", "ragged"],
)
def test_arena_from_arrays_refuses_what_it_cannot_hold(arrays: dict) -> None:
    with pytest.raises(DtypeError, match="'w'"):
        fo.ParamArena.from_arrays(arrays)


def test_arena_from_arrays_on_a_list_is_a_package_error() -> None:
    with pytest.raises(ParamError, match="dict"):
        fo.ParamArena.from_arrays([np.zeros(3)])  # type: ignore[arg-type]


# -- 11.15: accumulation names the param like a plain step does ----------------------


@pytest.mark.parametrize("form", ["named", "unnamed"])
@pytest.mark.parametrize("bad", ["dtype", "shape", "list"])
def test_accumulate_grad_errors_name_the_param_like_a_step(form: str, bad: str) -> None:
    messages = []
    for k in (1, 2):
        params = named()
        opt = fo.Adam(params if form == "named" else list(params.values()), accumulate=k)
        g = grads_for(params, 1)
        g["bias"] = {
            "dtype": g["bias"].astype(F32),
            "shape": np.zeros(5),
            "list": [0.0] * 4,
        }[bad]
        with pytest.raises((DtypeError, GradError)) as info:
            opt.step(g if form == "named" else list(g.values()))
        # The same error class, naming the param the same way ("grad for param 'bias'").
        subject = str(info.value).split(" must ")[0].split(" has ")[0]
        messages.append((type(info.value), subject))
    assert messages[0] == messages[1]
    assert ("'bias'" if form == "named" else "#1") in messages[1][1]


# -- 11.17: edits of param_groups the engine would ignore -----------------------------


def test_replaced_params_list_refused_at_step() -> None:
    p, other = np.zeros(3), np.zeros(3)
    opt = fo.SGD([p], lr=0.1)
    opt.param_groups[0]["params"] = [other]
    with pytest.raises(ParamError, match=r"param_groups\[0\]\['params'\]"):
        opt.step([np.ones(3)])
    assert not p.any() and not other.any()
    opt.param_groups[0]["params"] = [p]  # undone: steps again
    opt.step([np.ones(3)])


def test_reordered_groups_refused_at_step() -> None:
    a, b = np.zeros(3), np.zeros(3)
    opt = fo.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0}])
    opt.param_groups.reverse()
    with pytest.raises(ParamError, match="reordered"):
        opt.step([np.ones(3), np.ones(3)])
    assert not a.any() and not b.any()


def test_step_inside_averaged_params_refused() -> None:
    p = np.zeros(3)
    opt = fo.SGD([p], lr=0.1, ema_decay=0.5)
    opt.step([np.ones(3)])
    opt.step([np.ones(3)])
    before_p, before_state = p.copy(), bits(opt.state_dict())
    with opt.averaged_params():
        averaged = p.copy()
        with pytest.raises(ParamError, match="averaged_params"):
            opt.step([np.ones(3)])
        assert p.tobytes() == averaged.tobytes()
    assert p.tobytes() == before_p.tobytes()
    assert bits(opt.state_dict()) == before_state

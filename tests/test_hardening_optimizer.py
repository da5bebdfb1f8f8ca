"""Hardening of the optimizer classes (issue 11 items 1, 4, 8, 14, 15, 17, 18, 20;
issue 12 items 4 and 7): a failed call changes nothing, state_dicts say whose
they are, torch habits work, and every class has a full signature."""

from __future__ import annotations

import copy
import inspect
import os
import sys
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.exceptions import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)

F32, F64 = np.float32, np.float64
CLASSES = [
    fo.SGD,
    fo.Adam,
    fo.AdamW,
    fo.Adamax,
    fo.NAdam,
    fo.RAdam,
    fo.RMSprop,
    fo.Adagrad,
    fo.Adadelta,
    fo.Lion,
]


def bits(x: Any) -> Any:
    """Deep, bitwise snapshot of arrays, dicts and lists."""
    if isinstance(x, np.ndarray):
        return (x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [bits(v) for v in x]
    return x


def named(dtype: Any = F64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(dtype),
        "bias": rng.standard_normal(4).astype(dtype),
    }


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


# -- 11.18: construction is linear in the number of groups ----------------------------


def _python_lines(work: Any) -> int:
    """Python line events inside ferroptim while ``work()`` runs: a count of
    interpreted work, independent of the machine's speed."""
    package = os.path.dirname(fo.__file__)
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("form", ["named", "unnamed"])
def test_construction_work_grows_linearly_with_groups(form: str) -> None:
    def build(n: int) -> Any:
        if form == "named":
            groups = [{"params": {f"p{i}": np.zeros(2)}} for i in range(n)]
        else:
            groups = [{"params": [np.zeros(2)]} for i in range(n)]
        return lambda: fo.Adam(groups, lr=0.1)

    small, large = _python_lines(build(100)), _python_lines(build(400))
    assert large < 5 * small, (small, large)  # linear: ~4x; quadratic: ~16x


def test_accumulating_step_work_grows_linearly_with_params() -> None:
    def run(n: int) -> Any:
        params = [np.zeros(2) for _ in range(n)]
        opt = fo.SGD(params, lr=0.1, accumulate=2)
        grads = [np.ones(2) for _ in range(n)]
        return lambda: opt.step(grads)

    small, large = _python_lines(run(100)), _python_lines(run(400))
    assert large < 5 * small, (small, large)


# -- 11.20: torch's implementation flags and tensor hyperparameters -------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_torch_flags_accepted_as_no_ops(cls: type) -> None:
    p, q = [np.zeros(3, F32)], [np.zeros(3, F32)]
    opt = cls(p, foreach=True, fused=False, capturable=False, differentiable=False)
    plain = cls(q, foreach=None, fused=None)
    opt.step([np.ones(3, F32)])
    plain.step([np.ones(3, F32)])
    assert p[0].tobytes() == q[0].tobytes()


@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_torch_flags_that_cannot_hold_refused(cls: type, flag: str) -> None:
    with pytest.raises(HyperparameterError, match=flag):
        cls([np.zeros(3)], **{flag: True})


def test_bad_foreach_value_refused() -> None:
    with pytest.raises(HyperparameterError, match="foreach"):
        fo.Adam([np.zeros(3)], foreach="yes")  # type: ignore[arg-type]


def test_numpy_scalar_hyperparameters_become_python_numbers() -> None:
    opt = fo.Adam([np.zeros(3)], lr=np.float32(0.5), betas=(np.float64(0.8), np.array(0.9)))
    opt.add_param_group({"params": [np.zeros(2)], "lr": np.array(0.25)})
    groups = opt.state_dict()["param_groups"]
    assert [type(g["lr"]) for g in groups] == [float, float]
    assert [type(b) for b in groups[0]["betas"]] == [float, float]
    assert groups[1]["lr"] == 0.25


def test_torch_tensor_lr_becomes_a_float() -> None:
    torch = pytest.importorskip("torch")
    opt = fo.AdamW([np.zeros(3)], lr=torch.tensor(0.01))
    opt.add_param_group({"params": [np.zeros(2)], "lr": torch.tensor(0.02), "betas": (0.8, 0.9)})
    saved = opt.state_dict()
    assert [type(g["lr"]) for g in saved["param_groups"]] == [float, float]
    assert saved["param_groups"][1]["lr"] == pytest.approx(0.02)
    copy.deepcopy(saved)


# -- 12.4: closure and zero_grad as torch users type them ------------------------------


def test_step_with_a_closure_returning_the_loss() -> None:
    p, twin = np.zeros(3), np.zeros(3)
    opt, ref = fo.SGD([p], lr=0.1), fo.SGD([twin], lr=0.1)
    calls = []

    def closure() -> float:
        calls.append(1)
        return 1.5

    assert opt.step([np.ones(3)], closure=closure) == 1.5
    ref.step([np.ones(3)])
    assert calls == [1] and p.tobytes() == twin.tobytes()


def test_step_with_a_closure_returning_loss_and_grads() -> None:
    p = np.zeros(3)
    opt = fo.SGD({"w": p}, lr=0.1)
    assert opt.step(closure=lambda: (2.0, {"w": np.ones(3)})) == 2.0
    np.testing.assert_array_equal(p, -0.1)
    with pytest.raises(GradError, match="closure"):
        opt.step({"w": np.ones(3)}, closure=lambda: (2.0, {"w": np.ones(3)}))
    np.testing.assert_array_equal(p, -0.1)


def test_arena_closure_and_zero_grad() -> None:
    arena = fo.ParamArena({"w": (3,)}, F64)
    opt = fo.SGD(arena, lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        arena.grads["w"][...] += 1.0  # a backward pass that accumulates
        return 0.5

    assert opt.step(closure) == 0.5  # positional, as torch code writes it
    assert opt.step(closure) == 0.5
    np.testing.assert_array_equal(arena["w"], -0.2)
    opt.zero_grad(set_to_none=True)
    assert not arena.grad.any()


def test_zero_grad_without_an_arena_is_a_no_op() -> None:
    p, g = np.zeros(3), np.ones(3)
    opt = fo.SGD([p], lr=0.1)
    opt.zero_grad()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(g, 1.0)


# -- 12.7: full signatures and readable docstrings ------------------------------------

STEP_OPTIONS = [
    "max_grad_norm",
    "norm_type",
    "clip_value",
    "skip_nonfinite",
    "ema_decay",
    "ema_equal_weights",
    "accumulate",
    "accumulate_mean",
    "foreach",
    "fused",
    "capturable",
    "differentiable",
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_full_signature_and_docstring(cls: type) -> None:
    params = inspect.signature(cls).parameters
    assert "options" not in params
    for name in STEP_OPTIONS:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    doc = inspect.getdoc(cls) or ""
    assert ".. math::" not in doc and "\\frac" not in doc
    assert "Parameters\n----------" in doc
    for name in params:
        assert f"\n{name} :" in doc or f"\n{name}, " in doc or f", {name} :" in doc, name
    with pytest.raises(TypeError, match=rf"{cls.__name__}\.__init__\(\)"):
        cls([np.zeros(3)], max_grad_nrom=1.0)

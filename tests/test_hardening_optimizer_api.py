"""Hardening of the optimizer classes (issue 11 items 18 and 20; issue 12
items 4 and 7): construction is linear in the number of groups, torch habits
work (implementation flags, tensor hyperparameters, closures, zero_grad),
and every class has a full signature and a readable docstring.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _hardening_optimizer_helpers import F32, F64
from ferroptim.exceptions import GradError, HyperparameterError

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

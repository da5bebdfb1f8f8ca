"""Bad input: a clear error, and nothing lost.

Every failing call must raise the documented exception (a ValueError or
TypeError subclass) with a message that names the culprit, and must leave
every param array, the whole state and the step counts exactly as they were.
"Exactly as they were" is checked against a twin optimizer that saw the same
good steps but never the bad call, and then both take one more good step, so
hidden engine state (step counters, lazily created slots) is covered too.

This module: grads that do not fit. Bad params and strided grads are in
test_errors_params.py, bad hyperparameters and state dicts in
test_errors_hyperparams.py; the twin rig is in _errors_helpers.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _errors_helpers import (
    F32,
    F64,
    FACTORIES,
    KINDS,
    NAMES,
    Rig,
    assert_state_dicts_equal,
    check_raises,
)
from ferroptim.exceptions import DtypeError, GradError, ParamError

# -- grads that do not fit ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("named", [False, True], ids=["positional", "named"])
@pytest.mark.parametrize(
    "case",
    [
        "too_few",
        "too_many",
        "shape_transposed",
        "shape_broadcastable",
        "shape_extra_dim",
        "f64_for_f32",
        "f32_for_f64",
        "byteswapped",
        "list",
        "int_array",
        "python_float",
        "same_array_as_param",
        "overlapping_view_before",
        "overlapping_view_after",
        "view_of_other_param",
        "view_of_other_param_other_dtype",
    ],
)
def test_bad_grad_raises_and_changes_nothing(kind: str, named: bool, case: str) -> None:
    rig = Rig(kind, named)
    a, b, c = rig.params
    g = rig.grads()
    L = rig.label

    def with_grad(i: int, value: Any) -> list[Any]:
        out: list[Any] = list(g)
        out[i] = value
        return out

    # (grads, exception, base, words the message must contain)
    cases: dict[str, tuple[list[Any], type, type, tuple[str, ...]]] = {
        "too_few": (g[:2], GradError, ValueError, ("2 grads", "3 params")),
        "too_many": (g + [g[0].copy()], GradError, ValueError, ("4 grads", "3 params")),
        "shape_transposed": (
            with_grad(1, np.ones((3, 2), F32)),
            GradError,
            ValueError,
            (L(1), "shape"),
        ),
        "shape_broadcastable": (
            with_grad(1, np.ones((1, 3), F32)),
            GradError,
            ValueError,
            (L(1), "shape"),
        ),
        "shape_extra_dim": (
            with_grad(0, np.ones((5, 1), F32)),
            GradError,
            ValueError,
            (L(0), "shape"),
        ),
        "f64_for_f32": (
            with_grad(1, g[1].astype(F64)),
            DtypeError,
            TypeError,
            (L(1), "float64"),
        ),
        "f32_for_f64": (
            with_grad(2, g[2].astype(F32)),
            DtypeError,
            TypeError,
            (L(2), "float32"),
        ),
        "byteswapped": (
            with_grad(0, g[0].astype(np.dtype(F32).newbyteorder())),
            DtypeError,
            TypeError,
            (L(0),),
        ),
        "list": (with_grad(1, g[1].tolist()), DtypeError, TypeError, (L(1), "list")),
        "int_array": (
            with_grad(0, np.ones(5, np.int64)),
            DtypeError,
            TypeError,
            (L(0), "int64"),
        ),
        "python_float": (with_grad(2, 1.0), DtypeError, TypeError, (L(2),)),
        "same_array_as_param": (with_grad(1, b), GradError, ValueError, (L(1), "memory")),
        # a is abuf[5:10]; these views share one element with it.
        "overlapping_view_before": (
            with_grad(0, rig.abuf[1:6]),
            GradError,
            ValueError,
            (L(0), "memory"),
        ),
        "overlapping_view_after": (
            with_grad(0, rig.abuf[9:14]),
            GradError,
            ValueError,
            (L(0), "memory"),
        ),
        "view_of_other_param": (
            with_grad(0, b.reshape(-1)[:5]),
            GradError,
            ValueError,
            (L(0), L(1), "memory"),
        ),
        # c is float64 (4,): 32 bytes, viewed as float32 it holds 8 elements.
        "view_of_other_param_other_dtype": (
            with_grad(0, c.view(F32)[:5]),
            GradError,
            ValueError,
            (L(0), L(2), "memory"),
        ),
    }
    grads, exc, base, words = cases[case]
    if named and case not in ("too_few", "too_many"):
        grads = dict(zip(NAMES, grads, strict=True))
    before_abuf = rig.abuf.copy()
    check_raises(lambda: rig.opt.step(grads), exc, base, *words)
    assert np.array_equal(rig.abuf, before_abuf)
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_grads_container(kind: str) -> None:
    rig = Rig(kind)
    check_raises(lambda: rig.opt.step(), GradError, ValueError, "grads")
    check_raises(lambda: rig.opt.step(rig.grads()[0]), DtypeError, TypeError, "list")
    check_raises(lambda: rig.opt.step(42), DtypeError, TypeError, "grads")
    # Grads by name for unnamed params.
    check_raises(lambda: rig.opt.step({"w": rig.grads()[0]}), GradError, ValueError, "name")
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_grad_name(kind: str) -> None:
    rig = Rig(kind, named=True)
    g = dict(zip(NAMES, rig.grads(), strict=True))
    g["nope"] = g["w"].copy()
    check_raises(lambda: rig.opt.step(g), GradError, ValueError, "nope")
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_adjacent_memory_is_not_overlap(kind: str) -> None:
    """Grads that end exactly where a param starts (or start where it ends) are fine."""
    rig = Rig(kind)
    for lo in (0, 10):  # a is abuf[5:10]
        rig.abuf[lo : lo + 5] = rig.rng.standard_normal(5)
        g = rig.grads()
        g[0] = rig.abuf[lo : lo + 5]
        rig.opt.step(g)
        rig.twin.step([x.copy() for x in g])
        rig.assert_unchanged()


@pytest.mark.parametrize("kind", KINDS)
def test_error_in_last_grad_touches_no_earlier_param(kind: str) -> None:
    rng = np.random.default_rng(7)
    params = [rng.standard_normal(n).astype(F32) for n in (40_000, 3, 70_000, 1, 5000)]
    params.append(rng.standard_normal((3, 4)))  # the last one is float64
    twin = [p.copy() for p in params]
    opt, ref = FACTORIES[kind](params), FACTORIES[kind](twin)
    for _ in range(2):
        g = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(g)
        ref.step(g)
    before = [p.copy() for p in params]
    counts = opt.step_counts
    sd = opt.state_dict()
    g = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
    bad_last = [
        ("dtype", g[-1].astype(F32), DtypeError),
        ("shape", g[-1].T.copy(), GradError),
        ("alias", params[-1], GradError),
        ("alias_first", params[0][:24].view(F64).reshape(3, 4), GradError),
        ("list", g[-1].tolist(), DtypeError),
    ]
    for what, last, exc in bad_last:
        with pytest.raises(exc, match="#5"):
            opt.step(g[:-1] + [last])
        for p, q in zip(params, before, strict=True):
            assert np.array_equal(p, q), what
        assert opt.step_counts == counts, what
        assert_state_dicts_equal(opt.state_dict(), sd)
    opt.step(g)
    ref.step(g)
    for p, q in zip(params, twin, strict=True):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("named", [False, True], ids=["positional", "named"])
def test_param_made_read_only_after_construction(kind: str, named: bool) -> None:
    rig = Rig(kind, named)
    b = rig.params[1]
    b.flags.writeable = False
    check_raises(
        lambda: rig.opt.step(rig.grads()), ParamError, ValueError, rig.label(1), "read-only"
    )
    # The base buffer of a view made read-only: also refused.
    rig.params[0].flags.writeable = False
    check_raises(
        lambda: rig.opt.step(rig.grads()), ParamError, ValueError, rig.label(0), "read-only"
    )
    rig.params[0].flags.writeable = True
    b.flags.writeable = True
    rig.assert_nothing_lost()


def test_read_only_param_with_none_grad_is_skipped() -> None:
    """A read-only param is only an error if it would be written."""
    rig = Rig("adam")
    rig.params[1].flags.writeable = False
    g = rig.grads()
    g[1] = None
    rig.opt.step(g)
    rig.twin.step([None if x is None else x.copy() for x in g])
    rig.params[1].flags.writeable = True
    rig.assert_nothing_lost()

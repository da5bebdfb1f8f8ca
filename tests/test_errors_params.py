"""Bad input, part 2: non-contiguous grads give the right numbers, bad params
at construction raise naming them, and a failed add_param_group changes
nothing (the twin-optimizer rig of test_errors.py, from _errors_helpers.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _errors_helpers import F32, F64, FACTORIES, KINDS, Rig, assert_state_dicts_equal, check_raises
from ferroptim.exceptions import DtypeError, GradError, HyperparameterError, ParamError

# -- non-contiguous grads give the right numbers ----------------------------


def _odd_layouts(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> dict:
    """The same values in several layouts that are not C-contiguous and aligned."""
    values = rng.standard_normal(shape).astype(dtype)
    every_third = tuple(slice(None, None, 3) for _ in shape)
    big = np.zeros(tuple(3 * n for n in shape), dtype)
    big[every_third] = values
    backwards = tuple(slice(None, None, -1) for _ in shape)
    reversed_ = np.ascontiguousarray(values[backwards])[backwards]
    raw = np.zeros(values.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(dtype).reshape(shape)
    unaligned[...] = values
    return {
        "strided": big[every_third],
        "reversed": reversed_,
        "fortran": np.asfortranarray(values),
        "unaligned": unaligned,
        "broadcast_zero_stride": np.broadcast_to(values.reshape(-1)[:1], shape),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(
    "layout", ["strided", "reversed", "fortran", "unaligned", "broadcast_zero_stride"]
)
def test_noncontiguous_grads_match_contiguous_bitwise(kind: str, dtype: Any, layout: str) -> None:
    rng = np.random.default_rng(99)
    # Big enough to go through the parallel, chunked path; 2-D so Fortran order differs.
    shapes = [(300, 170), (7, 3), (1001,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    twin = [p.copy() for p in params]
    opt, ref = FACTORIES[kind](params), FACTORIES[kind](twin)
    for _ in range(4):
        grads, plain = [], []
        for s in shapes:
            g = _odd_layouts(rng, s, dtype)[layout]
            assert g.dtype == dtype and g.shape == s
            if len(s) > 1 or layout != "fortran":
                assert not (g.flags.c_contiguous and g.flags.aligned), layout
            grads.append(g)
            plain.append(np.ascontiguousarray(g).copy())
        opt.step(grads)
        ref.step(plain)
    for p, q in zip(params, twin, strict=True):
        assert np.array_equal(p, q)
    assert_state_dicts_equal(opt.state_dict(), ref.state_dict())


def test_strided_grad_aliasing_its_param_acts_like_a_copy() -> None:
    """A non-contiguous grad that views the param's own memory: either refused, or
    read entirely before anything is written (same numbers as a copy)."""
    rng = np.random.default_rng(3)
    p = rng.standard_normal(100_000).astype(F32)
    q = p.copy()
    opt, ref = fo.SGD([p], lr=0.5), fo.SGD([q], lr=0.5)
    g_ref = q[::-1].copy()
    try:
        opt.step([p[::-1]])
    except GradError as err:
        assert "#0" in str(err)
        assert np.array_equal(p, q)
        return
    ref.step([g_ref])
    assert np.array_equal(p, q)


# -- bad params at construction ---------------------------------------------


def _bad_param_cases() -> dict[str, tuple[Callable[[], list], type, type, tuple[str, ...]]]:
    def read_only() -> list:
        x = np.ones(4, F32)
        x.flags.writeable = False
        return [np.ones(2, F32), x]

    def strided() -> list:
        return [np.ones(2, F32), np.ones(10, F32)[::2]]

    def fortran() -> list:
        return [np.ones(2, F32), np.asfortranarray(np.ones((3, 4), F64))]

    def transposed() -> list:
        return [np.ones(2, F32), np.ones((3, 4), F64).T]

    def int_dtype() -> list:
        return [np.ones(2, F32), np.ones(3, np.int32)]

    def f128() -> list:
        # float16 and bfloat16 are params now (#14); extended precision is not.
        return [np.ones(2, F32), np.ones(3, np.longdouble)]

    def complex_dtype() -> list:
        return [np.ones(2, F32), np.ones(3, np.complex128)]

    def byteswapped() -> list:
        return [np.ones(2, F32), np.ones(3, np.dtype(F64).newbyteorder())]

    def not_array() -> list:
        return [np.ones(2, F32), [1.0, 2.0]]

    def same_twice() -> list:
        x = np.ones(3, F32)
        return [x, np.ones(2), x]

    def same_memory_other_object() -> list:
        x = np.ones(3, F32)
        return [x, x[:]]

    def overlapping_views() -> list:
        buf = np.zeros(10, F32)
        return [buf[:6], buf[5:]]

    def nested_view() -> list:
        buf = np.zeros((4, 5), F64)
        return [buf, buf[2]]

    def other_dtype_view() -> list:
        x = np.zeros(4, F64)
        return [x, x.view(F32)[2:4]]

    return {
        "read_only": (read_only, ParamError, ValueError, ("#1", "read-only")),
        "strided": (strided, ParamError, ValueError, ("#1", "contiguous")),
        "fortran_2d": (fortran, ParamError, ValueError, ("#1", "contiguous")),
        "transposed_2d": (transposed, ParamError, ValueError, ("#1", "contiguous")),
        "int_dtype": (int_dtype, DtypeError, TypeError, ("#1", "int32")),
        "longdouble": (f128, DtypeError, TypeError, ("#1", str(np.dtype(np.longdouble)))),
        "complex": (complex_dtype, DtypeError, TypeError, ("#1", "complex128")),
        "byteswapped": (byteswapped, DtypeError, TypeError, ("#1",)),
        "not_an_array": (not_array, DtypeError, TypeError, ("#1", "list")),
        "same_array_twice": (same_twice, ParamError, ValueError, ("#0", "#2")),
        "same_memory_other_object": (
            same_memory_other_object,
            ParamError,
            ValueError,
            ("#0", "#1"),
        ),
        "overlapping_views": (overlapping_views, ParamError, ValueError, ("#0", "#1")),
        "row_of_other_param": (nested_view, ParamError, ValueError, ("#0", "#1")),
        "other_dtype_view": (other_dtype_view, ParamError, ValueError, ("#0", "#1")),
    }


BAD_PARAMS = _bad_param_cases()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_bad_param_at_construction(kind: str, case: str) -> None:
    make, exc, base, words = BAD_PARAMS[case]
    params = make()
    before = [copy.deepcopy(p) for p in params]
    check_raises(lambda: FACTORIES[kind](params), exc, base, *words)
    for p, q in zip(params, before, strict=True):
        assert np.array_equal(np.asarray(p), np.asarray(q))


@pytest.mark.parametrize("case", ["same_array_twice", "overlapping_views", "read_only"])
def test_bad_param_named(case: str) -> None:
    params = BAD_PARAMS[case][0]()
    names = ["w", "v", "u"][: len(params)]
    with pytest.raises(ParamError) as info:
        fo.Adam(dict(zip(names, params, strict=True)))
    assert "'w'" in str(info.value) or "'v'" in str(info.value)
    assert "'v'" in str(info.value) or "'u'" in str(info.value)


def test_adjacent_params_are_not_overlapping() -> None:
    buf = np.zeros(10, F32)
    opt = fo.SGD([buf[:5], buf[5:]], lr=1.0)
    opt.step([np.ones(5, F32), np.full(5, 2, F32)])
    assert np.array_equal(buf, [-1] * 5 + [-2] * 5)


def test_param_given_twice_across_groups_and_by_name() -> None:
    x = np.ones(3, F32)
    with pytest.raises(ParamError, match="#0.*#1|given twice"):
        fo.SGD([{"params": [x]}, {"params": [x], "lr": 0.5}])
    with pytest.raises(ParamError, match="'a'.*'b'|'b'.*'a'"):
        fo.SGD([("a", x), ("b", x)])
    with pytest.raises(ParamError, match="'a'"):
        fo.SGD([("a", x), ("a", np.ones(2))])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "params",
    [[], {}, [{"params": []}], [{"params": []}, {"params": []}], ()],
    ids=["list", "dict", "group", "groups", "tuple"],
)
def test_empty_param_list(kind: str, params: Any) -> None:
    with pytest.raises(ParamError) as info:
        FACTORIES[kind](params)
    assert isinstance(info.value, ValueError)
    assert "empty" in str(info.value) or "no params" in str(info.value)


@pytest.mark.parametrize("params", [np.ones(3, F32), 3.0, "w", None])
def test_params_of_wrong_type(params: Any) -> None:
    with pytest.raises(DtypeError) as info:
        fo.SGD(params)
    assert isinstance(info.value, TypeError)


# -- add_param_group failures -----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_failed_add_param_group_changes_nothing(kind: str) -> None:
    rig = Rig(kind)
    ro = np.ones(3, F32)
    ro.flags.writeable = False
    attempts = [
        ({"params": [np.ones(2, F32), rig.params[1]]}, ParamError, ("#1", "#4")),
        ({"params": [np.ones(2, F32), rig.abuf[8:12]]}, ParamError, ("#0", "#4")),
        ({"params": [np.ones(2, F32), ro]}, ParamError, ("#4", "read-only")),
        ({"params": [np.ones(2, F32), np.ones(3, np.int8)]}, DtypeError, ("#4", "int8")),
        ({"params": [np.ones(2, F32)], "lr": -1.0}, HyperparameterError, ("lr",)),
        ({"params": []}, ParamError, ("no params",)),
        ({"lr": 0.1}, ParamError, ("params",)),
        ({"params": {"x": np.ones(2)}}, ParamError, ("named",)),
    ]
    for group, exc, words in attempts:
        check_raises(lambda group=group: rig.opt.add_param_group(group), exc, Exception, *words)
        assert len(rig.opt.param_groups) == 1
        assert len(rig.opt.params) == 3
        assert rig.opt.step_counts == rig.twin.step_counts
        rig.assert_nothing_lost()
    # Still usable: a good group goes in after all those failures, numbered as expected.
    extra = np.ones(2, F32)
    rig.opt.add_param_group({"params": [extra]})
    with pytest.raises(GradError, match="3 grads for 4 params"):
        rig.opt.step(rig.grads())
    rig.opt.step(rig.grads() + [np.ones(2, F32)])
    assert rig.opt.step_counts[-1] == 1

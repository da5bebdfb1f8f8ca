"""Bad input: a clear error, and nothing lost.

Every failing call must raise the documented exception (a ValueError or
TypeError subclass) with a message that names the culprit, and must leave
every param array, the whole state and the step counts exactly as they were.
"Exactly as they were" is checked against a twin optimizer that saw the same
good steps but never the bad call, and then both take one more good step, so
hidden engine state (step counters, lazily created slots) is covered too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
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


def deep_equal(a: Any, b: Any) -> bool:
    """Structural equality, arrays compared by dtype, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(deep_equal, a, b))
    return type(a) is type(b) and a == b


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


# -- hyperparameters ----------------------------------------------------------

NAN, INF = float("nan"), float("inf")

BAD_HYPERS: list[tuple[str, dict[str, Any], str]] = [
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"lr": NAN}, "lr"),
    ("sgd", {"lr": INF}, "lr"),
    ("sgd", {"lr": -INF}, "lr"),
    ("sgd", {"lr": "0.1"}, "lr"),
    ("sgd", {"lr": None}, "lr"),
    ("sgd", {"lr": True}, "lr"),
    ("sgd", {"weight_decay": -1e-4}, "weight_decay"),
    ("sgd", {"weight_decay": NAN}, "weight_decay"),
    ("sgd", {"l1": -1e-4}, "l1"),
    ("sgd", {"l1": INF}, "l1"),
    ("sgd", {"momentum": -0.9}, "momentum"),
    ("sgd", {"momentum": NAN}, "momentum"),
    ("sgd", {"dampening": NAN}, "dampening"),
    ("sgd", {"nesterov": True, "momentum": 0.0}, "nesterov"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    ("adam", {"lr": -1e-3}, "lr"),
    ("adam", {"lr": NAN}, "lr"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"eps": NAN}, "eps"),
    ("adam", {"eps": INF}, "eps"),
    ("adam", {"weight_decay": -0.01}, "weight_decay"),
    ("adam", {"weight_decay": INF}, "weight_decay"),
    ("adam", {"l1": NAN}, "l1"),
    ("adam", {"betas": (1.0, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, 1.0)}, "betas"),
    ("adam", {"betas": (-0.1, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, -1e-9)}, "betas"),
    ("adam", {"betas": (NAN, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, INF)}, "betas"),
    ("adam", {"betas": (0.9,)}, "betas"),
    ("adam", {"betas": 0.9}, "betas"),
    ("adamw", {"weight_decay": -0.01}, "weight_decay"),
    ("adamw", {"betas": (0.9, 1.5)}, "betas"),
    ("adamw", {"lr": INF}, "lr"),
    ("rmsprop", {"lr": -0.01}, "lr"),
    ("rmsprop", {"alpha": -0.5}, "alpha"),
    ("rmsprop", {"alpha": NAN}, "alpha"),
    ("rmsprop", {"eps": -1.0}, "eps"),
    ("rmsprop", {"momentum": -0.1}, "momentum"),
    ("rmsprop", {"momentum": INF}, "momentum"),
    ("rmsprop", {"weight_decay": -1.0}, "weight_decay"),
    ("rmsprop", {"l1": -1.0}, "l1"),
]
CLASSES = {"sgd": fo.SGD, "adam": fo.Adam, "adamw": fo.AdamW, "rmsprop": fo.RMSprop}


def _hyper_id(case: tuple[str, dict[str, Any], str]) -> str:
    kind, kwargs, _ = case
    return kind + "-" + "-".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", BAD_HYPERS, ids=_hyper_id)
def test_bad_hyperparameter_at_construction(case: tuple[str, dict[str, Any], str]) -> None:
    kind, kwargs, name = case
    p = np.ones(3, F32)
    check_raises(lambda: CLASSES[kind]([p], **kwargs), HyperparameterError, ValueError, name)
    # Also when given only for one group.
    check_raises(
        lambda: CLASSES[kind]([{"params": [p]}, {"params": [np.ones(2)], **kwargs}]),
        HyperparameterError,
        ValueError,
        name,
    )
    assert np.array_equal(p, np.ones(3, F32))


_RIG_KIND = {"sgd": "sgd", "adam": "adam", "adamw": "adamw", "rmsprop": "rmsprop"}


@pytest.mark.parametrize("case", BAD_HYPERS, ids=_hyper_id)
@pytest.mark.parametrize("group", [0, 1])
def test_bad_hyperparameter_set_later(case: tuple[str, dict[str, Any], str], group: int) -> None:
    """Set through param_groups: the next step raises and changes nothing."""
    kind, kwargs, name = case
    rig = Rig(_RIG_KIND[kind])
    # A second group, so a bad value in either group is checked before any write.
    extra, extra_twin = np.ones(50, F64), np.ones(50, F64)
    rig.opt.add_param_group({"params": [extra], "lr": 0.02})
    rig.twin.add_param_group({"params": [extra_twin], "lr": 0.02})
    rig.params.append(extra)
    rig.twin_params.append(extra_twin)
    rig.good_step()
    target = rig.opt.param_groups[group]
    saved = {k: target[k] for k in kwargs}
    target.update(kwargs)
    for _ in range(2):  # raises every time, not only once
        check_raises(lambda: rig.opt.step(rig.grads()), HyperparameterError, ValueError, name)
    rig.assert_unchanged(groups=False)
    # state_dict() still works while the groups hold a bad value, and
    # loading such a state_dict is refused.
    bad_sd = rig.opt.state_dict()
    target.update(saved)
    rig.assert_unchanged()
    check_raises(lambda: rig.opt.load_state_dict(bad_sd), StateDictError, ValueError, name)
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_param_groups_broken_later(kind: str) -> None:
    """A group that lost a key, a removed group, a group that is not a dict."""
    rig = Rig(kind)
    extra, extra_twin = np.ones(50, F64), np.ones(50, F64)
    rig.opt.add_param_group({"params": [extra], "lr": 0.02})
    rig.twin.add_param_group({"params": [extra_twin], "lr": 0.02})
    rig.params.append(extra)
    rig.twin_params.append(extra_twin)
    rig.good_step()

    lr = rig.opt.param_groups[1].pop("lr")
    check_raises(lambda: rig.opt.step(rig.grads()), HyperparameterError, ValueError, "lr")
    rig.opt.param_groups[1]["lr"] = lr
    rig.assert_unchanged()

    group = rig.opt.param_groups.pop()
    check_raises(lambda: rig.opt.step(rig.grads()), ParamError, ValueError, "param groups")
    rig.opt.param_groups.append(group)
    rig.assert_unchanged()

    rig.opt.param_groups[1] = list(group.items())
    check_raises(lambda: rig.opt.step(rig.grads()), DtypeError, TypeError, "group")
    rig.opt.param_groups[1] = group
    rig.assert_nothing_lost()


# -- state_dict mismatches --------------------------------------------------


def _stepped(kind: str, arrays: Any, steps: int = 2, seed: int = 5) -> fo.Optimizer:
    rng = np.random.default_rng(seed)
    opt = FACTORIES[kind](arrays)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in opt.params])
    return opt


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_mismatch_positional(kind: str) -> None:
    rig = Rig(kind)
    fresh = [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]
    good = _stepped(kind, [p.copy() for p in fresh], steps=4).state_dict()

    def variant(edit: Callable[[dict], None]) -> dict:
        sd = copy.deepcopy(good)
        edit(sd)
        return sd

    def pop_state_key(sd: dict) -> None:
        del sd["state"]

    def two_params(sd: dict) -> None:
        sd["param_groups"][0]["params"] = [0, 1]
        del sd["state"][2]

    def four_params(sd: dict) -> None:
        sd["param_groups"][0]["params"] = [0, 1, 2, 3]

    def extra_group(sd: dict) -> None:
        sd["param_groups"].append(dict(sd["param_groups"][0], params=[]))

    def unknown_key(sd: dict) -> None:
        sd["state"][7] = sd["state"][0]

    def wrong_shape_last(sd: dict) -> None:
        # The first two params' state is fine: none of it may be loaded.
        slot = next(k for k in sd["state"][2] if k != "step")
        sd["state"][2][slot] = np.zeros(5)

    def transposed_shape(sd: dict) -> None:
        slot = next(k for k in sd["state"][1] if k != "step")
        sd["state"][1][slot] = sd["state"][1][slot].T.copy()

    def unknown_slot(sd: dict) -> None:
        sd["state"][1]["bogus_slot"] = np.zeros((2, 3), F32)

    def bad_step(sd: dict) -> None:
        sd["state"][2]["step"] = -1

    def fractional_step(sd: dict) -> None:
        sd["state"][2]["step"] = 1.5

    def slot_not_array(sd: dict) -> None:
        slot = next(k for k in sd["state"][2] if k != "step")
        sd["state"][2][slot] = "zeros"

    def state_not_dict(sd: dict) -> None:
        sd["state"][2] = [1, 2]

    def group_without_params(sd: dict) -> None:
        del sd["param_groups"][0]["params"]

    def bad_lr(sd: dict) -> None:
        sd["param_groups"][0]["lr"] = -5.0

    cases = {
        "no_state": (pop_state_key, ("state",)),
        "two_params": (two_params, ("2 params",)),
        "four_params": (four_params, ("4 params",)),
        "extra_group": (extra_group, ("2 param groups",)),
        "unknown_key": (unknown_key, ("7",)),
        "wrong_shape_last": (wrong_shape_last, ("#2", "shape")),
        "transposed_shape": (transposed_shape, ("#1", "shape")),
        "unknown_slot": (unknown_slot, ("#1", "bogus_slot")),
        "negative_step": (bad_step, ("#2", "step")),
        "fractional_step": (fractional_step, ("#2", "step")),
        "slot_not_array": (slot_not_array, ("#2",)),
        "state_not_dict": (state_not_dict, ("2",)),
        "group_without_params": (group_without_params, ("params",)),
        "bad_lr": (bad_lr, ("lr",)),
    }
    lr_before = rig.opt.param_groups[0]["lr"]
    for what, (edit, words) in cases.items():
        sd = variant(edit)
        sd_before = copy.deepcopy(sd)
        with pytest.raises(StateDictError) as info:
            rig.opt.load_state_dict(sd)
        assert isinstance(info.value, ValueError)
        for word in words:
            assert word in str(info.value), (what, word, str(info.value))
        assert rig.opt.param_groups[0]["lr"] == lr_before, what
        rig.assert_unchanged()
        # The rejected dict itself was not modified either.
        assert deep_equal(sd, sd_before), what
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_mismatch_named(kind: str) -> None:
    rig = Rig(kind, named=True)
    other = {"w": np.ones(5, F32), "bias": np.ones((2, 3), F32), "other": np.ones(4)}
    sd = _stepped(kind, other).state_dict()
    with pytest.raises(StateDictError, match="c64") as info:
        rig.opt.load_state_dict(sd)
    assert "other" in str(info.value)
    rig.assert_unchanged()
    # Same names, one shape differs (the last one), so nothing may be loaded.
    same_names = {"w": np.ones(5, F32), "bias": np.ones((2, 3), F32), "c64": np.ones(3)}
    sd = _stepped(kind, same_names).state_dict()
    with pytest.raises(StateDictError, match="'c64'"):
        rig.opt.load_state_dict(sd)
    rig.assert_unchanged()
    # A positional state_dict into a named optimizer: keys don't match.
    sd = _stepped(kind, [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(sd)
    rig.assert_nothing_lost()


def test_state_dict_of_other_optimizer_class() -> None:
    rig = Rig("adam")
    sgd_sd = _stepped("sgd", [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(sgd_sd)
    rig.assert_nothing_lost()
    rig = Rig("sgd")
    adam_sd = _stepped("adam", [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(adam_sd)
    rig.assert_nothing_lost()


@pytest.mark.parametrize("bad", [None, [], "sd", {"state": {}}, {"param_groups": []}])
def test_state_dict_not_a_state_dict(bad: Any) -> None:
    rig = Rig("adam")
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(bad)
    rig.assert_nothing_lost()


def test_exception_hierarchy() -> None:
    for exc in (HyperparameterError, ParamError, GradError, StateDictError):
        assert issubclass(exc, ValueError)
        assert not issubclass(exc, TypeError)
    assert issubclass(DtypeError, TypeError)
    assert not issubclass(DtypeError, ValueError)
    assert len({HyperparameterError, ParamError, GradError, DtypeError, StateDictError}) == 5

"""The torch.optim-style API: param groups, named params, None grads,
hyperparameters changed mid-run, state_dict round trips, odd shapes."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import exceptions

F32, F64 = np.float32, np.float64

FACTORIES: dict[str, Callable[..., fo.Optimizer]] = {
    "sgd": lambda p, **kw: fo.SGD(p, **{"lr": 0.1, "momentum": 0.9, **kw}),
    "sgd_nesterov": lambda p, **kw: fo.SGD(
        p, **{"lr": 0.05, "momentum": 0.9, "nesterov": True, **kw}
    ),
    "adam": lambda p, **kw: fo.Adam(p, **{"lr": 0.01, **kw}),
    "adam_amsgrad": lambda p, **kw: fo.Adam(p, **{"lr": 0.01, "amsgrad": True, **kw}),
    "adamw": lambda p, **kw: fo.AdamW(p, **{"lr": 0.01, **kw}),
    "rmsprop": lambda p, **kw: fo.RMSprop(
        p, **{"lr": 0.01, "momentum": 0.5, "centered": True, **kw}
    ),
}
KINDS = list(FACTORIES)


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


def make_params(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(50_000).astype(F32),
        rng.standard_normal((3, 4)).astype(F32),
        rng.standard_normal(7),
    ]


def grad_stream(params: list[np.ndarray], n: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(n)]


def assert_params_equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype and g.shape == w.shape, i
        assert np.array_equal(g, w), i


# -- param groups -----------------------------------------------------------


def test_param_groups_with_different_lrs() -> None:
    a, b, c = np.ones(4), np.ones(3), np.ones(2)
    opt = fo.SGD([{"params": [a], "lr": 0.1}, {"params": [b, c], "lr": 0.01}], lr=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    ga, gb, gc = np.full(4, 2.0), np.full(3, 3.0), np.full(2, -1.0)
    opt.step([ga, gb, gc])
    assert np.array_equal(a, 1.0 - 0.1 * ga)
    assert np.array_equal(b, 1.0 - 0.01 * gb)
    assert np.array_equal(c, 1.0 - 0.01 * gc)
    # A group without "lr" takes the default.
    d = np.ones(2)
    opt2 = fo.SGD([{"params": [d]}], lr=0.5)
    opt2.step([np.ones(2)])
    assert np.array_equal(d, [0.5, 0.5])


@pytest.mark.parametrize("kind", KINDS)
def test_param_groups_equal_separate_optimizers(kind: str) -> None:
    """Two groups with their own hyperparameters step exactly like two optimizers."""
    params = make_params()
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    opt = FACTORIES[kind](
        [{"params": a[:2], "lr": 0.03, "weight_decay": 0.1}, {"params": a[2:], "lr": 0.002}]
    )
    first = FACTORIES[kind](b[:2], lr=0.03, weight_decay=0.1)
    second = FACTORIES[kind](b[2:], lr=0.002)
    for g in grad_stream(params, 4):
        opt.step(g)
        first.step(g[:2])
        second.step(g[2:])
    assert_params_equal(a, b)


def test_group_hyperparameter_defaults_and_params_property() -> None:
    a, b = np.ones(2, F32), np.ones(3, F32)
    opt = fo.Adam([{"params": [a]}, {"params": [b], "betas": (0.5, 0.6)}], lr=0.02, eps=1e-6)
    g0, g1 = opt.param_groups
    assert g0["lr"] == g1["lr"] == 0.02 and g0["eps"] == g1["eps"] == 1e-6
    assert g0["betas"] == (0.9, 0.999) and g1["betas"] == (0.5, 0.6)
    assert g0["params"][0] is a and g1["params"][0] is b
    assert opt.params[0] is a and opt.params[1] is b
    assert opt.param_names is None
    assert opt.defaults["lr"] == 0.02


# -- named params -----------------------------------------------------------


@pytest.mark.parametrize("form", ["dict", "pairs"])
@pytest.mark.parametrize("kind", KINDS)
def test_named_params_match_positional(form: str, kind: str) -> None:
    params = make_params()
    names = ["w", "b", "head.bias"]
    named = [p.copy() for p in params]
    plain = [p.copy() for p in params]
    spec = (
        dict(zip(names, named, strict=True))
        if form == "dict"
        else list(zip(names, named, strict=True))
    )
    opt, ref = FACTORIES[kind](spec), FACTORIES[kind](plain)
    assert opt.param_names == names
    assert all(p is q for p, q in zip(opt.params, named, strict=True))
    for i, g in enumerate(grad_stream(params, 4)):
        if i % 2:
            opt.step(dict(zip(names, g, strict=True)))  # by name
        else:
            opt.step(g)  # a list in param order works too
        ref.step(g)
    assert_params_equal(named, plain)
    sd = opt.state_dict()
    assert set(sd["state"]) == set(names)
    assert sd["param_groups"][0]["params"] == names
    assert opt.step_counts == [4, 4, 4]


def test_named_groups() -> None:
    w, b = np.ones(3), np.ones(2)
    opt = fo.SGD([{"params": {"w": w}, "lr": 0.1}, {"params": [("b", b)], "lr": 1.0}])
    assert opt.param_names == ["w", "b"]
    assert opt.param_groups[0]["param_names"] == ["w"]
    assert opt.param_groups[1]["param_names"] == ["b"]
    opt.step({"b": np.ones(2), "w": np.ones(3)})  # dict order does not matter
    assert np.array_equal(w, [0.9] * 3) and np.array_equal(b, [0.0, 0.0])


def test_step_with_dict_of_grads_missing_names_skip() -> None:
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal(6).astype(F32), rng.standard_normal(2).astype(F32)
    w0, b0 = w.copy(), b.copy()
    opt = fo.Adam({"w": w, "b": b}, lr=0.1)
    opt.step({"w": np.ones(6, F32)})
    assert opt.step_counts == [1, 0]
    assert np.array_equal(b, b0) and not np.array_equal(w, w0)
    assert "b" not in opt.state_dict()["state"]
    opt.step({"b": np.ones(2, F32), "w": None})
    assert opt.step_counts == [1, 1]
    opt.step({})
    assert opt.step_counts == [1, 1]
    # b's first step used bias correction for t=1, like w's did.
    w_ref, b_ref = w0.copy(), b0.copy()
    fo.Adam([w_ref], lr=0.1).step([np.ones(6, F32)])
    fo.Adam([b_ref], lr=0.1).step([np.ones(2, F32)])
    assert np.array_equal(w, w_ref) and np.array_equal(b, b_ref)


# -- None grads -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_none_grads_skip_exactly(kind: str) -> None:
    params = make_params()
    opt = FACTORIES[kind]([p.copy() for p in params])
    stream = grad_stream(params, 6)
    for g in stream[:2]:
        opt.step(g)
    held = opt.params[1].copy()
    sd = opt.state_dict()
    others = [opt.params[0].copy(), opt.params[2].copy()]
    opt.step([stream[2][0], None, stream[2][2]])
    # The skipped param: value, state and step count untouched.
    assert np.array_equal(opt.params[1], held)
    assert opt.step_counts == [3, 2, 3]
    sd2 = opt.state_dict()
    assert deep_equal(sd2["state"][1], sd["state"][1])
    # The others moved and counted the step.
    assert not np.array_equal(opt.params[0], others[0])
    assert not np.array_equal(opt.params[2], others[1])
    assert sd2["state"][0]["step"] == 3
    # All None: nothing at all happens.
    before = [p.copy() for p in opt.params]
    opt.step([None, None, None])
    assert_params_equal(opt.params, before)
    assert opt.step_counts == [3, 2, 3]
    assert deep_equal(opt.state_dict(), sd2)
    # The skipped param continues exactly as if the skipped step never happened.
    solo = FACTORIES[kind]([params[1].copy()])
    for g in stream[:2] + stream[3:]:
        solo.step([g[1]])
    for g in stream[3:]:
        opt.step(g)
    assert np.array_equal(opt.params[1], solo.params[0])
    assert opt.step_counts == [6, 5, 6]


@pytest.mark.parametrize("kind", KINDS)
def test_none_grad_before_first_step_creates_no_state(kind: str) -> None:
    params = make_params()
    opt = FACTORIES[kind](params)
    opt.step([None, np.ones((3, 4), F32), None])
    assert set(opt.state_dict()["state"]) == {1}
    assert opt.step_counts == [0, 1, 0]


# -- hyperparameters changed mid-run ----------------------------------------

MID_RUN_CHANGES = [
    ("sgd", {"lr": 0.02}),
    ("sgd", {"momentum": 0.5}),
    ("sgd", {"weight_decay": 0.1}),
    ("sgd", {"dampening": 0.3}),
    ("sgd", {"maximize": True}),
    ("adam", {"lr": 0.001}),
    ("adam", {"betas": (0.5, 0.9)}),
    ("adam", {"weight_decay": 0.2}),
    ("adam", {"eps": 1e-3}),
    ("adam", {"l1": 0.01}),
    ("adamw", {"weight_decay": 0.5}),
    ("adamw", {"lr": 0.1, "betas": (0.8, 0.99)}),
    ("rmsprop", {"lr": 0.05}),
    ("rmsprop", {"alpha": 0.5}),
    ("rmsprop", {"weight_decay": 0.3}),
    ("rmsprop", {"momentum": 0.9}),
]


@pytest.mark.parametrize(
    ("kind", "change"),
    MID_RUN_CHANGES,
    ids=[f"{k}-{'-'.join(c)}" for k, c in MID_RUN_CHANGES],
)
def test_hyperparameter_change_mid_run_takes_effect(kind: str, change: dict) -> None:
    params = make_params()
    stream = grad_stream(params, 6)
    # `opt` runs 3 steps, then changes its param group and runs 3 more.
    opt = FACTORIES[kind]([p.copy() for p in params])
    unchanged = FACTORIES[kind]([p.copy() for p in params])
    for g in stream[:3]:
        opt.step(g)
        unchanged.step(g)
    # `fresh` is constructed with the new value from the start, on twin arrays,
    # and given opt's state (not its hyperparameters) at the switch.
    fresh = FACTORIES[kind]([p.copy() for p in opt.params], **change)
    sd = opt.state_dict()
    sd["param_groups"] = fresh.state_dict()["param_groups"]
    fresh.load_state_dict(sd)
    for key, value in change.items():
        assert fresh.param_groups[0][key] == value
        opt.param_groups[0][key] = value
    for g in stream[3:]:
        opt.step(g)
        fresh.step(g)
        unchanged.step(g)
    assert_params_equal(opt.params, fresh.params)
    assert deep_equal(opt.state_dict(), fresh.state_dict())
    assert not np.array_equal(opt.params[0], unchanged.params[0])


def test_lr_change_on_one_group_only() -> None:
    a, b = np.zeros(3), np.zeros(3)
    opt = fo.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    opt.step([np.ones(3), np.ones(3)])
    opt.param_groups[1]["lr"] = 0.25
    opt.step([np.ones(3), np.ones(3)])
    assert np.array_equal(a, [-2.0] * 3) and np.array_equal(b, [-1.25] * 3)


def test_hyperparameters_as_numpy_scalars() -> None:
    a, b = np.ones(5, F32), np.ones(5, F32)
    opt = fo.Adam([a], lr=np.float64(0.01), betas=(np.float64(0.8), np.float32(0.9)), eps=1e-8)
    ref = fo.Adam([b], lr=0.01, betas=(0.8, float(np.float32(0.9))), eps=1e-8)
    for _ in range(3):
        g = np.linspace(-1, 1, 5, dtype=F32)
        opt.step([g])
        ref.step([g])
    assert np.array_equal(a, b)
    c = np.ones(3)
    sgd = fo.SGD([c], lr=1)  # an int lr
    sgd.step([np.ones(3)])
    assert np.array_equal(c, np.zeros(3))


# -- add_param_group --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_add_param_group(kind: str) -> None:
    params = make_params()
    opt = FACTORIES[kind]([p.copy() for p in params[:2]], weight_decay=0.01)
    ref_old = FACTORIES[kind]([p.copy() for p in params[:2]], weight_decay=0.01)
    stream = grad_stream(params, 5)
    for g in stream[:2]:
        opt.step(g[:2])
        ref_old.step(g[:2])
    added = params[2].copy()
    opt.add_param_group({"params": [added], "lr": 0.003})
    assert len(opt.param_groups) == 2
    new = opt.param_groups[1]
    assert new["lr"] == 0.003 and new["weight_decay"] == 0.01  # default from the optimizer
    assert opt.params[2] is added
    assert opt.step_counts == [2, 2, 0]
    ref_new = FACTORIES[kind]([params[2].copy()], lr=0.003, weight_decay=0.01)
    for g in stream[2:]:
        opt.step(g)
        ref_old.step(g[:2])
        ref_new.step(g[2:])
    assert_params_equal(opt.params, ref_old.params + ref_new.params)
    assert opt.step_counts == [5, 5, 3]
    sd = opt.state_dict()
    assert sd["param_groups"][1]["params"] == [2]
    assert sd["state"][2]["step"] == 3


def test_add_param_group_named() -> None:
    w, b = np.ones(3, F32), np.ones(2, F32)
    opt = fo.SGD({"w": w}, lr=1.0)
    opt.add_param_group({"params": {"b": b}, "lr": 0.5})
    assert opt.param_names == ["w", "b"]
    opt.step({"b": np.ones(2, F32)})
    assert np.array_equal(b, [0.5, 0.5]) and np.array_equal(w, np.ones(3))
    assert opt.step_counts == [0, 1]
    with pytest.raises(exceptions.ParamError, match="'w'"):
        opt.add_param_group({"params": {"w": np.ones(1)}})
    assert opt.param_names == ["w", "b"]


# -- state_dict --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_is_a_copy(kind: str) -> None:
    params = make_params()
    opt = FACTORIES[kind]([p.copy() for p in params])
    ref = FACTORIES[kind]([p.copy() for p in params])
    stream = grad_stream(params, 5)
    for g in stream[:2]:
        opt.step(g)
        ref.step(g)
    sd = opt.state_dict()
    sd_again = opt.state_dict()
    # Mutate everything in the returned dict.
    n_arrays = 0
    for entry in sd["state"].values():
        for _key, value in entry.items():
            if isinstance(value, np.ndarray):
                value[...] = 123.0
                n_arrays += 1
        entry["step"] = 1000
    assert n_arrays >= 3
    sd["param_groups"][0]["lr"] = 99.0
    sd["param_groups"][0]["params"].append(42)
    sd["state"].clear()
    assert opt.param_groups[0]["lr"] != 99.0
    assert deep_equal(opt.state_dict(), sd_again)
    for g in stream[2:]:
        opt.step(g)
        ref.step(g)
    assert_params_equal(opt.params, ref.params)
    assert deep_equal(opt.state_dict(), ref.state_dict())


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_arrays_do_not_share_memory(kind: str) -> None:
    opt = FACTORIES[kind](make_params())
    for g in grad_stream(opt.params, 2):
        opt.step(g)
    arrays = [
        v for e in opt.state_dict()["state"].values() for v in e.values() if hasattr(v, "shape")
    ]
    arrays += [p for p in opt.params]
    for i, x in enumerate(arrays):
        for y in arrays[i + 1 :]:
            assert not np.shares_memory(x, y)


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_copies(kind: str) -> None:
    params = make_params()
    src = FACTORIES[kind]([p.copy() for p in params])
    stream = grad_stream(params, 6)
    for g in stream[:3]:
        src.step(g)
    sd = src.state_dict()
    pristine = copy.deepcopy(sd)
    dst = FACTORIES[kind]([p.copy() for p in src.params])
    dst.load_state_dict(sd)
    for g in stream[3:5]:
        dst.step(g)
        src.step(g)
    # Later steps never mutate the dict that was passed in...
    assert deep_equal(sd, pristine)
    # ...and mutating it after loading does not reach the optimizer.
    for entry in sd["state"].values():
        for value in entry.values():
            if isinstance(value, np.ndarray):
                value[...] = -7.0
    sd["param_groups"][0]["lr"] = 1e6
    dst.step(stream[5])
    src.step(stream[5])
    assert_params_equal(dst.params, src.params)
    assert deep_equal(dst.state_dict(), src.state_dict())
    # The group dict of dst is not the one from sd.
    assert dst.param_groups[0]["lr"] != 1e6


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_positional(kind: str) -> None:
    params = make_params()
    stream = grad_stream(params, 8)
    run = FACTORIES[kind]([p.copy() for p in params])
    for g in stream:
        run.step(g)
    first = FACTORIES[kind]([p.copy() for p in params])
    for g in stream[:4]:
        first.step(g)
    sd = copy.deepcopy(first.state_dict())
    # A fresh optimizer built with other hyperparameters takes the saved ones.
    resumed = FACTORIES[kind]([p.copy() for p in first.params], lr=123.0)
    resumed.load_state_dict(sd)
    assert resumed.param_groups[0]["lr"] == first.param_groups[0]["lr"]
    assert deep_equal(resumed.state_dict(), first.state_dict())
    assert resumed.step_counts == [4, 4, 4]
    for g in stream[4:]:
        resumed.step(g)
    assert_params_equal(resumed.params, run.params)
    assert deep_equal(resumed.state_dict(), run.state_dict())


@pytest.mark.parametrize("form", ["dict", "pairs"])
@pytest.mark.parametrize("kind", KINDS)
def test_named_state_dict_loads_into_other_order(form: str, kind: str) -> None:
    params = make_params()
    names = ["encoder", "decoder", "bias"]
    stream = [dict(zip(names, g, strict=True)) for g in grad_stream(params, 8)]
    run = FACTORIES[kind](dict(zip(names, [p.copy() for p in params], strict=True)))
    for g in stream:
        run.step(g)
    first = FACTORIES[kind](dict(zip(names, [p.copy() for p in params], strict=True)))
    for g in stream[:4]:
        first.step(g)
    sd = first.state_dict()
    current = dict(zip(names, first.params, strict=True))
    order = ["bias", "encoder", "decoder"]
    moved = {n: current[n].copy() for n in order}
    spec = moved if form == "dict" else list(moved.items())
    resumed = FACTORIES[kind](spec)
    assert resumed.param_names == order
    resumed.load_state_dict(sd)
    assert resumed.step_counts == [4, 4, 4]
    for g in stream[4:]:
        resumed.step(g)
    for n in names:
        assert np.array_equal(moved[n], dict(zip(names, run.params, strict=True))[n]), n
    sd_run, sd_resumed = run.state_dict(), resumed.state_dict()
    assert deep_equal(
        {k: sd_run["state"][k] for k in names}, {k: sd_resumed["state"][k] for k in names}
    )


def test_named_state_dict_two_groups_other_order() -> None:
    rng = np.random.default_rng(4)
    vals = {n: rng.standard_normal(s).astype(F32) for n, s in [("a", 5), ("b", 3), ("c", 4)]}
    stream = [
        {n: rng.standard_normal(v.shape).astype(F32) for n, v in vals.items()} for _ in range(6)
    ]

    def build(order0: list[str], order1: list[str], arrays: dict) -> fo.Optimizer:
        return fo.Adam(
            [
                {"params": {n: arrays[n] for n in order0}, "lr": 0.1},
                {"params": [(n, arrays[n]) for n in order1], "lr": 0.01},
            ]
        )

    run = build(["a", "b"], ["c"], {n: v.copy() for n, v in vals.items()})
    first = build(["a", "b"], ["c"], {n: v.copy() for n, v in vals.items()})
    for g in stream:
        run.step(g)
    for g in stream[:3]:
        first.step(g)
    current = dict(zip(first.param_names, first.params, strict=True))
    resumed_arrays = {n: current[n].copy() for n in vals}
    resumed = build(["b", "a"], ["c"], resumed_arrays)
    resumed.load_state_dict(first.state_dict())
    assert [g["lr"] for g in resumed.param_groups] == [0.1, 0.01]
    for g in stream[3:]:
        resumed.step(g)
    final = dict(zip(run.param_names, run.params, strict=True))
    for n in vals:
        assert np.array_equal(resumed_arrays[n], final[n]), n


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_resets_params_without_saved_state(kind: str) -> None:
    """Loading replaces all state: a param with no saved state starts afresh."""
    params = make_params()
    stream = grad_stream(params, 6)
    src = FACTORIES[kind]([p.copy() for p in params])
    src.step([stream[0][0], None, stream[0][2]])
    sd = src.state_dict()
    assert set(sd["state"]) == {0, 2}
    dst = FACTORIES[kind]([p.copy() for p in params])
    for g in stream[:3]:
        dst.step(g)
    dst.load_state_dict(sd)
    assert dst.step_counts == [1, 0, 1]
    assert deep_equal(dst.state_dict(), sd)
    # Param 1 now steps exactly like a brand-new optimizer's would.
    solo = FACTORIES[kind]([dst.params[1].copy()])
    for g in stream[3:]:
        dst.step(g)
        solo.step([g[1]])
    assert np.array_equal(dst.params[1], solo.params[0])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_momentum_buffer_absent_before_first_step(momentum: float) -> None:
    p = np.ones(4, F32)
    opt = fo.SGD([p], lr=0.1, momentum=momentum)
    sd = opt.state_dict()
    assert sd["state"] == {}
    assert opt.step_counts == [0]
    g = np.arange(4, dtype=F32)
    opt.step([g])
    entry = opt.state_dict()["state"][0]
    assert entry["step"] == 1
    if momentum:
        assert np.array_equal(entry["momentum_buffer"], g)  # the first buffer is the grad
        assert entry["momentum_buffer"].dtype == F32
    else:
        assert "momentum_buffer" not in entry
    # Loading the empty state_dict back resets the buffer: the next step is a
    # "first" momentum step again.
    opt.load_state_dict(sd)
    assert opt.state_dict()["state"] == {}
    q = p.copy()
    ref = fo.SGD([q], lr=0.1, momentum=momentum)
    opt.step([g])
    ref.step([g])
    assert np.array_equal(p, q)


def test_adam_state_slots() -> None:
    p = np.ones(3)
    opt = fo.Adam([p], amsgrad=False)
    opt.step([np.ones(3)])
    assert set(opt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    opt.param_groups[0]["amsgrad"] = True
    opt.step([np.ones(3)])
    assert "max_exp_avg_sq" in opt.state_dict()["state"][0]


# -- odd shapes and dtypes -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_zero_dim_and_empty_params(kind: str) -> None:
    scalar = np.array(1.5, F64)
    empty = np.zeros((0,), F32)
    empty2 = np.zeros((3, 0), F64)
    vec = np.ones(3, F32)
    opt = FACTORIES[kind]([scalar, empty, empty2, vec])
    ref_scalar = np.array([1.5])
    ref_vec = np.ones(3, F32)
    ref = FACTORIES[kind]([ref_scalar, ref_vec])
    for i in range(3):
        gs = np.array(0.25 * (i + 1))
        gv = np.full(3, 0.5 * (i + 1), F32)
        opt.step([gs, np.zeros((0,), F32), np.zeros((3, 0)), gv])
        ref.step([gs.reshape(1), gv])
    assert scalar.shape == () and empty.shape == (0,) and empty2.shape == (3, 0)
    assert scalar.item() == ref_scalar[0] and scalar.item() != 1.5
    assert np.array_equal(vec, ref_vec)
    assert opt.step_counts == [3, 3, 3, 3]
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 3
    for entry_key, shape in [(0, ()), (1, (0,)), (2, (3, 0))]:
        for slot, value in sd["state"][entry_key].items():
            if slot != "step":
                assert value.shape == shape, (entry_key, slot)
    # Round trip with 0-d and empty state.
    clone = FACTORIES[kind]([scalar.copy(), empty.copy(), empty2.copy(), vec.copy()])
    clone.load_state_dict(sd)
    assert deep_equal(clone.state_dict(), sd)
    # Shape-mismatched grads are still refused for 0-d and empty params.
    with pytest.raises(exceptions.GradError):
        opt.step([np.array([1.0]), np.zeros((0,), F32), np.zeros((3, 0)), gv])
    with pytest.raises(exceptions.GradError):
        opt.step([gs, np.zeros((1,), F32), np.zeros((3, 0)), gv])


def test_many_empty_params_do_not_collide() -> None:
    empties = [np.empty(0, F32) for _ in range(5)]
    opt = fo.Adam(empties)
    opt.step([np.empty(0, F32)] * 5)
    assert opt.step_counts == [1] * 5


@pytest.mark.parametrize("kind", KINDS)
def test_float32_and_float64_mixed(kind: str) -> None:
    rng = np.random.default_rng(11)
    shapes_dtypes = [(40_000, F32), (40_000, F64), ((5, 5), F64), (9, F32), ((70_001,), F64)]
    params = [rng.standard_normal(s).astype(d) for s, d in shapes_dtypes]
    mixed = [p.copy() for p in params]
    opt = FACTORIES[kind](mixed)
    singles = [FACTORIES[kind]([p.copy()]) for p in params]
    for _ in range(4):
        g = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(g)
        for s, gi in zip(singles, g, strict=True):
            s.step([gi])
    for m, s, p in zip(mixed, singles, params, strict=True):
        assert m.dtype == p.dtype
        assert np.array_equal(m, s.params[0])
    sd = opt.state_dict()
    for i, p in enumerate(params):
        for slot, value in sd["state"][i].items():
            if slot != "step":
                assert value.dtype == p.dtype, (i, slot)


def test_float32_state_is_float32_math() -> None:
    """A float32 param is updated with float32 arithmetic (as torch does)."""
    p = np.array([1.0, -2.0, 3.0], F32)
    g = np.array([0.1, 0.2, -0.3], F32)
    fo.SGD([p], lr=0.1).step([g])
    want = np.array([1.0, -2.0, 3.0], F32) + np.float32(-0.1) * g
    assert p.dtype == F32
    assert np.array_equal(p, want)


# -- repr, version, exports -------------------------------------------------


def test_repr_contains_group_info() -> None:
    opt = fo.Adam(
        [{"params": [np.ones(2)], "lr": 0.125}, {"params": [np.ones(3)], "weight_decay": 0.5}],
        lr=0.25,
    )
    text = repr(opt)
    assert text.startswith("Adam")
    assert "Parameter Group 0" in text and "Parameter Group 1" in text
    assert "lr: 0.125" in text and "lr: 0.25" in text
    assert "weight_decay: 0.5" in text
    assert "betas: (0.9, 0.999)" in text
    opt.param_groups[0]["lr"] = 0.0625
    assert "lr: 0.0625" in repr(opt)
    assert "array" not in text  # params are not dumped
    assert repr(fo.RMSprop([np.ones(1)])).startswith("RMSprop")
    assert repr(fo.AdamW([np.ones(1)])).startswith("AdamW")
    assert repr(fo.SGD([np.ones(1)])).startswith("SGD")


def test_version_is_a_string() -> None:
    assert isinstance(fo.__version__, str)
    assert fo.__version__
    assert fo.__version__[0].isdigit()


def test_everything_in_all_is_importable() -> None:
    assert len(fo.__all__) == len(set(fo.__all__))
    for name in fo.__all__:
        assert hasattr(fo, name), name
        obj = getattr(fo, name)
        assert obj is not None, name
    ns: dict[str, Any] = {}
    exec("from ferroptim import *", ns)
    for name in fo.__all__:
        assert name in ns
    for name in ["SGD", "Adam", "AdamW", "RMSprop"]:
        cls = getattr(fo, name)
        assert inspect.isclass(cls) and issubclass(cls, fo.Optimizer)
    for name in exceptions.__all__:
        assert inspect.isclass(getattr(exceptions, name))


def test_exceptions_subclass_builtin_errors() -> None:
    assert issubclass(exceptions.HyperparameterError, ValueError)
    assert issubclass(exceptions.ParamError, ValueError)
    assert issubclass(exceptions.GradError, ValueError)
    assert issubclass(exceptions.StateDictError, ValueError)
    assert issubclass(exceptions.DtypeError, TypeError)
    assert set(exceptions.__all__) == {
        "HyperparameterError",
        "ParamError",
        "GradError",
        "DtypeError",
        "StateDictError",
    }
    # Raised ones are catchable as the builtin base.
    with pytest.raises(ValueError):
        fo.SGD([np.ones(2)], lr=-1)
    with pytest.raises(TypeError):
        fo.SGD([np.ones(2, np.int64)])


def test_simd_level_roundtrip() -> None:
    level = fo.simd_level()
    assert level in {"avx512", "avx2", "sse2", "neon", "scalar"}
    try:
        assert fo.set_simd_level("baseline") in {"sse2", "neon", "scalar"}
        assert fo.simd_level() in {"sse2", "neon", "scalar"}
        with pytest.raises(ValueError, match="level"):
            fo.set_simd_level("avx9000")
    finally:
        fo.set_simd_level(level)
    assert fo.simd_level() == level


def available_simd_levels(set_level: Callable[[str], str] = fo.set_simd_level) -> list[str]:
    """The distinct instruction sets this CPU runs: ``set_simd_level`` caps at the
    wanted level and returns the one in use, so asking for a level the CPU lacks
    gives a lower one again (comparing it would compare a level with itself)."""
    level = fo.simd_level()
    seen: list[str] = []
    try:
        for wanted in ["baseline", "avx2", "avx512"]:
            used = set_level(wanted)
            if used not in seen:
                seen.append(used)
    finally:
        fo.set_simd_level(level)
    return seen


def test_available_simd_levels_are_distinct() -> None:
    """On a CPU without AVX-512, asking for it gives avx2: listed once, not twice."""
    capped = {"baseline": "sse2", "avx2": "avx2", "avx512": "avx2"}
    assert available_simd_levels(capped.__getitem__) == ["sse2", "avx2"]
    assert len(set(available_simd_levels())) == len(available_simd_levels())


@pytest.mark.parametrize("kind", KINDS)
def test_simd_levels_agree_bitwise(kind: str) -> None:
    """Every instruction set this CPU has gives the same bits (no FMA contraction)."""
    levels = available_simd_levels()
    if len(levels) < 2:
        pytest.skip(f"only one SIMD level available here ({levels[0]}): nothing to compare")
    level = fo.simd_level()
    results = []
    try:
        for wanted in levels:
            assert fo.set_simd_level(wanted) == wanted
            params = make_params()
            opt = FACTORIES[kind](params, weight_decay=0.01)
            for g in grad_stream(params, 3):
                opt.step(g)
            results.append(params)
    finally:
        fo.set_simd_level(level)
    for other in results[1:]:
        assert_params_equal(other, results[0])


def test_cpu_step_does_not_import_the_cuda_package() -> None:
    """Asking whether grads are GPU arrays must not load ferroptim.cuda (fresh process:
    other tests here may have imported it)."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
import ferroptim as fo
w = np.zeros(3, np.float32)
for params, grads in (([w], [np.ones(3, np.float32)]), ({"w": w}, {"w": np.ones(3, np.float32)})):
    opt = fo.AdamW(params, accumulate=2, max_grad_norm=1.0)
    opt.step(grads)
    opt.step(grads)
    opt.state_dict()
arena = fo.ParamArena({"a": (2, 3)})
arena.grad[:] = 1
fo.SGD(arena, lr=0.1).step()
print(sorted(m for m in sys.modules if m.startswith("ferroptim.cuda")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cuda_device_does_not_import_emulate() -> None:
    """device.py is the lower layer; emulate.py builds on it (no import circle)."""
    import ast
    from pathlib import Path

    import ferroptim.cuda.device as device

    tree = ast.parse(Path(device.__file__).read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "ferroptim.cuda.emulate" not in imported and "emulate" not in names


def test_arena_property_is_public_and_read_only() -> None:
    arena = fo.ParamArena({"w": (2, 2)})
    opt = fo.AdamW(arena)
    assert opt.arena is arena
    assert fo.SGD([np.zeros(3, F32)]).arena is None
    with pytest.raises(AttributeError):
        opt.arena = None  # type: ignore[misc]


def test_trainer_checks_the_public_arena() -> None:
    """The Trainer asks ``optimizer.arena``, so a wrapper exposing only the public
    property is accepted."""
    from ferroptim.train import Trainer
    from ferroptim.train.models import logistic_regression

    model = logistic_regression(4, 3, seed=0)
    inner = fo.AdamW(model.arena)

    class Wrapper:
        arena = property(lambda self: inner.arena)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_arena"):
                raise AttributeError(name)
            return getattr(inner, name)

    trainer = Trainer(model, Wrapper(), loss="cross_entropy", verbose=0)
    assert trainer.optimizer.arena is model.arena


def test_plateau_callback_has_its_own_name() -> None:
    """The schedule and the callback no longer share a name; the old callback name warns."""
    from ferroptim import train
    from ferroptim.schedules import ReduceLROnPlateau as Schedule

    assert fo.ReduceLROnPlateau is Schedule
    assert issubclass(train.ReduceLROnPlateauCallback, train.Callback)
    assert "ReduceLROnPlateauCallback" in train.__all__
    with pytest.warns(DeprecationWarning, match="ReduceLROnPlateauCallback"):
        old = train.ReduceLROnPlateau("val_loss", patience=1)
    assert isinstance(old, train.ReduceLROnPlateauCallback)

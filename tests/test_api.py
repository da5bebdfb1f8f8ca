"""The torch.optim-style API: param groups, named params, None grads,
hyperparameters changed mid-run, add_param_group. State dicts and odd shapes
are in test_api_state_dict.py, the package surface (repr, exports, SIMD
levels, lazy imports) in test_api_package.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from _api_helpers import (
    F32,
    FACTORIES,
    KINDS,
    assert_params_equal,
    deep_equal,
    grad_stream,
    make_params,
)
from ferroptim import exceptions

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

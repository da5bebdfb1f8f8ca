"""The torch.optim-style API, part 2: state_dict copies and round trips
(positional and named), the state slots each optimizer keeps, and odd
shapes and dtypes (0-d, empty, mixed float32/float64).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import ferroptim as fo
from _api_helpers import (
    F32,
    F64,
    FACTORIES,
    KINDS,
    assert_params_equal,
    deep_equal,
    grad_stream,
    make_params,
)
from ferroptim import exceptions

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

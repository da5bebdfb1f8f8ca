"""Step options that combine several steps: weight averaging (EMA, running
mean, averaged_params, state-dict round trip) and grad accumulation.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _step_options_helpers import (
    DTYPES,
    F32,
    F64,
    FACTORIES,
    INF,
    bits,
    make_grads,
    make_params,
    state_equal,
)
from ferroptim import exceptions

# -- weight averaging ------------------------------------------------------------------------


def none_pattern(t: int, i: int) -> bool:
    return (t + i) % 5 == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adamw", "sgd", "nadam", "lion"])
def test_ema_matches_numpy(name: str, dtype: Any) -> None:
    decay = 0.9
    rng = np.random.default_rng(5)
    params = make_params(dtype, seed=3)
    opt = FACTORIES[name](params, ema_decay=decay)
    ema: list[np.ndarray | None] = [None] * len(params)
    w = dtype(1 - decay)
    for t in range(30):
        grads = make_grads(rng, dtype)
        grads = [None if none_pattern(t, i) else g for i, g in enumerate(grads)]
        opt.step(grads)
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            if ema[i] is None:
                ema[i] = p.copy()  # starts from the first stepped weights
            else:
                ema[i] = np.asarray(ema[i] + w * (p - ema[i]), dtype=dtype)
    state = opt.state_dict()["state"]
    counts = opt.step_counts
    for i, a in enumerate(ema):
        assert state[i]["n_averaged"] == counts[i] == sum(not none_pattern(t, i) for t in range(30))
        assert state[i]["averaged_param"].dtype == dtype
        np.testing.assert_allclose(
            state[i]["averaged_param"], a, rtol=1e-6 if dtype == F32 else 1e-13
        )
    current = [p.copy() for p in params]
    with opt.averaged_params():
        for p, a in zip(params, ema):
            np.testing.assert_allclose(p, a, rtol=1e-6 if dtype == F32 else 1e-13)
        assert not np.array_equal(params[2], current[2])
    assert bits(params) == bits(current)


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_weights_is_running_mean(dtype: Any) -> None:
    rng = np.random.default_rng(6)
    params = make_params(dtype, seed=4)
    opt = fo.SGD(params, lr=0.1, momentum=0.9, ema_equal_weights=True)
    history: list[list[np.ndarray]] = []
    for _ in range(17):
        opt.step(make_grads(rng, dtype))
        history.append([p.copy() for p in params])
    state = opt.state_dict()["state"]
    for i in range(len(params)):
        mean = np.mean([h[i].astype(F64) for h in history], axis=0)
        assert state[i]["n_averaged"] == 17
        np.testing.assert_allclose(
            state[i]["averaged_param"], mean, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-7
        )


def test_averaged_params_restores_on_exit_and_on_error() -> None:
    params = make_params(F32)
    opt = fo.Adam(params, lr=0.1, ema_decay=0.5)
    rng = np.random.default_rng(0)
    for _ in range(4):
        opt.step(make_grads(rng, F32))
    ids = [id(p) for p in params]
    current = bits(params)
    averaged = [opt.state_dict()["state"][i]["averaged_param"] for i in range(len(params))]
    with pytest.raises(RuntimeError, match="inside"):
        with opt.averaged_params():
            assert bits(params) == bits(averaged)
            raise RuntimeError("inside")
    assert bits(params) == current
    assert [id(p) for p in opt.params] == ids
    with opt.averaged_params():
        assert bits(params) == bits(averaged)
    assert bits(params) == current
    # The average itself is untouched by the swaps.
    assert bits([opt.state_dict()["state"][i]["averaged_param"] for i in range(4)]) == bits(
        averaged
    )


def test_averaging_state_dict_round_trip() -> None:
    rng = np.random.default_rng(8)
    params = make_params(F64)
    opt = fo.RAdam(params, lr=0.01, ema_decay=0.8)
    for _ in range(5):
        opt.step(make_grads(rng, F64))
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    assert all({"averaged_param", "n_averaged"} <= set(s) for s in saved["state"].values())
    twin_params = [p.copy() for p in params]
    twin = fo.RAdam(twin_params, lr=0.01, ema_decay=0.8)
    twin.load_state_dict(saved)
    for _ in range(5):
        g = make_grads(rng, F64)
        opt.step(g)
        twin.step(g)
    assert state_equal(opt.state_dict(), twin.state_dict())
    with opt.averaged_params(), twin.averaged_params():
        assert bits(params) == bits(twin_params)
    assert bits(params) == bits(twin_params)


def test_averaging_errors() -> None:
    p = [np.zeros(3)]
    with pytest.raises(exceptions.HyperparameterError):
        fo.Adam(p, ema_decay=0.9, ema_equal_weights=True)
    for bad in (-0.1, 1.0, 1.5, float("nan"), INF):
        with pytest.raises(exceptions.HyperparameterError, match="ema_decay"):
            fo.Adam(p, ema_decay=bad)
    fo.Adam(p, ema_decay=0.0)  # [0, 1): 0 is allowed
    opt = fo.Adam(p)
    with pytest.raises(ValueError, match="averaged"):
        with opt.averaged_params():
            pass


# -- accumulation ------------------------------------------------------------------------


@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adamw", "sgd", "nadam", "adagrad", "lion"])
def test_accumulate_equals_one_step(name: str, dtype: Any, mean: bool) -> None:
    k = 3
    factory = FACTORIES[name]
    rng = np.random.default_rng(9)
    params = make_params(dtype, seed=5)
    twin_params = [p.copy() for p in params]
    opt = factory(params, accumulate=k, accumulate_mean=mean)
    twin = factory(twin_params)
    for r in range(4):
        micro = [make_grads(rng, dtype) for _ in range(k)]
        micro[1][0] = None  # param 0 skips one micro-step
        if r == 2:
            for g in micro:
                g[2] = None  # param 2 skips the whole round
        for j, g in enumerate(micro):
            before, state = bits(params), opt.state_dict()
            applied = opt.step(g)
            if j < k - 1:
                assert applied is False
                assert bits(params) == before
                # Only the pending micro-batch grads move (state_dict's "accumulation").
                after = {k: v for k, v in opt.state_dict().items() if k != "accumulation"}
                state = {k: v for k, v in state.items() if k != "accumulation"}
                assert state_equal(after, state)
        assert applied is True
        combined: list[Any] = []
        for i in range(len(params)):
            parts = [g[i] for g in micro if g[i] is not None]
            if not parts:
                combined.append(None)
                continue
            total = parts[0].copy()
            for part in parts[1:]:
                total += part
            combined.append(np.asarray(total * dtype(1 / k), dtype=dtype) if mean else total)
        twin.step(combined)
        assert bits(params) == bits(twin_params), f"round {r}"
        assert opt.step_counts == twin.step_counts
    assert opt.num_updates == 4
    assert opt.step_counts == [4, 4, 3, 4]


def test_accumulate_with_clipping() -> None:
    rng = np.random.default_rng(10)
    params = make_params(F64)
    twin_params = [p.copy() for p in params]
    opt = fo.Adam(params, lr=0.01, accumulate=4, max_grad_norm=0.5)
    twin = fo.Adam(twin_params, lr=0.01, max_grad_norm=0.5)
    for _ in range(3):
        micro = [make_grads(rng, F64) for _ in range(4)]
        for g in micro:
            opt.step(g)
        twin.step([np.asarray(sum(g[i] for g in micro) / 4) for i in range(len(params))])
        np.testing.assert_allclose(opt.last_grad_norm, twin.last_grad_norm, rtol=1e-13)
        for a, b in zip(params, twin_params):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_accumulate_with_arena() -> None:
    shapes = {"w": (5, 3), "b": (3,), "head": (3, 2)}
    arena = fo.ParamArena(shapes, F32)
    rng = np.random.default_rng(12)
    for name in arena:
        arena[name][...] = rng.standard_normal(arena[name].shape)
    twin_params = {n: arena[n].copy() for n in arena}
    opt = fo.Adam(arena, lr=0.05, accumulate=2)
    twin = fo.Adam(twin_params, lr=0.05)
    for _ in range(3):
        sums = {n: np.zeros(s, F32) for n, s in shapes.items()}
        for j in range(2):
            for n in arena:
                g = rng.standard_normal(shapes[n]).astype(F32)
                arena.grads[n][...] = g
                sums[n] += g
            before = arena.data.copy()
            applied = opt.step()
            assert applied is (j == 1)
            if j == 0:
                assert arena.data.tobytes() == before.tobytes()
        twin.step({n: sums[n] * F32(0.5) for n in shapes})
        for n in shapes:
            assert arena[n].tobytes() == twin_params[n].tobytes(), n


def test_accumulate_validation() -> None:
    p = [np.zeros(3)]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(exceptions.HyperparameterError, match="accumulate"):
            fo.SGD(p, lr=0.1, accumulate=bad)
    opt = fo.SGD(p, lr=0.1, accumulate=2)
    with pytest.raises(exceptions.DtypeError):
        opt.step([np.zeros(3, F32)])
    with pytest.raises(exceptions.GradError):
        opt.step([np.zeros(4)])
    assert opt.step([np.ones(3)]) is False
    assert opt.step([np.ones(3)]) is True
    np.testing.assert_allclose(p[0], -0.1)
    # A 0-d param's grad must be an array: a NumPy scalar would not add in place.
    scalar = fo.SGD([np.zeros(())], lr=0.1, accumulate=2)
    with pytest.raises(exceptions.DtypeError, match="NumPy float64 array"):
        scalar.step([np.float64(1.0)])
    assert scalar.step([np.ones(())]) is False

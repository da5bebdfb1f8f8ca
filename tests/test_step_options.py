"""The step options every optimizer takes (keyword-only): clipping fused into
the step, skipping non-finite steps, weight averaging, grad accumulation, and
freezing params."""

from __future__ import annotations

import contextlib
import copy
import inspect
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import exceptions

F32, F64 = np.float32, np.float64
INF = float("inf")
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
SHAPES: list[tuple[int, ...]] = [(), (7,), (33, 17), (40000,)]

# name -> (ferroptim factory, torch factory), same hyperparameters on both. The torch
# factory takes the torch module first: only tests that got it from the fixture call it.
PAIRS: dict[str, tuple[Callable[..., fo.Optimizer], Callable[..., Any]]] = {
    "adamw": (
        lambda p, **o: fo.AdamW(p, lr=0.01, weight_decay=0.05, **o),
        lambda torch, p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05, foreach=False),
    ),
    "adam_amsgrad": (
        lambda p, **o: fo.Adam(p, lr=0.01, amsgrad=True, **o),
        lambda torch, p: torch.optim.Adam(p, lr=0.01, amsgrad=True, foreach=False),
    ),
    "sgd": (
        lambda p, **o: fo.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **o),
        lambda torch, p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, foreach=False),
    ),
    "rmsprop": (
        lambda p, **o: fo.RMSprop(p, lr=0.01, centered=True, **o),
        lambda torch, p: torch.optim.RMSprop(p, lr=0.01, centered=True, foreach=False),
    ),
    "adagrad": (
        lambda p, **o: fo.Adagrad(p, lr=0.05, weight_decay=0.1, **o),
        lambda torch, p: torch.optim.Adagrad(p, lr=0.05, weight_decay=0.1, foreach=False),
    ),
    "adadelta": (
        lambda p, **o: fo.Adadelta(p, lr=1.0, **o),
        lambda torch, p: torch.optim.Adadelta(p, lr=1.0, foreach=False),
    ),
    "adamax": (
        lambda p, **o: fo.Adamax(p, lr=0.01, **o),
        lambda torch, p: torch.optim.Adamax(p, lr=0.01, foreach=False),
    ),
    "nadam": (
        lambda p, **o: fo.NAdam(p, lr=0.01, **o),
        lambda torch, p: torch.optim.NAdam(p, lr=0.01, foreach=False),
    ),
    "radam": (
        lambda p, **o: fo.RAdam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, **o),
        lambda torch, p: torch.optim.RAdam(
            p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, foreach=False
        ),
    ),
}
# Every optimizer, for the options that need no torch reference.
FACTORIES: dict[str, Callable[..., fo.Optimizer]] = {
    **{name: pair[0] for name, pair in PAIRS.items()},
    "lion": lambda p, **o: fo.Lion(p, lr=0.01, weight_decay=0.1, **o),
}
CLASSES = [fo.SGD, fo.Adam, fo.AdamW, fo.RMSprop, fo.Adagrad, fo.Adadelta]
CLASSES += [fo.Adamax, fo.NAdam, fo.RAdam, fo.Lion]


def tol(dtype: Any) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == F32 else {"rtol": 1e-10, "atol": 1e-12}


@contextlib.contextmanager
def torch_default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    """torch under its default dtype, float32: NAdam's mu_product is then a
    float32 scalar, as ferroptim's default ``mu_product_dtype``."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def make_params(dtype: Any, seed: int = 0, shapes: list[tuple[int, ...]] = SHAPES) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]


def make_grads(
    rng: np.random.Generator, dtype: Any, shapes: list[tuple[int, ...]] = SHAPES
) -> list[Any]:
    scale = 10.0 ** rng.uniform(-3.5, 0.5)  # the clip binds on some steps only
    return [np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in shapes]


def bits(arrays: list[np.ndarray]) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


def state_equal(a: Any, b: Any) -> bool:
    """Deep equality; arrays by dtype, shape and bits."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


# -- clipping fused into the step ------------------------------------------------------

CLIPS = {
    "norm2": {"max_grad_norm": 1.0},
    "norm_inf": {"max_grad_norm": 0.3, "norm_type": INF},
    "value": {"clip_value": 0.05},
    "norm_and_value": {"max_grad_norm": 2.0, "clip_value": 0.02},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("name", list(PAIRS))
def test_fused_clipping_matches_torch(
    name: str, clip: str, dtype: Any, torch_one_thread: Any
) -> None:
    """clip_grad_norm_, then clip_grad_value_, then the torch step."""
    torch = torch_one_thread
    options = CLIPS[clip]
    max_norm = options.get("max_grad_norm")
    norm_type = options.get("norm_type", 2.0)
    clip_value = options.get("clip_value")
    make_fo, make_torch = PAIRS[name]
    rng = np.random.default_rng(11)
    init = make_params(dtype)
    ours = [p.copy() for p in init]
    theirs = [torch.from_numpy(p.copy()) for p in init]
    bound = 0
    with torch_default_dtype(torch, dtype):
        opt = make_fo(ours, **options)
        topt = make_torch(torch, theirs)
        assert opt.last_grad_norm is None
        for t in range(25):
            grads = make_grads(rng, dtype)
            if t % 4 == 3:
                grads[1] = None  # the norm covers only the grads that step
            live = [p for p, g in zip(theirs, grads) if g is not None]
            for p, g in zip(theirs, grads):
                p.grad = None if g is None else torch.from_numpy(g.copy())
            expected_norm = None
            if max_norm is not None:
                expected_norm = float(
                    torch.nn.utils.clip_grad_norm_(live, max_norm, norm_type, foreach=False)
                )
                bound += expected_norm > max_norm
            if clip_value is not None:
                torch.nn.utils.clip_grad_value_(live, clip_value, foreach=False)
            topt.step()
            assert opt.step(grads) is True
            for i, (a, b) in enumerate(zip(ours, theirs)):
                np.testing.assert_allclose(a, b.numpy(), **tol(dtype), err_msg=f"{i} at {t}")
            if max_norm is not None:
                flat = np.concatenate([g.astype(F64).ravel() for g in grads if g is not None])
                exact = np.max(np.abs(flat)) if norm_type == INF else np.sqrt(flat @ flat)
                # The pre-clip norm, summed in float64 whatever the dtype.
                np.testing.assert_allclose(opt.last_grad_norm, exact, rtol=1e-12)
                np.testing.assert_allclose(opt.last_grad_norm, expected_norm, rtol=1e-6)
    if max_norm is not None:
        assert 0 < bound < 25, "the clip should bind on some steps and not on others"


def test_clip_value_clamps_what_the_rule_sees() -> None:
    # SGD without momentum: p -= lr * clamp(g); exact in float64.
    p = np.zeros(4)
    opt = fo.SGD([p], lr=1.0, clip_value=0.5)
    opt.step([np.array([2.0, -3.0, 0.25, -0.5])])
    np.testing.assert_array_equal(p, [-0.5, 0.5, -0.25, 0.5])
    assert opt.last_grad_norm is None  # no norm was needed


def test_max_grad_norm_scales_the_step() -> None:
    p = np.zeros(2)
    opt = fo.SGD([p], lr=1.0, max_grad_norm=1.0)
    opt.step([np.array([3.0, 4.0])])
    assert opt.last_grad_norm == 5.0
    np.testing.assert_allclose(p, [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_max_grad_norm_with_nonfinite_grad_matches_torch(bad: float, torch: Any) -> None:
    """Without skip_nonfinite, torch's clip_grad_norm_ turns a NaN norm into a
    NaN coefficient (every param becomes NaN) and an infinite norm into 0."""
    init = [np.zeros(2, F32), np.zeros(2, F32)]
    grads = [np.array([bad, 1.0], F32), np.array([3.0, 4.0], F32)]
    ours = [p.copy() for p in init]
    theirs = [torch.from_numpy(p.copy()) for p in init]
    for p, g in zip(theirs, grads):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(theirs, 1.0, foreach=False)
    torch.optim.SGD(theirs, lr=1.0, foreach=False).step()
    assert fo.SGD(ours, lr=1.0, max_grad_norm=1.0).step(grads) is True
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b.numpy())


# -- skip_nonfinite ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_skip_nonfinite(name: str, bad: float) -> None:
    factory = FACTORIES[name]
    rng = np.random.default_rng(3)
    params = make_params(F32, seed=1)
    twin_params = [p.copy() for p in params]
    opt = factory(params, skip_nonfinite=True, ema_decay=0.5)
    twin = factory(twin_params, ema_decay=0.5)  # never sees the bad steps
    for _ in range(3):
        g = make_grads(rng, F32)
        assert opt.step(g) is True
        twin.step(g)
    before_params = bits(params)
    before_state = opt.state_dict()
    before_counts = opt.step_counts
    for k, where in enumerate([(3, 123), (0, ()), (2, (32, 16))]):
        g = make_grads(rng, F32)
        g[where[0]][where[1]] = bad
        if k == 2:
            g[1] = None
        assert opt.step(g) is False
        assert opt.skipped_steps == k + 1
        assert bits(params) == before_params
        assert state_equal(opt.state_dict(), before_state)
        assert opt.step_counts == before_counts
        assert opt.num_updates == 3
        last = opt.last_grad_norm
        assert last is not None and not np.isfinite(last)
    # The next finite step proceeds as if the bad ones never happened.
    for _ in range(2):
        g = make_grads(rng, F32)
        assert opt.step(g) is True
        twin.step(g)
    assert opt.skipped_steps == 3
    assert bits(params) == bits(twin_params)
    assert state_equal(opt.state_dict(), twin.state_dict())
    # skip_nonfinite alone also reports the norm of the last step.
    flat = np.concatenate([x.astype(F64).ravel() for x in g])
    np.testing.assert_allclose(opt.last_grad_norm, np.sqrt(flat @ flat), rtol=1e-12)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_nonfinite_propagates_without_skip(name: str) -> None:
    params = make_params(F64, seed=2)
    opt = FACTORIES[name](params)
    g = make_grads(np.random.default_rng(0), F64)
    g[3][17] = np.nan
    assert opt.step(g) is True
    assert np.isnan(params[3][17])
    assert opt.skipped_steps == 0
    assert opt.step_counts == [1, 1, 1, 1]


def test_frozen_nonfinite_grads_do_not_skip() -> None:
    params = make_params(F32)
    opt = fo.Adam(params, lr=0.1, skip_nonfinite=True)
    opt.freeze(3)
    g = make_grads(np.random.default_rng(0), F32)
    g[3][0] = np.nan
    before = bits(params)
    assert opt.step(g) is True  # the frozen param's grad is not read
    assert bits(params)[3] == before[3] and bits(params)[2] != before[2]


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


# -- freeze / unfreeze -------------------------------------------------------------------


def named_params(dtype: Any = F32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(13)
    shapes = {"enc.w": (4, 3), "enc.b": (3,), "dec.w": (3, 2), "dec.b": (2,)}
    return {n: rng.standard_normal(s).astype(dtype) for n, s in shapes.items()}


def named_grads(rng: np.random.Generator, params: dict[str, np.ndarray]) -> dict[str, Any]:
    return {n: rng.standard_normal(p.shape).astype(p.dtype) for n, p in params.items()}


@pytest.mark.parametrize("name", ["adamw", "nadam", "lion", "adagrad"])
def test_freeze_by_pattern_and_unfreeze(name: str) -> None:
    params = named_params()
    fresh = {n: p.copy() for n, p in params.items()}
    opt = FACTORIES[name](params)
    opt.freeze("enc.*")
    assert sorted(opt.frozen) == ["enc.b", "enc.w"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert opt.step(named_grads(rng, params)) is True
    for n in ("enc.w", "enc.b"):
        assert params[n].tobytes() == fresh[n].tobytes()
        assert n not in opt.state_dict()["state"]
    for n in ("dec.w", "dec.b"):
        assert not np.array_equal(params[n], fresh[n])
    assert opt.step_counts == [0, 0, 3, 3]
    opt.unfreeze("enc.*")
    assert opt.frozen == []
    # The first step after thawing is a first step: it equals a fresh optimizer's.
    twin = FACTORIES[name]({"enc.w": params["enc.w"].copy(), "enc.b": params["enc.b"].copy()})
    grads = named_grads(rng, params)
    opt.step(grads)
    twin_params = twin.params
    twin.step({"enc.w": grads["enc.w"], "enc.b": grads["enc.b"]})
    assert params["enc.w"].tobytes() == twin_params[0].tobytes()
    assert params["enc.b"].tobytes() == twin_params[1].tobytes()
    assert opt.step_counts == [1, 1, 4, 4]


def test_freeze_by_name_index_and_group() -> None:
    params = named_params()
    opt = fo.Adam(params, lr=0.1)
    opt.freeze("dec.b")
    assert opt.frozen == ["dec.b"]
    opt.freeze("enc.w", "dec.b")
    assert sorted(opt.frozen) == ["dec.b", "enc.w"]
    opt.unfreeze("dec.b")
    assert opt.frozen == ["enc.w"]

    arrays = make_params(F64)
    before = bits(arrays)
    opt = fo.SGD([{"params": arrays[:2]}, {"params": arrays[2:], "lr": 0.01}], lr=0.1, momentum=0.9)
    opt.freeze(0)
    opt.freeze(group=1)
    assert sorted(opt.frozen) == [0, 2, 3]
    opt.step(make_grads(np.random.default_rng(1), F64))
    after = bits(arrays)
    assert [a == b for a, b in zip(after, before)] == [True, False, True, True]
    assert opt.step_counts == [0, 1, 0, 0]
    assert set(opt.state_dict()["state"]) == {1}
    opt.unfreeze(group=1)
    opt.step(make_grads(np.random.default_rng(2), F64))
    assert opt.step_counts == [0, 2, 1, 1]
    assert bits(arrays)[0] == before[0]


def test_freeze_errors() -> None:
    opt = fo.Adam(named_params(), lr=0.1)
    with pytest.raises(exceptions.ParamError, match="nope"):
        opt.freeze("nope*")
    with pytest.raises(exceptions.ParamError):
        opt.freeze(0)  # named params are frozen by name
    with pytest.raises(exceptions.ParamError, match="group"):
        opt.freeze(group=5)
    assert opt.frozen == []
    unnamed = fo.Adam(make_params(F32), lr=0.1)
    with pytest.raises(exceptions.ParamError):
        unnamed.freeze(4)
    assert unnamed.frozen == []


def test_freeze_in_arena() -> None:
    arena = fo.ParamArena({"base.w": (4, 4), "base.b": (4,), "head.w": (4, 2)}, F32)
    arena.data[:] = np.linspace(-1, 1, arena.size, dtype=F32)
    one_run = fo.AdamW(arena, lr=0.1)
    with pytest.raises(exceptions.ParamError, match="share one arena run") as info:
        one_run.freeze("base.*")
    for n in ("base.w", "base.b", "head.w"):
        assert n in str(info.value)
    assert one_run.frozen == []
    one_run.freeze("*")  # the whole run is fine
    assert sorted(one_run.frozen) == ["base.b", "base.w", "head.w"]

    groups = [{"params": arena.select("base.*")}, {"params": arena.select("head.*")}]
    opt = fo.AdamW(groups, lr=0.1)
    opt.freeze("base.*")
    before = arena.data.copy()
    arena.grad[:] = 1.0
    assert opt.step() is True
    n_base = 4 * 4 + 4
    assert arena.data[:n_base].tobytes() == before[:n_base].tobytes()
    assert not np.array_equal(arena.data[n_base:], before[n_base:])
    assert opt.step_counts == [0, 0, 1]


# -- the options are keyword-only on every optimizer --------------------------------------

ALL_OPTIONS = {
    "max_grad_norm": 1.0,
    "norm_type": 2.0,
    "clip_value": 0.5,
    "skip_nonfinite": True,
    "ema_decay": 0.99,
    "accumulate": 2,
    "accumulate_mean": False,
}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_optimizer_takes_every_option(cls: type[fo.Optimizer]) -> None:
    p = [np.zeros(3, F32)]
    opt = cls(p, **ALL_OPTIONS)
    assert opt.accumulate == 2
    assert opt.step([np.ones(3, F32)]) is False
    assert opt.step([np.full(3, np.nan, F32)]) is False
    assert opt.skipped_steps == 1
    assert p[0].tobytes() == np.zeros(3, F32).tobytes()
    # Keyword-only: nothing in the signature can take them by position.
    params = inspect.signature(cls).parameters
    assert not any(
        n in ALL_OPTIONS and v.kind is not inspect.Parameter.KEYWORD_ONLY for n, v in params.items()
    )
    with pytest.raises(TypeError):
        cls(p, max_grad_normm=1.0)
    copy.deepcopy(opt.state_dict())

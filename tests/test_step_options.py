"""The step options every optimizer takes (keyword-only): clipping fused into
the step and skipping non-finite steps. Weight averaging and grad
accumulation are in test_step_options_averaging.py, freezing params and the
keyword-only check in test_step_options_freeze.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    PAIRS,
    bits,
    make_grads,
    make_params,
    state_equal,
)


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

"""ferroptim's SGD, Adam, AdamW and RMSprop against the pure-NumPy references
of ``reference.py``: every option combination in float32 and float64 through
the shared scenario (param groups, None grads, lr changes, a state_dict
reload), closed-form first steps, named params, and random hyperparameters
(hypothesis). Needs no torch."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ferroptim as fo
from reference import (
    F32,
    F64,
    LR_CHANGE_AT,
    RELOAD_AT,
    SPECS,
    STEPS,
    RefAdam,
    RefAdamW,
    Reference,
    RefRMSprop,
    RefSGD,
    RefTwin,
    Spec,
    assert_bitwise_equal,
    assert_state_matches,
    cases,
    combo_id,
    grad_stream,
    initial_params,
    random_grads,
    run_scenario,
    seed_of,
    shapes_for,
    split_groups,
    state_arrays,
    tolerance,
    torch_sign,
)

DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
CASES = [pytest.param(spec, combo, id=f"{spec.name}[{combo_id(combo)}]") for spec, combo in cases()]


def ref_twin(spec: Spec):
    def make(groups: list[dict[str, Any]], kwargs: dict[str, Any]) -> RefTwin:
        return RefTwin(spec.ref_cls(groups, **kwargs))

    return make


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("spec", "combo"), CASES)
def test_matches_reference(spec: Spec, combo: dict[str, Any], dtype: Any) -> None:
    # The > 65536-element tensor (parallel path) joins every fourth combination
    # here (test_parity_torch.py runs it in every other one).
    large = spec.combos.index(combo) % 4 == 0
    run = run_scenario(spec, combo, dtype, ref_twin(spec), large=large)
    assert_state_matches(run, dtype)


# -- closed forms: the first step from zero state ----------------------------------


@pytest.mark.parametrize("dtype", [F32, F64])
def test_first_steps_closed_form(dtype: Any) -> None:
    """One step from fresh state, where each rule has a closed form the
    references do not share code with."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(1001).astype(dtype)
    g = (rng.standard_normal(1001) * 2).astype(dtype)
    tol = tolerance(dtype)
    lr = 0.01
    expected = {
        # SGD, with or without momentum (the buffer starts as g): p - lr g.
        "sgd": (fo.SGD, RefSGD, {"momentum": 0.9}, p0 - lr * g),
        # Adam: m̂ = g, v̂ = g², so p - lr g / (|g| + eps).
        "adam": (fo.Adam, RefAdam, {}, p0 - lr * g / (np.abs(g) + 1e-8)),
        # AdamW: the param decays first.
        "adamw": (
            fo.AdamW,
            RefAdamW,
            {"weight_decay": 0.5},
            p0 * (1 - lr * 0.5) - lr * g / (np.abs(g) + 1e-8),
        ),
        # RMSprop: v = (1 - α) g².
        "rmsprop": (
            fo.RMSprop,
            RefRMSprop,
            {"alpha": 0.9},
            p0 - lr * g / (np.sqrt(0.1) * np.abs(g) + 1e-8),
        ),
        # maximize + l1: the grad is -g + l1 sign(p).
        "sgd_max_l1": (
            fo.SGD,
            RefSGD,
            {"maximize": True, "l1": 0.25},
            p0 - lr * (-g + 0.25 * np.sign(p0)),
        ),
    }
    for name, (fo_cls, ref_cls, kw, want) in expected.items():
        p, q = p0.copy(), p0.copy()
        fo_cls([p], lr=lr, **kw).step([g])
        ref_cls([q], lr=lr, **kw).step([g])
        np.testing.assert_allclose(p, want, **tol, err_msg=f"ferroptim {name}")
        np.testing.assert_allclose(q, want, **tol, err_msg=f"reference {name}")


def test_torch_sign_matches_numpy_sign() -> None:
    x = np.array([-2.0, -0.0, 0.0, 3.0, -1e-300], dtype=F64)
    assert np.array_equal(torch_sign(x), np.sign(x))
    assert torch_sign(x.astype(F32)).dtype == F32


# -- named params ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_named_params_and_dict_grads_match_reference(name: str) -> None:
    """Params given as a dict name -> array, grads as a dict that leaves
    names out on some steps (a skipped step, like a None grad)."""
    spec = SPECS[name]
    shapes = [(4,), (), (5, 3)]
    names = ["w", "b", "m"]
    init = initial_params(np.random.default_rng(11), shapes, F64)
    combo = spec.combos[-1]  # every option on
    ours = dict(zip(names, [p.copy() for p in init]))
    ref_params = [p.copy() for p in init]
    opt = spec.fo_cls(ours, lr=spec.lr, **combo)
    ref = spec.ref_cls(ref_params, lr=spec.lr, **combo)
    assert opt.param_names == names
    for _, grads in grad_stream(5, shapes, F64, 40):
        opt.step({n: g for n, g in zip(names, grads) if g is not None})
        ref.step(grads)
    for n, p in zip(names, ref_params):
        np.testing.assert_allclose(ours[n], p, **tolerance(F64), err_msg=n)
    state = opt.state_dict()["state"]
    assert set(state) == set(names)
    for k, n in enumerate(names):
        assert state[n]["step"] == ref.state[k]["step"]


# -- random hyperparameters ----------------------------------------------------------

SHAPES = st.lists(
    st.sampled_from([(), (1,), (2,), (7,), (16,), (17,), (3, 5), (2, 3, 4), (129,)]),
    min_size=1,
    max_size=4,
)
UNIT = st.floats(0.0, 0.95)
SMALL = st.one_of(st.just(0.0), st.floats(1e-4, 0.2))


@st.composite
def sgd_setup(draw: Any) -> tuple[Any, Any, dict[str, Any]]:
    momentum = draw(st.one_of(st.just(0.0), UNIT))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.one_of(st.just(0.0), UNIT))
    kw = {
        "lr": draw(st.floats(1e-3, 0.1)),
        "momentum": momentum,
        "dampening": dampening,
        "nesterov": nesterov,
        "weight_decay": draw(SMALL),
        "maximize": draw(st.booleans()),
        "l1": draw(SMALL),
    }
    return fo.SGD, RefSGD, kw


@st.composite
def adam_setup(draw: Any) -> tuple[Any, Any, dict[str, Any]]:
    kw = {
        "lr": draw(st.floats(1e-3, 0.1)),
        "betas": (draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.9999))),
        "eps": draw(st.sampled_from([1e-8, 1e-6, 1e-3])),
        "weight_decay": draw(SMALL),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
        "l1": draw(SMALL),
    }
    if draw(st.booleans()):
        return fo.AdamW, RefAdamW, kw
    return fo.Adam, RefAdam, {**kw, "decoupled_weight_decay": draw(st.booleans())}


@st.composite
def rmsprop_setup(draw: Any) -> tuple[Any, Any, dict[str, Any]]:
    kw = {
        "lr": draw(st.floats(1e-3, 0.05)),
        "alpha": draw(st.floats(0.5, 0.999)),
        "eps": draw(st.sampled_from([1e-8, 1e-6, 1e-3])),
        "weight_decay": draw(SMALL),
        "momentum": draw(st.one_of(st.just(0.0), UNIT)),
        "centered": draw(st.booleans()),
        "maximize": draw(st.booleans()),
        "l1": draw(SMALL),
    }
    return fo.RMSprop, RefRMSprop, kw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    setup=st.one_of(sgd_setup(), adam_setup(), rmsprop_setup()),
    shapes=SHAPES,
    dtype=st.sampled_from([F32, F64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_hyperparameters_match_reference(
    setup: tuple[Any, type[Reference], dict[str, Any]],
    shapes: list[tuple[int, ...]],
    dtype: Any,
    seed: int,
) -> None:
    fo_cls, ref_cls, kw = setup
    init = initial_params(np.random.default_rng(seed), shapes, dtype)
    ours = [p.copy() for p in init]
    theirs = [p.copy() for p in init]
    opt = fo_cls(ours, **kw)
    ref = ref_cls(theirs, **kw)
    for _, grads in grad_stream(seed + 1, shapes, dtype, 20):
        opt.step(grads)
        ref.step(grads)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, **tolerance(dtype), err_msg=f"param {i} {shapes[i]}")


# -- bitwise invariants ----------------------------------------------------------------
#
# These need no torch, so they live here rather than in test_parity_torch.py.


def run_alone(
    spec: Spec,
    combo: dict[str, Any],
    dtype: Any,
    shapes: tuple[list[tuple[int, ...]], list[tuple[int, ...]]],
    reload_at: int | None,
) -> tuple[fo.Optimizer, list[np.ndarray]]:
    """ferroptim alone through the scenario's steps (two groups, None grads,
    an lr change); with ``reload_at``, the state moves through a pickled
    state_dict into a fresh optimizer over copies of the params after that step."""
    g0, g1 = shapes
    flat = g0 + g1
    seed = seed_of("round trip", spec.name, combo_id(combo), np.dtype(dtype).name)
    params = initial_params(np.random.default_rng(seed), flat, dtype)
    opt = spec.fo_cls(split_groups(params, len(g0), spec.group1(combo)), lr=spec.lr, **combo)
    for t, grads in grad_stream(seed + 1, flat, dtype, STEPS):
        assert opt.step(grads) is True
        if t == LR_CHANGE_AT:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        if t == reload_at:
            saved = pickle.loads(pickle.dumps(opt.state_dict()))
            params = [p.copy() for p in params]
            opt = spec.fo_cls(split_groups(params, len(g0), {}))
            opt.load_state_dict(saved)
    return opt, params


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("spec", "combo"), CASES)
def test_state_dict_round_trip_is_bitwise(spec: Spec, combo: dict[str, Any], dtype: Any) -> None:
    """Saving at step 50 and loading into a new optimizer over copies of the
    params continues exactly as the uninterrupted run: params and state
    bit for bit."""
    # The all-options-on combination also runs the > 65536-element tensor.
    shapes = shapes_for(large=combo is spec.combos[-1])
    straight, p_straight = run_alone(spec, combo, dtype, shapes, reload_at=None)
    resumed, p_resumed = run_alone(spec, combo, dtype, shapes, reload_at=RELOAD_AT)
    assert_bitwise_equal(p_resumed, p_straight, "params")
    assert_bitwise_equal(state_arrays(resumed), state_arrays(straight), "state")
    assert resumed.step_counts == straight.step_counts
    a, b = resumed.state_dict(), straight.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert {k: sorted(v) for k, v in a["state"].items()} == {
        k: sorted(v) for k, v in b["state"].items()
    }


# One configuration per compiled kernel variant: SGD's plain / momentum /
# Nesterov modes, Adam's amsgrad, RMSprop's centered x momentum, each with and
# without the regularizing terms (weight decay, l1, maximize).
KERNEL_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 0.1, "maximize": True}),
    ("sgd", {"momentum": 0.9, "dampening": 0.3}),
    ("sgd", {"momentum": 0.9, "l1": 0.01}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "l1": 0.01}),
    ("adam", {}),
    ("adam", {"amsgrad": True}),
    ("adam", {"weight_decay": 0.1, "l1": 0.01, "maximize": True}),
    ("adam", {"amsgrad": True, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adamw", {"amsgrad": True, "l1": 0.01, "maximize": True}),
    ("rmsprop", {}),
    ("rmsprop", {"weight_decay": 0.1, "l1": 0.01}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"momentum": 0.9, "weight_decay": 0.1, "maximize": True}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"centered": True, "l1": 0.01}),
    ("rmsprop", {"centered": True, "momentum": 0.9}),
    ("rmsprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.1, "l1": 0.01}),
]

# The big tensor is split into chunks across threads; the small ones around
# it put the chunk edges off any vector-width boundary.
BIG_SHAPES: list[tuple[int, ...]] = [(7,), ((1 << 20) + 7,), (), (33, 17), (1,)]
RUNTIMES = [(threads, level) for level in ("baseline", "avx2", "avx512") for threads in (1, 2)]


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    threads, level = fo.get_num_threads(), fo.simd_level()
    try:
        yield
    finally:
        fo.set_num_threads(threads)
        fo.set_simd_level(level)
        assert (fo.get_num_threads(), fo.simd_level()) == (threads, level)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    KERNEL_CONFIGS,
    ids=[f"{n}[{combo_id(k)}]" for n, k in KERNEL_CONFIGS],
)
def test_threads_and_simd_levels_are_bitwise_identical(
    name: str, kwargs: dict[str, Any], dtype: Any, restore_runtime: None
) -> None:
    """1 or 2 threads, at every SIMD level the CPU has: the same bits."""
    spec = SPECS[name]
    rng = np.random.default_rng(seed_of("runtime", name, combo_id(kwargs)))
    init = initial_params(rng, BIG_SHAPES, dtype)
    steps = [random_grads(rng, BIG_SHAPES, dtype, t, with_none=False) for t in range(1, 4)]
    steps[1][2] = None  # a None grad in the middle of the chunked pass
    results = {}
    for threads, level in RUNTIMES:
        fo.set_num_threads(threads)
        used = fo.set_simd_level(level)
        assert fo.get_num_threads() == threads and fo.simd_level() == used
        if level == "baseline":
            assert used in ("sse2", "neon", "scalar")
        params = [p.copy() for p in init]
        opt = spec.fo_cls(
            [{"params": params[:2]}, {"params": params[2:], "lr": spec.lr / 2}],
            lr=spec.lr,
            **kwargs,
        )
        for grads in steps:
            opt.step(grads)
        results[(threads, used)] = params + state_arrays(opt)
    first_key, first = next(iter(results.items()))
    assert not np.array_equal(first[1], init[1]), "the big param did not move"
    for key, arrays in results.items():
        assert_bitwise_equal(arrays, first, f"{key} vs {first_key}")

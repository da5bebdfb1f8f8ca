"""bfloat16/float16 params (#14): master weights, rounding and the step options.

With master weights, a 16-bit run is the float32 run on the same numbers: the
master copy is bitwise the float32 params and the 16-bit params are it rounded
to nearest even (``ml_dtypes``' ``astype``). Without, the update is computed in
float32 and rounded, to nearest or stochastically (seeded, thread-count free).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.exceptions import DtypeError, HyperparameterError

sys.path.insert(0, str(Path(__file__).parent))
from reference import RefAdam, RefAdamW, RefSGD  # noqa: E402

ml_dtypes = pytest.importorskip("ml_dtypes")

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.float32
LOW = [pytest.param(BF16, id="bf16"), pytest.param(F16, id="f16")]
SHAPES = [(), (0,), (1,), (257,), (1000,), (3, 5)]

# Every optimizer class, each with its defaults and with its options turned on.
RULES: list[tuple[type, dict[str, Any]]] = [
    (fo.SGD, {"lr": 0.1}),
    (fo.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (fo.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "maximize": True}),
    (fo.Adam, {"lr": 0.01}),
    (fo.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    (fo.AdamW, {"lr": 0.01}),
    (fo.AdamW, {"lr": 0.01, "amsgrad": True, "l1": 0.01}),
    (fo.Adadelta, {}),
    (fo.Adadelta, {"rho": 0.5, "weight_decay": 0.1, "maximize": True}),
    (fo.Adagrad, {"lr": 0.1}),
    (fo.Adagrad, {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.5}),
    (fo.Adamax, {"lr": 0.01}),
    (fo.Adamax, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    (fo.ASGD, {"lr": 0.01, "t0": 2.0}),
    (fo.ASGD, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    (fo.Lion, {"lr": 0.01}),
    (fo.Lion, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    (fo.NAdam, {"lr": 0.01}),
    (fo.NAdam, {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    (fo.RAdam, {"lr": 0.01}),
    (fo.RAdam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (fo.RMSprop, {"lr": 0.01}),
    (fo.RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1}),
    (fo.Rprop, {"lr": 0.01}),
    (fo.Rprop, {"lr": 0.01, "maximize": True, "etas": (0.3, 1.5)}),
]
RULE_IDS = [f"{c.__name__}-{i}" for i, (c, _) in enumerate(RULES)]


def bits(a: np.ndarray) -> np.ndarray:
    """The stored bits: equal bits, equal values (and NaN equals NaN)."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_bitwise(got: Any, want: Any, what: str = "") -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype)
    diff = np.flatnonzero(bits(got) != bits(want))
    if diff.size:
        i = diff[0]
        pytest.fail(
            f"{what}: {diff.size} of {got.size} elements differ, first at flat index {i}: "
            f"{got.reshape(-1)[i]!r} != {want.reshape(-1)[i]!r}"
        )


def grads_for(rng: np.random.Generator, t: int, shapes=SHAPES) -> list[Any]:
    """Step t's float32 grads; param 2 has none at step 1, param 0 none at step 2."""
    out: list[Any] = [rng.standard_normal(s).astype(F32) for s in shapes]
    if t == 1:
        out[2] = None
    if t == 2:
        out[0] = None
    return out


def two_groups(params: list[Any]) -> list[dict[str, Any]]:
    return [{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.05}]


@pytest.mark.parametrize("grad_kind", ["param", "float32"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize(("cls", "hypers"), RULES, ids=RULE_IDS)
def test_master_weights_equal_the_float32_run_bitwise(cls, hypers, dtype, grad_kind):
    rng = np.random.default_rng(14)
    low = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ref = [p.astype(F32) for p in low]
    opt = cls(two_groups(low), **hypers)
    ref_opt = cls(two_groups(ref), **hypers)
    for t in range(4):
        grads = grads_for(rng, t)
        if grad_kind == "param":
            grads = [None if g is None else g.astype(dtype) for g in grads]
        opt.step(grads)
        ref_opt.step([None if g is None else g.astype(F32) for g in grads])
        mine, theirs = opt.state_dict()["state"], ref_opt.state_dict()["state"]
        assert sorted(mine) == sorted(theirs)
        for k, p in enumerate(low):
            assert_bitwise(p, ref[k].astype(dtype), f"step {t} param {k}")
            if k not in mine:
                continue
            assert_bitwise(mine[k].pop("master_param"), ref[k], f"step {t} master {k}")
            assert mine[k].keys() == theirs[k].keys()
            for slot, value in theirs[k].items():
                assert_bitwise(mine[k][slot], value, f"step {t} {slot} {k}")


REFERENCES = [
    pytest.param(fo.SGD, RefSGD, {"lr": 0.1}, id="sgd"),
    pytest.param(
        fo.SGD,
        RefSGD,
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        id="sgd-nesterov",
    ),
    pytest.param(fo.AdamW, RefAdamW, {"lr": 0.01}, id="adamw"),
    pytest.param(
        fo.AdamW, RefAdamW, {"lr": 0.01, "amsgrad": True, "maximize": True}, id="adamw-ams"
    ),
    pytest.param(fo.Adam, RefAdam, {"lr": 0.01, "weight_decay": 0.1}, id="adam"),
]


@pytest.mark.parametrize("grad_dtype", ["param", "float32"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize(("cls", "ref_cls", "hypers"), REFERENCES)
def test_without_master_weights_the_float32_update_is_rounded_to_nearest(
    cls, ref_cls, hypers, dtype, grad_dtype
):
    rng = np.random.default_rng(3)
    low = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    opt = cls(low, master_weights=False, **hypers)
    ref = ref_cls([p.astype(F32) for p in low], **hypers)
    for t in range(5):
        grads = grads_for(rng, t)
        if grad_dtype == "param":
            grads = [None if g is None else g.astype(dtype) for g in grads]
        opt.step(grads)
        # The NumPy reference in float32, then every param rounded to nearest even.
        ref.step([None if g is None else g.astype(F32) for g in grads])
        for p in ref.params:
            p[...] = p.astype(dtype).astype(F32)
        for k, (p, r) in enumerate(zip(low, ref.params)):
            assert_bitwise(p, r.astype(dtype), f"step {t} param {k}")
        assert all("master_param" not in e for e in opt.state_dict()["state"].values())


# -- stochastic rounding ----------------------------------------------------------

BIG = 70_001  # above the size from which a step runs on several threads


@pytest.fixture
def restore_threads():
    n = fo.get_num_threads()
    yield
    fo.set_num_threads(n)


def _sr_run(seed: int, threads: int, dtype=BF16, state_dtype="float32") -> list[np.ndarray]:
    fo.set_num_threads(threads)
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in [(BIG,), (300,), (5, 7)]]
    opt = fo.AdamW(
        params,
        lr=1e-3,
        master_weights=False,
        stochastic_rounding=True,
        seed=seed,
        state_dtype=state_dtype,
    )
    for _ in range(3):
        opt.step([rng.standard_normal(p.shape).astype(F32) for p in params])
    return params


@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_same_seed_same_bits_on_any_thread_count(
    restore_threads, dtype, state_dtype
):
    one = _sr_run(7, 1, dtype, state_dtype)
    two = _sr_run(7, 2, dtype, state_dtype)
    for a, b in zip(one, two):
        assert_bitwise(a, b, "1 vs 2 threads")
    other = _sr_run(8, 2, dtype, state_dtype)
    # Another seed rounds other elements up: most large tensors differ somewhere.
    assert not np.array_equal(bits(one[0]), bits(other[0]))
    assert not np.array_equal(bits(one[1]), bits(other[1]))


@pytest.mark.parametrize("dtype", LOW)
def test_stochastic_rounding_is_unbiased_where_nearest_stalls(dtype):
    n, steps, delta = 4096, 200, 1e-4  # delta: far below half a unit in the last place at 1
    runs = {}
    for stochastic in (False, True):
        p = np.ones(n, dtype)
        opt = fo.SGD([p], lr=1.0, master_weights=False, stochastic_rounding=stochastic, seed=5)
        for _ in range(steps):
            opt.step([np.full(n, -delta, F32)])
        runs[stochastic] = p.astype(np.float64)
    assert np.all(runs[False] == 1.0)  # round to nearest never moves
    want = 1.0 + steps * delta
    # Each element is a random walk with steps of at most one ulp: the mean of
    # 4096 lands within a few standard errors (<= 1e-3) of the float32 result.
    assert abs(runs[True].mean() - want) < 4e-3, runs[True].mean()
    assert runs[True].std() > 0


# -- the step options with 16-bit params ------------------------------------------


def _arena_run(dtype, values=None, state_dtype="float32", **options):
    """An AdamW run on an arena of ``dtype`` holding values rounded to ``values``."""
    shapes = {"w": (33, 17), "b": (17,), "s": ()} | {f"t{i}": (i % 5 + 1,) for i in range(40)}
    rng = np.random.default_rng(1)
    init = {k: rng.standard_normal(s).astype(F32) for k, s in shapes.items()}
    rounded = {k: v.astype(values or dtype).astype(dtype) for k, v in init.items()}
    arena = fo.ParamArena.from_arrays(rounded)
    groups = [
        {"params": arena.select("t*")},
        {"params": arena.select(["w", "b", "s"]), "lr": 0.003},
    ]
    opt = fo.AdamW(groups, lr=0.01, state_dtype=state_dtype, **options)
    for _ in range(4):
        arena.grad[...] = rng.standard_normal(arena.size).astype(F32)
        opt.step()
    return arena, opt


@pytest.mark.parametrize("dtype", LOW)
def test_param_arena_of_16_bit_params_equals_the_float32_arena(dtype):
    low, opt = _arena_run(dtype)
    assert low.dtype == dtype and low.grad.dtype == F32
    ref, ref_opt = _arena_run(F32, values=dtype)
    assert_bitwise(low.data, ref.data.astype(dtype))
    state = opt.state_dict()["state"]
    for name, entry in ref_opt.state_dict()["state"].items():
        assert_bitwise(state[name]["master_param"], ref.params[name], name)
        assert_bitwise(state[name]["exp_avg"], entry["exp_avg"], name)


def test_param_arena_from_16_bit_arrays_keeps_their_dtype():
    arena = fo.ParamArena.from_arrays({"a": np.ones(3, BF16), "b": np.full(2, 0.5, BF16)})
    assert arena.dtype == BF16 and arena.grad.dtype == F32
    assert_bitwise(arena["b"], np.full(2, 0.5, BF16))
    mixed = fo.ParamArena.from_arrays({"a": np.ones(3, BF16), "b": np.ones(2, F16)})
    assert mixed.dtype == F32


@pytest.mark.parametrize("dtype", LOW)
def test_many_small_tensors_in_one_multi_tensor_step(dtype):
    rng = np.random.default_rng(2)
    shapes = [(i % 13,) for i in range(500)]
    low = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref = [p.astype(F32) for p in low]
    opt = fo.Adam(low, lr=0.01, state_dtype="float32")
    ref_opt = fo.Adam(ref, lr=0.01)
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        opt.step(grads)
        ref_opt.step([g.astype(F32) for g in grads])
    for p, r in zip(low, ref):
        assert_bitwise(p, r.astype(dtype))


@pytest.mark.parametrize("clip", [{"max_grad_norm": 0.5}, {"clip_value": 0.1}])
def test_clipping_16_bit_grads_is_close_to_the_float32_run(clip):
    rng = np.random.default_rng(4)
    low = [rng.standard_normal(s).astype(BF16) for s in SHAPES]
    ref = [p.astype(F32) for p in low]
    free = [p.astype(F32) for p in low]
    opt = fo.SGD(low, lr=0.1, momentum=0.9, **clip)
    ref_opt = fo.SGD(ref, lr=0.1, momentum=0.9, **clip)
    free_opt = fo.SGD(free, lr=0.1, momentum=0.9)
    for t in range(3):
        grads = [None if g is None else g.astype(BF16) for g in grads_for(rng, t)]
        opt.step(grads)
        ref_opt.step([None if g is None else g.astype(F32) for g in grads])
        free_opt.step([None if g is None else g.astype(F32) for g in grads])
        if "max_grad_norm" in clip:
            # The norm of the 16-bit grads is summed in another order: to rounding.
            assert opt.last_grad_norm == pytest.approx(ref_opt.last_grad_norm, rel=1e-6)
    state = opt.state_dict()["state"]
    for k, r in enumerate(ref):
        np.testing.assert_allclose(state[k]["master_param"], r, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ref[4], free[4], rtol=1e-3)  # the clipping did clip


@pytest.mark.parametrize("master", [True, False])
@pytest.mark.parametrize("dtype", LOW)
def test_skip_nonfinite_with_a_nan_16_bit_grad_changes_nothing(dtype, master):
    rng = np.random.default_rng(6)
    params = [rng.standard_normal(s).astype(dtype) for s in [(300,), (4,)]]
    opt = fo.Adam(params, lr=0.01, master_weights=master, state_dtype="int8", skip_nonfinite=True)
    opt.step([np.ones(p.shape, dtype) for p in params])
    before = [p.copy() for p in params]
    sd = opt.state_dict()
    grads = [np.ones(p.shape, dtype) for p in params]
    grads[1][2] = np.nan
    assert opt.step(grads) is False
    for p, b in zip(params, before):
        assert_bitwise(p, b)
    after = opt.state_dict()["state"]
    for k, entry in sd["state"].items():
        for slot, value in entry.items():
            assert_bitwise(after[k][slot], value, slot)


@pytest.mark.parametrize("master", [True, False])
@pytest.mark.parametrize("dtype", LOW)
def test_ema_swap_shows_the_average_rounded_and_restores_exactly(dtype, master):
    rng = np.random.default_rng(8)
    params = [rng.standard_normal(s).astype(dtype) for s in [(300,), (), (0,)]]
    opt = fo.AdamW(params, lr=0.05, ema_decay=0.9, master_weights=master)
    for _ in range(5):
        opt.step([rng.standard_normal(p.shape).astype(F32) for p in params])
    before = [p.copy() for p in params]
    saved = opt.state_dict()["state"]
    averages = [e["averaged_param"] for e in saved.values()]
    with opt.averaged_params():
        for p, a in zip(params, averages):
            assert_bitwise(p, a.astype(dtype))
        assert not np.array_equal(bits(params[0]), bits(before[0]))
    for p, b in zip(params, before):
        assert_bitwise(p, b)
    # The swap goes through the params only: master weights and averages stay.
    after = opt.state_dict()["state"]
    for k, entry in saved.items():
        for slot, value in entry.items():
            assert_bitwise(after[k][slot], value, slot)
    assert all(("master_param" in e) == master for e in after.values())


def test_ema_of_master_weights_equals_the_float32_runs_average():
    rng = np.random.default_rng(9)
    low = [rng.standard_normal(s).astype(BF16) for s in SHAPES]
    ref = [p.astype(F32) for p in low]
    opt = fo.AdamW(low, lr=0.05, ema_decay=0.9)
    ref_opt = fo.AdamW(ref, lr=0.05, ema_decay=0.9)
    for t in range(4):
        grads = grads_for(rng, t)
        opt.step(grads)
        ref_opt.step(grads)
    mine, theirs = opt.state_dict()["state"], ref_opt.state_dict()["state"]
    for k, entry in theirs.items():
        assert_bitwise(mine[k]["averaged_param"], entry["averaged_param"], str(k))


@pytest.mark.parametrize("dtype", LOW)
def test_accumulated_16_bit_grads_are_summed_in_float32(dtype):
    rng = np.random.default_rng(10)
    shape = (513,)
    low = [rng.standard_normal(shape).astype(dtype)]
    ref = [low[0].astype(F32)]
    opt = fo.SGD(low, lr=0.5, accumulate=4)
    ref_opt = fo.SGD(ref, lr=0.5, accumulate=4)
    for _ in range(8):
        # Grads near 1 with low bits set: a 16-bit sum would round them away.
        g = (1.0 + rng.uniform(0, 0.05, shape)).astype(dtype)
        opt.step([g])
        ref_opt.step([g.astype(F32)])
    assert_bitwise(opt.state_dict()["state"][0]["master_param"], ref[0])
    assert_bitwise(low[0], ref[0].astype(dtype))


@pytest.mark.parametrize("dtype", LOW)
def test_a_frozen_16_bit_param_keeps_its_bits_and_gets_no_state(dtype):
    rng = np.random.default_rng(11)
    low = [rng.standard_normal(s).astype(dtype) for s in [(40,), (7,)]]
    ref = [p.astype(F32) for p in low]
    opt = fo.Adam(low, lr=0.01, state_dtype="int8")
    ref_opt = fo.Adam(ref, lr=0.01, state_dtype="int8")
    opt.freeze(0)
    ref_opt.freeze(0)
    frozen = low[0].copy()
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(F32) for p in low]
        opt.step(grads)
        ref_opt.step(grads)
    assert_bitwise(low[0], frozen)
    assert 0 not in opt.state_dict()["state"]
    assert_bitwise(opt.state_dict()["state"][1]["master_param"], ref[1])


# -- errors: named, and nothing changes -------------------------------------------


@pytest.mark.parametrize("cls", [fo.Rprop, fo.ASGD])
@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_rules_whose_state_needs_full_precision_refuse_compressed_state(cls, state_dtype):
    assert cls._engine_class.compressible is False
    with pytest.raises(HyperparameterError, match="state_dtype") as err:
        cls([np.ones(3, F32)], state_dtype=state_dtype)
    assert state_dtype in str(err.value)
    cls([np.ones(3, BF16)], state_dtype="float32")  # float32 state is fine


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_float64_params_refuse_compressed_state(state_dtype):
    with pytest.raises(DtypeError, match=f"'w'.*state_dtype='{state_dtype}'.*float64"):
        fo.Adam({"v": np.ones(3, F32), "w": np.ones(3, np.float64)}, state_dtype=state_dtype)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("state_dtype", "fp8"),
        ("state_dtype", "INT8"),
        ("state_dtype", np.float32),
        ("state_dtype", 8),
        ("master_weights", 1),
        ("master_weights", "yes"),
        ("master_weights", None),
        ("stochastic_rounding", "no"),
        ("seed", -1),
        ("seed", 2**64),
        ("seed", 1.5),
        ("seed", True),
        ("seed", "3"),
    ],
)
def test_bad_precision_options_are_named(option, value):
    with pytest.raises(HyperparameterError, match=option):
        fo.AdamW([np.ones(3, BF16)], **{option: value})


@pytest.mark.parametrize(
    ("param_dtype", "grad_dtype"),
    [(np.float64, F32), (BF16, np.float64), (BF16, F16), (F16, BF16), (F32, BF16)],
)
def test_a_grad_of_the_wrong_dtype_is_named_and_changes_nothing(param_dtype, grad_dtype):
    params = {"a": np.full(4, 0.5, param_dtype), "w": np.full(300, 0.25, param_dtype)}
    opt = fo.Adam(params, lr=0.1, state_dtype="float32")
    opt.step({k: np.ones(p.shape, param_dtype) for k, p in params.items()})
    before = {k: p.copy() for k, p in params.items()}
    sd = opt.state_dict()
    grads = {"a": np.ones(4, param_dtype), "w": np.ones(300, grad_dtype)}
    with pytest.raises(DtypeError, match=f"'w'.*{np.dtype(grad_dtype)}"):
        opt.step(grads)
    for k, p in params.items():
        assert_bitwise(p, before[k], k)
    for k, entry in sd["state"].items():
        for slot, value in entry.items():
            assert_bitwise(opt.state_dict()["state"][k][slot], value, slot)


def test_the_cuda_engine_refuses_the_cpu_only_options():
    from ferroptim.cuda import emulate

    if not emulate.available():
        pytest.skip("no C++ compiler for the CUDA emulation")
    on_device = [emulate.device_array(np.ones(3, F32))]
    for state_dtype in ("int8", "bfloat16"):
        with pytest.raises(HyperparameterError, match=f"state_dtype.*{state_dtype}.*CUDA"):
            fo.Adam(on_device, state_dtype=state_dtype)
    half = [emulate.device_array(np.ones(3, F16))]
    for options in ({"master_weights": False}, {"stochastic_rounding": True}):
        with pytest.raises(HyperparameterError, match="CUDA"):
            fo.Adam(half, **options)
    fo.Adam(half, state_dtype="float32")  # float32 state and master weights are supported


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_centered_rmsprop_refuses_compressed_state_before_a_step(state_dtype):
    # s - a² of two rounded averages goes negative where the mean dominates the
    # spread: with int8 state this ran into NaN params before the refusal.
    p = np.ones(300, F32)
    opt = fo.RMSprop([p], lr=1e-3, centered=True, state_dtype=state_dtype)
    with pytest.raises(HyperparameterError, match="state_dtype: centered=True"):
        opt.step([np.full(300, 0.5, F32)])
    assert_bitwise(p, np.ones(300, F32), "p")
    assert opt.step_counts == [0]
    fo.RMSprop([p], lr=1e-3, state_dtype=state_dtype).step([np.full(300, 0.5, F32)])

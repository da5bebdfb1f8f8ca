"""Loss scaling (ferroptim.amp): the scale moves as torch.amp.GradScaler's does, the
grads are unscaled and checked inside the optimizer's fused step, a skipped step
changes nothing, and Optimizer.step's per-call ``grad_scale``/``skip_nonfinite``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import exceptions

F32, F64 = np.float32, np.float64
NAN, INF = float("nan"), float("inf")


def _grads(rng: np.random.Generator, dtype: Any, shapes: list[tuple[int, ...]]) -> list[Any]:
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _state_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    assert a["param_groups"] == b["param_groups"]
    for key, sa in a["state"].items():
        sb = b["state"][key]
        assert sa.keys() == sb.keys()
        for name, va in sa.items():
            np.testing.assert_array_equal(np.asarray(va), np.asarray(sb[name]), strict=True)


# -- the scale sequence ---------------------------------------------------------------

# 1 = a step whose grads hold Inf or NaN, 0 = a clean one.
PATTERN = [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize(
    "settings",
    [
        dict(init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
        dict(init_scale=1000.0, growth_factor=1.7, backoff_factor=0.3, growth_interval=2),
        dict(init_scale=3.0e38, growth_factor=2.0, backoff_factor=0.5, growth_interval=1),
    ],
    ids=["powers_of_two", "float32_rounding", "no_growth_to_inf"],
)
def test_scale_sequence_equals_torch_grad_scaler(settings: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    ours = fo.DynamicLossScaler(**settings)
    theirs = torch.amp.GradScaler("cpu", **settings)
    p = np.zeros(4, F32)
    opt = fo.SGD([p], lr=0.01)
    tp = torch.nn.Parameter(torch.zeros(4))
    topt = torch.optim.SGD([tp], lr=0.01)
    ours_seq, theirs_seq = [], []
    for i, bad in enumerate(PATTERN):
        g = np.full(4, float(i + 1), F32)
        if bad:
            g[i % 4] = INF if i % 2 else NAN
        theirs.scale(torch.tensor(1.0))  # GradScaler sets its scale up on first use
        tp.grad = torch.from_numpy(g.copy())
        theirs.step(topt)
        theirs.update()
        assert ours.step(opt, [g]) is (not bad)
        ours.update()  # torch code calls it: a no-op after step() moved the scale
        ours_seq.append(ours.get_scale())
        theirs_seq.append(theirs.get_scale())
    assert ours_seq == theirs_seq
    assert ours.state_dict() == theirs.state_dict()
    assert opt.skipped_steps == sum(PATTERN)


def test_default_settings_are_torch_defaults() -> None:
    s = fo.DynamicLossScaler()
    assert s.state_dict() == {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }


def test_scale_grows_after_growth_interval_clean_steps_and_backs_off() -> None:
    s = fo.DynamicLossScaler(init_scale=8.0, growth_interval=2)
    p = np.zeros(2, F32)
    opt = fo.SGD([p], lr=0.1)
    good, bad = [np.ones(2, F32)], [np.array([1.0, INF], F32)]
    seq = []
    for g in [good, good, good, bad, good, good, bad, bad]:
        s.step(opt, g)
        seq.append(s.get_scale())
    assert seq == [8.0, 16.0, 16.0, 8.0, 8.0, 16.0, 8.0, 4.0]


# -- skipped steps ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_skipped_step_leaves_params_and_state_bitwise_unchanged(dtype: Any, bad: float) -> None:
    rng = np.random.default_rng(0)
    params = {"w": np.zeros((5, 3), dtype), "b": np.zeros(3, dtype)}
    opt = fo.AdamW(params, lr=0.01, weight_decay=0.1, max_grad_norm=1.0)
    s = fo.DynamicLossScaler(init_scale=2.0**10)
    for _ in range(3):
        assert s.step(opt, dict(zip(params, _grads(rng, dtype, [(5, 3), (3,)]))))
    before_p = {k: v.copy() for k, v in params.items()}
    before_s = opt.state_dict()
    grads = dict(zip(params, _grads(rng, dtype, [(5, 3), (3,)])))
    grads["b"][1] = bad
    assert s.step(opt, grads) is False
    for k in params:
        np.testing.assert_array_equal(params[k], before_p[k], strict=True)
    _state_equal(opt.state_dict(), before_s)
    assert opt.step_counts == [3, 3]
    assert opt.skipped_steps == 1
    assert s.get_scale() == 2.0**9


def test_per_call_skip_does_not_turn_the_option_on_for_later_steps() -> None:
    p = np.zeros(3, F32)
    opt = fo.SGD([p], lr=0.1)
    assert opt.step([np.array([1.0, NAN, 1.0], F32)], skip_nonfinite=True) is False
    np.testing.assert_array_equal(p, 0.0)
    # Without the per-call flag, the optimizer's own setting (off) applies again.
    assert opt.step([np.array([1.0, NAN, 1.0], F32)]) is True
    assert np.isnan(p[1]) and p[0] == np.float32(-0.1)
    assert opt.skipped_steps == 1


def test_optimizer_option_on_stays_on_with_per_call_false() -> None:
    p = np.zeros(3, F32)
    opt = fo.SGD([p], lr=0.1, skip_nonfinite=True)
    assert opt.step([np.array([INF, 0, 0], F32)], skip_nonfinite=False) is False
    assert opt.step([np.array([INF, 0, 0], F32)], skip_nonfinite=True) is False
    assert opt.step([np.array([INF, 0, 0], F32)]) is False
    np.testing.assert_array_equal(p, 0.0)
    assert opt.skipped_steps == 3


# -- unscaling inside the fused step ---------------------------------------------------

FACTORIES: dict[str, Callable[..., fo.Optimizer]] = {
    "adamw": lambda p, **o: fo.AdamW(p, lr=0.01, weight_decay=0.05, **o),
    "sgd_momentum": lambda p, **o: fo.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **o),
    "adamw_clipped": lambda p, **o: fo.AdamW(p, lr=0.01, max_grad_norm=0.5, **o),
    "rmsprop_clip_value": lambda p, **o: fo.RMSprop(p, lr=0.01, clip_value=0.3, **o),
    "lion_accumulate3": lambda p, **o: fo.Lion(p, lr=0.001, accumulate=3, **o),
    "adam_accumulate2_sum": lambda p, **o: fo.Adam(
        p, lr=0.01, accumulate=2, accumulate_mean=False, **o
    ),
}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_params_equal_the_unscaled_run_bitwise(name: str, dtype: Any) -> None:
    """Grads scaled by powers of two, unscaled in the step: the same bits as unscaled grads,
    while the scale grows and backs off (non-finite steps are skipped in both runs)."""
    rng = np.random.default_rng(1)
    shapes = [(7, 5), (5,), ()]
    plain = [np.zeros(s, dtype) for s in shapes]
    scaled = [np.zeros(s, dtype) for s in shapes]
    opt_plain = FACTORIES[name](plain, skip_nonfinite=True)
    opt_scaled = FACTORIES[name](scaled)
    s = fo.DynamicLossScaler(init_scale=2.0**12, growth_interval=2)
    scales = set()
    for i in range(24):
        grads = _grads(rng, dtype, shapes)
        if i in (7, 15):
            grads[0][2, 3] = INF
        scales.add(s.get_scale())
        scaled_grads = [np.array(g * dtype(s.get_scale())) for g in grads]  # 0-d stays array
        assert s.step(opt_scaled, scaled_grads) == opt_plain.step(grads)
        for a, b in zip(plain, scaled):
            np.testing.assert_array_equal(a, b, strict=True)
    assert len(scales) >= 2  # the scale did move
    assert opt_scaled.skipped_steps == opt_plain.skipped_steps == 2
    _state_equal(opt_plain.state_dict(), opt_scaled.state_dict())


def test_arena_optimizer_with_scaler() -> None:
    rng = np.random.default_rng(2)
    arenas = [fo.ParamArena({"w": (4, 3), "b": (3,)}) for _ in range(2)]
    opt_plain = fo.AdamW(arenas[0], lr=0.01)
    opt_scaled = fo.AdamW(arenas[1], lr=0.01)
    s = fo.DynamicLossScaler(init_scale=2.0**8, growth_interval=1)
    for _ in range(5):
        g = rng.standard_normal(arenas[0].grad.shape).astype(F32)
        arenas[0].grad[:] = g
        arenas[1].grad[:] = g * F32(s.get_scale())
        assert opt_plain.step() and s.step(opt_scaled)
        np.testing.assert_array_equal(arenas[0].data, arenas[1].data, strict=True)
    assert s.get_scale() == 2.0**13


def test_accumulation_moves_the_scale_on_the_kth_call_only() -> None:
    p = np.zeros(3, F32)
    opt = fo.SGD([p], lr=0.5, accumulate=3)
    s = fo.DynamicLossScaler(init_scale=4.0, growth_interval=1)
    good, bad = np.ones(3, F32), np.array([NAN, 1, 1], F32)
    got = []
    for g in [good, good, good, good, bad, good, good, good, good]:
        got.append((s.step(opt, [g * F32(s.get_scale())]), s.get_scale()))
    assert got == [
        (False, 4.0),
        (False, 4.0),
        (True, 8.0),
        (False, 8.0),
        (False, 8.0),
        (False, 4.0),  # the cycle held a NaN: skipped, backed off
        (False, 4.0),
        (False, 4.0),
        (True, 8.0),
    ]
    np.testing.assert_array_equal(p, np.full(3, -1.0, F32))  # two mean-1 steps of lr 0.5
    assert opt.skipped_steps == 1


def test_several_optimizers_share_one_update() -> None:
    p, q = np.zeros(2, F32), np.zeros(2, F32)
    o1, o2 = fo.SGD([p], lr=0.1), fo.SGD([q], lr=0.1)
    s = fo.DynamicLossScaler(init_scale=16.0, growth_interval=1)
    assert s.step(o1, [np.ones(2, F32)], update=False) is True
    assert s.step(o2, [np.array([INF, 1], F32)], update=False) is False
    assert s.get_scale() == 16.0  # not moved yet
    s.update()
    assert s.get_scale() == 8.0  # one backoff for the iteration
    s.update()
    assert s.get_scale() == 8.0  # nothing pending
    assert s.step(o1, [np.ones(2, F32)], update=False) and s.step(o2, [np.ones(2, F32)])
    assert s.get_scale() == 16.0


def test_fixed_loss_scaler_skips_but_never_moves() -> None:
    p = np.zeros(2, F32)
    opt = fo.SGD([p], lr=1.0)
    s = fo.LossScaler(128.0)
    assert s.step(opt, [np.full(2, 128.0, F32)]) is True
    assert s.step(opt, [np.array([INF, 1], F32)]) is False
    assert s.get_scale() == 128.0 and s.state_dict() == {"scale": 128.0}
    np.testing.assert_array_equal(p, np.full(2, -1.0, F32))
    assert s.scale(np.float32(0.5)) == np.float32(64.0)


def test_update_with_new_scale_keeps_the_clean_step_count() -> None:
    s = fo.DynamicLossScaler(init_scale=2.0, growth_interval=3)
    opt = fo.SGD([np.zeros(1, F32)], lr=0.1)
    s.step(opt, [np.ones(1, F32)])
    s.step(opt, [np.ones(1, F32)])
    s.update(new_scale=5.0)
    assert s.get_scale() == 5.0 and s.state_dict()["_growth_tracker"] == 2
    s.step(opt, [np.ones(1, F32)])
    assert s.get_scale() == 10.0


def test_scale_underflow_is_a_clear_error_before_any_step() -> None:
    p = np.zeros(2, F32)
    opt = fo.SGD([p], lr=0.1)
    s = fo.LossScaler(1e-39)  # a float32 subnormal: 1/scale overflows float32
    with pytest.raises(exceptions.GradError, match="loss scale"):
        s.step(opt, [np.ones(2, F32)])
    assert opt.step_counts == [0]


# -- state_dict -----------------------------------------------------------------------


def test_state_dict_round_trip_continues_the_same_sequence() -> None:
    opt = fo.SGD([np.zeros(1, F32)], lr=0.1)
    a = fo.DynamicLossScaler(init_scale=64.0, growth_factor=3.0, growth_interval=3)
    for g in [1, 1, INF, 1, 1]:
        a.step(opt, [np.full(1, g, F32)])
    sd = a.state_dict()
    b = fo.DynamicLossScaler()
    b.load_state_dict(copy.deepcopy(sd))
    assert b.state_dict() == sd and repr(b) == repr(a)
    for g in [1, 1, 1, INF, 1, 1, 1, 1]:
        a.step(opt, [np.full(1, g, F32)])
        b.step(opt, [np.full(1, g, F32)])
        assert a.state_dict() == b.state_dict()
    f = fo.LossScaler(3.0)
    f2 = fo.LossScaler()
    f2.load_state_dict(f.state_dict())
    assert f2.get_scale() == 3.0


def test_state_dict_loads_from_and_into_torch() -> None:
    torch = pytest.importorskip("torch")
    theirs = torch.amp.GradScaler("cpu", init_scale=512.0, growth_factor=4.0, growth_interval=7)
    ours = fo.DynamicLossScaler()
    ours.load_state_dict(theirs.state_dict())
    assert ours.get_scale() == 512.0 and ours.growth_factor == 4.0
    assert ours.growth_interval == 7
    back = torch.amp.GradScaler("cpu")
    back.load_state_dict(ours.state_dict())
    assert back.get_scale() == 512.0 and back.get_growth_interval() == 7


@pytest.mark.parametrize(
    "change, match",
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": NAN}, "scale"),
        ({"growth_factor": 1.0}, "growth_factor"),
        ({"backoff_factor": 1.0}, "backoff_factor"),
        ({"growth_interval": 0}, "growth_interval"),
        ({"_growth_tracker": 5}, "_growth_tracker"),
        ({"_growth_tracker": -1}, "_growth_tracker"),
        ({"_growth_tracker": 1.5}, "_growth_tracker"),
        ({"growth_interval": None}, "growth_interval"),
    ],
)
def test_bad_state_dict_is_refused_and_changes_nothing(change: dict[str, Any], match: str) -> None:
    s = fo.DynamicLossScaler(init_scale=32.0, growth_interval=5)
    before = s.state_dict()
    bad = {**before, **change}
    with pytest.raises(exceptions.StateDictError, match=match):
        s.load_state_dict(bad)
    assert s.state_dict() == before


def test_state_dict_missing_keys_or_not_a_dict() -> None:
    s = fo.DynamicLossScaler()
    with pytest.raises(exceptions.StateDictError, match="_growth_tracker"):
        s.load_state_dict({"scale": 2.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 3})  # fmt: skip
    with pytest.raises(exceptions.StateDictError, match="must be a dict"):
        s.load_state_dict([("scale", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(exceptions.StateDictError, match="scale"):
        fo.LossScaler().load_state_dict({})


# -- bad arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"init_scale": 0.0}, "init_scale"),
        ({"init_scale": -1.0}, "init_scale"),
        ({"init_scale": NAN}, "init_scale"),
        ({"init_scale": INF}, "init_scale"),
        ({"init_scale": 1e39}, "init_scale"),  # Inf in float32
        ({"init_scale": 1e-50}, "init_scale"),  # 0 in float32
        ({"init_scale": "1"}, "init_scale"),
        ({"init_scale": True}, "init_scale"),
        ({"growth_factor": 1.0}, "growth_factor"),
        ({"growth_factor": 0.5}, "growth_factor"),
        ({"growth_factor": INF}, "growth_factor"),
        ({"backoff_factor": 1.0}, "backoff_factor"),
        ({"backoff_factor": 0.0}, "backoff_factor"),
        ({"backoff_factor": 2.0}, "backoff_factor"),
        ({"growth_interval": 0}, "growth_interval"),
        ({"growth_interval": 2.0}, "growth_interval"),
        ({"growth_interval": True}, "growth_interval"),
    ],
)
def test_bad_arguments_raise_hyperparameter_error_naming_them(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(exceptions.HyperparameterError, match=f"^{name}:"):
        fo.DynamicLossScaler(**kwargs)
    if name == "init_scale":
        with pytest.raises(exceptions.HyperparameterError, match="^init_scale:"):
            fo.LossScaler(kwargs["init_scale"])
        s = fo.DynamicLossScaler(init_scale=4.0)
        with pytest.raises(exceptions.HyperparameterError, match="^new_scale:"):
            s.update(new_scale=kwargs["init_scale"])
        assert s.get_scale() == 4.0


def test_step_needs_a_ferroptim_optimizer() -> None:
    s = fo.DynamicLossScaler()
    with pytest.raises(exceptions.ParamError, match="^optimizer:"):
        s.step([np.zeros(2, F32)], [np.ones(2, F32)])  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.0, -1.0, NAN, INF, "2", None])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_bad_grad_scale_is_refused_and_changes_nothing(value: Any, accumulate: int) -> None:
    p = np.zeros(2, F32)
    opt = fo.SGD([p], lr=0.1, momentum=0.9, accumulate=accumulate)
    before = opt.state_dict()
    with pytest.raises(exceptions.HyperparameterError, match="^grad_scale:"):
        opt.step([np.ones(2, F32)], grad_scale=value)
    np.testing.assert_array_equal(p, 0.0)
    assert opt.state_dict().keys() == before.keys() and "accumulation" not in opt.state_dict()


def test_grad_scale_applies_to_the_accumulated_sum() -> None:
    p = np.zeros(2, F32)
    opt = fo.SGD([p], lr=1.0, accumulate=2, accumulate_mean=False)
    assert opt.step([np.full(2, 4.0, F32)], grad_scale=8.0) is False  # buffered: unused
    assert opt.step([np.full(2, 4.0, F32)], grad_scale=0.25) is True
    np.testing.assert_array_equal(p, np.full(2, -2.0, F32))
    q = np.zeros(2, F32)
    closure_opt = fo.SGD([q], lr=1.0)
    assert closure_opt.step(lambda: (1.5, [np.full(2, 4.0, F32)]), grad_scale=0.5) == 1.5
    np.testing.assert_array_equal(q, np.full(2, -2.0, F32))


@pytest.mark.parametrize("grad_dtype", [np.float16, F32], ids=["f16_grads", "f32_grads"])
@pytest.mark.parametrize(
    "options",
    [{}, {"master_weights": False}, {"state_dtype": "int8"}],
    ids=["master", "no_master", "int8_state"],
)
def test_float16_params_with_scaler_equal_the_unscaled_run_bitwise(
    options: dict[str, Any], grad_dtype: Any
) -> None:
    rng = np.random.default_rng(4)
    shapes = [(9, 7), (7,)]
    plain = [np.zeros(s, np.float16) for s in shapes]
    scaled = [np.zeros(s, np.float16) for s in shapes]
    opt_plain = fo.AdamW(plain, lr=0.01, skip_nonfinite=True, **options)
    opt_scaled = fo.AdamW(scaled, lr=0.01, **options)
    s = fo.DynamicLossScaler(init_scale=2.0**8, growth_interval=3)
    for i in range(12):
        grads = [(rng.standard_normal(sh) * 1e-3).astype(grad_dtype) for sh in shapes]
        if i == 5:
            grads[1][0] = INF
        scaled_grads = [g * grad_dtype(s.get_scale()) for g in grads]
        assert s.step(opt_scaled, scaled_grads) == opt_plain.step(grads)
        for a, b in zip(plain, scaled):
            np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
    assert opt_scaled.skipped_steps == 1

"""Schedules without torch: the pure schedules' behaviour past their ends, the
Scheduler's counter, groups and hyperparameters, state-dict round trips, and
the batch-size schedules.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _schedules_helpers import LRS, _ferro_opt, plateau_metric
from ferroptim import schedules as S

# -- ferroptim-only behaviour ---------------------------------------------------


def test_inverse_time() -> None:
    sched = S.inverse_time(0.5, base=2.0)
    np.testing.assert_allclose(sched(np.array([0, 1, 2, 6])), [2.0, 4 / 3, 1.0, 0.5], rtol=1e-15)
    assert not sched.relative
    rel = S.inverse_time(0.01)
    assert rel.relative and rel(0) == 1.0 and rel(100) == 0.5
    opt = _ferro_opt()
    sc = S.Scheduler(opt, rel)
    for _ in range(100):
        sc.step()
    assert sc.get_last_lr() == [0.05, 0.015]


def test_warmup_cosine() -> None:
    sched = S.warmup_cosine(1.0, warmup_steps=10, total_steps=110, end=0.1)
    v = sched(np.arange(200))
    np.testing.assert_allclose(v[:11], np.arange(11) / 10, rtol=1e-15)  # 0 -> peak
    assert v[10] == 1.0
    assert abs(v[60] - 0.55) < 1e-15  # halfway down the cosine: (peak + end) / 2
    assert np.all(np.diff(v[10:111]) < 0)  # strictly down to end
    np.testing.assert_array_equal(v[110:], 0.1)  # then holds at end
    expected = 0.1 + 0.9 * (1 + math.cos(math.pi * 30 / 100)) / 2
    assert sched(40) == pytest.approx(expected, rel=1e-15)
    no_warmup = S.warmup_cosine(2.0, 0, 50, start=5.0)
    assert no_warmup(0) == 2.0 and no_warmup(50) == 0.0
    with_start = S.warmup_cosine(1.0, 4, 10, start=0.2)
    assert with_start(0) == 0.2 and with_start(2) == pytest.approx(0.6)


def test_cosine_annealing_continues_past_T_max_like_torch() -> None:
    sched = S.cosine_annealing(100, eta_min=0.1)
    assert sched(0) == 1.0 and sched(100) == pytest.approx(0.1) and sched(200) == 1.0
    assert sched(150) == pytest.approx(0.55)


def test_one_cycle_holds_after_total_steps() -> None:
    sched = S.one_cycle(1.0, 100, div_factor=10.0, final_div_factor=100.0)
    assert sched(0) == pytest.approx(0.1)
    assert sched(29) == 1.0  # phase 1 ends at pct_start * total - 1
    assert sched(99) == pytest.approx(1e-3)
    assert sched(100) == sched(10_000) == sched(99)


def test_multiplicative_is_pure() -> None:
    sched = S.multiplicative(lambda t: 0.5 if t % 2 else 2.0)
    assert [sched(t) for t in (5, 0, 3, 5, 4)] == [0.5, 1.0, 0.5, 0.5, 1.0]


def test_sequential_restarts_each_piece_at_its_milestone() -> None:
    seq = S.sequential([S.constant(1.0), S.exponential(0.5, base=8.0)], milestones=[3])
    assert list(seq(np.arange(7))) == [1.0, 1.0, 1.0, 8.0, 4.0, 2.0, 1.0]
    rel = S.sequential([S.constant(), S.linear(0.5, 1.0, 2)], [2])
    assert rel.relative and list(rel(np.arange(6))) == [1.0, 1.0, 0.5, 0.75, 1.0, 1.0]


def test_chained_is_relative_only_if_every_piece_is() -> None:
    assert S.chained([S.exponential(0.9), S.step_decay(2)]).relative
    mixed = S.chained([S.exponential(0.5), S.constant(3.0)])
    assert not mixed.relative and mixed(2) == 0.75


def test_schedules_accept_int_arrays_and_lists() -> None:
    sched = S.step_decay(2, 0.5, base=4.0)
    grid = np.array([[0, 1], [2, 5]], dtype=np.int32)
    np.testing.assert_array_equal(sched(grid), [[4.0, 4.0], [2.0, 1.0]])
    assert list(sched([0, 4])) == [4.0, 1.0]
    assert sched(np.int64(4)) == 1.0


# -- the Scheduler ------------------------------------------------------------


def test_scheduler_counter_semantics() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, S.exponential(0.5))
    assert sched.last_epoch == sched.t == 0
    assert sched.get_last_lr() == list(LRS)  # step 0 applied on construction
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)
    sched.step()
    sched.step()
    assert sched.t == 2 and sched.get_last_lr() == [0.025, 0.0075]
    assert [g["lr"] for g in opt.param_groups] == [0.025, 0.0075]
    assert sched.values_at(3) == [0.0125, 0.00375]  # pure: writes nothing
    assert opt.param_groups[0]["lr"] == 0.025


def test_scheduled_lr_is_the_lr_the_optimizer_uses() -> None:
    w = np.zeros(2)
    opt = fo.SGD([w], lr=1.0)
    sched = S.Scheduler(opt, S.exponential(0.5))
    for _ in range(4):
        opt.step([np.ones(2)])
        sched.step()
    np.testing.assert_allclose(w, -(1 + 0.5 + 0.25 + 0.125), rtol=1e-15)


def test_scheduler_keeps_an_existing_initial_value() -> None:
    opt = _ferro_opt()
    opt.param_groups[0]["initial_lr"] = 1.0  # e.g. from a previous scheduler
    sched = S.Scheduler(opt, S.step_decay(1, 0.5))
    assert sched.get_last_lr() == [1.0, 0.03]
    assert S.Scheduler(opt, S.constant()).get_last_lr() == [1.0, 0.03]


def test_scheduler_on_momentum_and_weight_decay() -> None:
    groups = [{"params": [np.zeros(1)]}, {"params": [np.zeros(1)], "momentum": 0.5}]
    opt = fo.SGD(groups, lr=0.1, momentum=0.9, weight_decay=0.01)
    mom = S.Scheduler(opt, S.linear(0.5, 1.0, 4), key="momentum")  # relative momentum warmup
    wd = S.Scheduler(opt, S.cosine_annealing(10, base=0.02), key="weight_decay")  # absolute
    assert [g["initial_momentum"] for g in opt.param_groups] == [0.9, 0.5]
    assert [g["initial_weight_decay"] for g in opt.param_groups] == [0.01, 0.01]
    values = []
    for _ in range(5):
        values.append(([g["momentum"] for g in opt.param_groups], wd.get_last_value()))
        opt.step([np.ones(1), np.ones(1)])
        mom.step()
        wd.step()
    momenta = [[0.45, 0.25], [0.5625, 0.3125], [0.675, 0.375], [0.7875, 0.4375], [0.9, 0.5]]
    np.testing.assert_allclose([m for m, _ in values], momenta, rtol=1e-15)
    wd4 = 0.02 * (1 + math.cos(math.pi * 4 / 10)) / 2
    assert values[0][1] == [0.02, 0.02] and values[-1][1] == pytest.approx([wd4, wd4], rel=1e-15)
    assert all(g["lr"] == 0.1 for g in opt.param_groups)  # other keys untouched


def test_scheduler_per_group_schedules() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, [S.step_decay(2, 0.1), S.constant(0.5)])
    seen = []
    for _ in range(5):
        seen.append(sched.get_last_lr())
        sched.step()
    np.testing.assert_allclose(
        seen, [[0.1, 0.5], [0.1, 0.5], [0.01, 0.5], [0.01, 0.5], [0.001, 0.5]], rtol=1e-15
    )


def test_plain_callable_is_absolute() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, lambda t: 0.2 / (t + 1))
    sched.step()
    assert sched.get_last_lr() == [0.1, 0.1]


def test_scheduler_state_dict_round_trip() -> None:
    def make(opt: Any) -> S.Scheduler:
        return S.Scheduler(
            opt,
            S.sequential([S.linear(0.1, 1.0, 20), S.cosine_annealing(60, eta_min=0.01)], [20]),
        )

    reference_opt = _ferro_opt()
    reference = make(reference_opt)
    opt = _ferro_opt()
    sched = make(opt)
    for _ in range(37):
        reference.step()
        sched.step()
    state = sched.state_dict()
    state = json.loads(json.dumps(state))  # plain data
    assert state == {"key": "lr", "last_epoch": 37, "base_values": list(LRS)}

    # A fresh optimizer that starts at other lrs, and a fresh scheduler: loading restores
    # the counter, the initial lrs and the lrs for step 37.
    resumed_opt = _ferro_opt(lrs=(0.7, 0.7))
    resumed = make(resumed_opt)
    resumed.load_state_dict(state)
    assert [g["initial_lr"] for g in resumed_opt.param_groups] == list(LRS)
    for _ in range(50):
        assert resumed.t == reference.t
        assert resumed.get_last_lr() == reference.get_last_lr()
        assert [g["lr"] for g in resumed_opt.param_groups] == reference.get_last_lr()
        reference.step()
        resumed.step()

    with pytest.raises(ValueError, match="key"):
        S.Scheduler(_ferro_opt(), S.constant(), key="momentum").load_state_dict(state)
    with pytest.raises(ValueError, match="param groups"):
        make(_ferro_opt(lrs=(0.1,))).load_state_dict(state)
    with pytest.raises(ValueError, match="last_epoch"):
        make(_ferro_opt()).load_state_dict({**state, "last_epoch": -3})


@pytest.mark.parametrize("cut_at", ["cooldown", "bad streak"])
def test_reduce_on_plateau_state_dict_round_trip(cut_at: str) -> None:
    metric = plateau_metric(300, seed=1)
    kwargs = dict(factor=0.5, patience=4, cooldown=2, min_lr=[1e-4, 1e-5])
    ref = S.ReduceLROnPlateau(_ferro_opt(), **kwargs)
    opt = _ferro_opt()
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    cut = 0
    for cut, m in enumerate(metric, start=1):
        ref.step(m)
        sched.step(m)
        # Stop where the counters matter: mid-cooldown, or mid-streak of bad steps.
        if cut > 100 and sched.get_last_lr() != list(LRS):
            if sched.in_cooldown if cut_at == "cooldown" else sched.num_bad_epochs > 1:
                break
    assert sched.cooldown_counter > 0 if cut_at == "cooldown" else sched.num_bad_epochs > 1
    state = json.loads(json.dumps(sched.state_dict()))  # plain data

    resumed_opt = _ferro_opt()
    resumed = S.ReduceLROnPlateau(resumed_opt, factor=0.9)  # the settings come from the state
    resumed.load_state_dict(state)
    assert resumed.factor == 0.5 and resumed.min_lrs == [1e-4, 1e-5]
    counters = ("last_epoch", "best", "num_bad_epochs", "cooldown_counter", "in_cooldown")
    assert [getattr(resumed, k) for k in counters] == [getattr(sched, k) for k in counters]
    assert resumed.get_last_lr() == sched.get_last_lr()
    resumed_opt.load_state_dict(opt.state_dict())  # the lrs themselves live in the optimizer
    for m in metric[cut:]:
        ref.step(m)
        resumed.step(m)
        assert resumed.get_last_lr() == ref.get_last_lr()
        assert (resumed.best, resumed.num_bad_epochs, resumed.cooldown_counter) == (
            ref.best,
            ref.num_bad_epochs,
            ref.cooldown_counter,
        )
    with pytest.raises(ValueError, match="lacks"):
        resumed.load_state_dict({"best": 1.0})


# -- batch-size schedules --------------------------------------------------------


def test_step_batch_size() -> None:
    bs = S.step_batch_size(32, 2, every=3, max_batch_size=256)
    assert [bs(e) for e in range(13)] == [32] * 3 + [64] * 3 + [128] * 3 + [256] * 4
    assert all(type(bs(e)) is int for e in range(13))
    assert bs(10**9) == 256  # no overflow far out
    frac = S.step_batch_size(32, 1.5, every=1, max_batch_size=100)
    assert [frac(e) for e in range(5)] == [32, 48, 72, 100, 100]


def test_linear_batch_size() -> None:
    bs = S.linear_batch_size(16, 16, max_batch_size=100)
    assert list(bs(np.arange(8))) == [16, 32, 48, 64, 80, 96, 100, 100]
    slow = S.linear_batch_size(8, 8, max_batch_size=64, every=2)
    assert [slow(e) for e in range(6)] == [8, 8, 16, 16, 24, 24]


def test_exponential_batch_size() -> None:
    bs = S.exponential_batch_size(10, 1.1, max_batch_size=1000)
    exact = [min(1000, math.floor(10 * Fraction(11, 10) ** e)) for e in range(60)]
    assert [bs(e) for e in range(60)] == exact
    assert bs(np.arange(60)).dtype == np.int64
    assert S.exponential_batch_size(8, 2, max_batch_size=4096)(10**6) == 4096
    assert [S.exponential_batch_size(3, 2, 1000)(e) for e in range(4)] == [3, 6, 12, 24]

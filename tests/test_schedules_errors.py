"""Schedules on bad input: every bad argument raises the package's error
naming it, and a failed scheduler call (construction, step, load) changes
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _schedules_helpers import LRS, _f1, _ferro_opt
from ferroptim import schedules as S
from ferroptim.exceptions import HyperparameterError, StateDictError

# -- argument validation ---------------------------------------------------------


def _opt1() -> fo.SGD:
    return fo.SGD([np.zeros(1)], lr=0.1)


BAD: list[tuple[str, Callable[[], Any], str]] = [
    ("Schedule fn", lambda: S.Schedule(3), "fn"),
    ("constant nan", lambda: S.constant(float("nan")), "value"),
    ("step_size 0", lambda: S.step_decay(0), "step_size"),
    ("step_size float", lambda: S.step_decay(2.5), "step_size"),
    ("step gamma", lambda: S.step_decay(10, gamma=-0.1), "gamma"),
    ("step base inf", lambda: S.step_decay(10, base=math.inf), "base"),
    ("milestones order", lambda: S.multi_step([50, 30]), "milestones"),
    ("milestones type", lambda: S.multi_step(30), "milestones"),
    ("milestones negative", lambda: S.multi_step([-1, 3]), r"milestones\[0\]"),
    ("exponential gamma", lambda: S.exponential(0.0), "gamma"),
    ("inverse_time rate", lambda: S.inverse_time(-1.0), "decay_rate"),
    ("polynomial total", lambda: S.polynomial(0), "total_steps"),
    ("polynomial power", lambda: S.polynomial(10, power=-1), "power"),
    ("linear total", lambda: S.linear(total_iters=0), "total_iters"),
    ("linear start", lambda: S.linear(start_factor=-0.5), "start_factor"),
    ("linear end", lambda: S.linear(end_factor="1"), "end_factor"),
    ("cosine T_max", lambda: S.cosine_annealing(0), "T_max"),
    ("cosine eta_min", lambda: S.cosine_annealing(10, eta_min=None), "eta_min"),
    ("restarts T_0", lambda: S.cosine_warm_restarts(0), "T_0"),
    ("restarts T_mult", lambda: S.cosine_warm_restarts(10, T_mult=0), "T_mult"),
    ("one_cycle pct", lambda: S.one_cycle(0.1, 100, pct_start=1.5), "pct_start"),
    ("one_cycle 3-phase pct", lambda: S.one_cycle(0.1, 100, 0.7, three_phase=True), "pct_start"),
    ("one_cycle total", lambda: S.one_cycle(0.1, 1), "total_steps"),
    (
        "one_cycle strategy",
        lambda: S.one_cycle(0.1, 100, anneal_strategy="cubic"),
        "anneal_strategy",
    ),
    ("one_cycle div", lambda: S.one_cycle(0.1, 100, div_factor=0), "div_factor"),
    ("one_cycle final div", lambda: S.one_cycle(0.1, 100, final_div_factor=-1), "final_div_factor"),
    ("one_cycle max_lr", lambda: S.one_cycle(math.nan, 100), "max_lr"),
    ("one_cycle_momentum", lambda: S.one_cycle_momentum(100, base_momentum=None), "base_momentum"),
    ("cyclic mode", lambda: S.cyclic(0.01, 0.1, mode="sine"), "mode"),
    ("cyclic up", lambda: S.cyclic(0.01, 0.1, step_size_up=0), "step_size_up"),
    ("cyclic down", lambda: S.cyclic(0.01, 0.1, 10, step_size_down=-1), "step_size_down"),
    ("cyclic gamma", lambda: S.cyclic(0.01, 0.1, mode="exp_range", gamma=0), "gamma"),
    ("cyclic scale_mode", lambda: S.cyclic(0.01, 0.1, scale_mode="epoch"), "scale_mode"),
    ("cyclic scale_fn", lambda: S.cyclic(0.01, 0.1, scale_fn=2.0), "scale_fn"),
    ("cyclic_momentum", lambda: S.cyclic_momentum(max_momentum="x"), "max_momentum"),
    ("lambda fn", lambda: S.lambda_schedule(3), "fn"),
    ("multiplicative fn", lambda: S.multiplicative("x"), "fn"),
    ("sequential count", lambda: S.sequential([S.constant(), S.constant()], []), "milestones"),
    ("sequential zero", lambda: S.sequential([S.constant(), S.constant()], [0]), "milestones"),
    ("sequential empty", lambda: S.sequential([], []), "schedules"),
    ("sequential item", lambda: S.sequential([S.constant(), 3], [5]), r"schedules\[1\]"),
    ("sequential mixed", lambda: S.sequential([S.constant(), S.constant(1.0)], [5]), "relative"),
    ("chained empty", lambda: S.chained([]), "schedules"),
    ("chained type", lambda: S.chained(S.constant()), "schedules"),
    ("warmup > total", lambda: S.warmup_cosine(1.0, 20, 10), "warmup_steps"),
    ("warmup total", lambda: S.warmup_cosine(1.0, 0, 0), "total_steps"),
    ("warmup peak", lambda: S.warmup_cosine("1", 0, 10), "peak"),
    ("call negative", lambda: S.constant()(-1), "step"),
    ("call float", lambda: S.constant()(1.5), "step"),
    ("call float array", lambda: S.constant()(np.array([0.5])), "step"),
    ("call negative array", lambda: S.constant()(np.array([1, -1])), "step"),
    ("scheduler optimizer", lambda: S.Scheduler(object(), S.constant()), "optimizer"),
    ("scheduler schedule", lambda: S.Scheduler(_opt1(), 3), "schedule"),
    ("scheduler list", lambda: S.Scheduler(_ferro_opt(), [S.constant()]), "schedule"),
    ("scheduler key", lambda: S.Scheduler(_opt1(), S.constant(), key="beta"), "'beta'"),
    ("scheduler key type", lambda: S.Scheduler(_opt1(), S.constant(), key=3), "key"),
    (
        "scheduler betas",
        lambda: S.Scheduler(fo.Adam([np.zeros(1)]), S.constant(), key="betas"),
        "not a number",
    ),
    (
        "scheduler momentum on Adam",
        lambda: S.Scheduler(fo.Adam([np.zeros(1)]), S.constant(), key="momentum"),
        "'momentum'",
    ),
    ("scheduler nan value", lambda: S.Scheduler(_opt1(), lambda t: math.nan), "nan"),
    ("plateau mode", lambda: S.ReduceLROnPlateau(_opt1(), mode="avg"), "mode"),
    ("plateau factor", lambda: S.ReduceLROnPlateau(_opt1(), factor=1.0), "factor"),
    ("plateau patience", lambda: S.ReduceLROnPlateau(_opt1(), patience=-1), "patience"),
    ("plateau threshold", lambda: S.ReduceLROnPlateau(_opt1(), threshold=-1e-3), "threshold"),
    (
        "plateau threshold_mode",
        lambda: S.ReduceLROnPlateau(_opt1(), threshold_mode="pct"),
        "threshold_mode",
    ),
    ("plateau cooldown", lambda: S.ReduceLROnPlateau(_opt1(), cooldown=1.5), "cooldown"),
    ("plateau min_lr count", lambda: S.ReduceLROnPlateau(_ferro_opt(), min_lr=[0.1]), "min_lr"),
    ("plateau min_lr", lambda: S.ReduceLROnPlateau(_opt1(), min_lr=-1.0), "min_lr"),
    ("plateau eps", lambda: S.ReduceLROnPlateau(_opt1(), eps=-1.0), "eps"),
    ("plateau metric", lambda: S.ReduceLROnPlateau(_opt1()).step("low"), "metric"),
    ("batch initial", lambda: S.step_batch_size(0, 2, 1, 10), "initial"),
    ("batch factor", lambda: S.step_batch_size(8, 0.5, 1, 10), "factor"),
    ("batch every", lambda: S.step_batch_size(8, 2, 0, 10), "every"),
    ("batch cap", lambda: S.step_batch_size(8, 2, 1, 4), "max_batch_size"),
    ("batch increment", lambda: S.linear_batch_size(8, -1, 64), "increment"),
    ("batch rate", lambda: S.exponential_batch_size(8, 0.9, 64), "rate"),
    ("batch epoch", lambda: S.linear_batch_size(8, 1, 64)(-1), "epoch"),
    # Values no hyperparameter can take (all are >= 0; momenta lie in [0, 1]).
    ("one_cycle negative max_lr", lambda: S.one_cycle(-1, 10), "max_lr"),
    ("one_cycle zero max_lr", lambda: S.one_cycle(0.0, 10), "max_lr"),
    ("one_cycle total negative", lambda: S.one_cycle(0.1, -5), "total_steps"),
    ("one_cycle pct negative", lambda: S.one_cycle(0.1, 100, pct_start=-0.1), "pct_start"),
    ("one_cycle three_phase type", lambda: S.one_cycle(0.1, 100, three_phase="no"), "three_phase"),
    ("one_cycle_momentum > 1", lambda: S.one_cycle_momentum(100, 0.85, 1.5), "max_momentum"),
    ("one_cycle_momentum order", lambda: S.one_cycle_momentum(100, 0.95, 0.85), "base_momentum"),
    ("constant negative", lambda: S.constant(-0.1), "value"),
    ("step base negative", lambda: S.step_decay(10, base=-1.0), "base"),
    ("cosine eta_min negative", lambda: S.cosine_annealing(10, eta_min=-1e-3), "eta_min"),
    ("restarts eta_min negative", lambda: S.cosine_warm_restarts(10, eta_min=-1.0), "eta_min"),
    ("polynomial end negative", lambda: S.polynomial(10, end=-0.5), "end"),
    ("cyclic base_lr negative", lambda: S.cyclic(-0.01, 0.1), "base_lr"),
    ("cyclic max below base", lambda: S.cyclic(0.1, 0.01), "max_lr"),
    ("cyclic_momentum order", lambda: S.cyclic_momentum(0.9, 0.8), "base_momentum"),
    ("warmup peak negative", lambda: S.warmup_cosine(-1.0, 0, 10), "peak"),
    ("warmup start negative", lambda: S.warmup_cosine(1.0, 2, 10, start=-1.0), "start"),
    ("lambda base negative", lambda: S.lambda_schedule(_f1, base=-2.0), "base"),
    ("Schedule name", lambda: S.Schedule(_f1, name=3), "name"),
    (
        "scheduler value the optimizer refuses",
        lambda: S.Scheduler(_opt1(), lambda t: -0.1),
        "lr",
    ),
]


@pytest.mark.parametrize(("what", "call", "name"), BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_value_error_naming_them(
    what: str, call: Callable[[], Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(
    ("what", "call", "name"),
    [b for b in BAD if not b[0].startswith("plateau metric")],
    ids=[b[0] for b in BAD if not b[0].startswith("plateau metric")],
)
def test_bad_arguments_raise_the_package_error(
    what: str, call: Callable[[], Any], name: str
) -> None:
    """The package's own errors (ValueError subclasses), so one except clause catches them."""
    with pytest.raises((HyperparameterError, StateDictError), match=name):
        call()


def test_scheduler_notices_a_new_param_group() -> None:
    opt = _opt1()
    sched = S.Scheduler(opt, S.constant())
    opt.add_param_group({"params": [np.zeros(1)]})
    with pytest.raises(ValueError, match="param groups"):
        sched.step()


# -- a failed call changes nothing ------------------------------------------------


def _lrs(opt: Any) -> list[Any]:
    return [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]


def _nan_at(bad: int) -> Callable[[int], float]:
    return lambda t: math.nan if t == bad else 0.5**t


def test_failed_scheduler_step_changes_nothing() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, S.lambda_schedule(_nan_at(3)))
    sched.step()
    sched.step()
    groups, last = _lrs(opt), sched.get_last_lr()
    for _ in range(2):  # a retry fails the same way: the counter did not move
        with pytest.raises(HyperparameterError, match="nan"):
            sched.step()
        assert sched.t == sched.last_epoch == 2
        assert _lrs(opt) == groups and sched.get_last_lr() == last
    assert sched.state_dict()["last_epoch"] == 2


def test_scheduler_step_refusing_a_negative_value_changes_nothing() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, lambda t: 0.1 - 0.05 * t)  # absolute: 0.1, 0.05, 0.0, -0.05
    sched.step()
    sched.step()
    groups = _lrs(opt)
    with pytest.raises(HyperparameterError, match="lr"):
        sched.step()
    assert sched.t == 2 and _lrs(opt) == groups


def test_scheduler_step_after_a_new_group_changes_nothing() -> None:
    opt = _opt1()
    sched = S.Scheduler(opt, S.exponential(0.5))
    opt.add_param_group({"params": [np.zeros(1)]})
    with pytest.raises(ValueError, match="param groups"):
        sched.step()
    assert sched.t == 0


def test_failed_scheduler_construction_changes_nothing() -> None:
    opt = _ferro_opt()
    before = _lrs(opt)
    with pytest.raises(HyperparameterError):
        S.Scheduler(opt, S.lambda_schedule(_nan_at(0)))
    assert _lrs(opt) == before  # no initial_lr left behind


def test_failed_scheduler_load_changes_nothing() -> None:
    opt = _ferro_opt()
    sched = S.Scheduler(opt, S.lambda_schedule(_nan_at(7)))
    sched.step()
    groups, state = _lrs(opt), sched.state_dict()
    with pytest.raises(HyperparameterError, match="nan"):
        sched.load_state_dict({**state, "last_epoch": 7, "base_values": [1.0, 2.0]})
    assert sched.state_dict() == state and _lrs(opt) == groups


def test_failed_plateau_step_changes_nothing() -> None:
    opt = _ferro_opt()
    sched = S.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.0])
    sched.step(1.0)
    opt.add_param_group({"params": [np.zeros(1)], "lr": 0.5})  # min_lr has two entries
    state = sched.state_dict()
    with pytest.raises(HyperparameterError, match="min_lr"):
        sched.step(2.0)  # a bad step: would reduce
    assert sched.state_dict() == state


def test_overflow_is_inf_and_the_scheduler_refuses_it() -> None:
    """gamma > 1 runs out of floats: the pure schedule says inf, the Scheduler refuses it."""
    grow = S.exponential(2.0)
    assert grow(5000) == math.inf and grow(np.array([1, 5000]))[1] == math.inf
    opt = _ferro_opt()
    sched = S.Scheduler(opt, grow)
    with pytest.raises(HyperparameterError, match="inf"):
        sched.load_state_dict({**sched.state_dict(), "last_epoch": 5000})
    assert sched.t == 0 and sched.get_last_lr() == list(LRS)

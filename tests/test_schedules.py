"""Schedules: torch.optim.lr_scheduler parity over 1000 steps, and the rest.

Parity: for every scheduler torch has, a torch SGD with two param groups
(lr 0.1 and 0.03) and a dummy param is driven for 1000 steps, and the lr of
each group at every step is compared (rtol 1e-9, no atol) with

* our :class:`Scheduler` driving a ferroptim SGD built the same way, and
* our pure schedule functions evaluated on ``np.arange(1000)``.

torch computes several schedules by recursion (``lr *= ratio`` each step,
e.g. CosineAnnealingLR, PolynomialLR, ExponentialLR) where we use the closed
form; the two agree to ~1e-13 relative after 1000 steps, so rtol 1e-9 leaves
a wide margin while a wrong formula is off by far more. CosineAnnealingLR is
also checked against torch's own ``_get_closed_form_lr`` with exact equality.
Without torch the parity tests skip and say why; the rest still run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import schedules as S
from ferroptim.exceptions import HyperparameterError, StateDictError

STEPS = 1000
LRS = (0.1, 0.03)
RTOL = 1e-9


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip(
        "torch", reason="torch is not installed: the torch parity tests need it (pip install torch)"
    )


def _ferro_opt(lrs: tuple[float, ...] = LRS, momentum: float = 0.0) -> fo.SGD:
    groups = [{"params": [np.zeros(1)], "lr": lr} for lr in lrs]
    return fo.SGD(groups, lr=lrs[0], momentum=momentum)


def ferro_run(
    schedule: Any,
    *,
    key: str = "lr",
    steps: int = STEPS,
    momentum: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> np.ndarray:
    """``(steps, groups)`` values of ``key`` as our Scheduler drives a ferroptim SGD."""
    opt = _ferro_opt(momentum=momentum)
    sched = S.Scheduler(opt, schedule, key=key)
    others = [S.Scheduler(opt, s, key=k) for k, s in (extra or {}).items()]
    grads = [np.zeros(1) for _ in LRS]
    out = []
    for t in range(steps):
        assert sched.t == sched.last_epoch == t
        out.append([g[key] for g in opt.param_groups])
        assert sched.get_last_value() == out[-1]
        opt.step(grads)
        sched.step()
        for other in others:
            other.step()
    return np.array(out)


def torch_run(
    torch: Any,
    make: Callable[[Any, Any], Any],
    *,
    key: str = "lr",
    steps: int = STEPS,
    momentum: float = 0.0,
) -> np.ndarray:
    """``(steps, groups)`` values of ``key`` as a torch scheduler drives a torch SGD."""
    params = [torch.zeros(1, requires_grad=True) for _ in LRS]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)]
    opt = torch.optim.SGD(groups, lr=LRS[0], momentum=momentum)
    sched = make(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(steps):
        out.append([float(g[key]) for g in opt.param_groups])
        opt.step()
        sched.step()
    return np.array(out)


# -- the parity table ----------------------------------------------------------


def _f1(epoch: int) -> float:
    return 1.0 / (1.0 + 0.01 * epoch)


def _f2(epoch: int) -> float:
    return 0.55 + 0.45 * math.cos(epoch / 40)


def _mult(epoch: int) -> float:
    return 0.99 if epoch % 3 else 1.015


BASE_LRS = (0.01, 0.002)  # CyclicLR's lower bounds, per group
MAX_LRS = (0.1, 0.05)  # CyclicLR's and OneCycleLR's peaks, per group


@dataclass(frozen=True)
class Case:
    """``torch(lr_scheduler, opt)`` builds torch's scheduler; ours is one of

    * ``schedule(base)``: one schedule for every group, relative for base=None;
    * ``per_group(i)``: group i's schedule (relative ones scale group i's lr).
    """

    torch: Callable[[Any, Any], Any]
    schedule: Callable[[float | None], S.Schedule] | None = None
    per_group: Callable[[int], S.Schedule] | None = None

    def scheduler_spec(self) -> Any:
        if self.schedule is not None:
            return self.schedule(None)
        assert self.per_group is not None
        return [self.per_group(i) for i in range(len(LRS))]

    def pure(self, i: int) -> S.Schedule:
        """An absolute schedule of group i's lr."""
        if self.schedule is not None:
            return self.schedule(LRS[i])
        assert self.per_group is not None
        return self.per_group(i)


def _cyclic(mode: str, up: int, down: int | None, gamma: float = 1.0) -> Case:
    return Case(
        torch=lambda L, o: L.CyclicLR(
            o,
            list(BASE_LRS),
            list(MAX_LRS),
            step_size_up=up,
            step_size_down=down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=False,
        ),
        per_group=lambda i: S.cyclic(BASE_LRS[i], MAX_LRS[i], up, down, mode=mode, gamma=gamma),
    )


CASES: dict[str, Case] = {
    "StepLR": Case(
        torch=lambda L, o: L.StepLR(o, step_size=70, gamma=0.5),
        schedule=lambda b: S.step_decay(70, 0.5, base=b),
    ),
    "MultiStepLR": Case(
        torch=lambda L, o: L.MultiStepLR(o, milestones=[100, 250, 600], gamma=0.3),
        schedule=lambda b: S.multi_step([100, 250, 600], 0.3, base=b),
    ),
    "ExponentialLR": Case(
        torch=lambda L, o: L.ExponentialLR(o, gamma=0.995),
        schedule=lambda b: S.exponential(0.995, base=b),
    ),
    "PolynomialLR": Case(
        torch=lambda L, o: L.PolynomialLR(o, total_iters=800, power=2.0),
        schedule=lambda b: S.polynomial(800, 2.0, base=b),
    ),
    "LinearLR-warmup": Case(
        torch=lambda L, o: L.LinearLR(o, start_factor=0.05, end_factor=1.0, total_iters=300),
        schedule=lambda b: S.linear(0.05, 1.0, 300, base=b),
    ),
    "LinearLR-decay": Case(
        torch=lambda L, o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=500),
        schedule=lambda b: S.linear(1.0, 0.1, 500, base=b),
    ),
    "CosineAnnealingLR": Case(  # runs past T_max: torch's cosine goes on, and so does ours
        torch=lambda L, o: L.CosineAnnealingLR(o, T_max=300),
        schedule=lambda b: S.cosine_annealing(300, base=b),
    ),
    "CosineAnnealingLR-eta_min": Case(  # torch's eta_min is absolute: one absolute schedule a group
        torch=lambda L, o: L.CosineAnnealingLR(o, T_max=300, eta_min=1e-3),
        per_group=lambda i: S.cosine_annealing(300, 1e-3, base=LRS[i]),
    ),
    "CosineAnnealingWarmRestarts": Case(
        torch=lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=70),
        schedule=lambda b: S.cosine_warm_restarts(70, base=b),
    ),
    "CosineAnnealingWarmRestarts-T_mult": Case(
        torch=lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=50, T_mult=2, eta_min=1e-4),
        per_group=lambda i: S.cosine_warm_restarts(50, 2, 1e-4, base=LRS[i]),
    ),
    "OneCycleLR": Case(
        torch=lambda L, o: L.OneCycleLR(o, list(MAX_LRS), total_steps=STEPS, cycle_momentum=False),
        per_group=lambda i: S.one_cycle(MAX_LRS[i], STEPS),
    ),
    "OneCycleLR-three_phase-linear": Case(
        torch=lambda L, o: L.OneCycleLR(
            o,
            list(MAX_LRS),
            total_steps=STEPS,
            pct_start=0.25,
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
            three_phase=True,
            cycle_momentum=False,
        ),
        per_group=lambda i: S.one_cycle(MAX_LRS[i], STEPS, 0.25, "linear", 10.0, 100.0, True),
    ),
    "CyclicLR-triangular": _cyclic("triangular", 60, 40),
    "CyclicLR-triangular2": _cyclic("triangular2", 50, None),
    "CyclicLR-exp_range": _cyclic("exp_range", 75, 25, gamma=0.997),
    "LambdaLR": Case(  # one lambda per group
        torch=lambda L, o: L.LambdaLR(o, lr_lambda=[_f1, _f2]),
        per_group=lambda i: S.lambda_schedule((_f1, _f2)[i]),
    ),
    "MultiplicativeLR": Case(
        torch=lambda L, o: L.MultiplicativeLR(o, lr_lambda=_mult),
        schedule=lambda b: S.multiplicative(_mult, base=b),
    ),
    "SequentialLR": Case(
        torch=lambda L, o: L.SequentialLR(
            o, [L.LinearLR(o, 0.1, 1.0, 50), L.ExponentialLR(o, 0.995)], milestones=[50]
        ),
        schedule=lambda b: S.sequential(
            [S.linear(0.1, 1.0, 50, base=b), S.exponential(0.995, base=b)], [50]
        ),
    ),
    "SequentialLR-three": Case(
        torch=lambda L, o: L.SequentialLR(
            o,
            [L.LinearLR(o, 0.01, 1.0, 100), L.CosineAnnealingLR(o, 400), L.StepLR(o, 100, 0.5)],
            milestones=[100, 500],
        ),
        schedule=lambda b: S.sequential(
            [
                S.linear(0.01, 1.0, 100, base=b),
                S.cosine_annealing(400, base=b),
                S.step_decay(100, 0.5, base=b),
            ],
            [100, 500],
        ),
    ),
    "ChainedScheduler": Case(
        torch=lambda L, o: L.ChainedScheduler(
            [L.StepLR(o, 200, 0.5), L.ExponentialLR(o, 0.999), L.LinearLR(o, 0.2, 1.0, 100)]
        ),
        # Chained absolute: one piece carries the base, the others are factors.
        schedule=lambda b: S.chained(
            [S.step_decay(200, 0.5, base=b), S.exponential(0.999), S.linear(0.2, 1.0, 100)]
        ),
    ),
}


@pytest.fixture(scope="module")
def torch_lrs(torch: Any) -> dict[str, np.ndarray]:
    """Each case's torch lr sequence, computed once."""
    return {name: torch_run(torch, case.torch) for name, case in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_scheduler_matches_torch(name: str, torch_lrs: dict[str, np.ndarray]) -> None:
    expected = torch_lrs[name]
    assert len(np.unique(expected[:, 0])) >= 4, "the case must really vary the lr"
    got = ferro_run(CASES[name].scheduler_spec())
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_pure_schedule_matches_torch(name: str, torch_lrs: dict[str, np.ndarray]) -> None:
    case = CASES[name]
    steps = np.arange(STEPS)
    for i, lr in enumerate(LRS):
        sched = case.pure(i)
        values = sched(steps) * (lr if sched.relative else 1.0)
        assert values.shape == (STEPS,) and values.dtype == np.float64
        np.testing.assert_allclose(values, torch_lrs[name][:, i], rtol=RTOL, atol=0)
        # The scalar path gives the same floats as the array path.
        for t in (0, 1, 99, 500, STEPS - 1):
            scalar = sched(t)
            assert isinstance(scalar, float)
            assert scalar * (lr if sched.relative else 1.0) == values[t]


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.schedule is not None])
def test_relative_equals_absolute(name: str) -> None:
    """A relative schedule times the base is the same schedule given that base."""
    case = CASES[name]
    assert case.schedule is not None
    relative = case.schedule(None)
    assert relative.relative
    steps = np.arange(STEPS)
    for lr in LRS:
        absolute = case.schedule(lr)
        assert not absolute.relative
        np.testing.assert_allclose(relative(steps) * lr, absolute(steps), rtol=1e-12, atol=0)


def test_cosine_annealing_equals_torch_closed_form(torch: Any) -> None:
    """torch's own closed form, which its step() approximates by recursion: exactly equal."""
    params = [torch.zeros(1, requires_grad=True) for _ in LRS]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300, eta_min=1e-3)
    ours = [S.cosine_annealing(300, 1e-3, base=lr) for lr in LRS]
    for t in range(STEPS):
        sched.last_epoch = t
        assert sched._get_closed_form_lr() == [s(t) for s in ours]


# -- momentum cycles (a non-lr key) ---------------------------------------------

MOMENTUM_CASES: dict[str, tuple[Callable[[Any, Any], Any], S.Schedule, list[S.Schedule]]] = {
    "CyclicLR": (
        lambda L, o: L.CyclicLR(
            o, list(BASE_LRS), list(MAX_LRS), 60, 40, base_momentum=0.8, max_momentum=0.95
        ),
        S.cyclic_momentum(0.8, 0.95, 60, 40),
        [S.cyclic(BASE_LRS[i], MAX_LRS[i], 60, 40) for i in range(2)],
    ),
    "CyclicLR-exp_range": (
        lambda L, o: L.CyclicLR(
            o, list(BASE_LRS), list(MAX_LRS), 50, mode="exp_range", gamma=0.998
        ),
        S.cyclic_momentum(0.8, 0.9, 50, mode="exp_range", gamma=0.998),
        [S.cyclic(BASE_LRS[i], MAX_LRS[i], 50, mode="exp_range", gamma=0.998) for i in range(2)],
    ),
    "OneCycleLR": (
        lambda L, o: L.OneCycleLR(o, list(MAX_LRS), total_steps=STEPS),
        S.one_cycle_momentum(STEPS),
        [S.one_cycle(m, STEPS) for m in MAX_LRS],
    ),
    "OneCycleLR-three_phase": (
        lambda L, o: L.OneCycleLR(
            o,
            list(MAX_LRS),
            total_steps=STEPS,
            three_phase=True,
            pct_start=0.2,
            base_momentum=0.7,
            max_momentum=0.9,
        ),
        S.one_cycle_momentum(STEPS, 0.7, 0.9, pct_start=0.2, three_phase=True),
        [S.one_cycle(m, STEPS, pct_start=0.2, three_phase=True) for m in MAX_LRS],
    ),
}


@pytest.mark.parametrize("name", list(MOMENTUM_CASES))
def test_momentum_cycle_matches_torch(name: str, torch: Any) -> None:
    """torch cycles SGD's momentum with the lr; two Schedulers (momentum, lr) do the same."""
    make, momentum, lr = MOMENTUM_CASES[name]
    expected_m = torch_run(torch, make, key="momentum", momentum=0.9)
    expected_lr = torch_run(torch, make, key="lr", momentum=0.9)
    assert len(np.unique(expected_m)) > 5
    got_m = ferro_run(momentum, key="momentum", momentum=0.9, extra={"lr": lr})
    got_lr = ferro_run(lr, key="lr", momentum=0.9, extra={"momentum": momentum})
    np.testing.assert_allclose(got_m, expected_m, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got_lr, expected_lr, rtol=RTOL, atol=0)


# -- ReduceLROnPlateau -----------------------------------------------------------


def plateau_metric(n: int = STEPS, seed: int = 0) -> np.ndarray:
    """A loss that falls in stretches separated by plateaus of varied length, with noise."""
    rng = np.random.default_rng(seed)
    values, level = [], 1.0
    while len(values) < n:
        fall = int(rng.integers(5, 40))
        values += list(level * 0.97 ** np.arange(1, fall + 1))
        level = values[-1]
        flat = int(rng.integers(3, 40))
        values += list(level * (1 + 2e-5 * rng.standard_normal(flat)))
        if rng.random() < 0.2:  # a bump: worse for a while
            values += list(level * (1.05 + 0.01 * rng.random(int(rng.integers(2, 10)))))
    return np.array(values[:n])


PLATEAU_CASES: dict[str, tuple[dict[str, Any], int]] = {
    "min-rel": (dict(mode="min", factor=0.5, patience=5), 1),
    "min-abs-cooldown-min_lr": (
        dict(
            mode="min",
            factor=0.3,
            patience=3,
            threshold=1e-3,
            threshold_mode="abs",
            cooldown=4,
            min_lr=[1e-4, 5e-4],
        ),
        1,
    ),
    "max-rel-eps": (
        dict(mode="max", factor=0.7, patience=8, threshold=1e-3, min_lr=0.004, eps=1e-3),
        -1,
    ),
    "max-abs-defaults": (dict(mode="max", threshold_mode="abs", threshold=1e-4), -1),
}


@pytest.mark.parametrize("name", list(PLATEAU_CASES))
def test_reduce_on_plateau_matches_torch(name: str, torch: Any) -> None:
    kwargs, sign = PLATEAU_CASES[name]
    metric = sign * plateau_metric()
    params = [torch.zeros(1, requires_grad=True) for _ in LRS]
    topt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)])
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    opt = _ferro_opt()
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    expected, got = [], []
    for m in metric:
        topt.step()
        tsched.step(float(m))
        opt.step([np.zeros(1), np.zeros(1)])
        sched.step(m)
        expected.append([g["lr"] for g in topt.param_groups])
        got.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == got[-1]
        assert (sched.best, sched.num_bad_epochs, sched.cooldown_counter, sched.last_epoch) == (
            tsched.best,
            tsched.num_bad_epochs,
            tsched.cooldown_counter,
            tsched.last_epoch,
        )
    expected_arr = np.array(expected)
    assert len(np.unique(expected_arr[:, 0])) >= 3, "the metric must trigger reductions"
    np.testing.assert_allclose(np.array(got), expected_arr, rtol=RTOL, atol=0)


def test_reduce_on_plateau_by_hand() -> None:
    """patience 2: the third bad step in a row cuts the lr; cooldown 1 skips one count."""
    opt = _ferro_opt()
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=[0.02, 0.0])
    assert sched.get_last_lr() == list(LRS)  # construction leaves the lrs alone
    lrs = []
    for m in [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4]:
        sched.step(m)
        lrs.append(sched.get_last_lr())
    cut1 = [0.05, 0.015]
    cut2 = [0.025, 0.0075]
    assert lrs == [list(LRS)] * 4 + [cut1] * 4 + [cut2] * 2
    # min_lr floors the first group: 0.025 * 0.5 < 0.02.
    for m in [0.4, 0.4, 0.4, 0.4, 0.4]:
        sched.step(m)
    assert sched.get_last_lr() == [0.02, 0.00375]


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

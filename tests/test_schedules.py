"""Schedules: torch.optim.lr_scheduler parity over 1000 steps.

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
Without torch the parity tests skip and say why. The schedules' own behaviour
is in test_schedules_api.py, bad input in test_schedules_errors.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from _schedules_helpers import LRS, STEPS, _f1, _ferro_opt, plateau_metric
from ferroptim import schedules as S

RTOL = 1e-9


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip(
        "torch", reason="torch is not installed: the torch parity tests need it (pip install torch)"
    )


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

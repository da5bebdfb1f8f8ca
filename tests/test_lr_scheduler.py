"""ferroptim.lr_scheduler: torch's scheduler classes, same constructor calls, same lrs.

Each parity case is one lambda ``(module, optimizer) -> scheduler`` run twice,
once with ``torch.optim.lr_scheduler`` and a torch optimizer, once with
``ferroptim.lr_scheduler`` and the ferroptim optimizer of the same name: the
lr of every param group (two groups, different lrs) is compared at each of
50 steps. torch applies several schedulers by recursion where ferroptim uses
closed forms, hence rtol 1e-9 rather than equality.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import lr_scheduler as FL
from ferroptim.exceptions import HyperparameterError, StateDictError

STEPS = 50
LRS = (0.1, 0.03)
RTOL = 1e-9


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch", reason="torch is not installed: the parity tests need it")


def _f1(t: int) -> float:
    return 1.0 / (1.0 + 0.05 * t)


def _f2(t: int) -> float:
    return 0.55 + 0.45 * math.cos(t / 6)


def _mult(t: int) -> float:
    return 0.95 if t % 3 else 1.02


CASES: dict[str, Callable[[Any, Any], Any]] = {
    "StepLR": lambda L, o: L.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, milestones=[30, 10, 20, 20], gamma=0.5),
    "ConstantLR": lambda L, o: L.ConstantLR(o, factor=0.25, total_iters=12),
    "LinearLR": lambda L, o: L.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=30),
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, gamma=0.93),
    "PolynomialLR": lambda L, o: L.PolynomialLR(o, total_iters=40, power=2.0),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=20),
    "CosineAnnealingLR-eta_min": lambda L, o: L.CosineAnnealingLR(o, T_max=20, eta_min=0.01),
    "CosineAnnealingWarmRestarts": lambda L, o: L.CosineAnnealingWarmRestarts(
        o, T_0=5, T_mult=2, eta_min=0.001
    ),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lr_lambda=[_f1, _f2]),
    "MultiplicativeLR": lambda L, o: L.MultiplicativeLR(o, lr_lambda=_mult),
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS),
    "OneCycleLR-epochs-three_phase": lambda L, o: L.OneCycleLR(
        o,
        max_lr=0.4,
        epochs=5,
        steps_per_epoch=10,
        pct_start=0.25,
        anneal_strategy="linear",
        three_phase=True,
        base_momentum=0.8,
        max_momentum=0.9,
    ),
    "CyclicLR": lambda L, o: L.CyclicLR(o, base_lr=[0.01, 0.002], max_lr=0.1, step_size_up=6),
    "CyclicLR-exp_range": lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, step_size_up=4, step_size_down=7, mode="exp_range", gamma=0.97
    ),
    "CyclicLR-triangular2-no-momentum": lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, 5, mode="triangular2", cycle_momentum=False
    ),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o,
        [L.LinearLR(o, 0.1, 1.0, 10), L.CosineAnnealingLR(o, T_max=30, eta_min=0.005)],
        milestones=[10],
    ),
    "SequentialLR-three": lambda L, o: L.SequentialLR(
        o,
        [L.ConstantLR(o, 0.5, 5), L.ExponentialLR(o, 0.9), L.StepLR(o, 4, 0.5)],
        milestones=[8, 25],
    ),
    "ChainedScheduler": lambda L, o: L.ChainedScheduler(
        [L.StepLR(o, 10, 0.5), L.ExponentialLR(o, 0.98), L.LinearLR(o, 0.2, 1.0, 8)]
    ),
}


def _groups(make_param: Callable[[], Any]) -> list[dict[str, Any]]:
    return [{"params": [make_param()], "lr": lr} for lr in LRS]


def _run(sched: Any, opt: Any, step: Callable[[], None], key: str) -> np.ndarray:
    out = []
    for _ in range(STEPS):
        out.append([_value(g, key) for g in opt.param_groups])
        step()
        sched.step()
    return np.array(out)


def _value(group: dict[str, Any], key: str) -> float:
    return float(group["betas"][0]) if key == "betas" else float(group[key])


def torch_values(
    torch: Any, make: Callable[[Any, Any], Any], opt_name: str = "SGD", key: str = "lr"
) -> np.ndarray:
    kwargs = {"momentum": 0.9} if opt_name == "SGD" else {}
    opt = getattr(torch.optim, opt_name)(
        _groups(lambda: torch.zeros(1, requires_grad=True)), **kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's SequentialLR warns about its own step(0)
        sched = make(torch.optim.lr_scheduler, opt)
        return _run(sched, opt, opt.step, key)


def ferro_values(
    make: Callable[[Any, Any], Any], opt_name: str = "SGD", key: str = "lr"
) -> tuple[np.ndarray, Any]:
    kwargs = {"momentum": 0.9} if opt_name == "SGD" else {}
    opt = getattr(fo, opt_name)(_groups(lambda: np.zeros(1)), **kwargs)
    sched = make(FL, opt)
    grads = [np.zeros(1) for _ in LRS]
    return _run(sched, opt, lambda: opt.step(grads), key), sched


@pytest.mark.parametrize("name", list(CASES))
def test_lr_sequence_matches_torch(name: str, torch: Any) -> None:
    expected = torch_values(torch, CASES[name])
    got, sched = ferro_values(CASES[name])
    assert len(np.unique(expected[:, 0])) >= (2 if name == "ConstantLR" else 4), "a varying lr"
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)
    assert sched.get_last_lr() == pytest.approx(list(sched.values_at(sched.last_epoch)))
    assert sched.last_epoch == STEPS


MOMENTUM_CASES = [
    ("OneCycleLR", "SGD", "momentum"),
    ("OneCycleLR", "Adam", "betas"),
    ("OneCycleLR-epochs-three_phase", "AdamW", "betas"),
    ("CyclicLR", "SGD", "momentum"),
    ("CyclicLR-exp_range", "RMSprop", "momentum"),
    ("CyclicLR", "NAdam", "betas"),
]


@pytest.mark.parametrize(("name", "opt_name", "key"), MOMENTUM_CASES)
def test_momentum_cycle_matches_torch(name: str, opt_name: str, key: str, torch: Any) -> None:
    """OneCycleLR and CyclicLR cycle momentum (SGD, RMSprop) or betas[0] (Adam and kin)."""
    expected = torch_values(torch, CASES[name], opt_name, key)
    got, _ = ferro_values(CASES[name], opt_name, key)
    assert len(np.unique(expected[:, 0])) > 5
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)
    lrs_expected = torch_values(torch, CASES[name], opt_name, "lr")
    lrs_got, _ = ferro_values(CASES[name], opt_name, "lr")
    np.testing.assert_allclose(lrs_got, lrs_expected, rtol=RTOL, atol=0)


def test_group_entries_match_torch(torch: Any) -> None:
    """The entries torch's OneCycleLR writes into each group: same keys, same values."""
    topt = torch.optim.SGD(_groups(lambda: torch.zeros(1, requires_grad=True)), momentum=0.9)
    torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=[0.5, 0.2], total_steps=STEPS)
    opt = fo.SGD(_groups(lambda: np.zeros(1)), momentum=0.9)
    FL.OneCycleLR(opt, max_lr=[0.5, 0.2], total_steps=STEPS)
    for tg, g in zip(topt.param_groups, opt.param_groups, strict=True):
        for key in ("lr", "initial_lr", "max_lr", "min_lr", "momentum"):
            assert g[key] == pytest.approx(tg[key], rel=1e-15), key


# -- the scheduler API ---------------------------------------------------------


def _opt(**kwargs: Any) -> fo.SGD:
    return fo.SGD(_groups(lambda: np.zeros(1)), momentum=0.9, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip(name: str) -> None:
    make = CASES[name]
    ref_opt, opt = _opt(), _opt()
    ref, sched = make(FL, ref_opt), make(FL, opt)
    for _ in range(17):
        ref.step()
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))  # plain data
    new_opt = _opt()
    resumed = make(FL, new_opt)
    resumed.load_state_dict(state)
    for _ in range(20):
        assert resumed.get_last_lr() == ref.get_last_lr()
        assert [g["lr"] for g in new_opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]
        assert [g["momentum"] for g in new_opt.param_groups] == [
            g["momentum"] for g in ref_opt.param_groups
        ]
        ref.step()
        resumed.step()


def test_last_epoch_resumes_like_torch(torch: Any) -> None:
    topt = torch.optim.SGD(_groups(lambda: torch.zeros(1, requires_grad=True)))
    for g in topt.param_groups:  # a resumed run: the initial lr, and the lr of step 6
        g["initial_lr"], g["lr"] = g["lr"], g["lr"] * 0.25
    tsched = torch.optim.lr_scheduler.StepLR(topt, 3, 0.5, last_epoch=6)
    opt = fo.SGD(_groups(lambda: np.zeros(1)))
    for g in opt.param_groups:
        g["initial_lr"], g["lr"] = g["lr"], g["lr"] * 0.25
    sched = FL.StepLR(opt, 3, 0.5, last_epoch=6)
    assert sched.last_epoch == tsched.last_epoch == 7
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-15)
    assert sched.base_lrs == list(LRS)
    with pytest.raises(HyperparameterError, match="initial_lr"):
        FL.StepLR(fo.SGD([np.zeros(1)]), 3, last_epoch=4)


def test_step_with_epoch_warns_and_jumps() -> None:
    sched = FL.ExponentialLR(_opt(), 0.5)
    with pytest.warns(UserWarning, match="deprecated"):
        sched.step(3)
    assert sched.last_epoch == 3 and sched.get_last_lr() == pytest.approx([0.0125, 0.00375])
    with pytest.raises(HyperparameterError, match="step"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FL.CosineAnnealingWarmRestarts(_opt(), 5).step(1.5)


def test_one_cycle_past_total_steps_raises_and_changes_nothing() -> None:
    opt = _opt()
    sched = FL.OneCycleLR(opt, 0.5, total_steps=10)
    for _ in range(10):
        sched.step()  # torch too allows total_steps steps
    groups = [dict(g, params=None) for g in opt.param_groups]
    with pytest.raises(HyperparameterError, match="total_steps"):
        sched.step()
    assert sched.last_epoch == 10
    assert [dict(g, params=None) for g in opt.param_groups] == groups


BAD_CONSTRUCTIONS: list[tuple[str, Callable[[Any], Any], str]] = [
    ("one_cycle negative max_lr", lambda o: FL.OneCycleLR(o, -1.0, total_steps=10), "max_lr"),
    ("one_cycle no length", lambda o: FL.OneCycleLR(o, 0.1), "total_steps"),
    ("one_cycle max_lr count", lambda o: FL.OneCycleLR(o, [0.1], total_steps=10), "max_lr"),
    (
        "one_cycle momentum > 1",
        lambda o: FL.OneCycleLR(o, 0.1, total_steps=10, max_momentum=1.5),
        "max_momentum",
    ),
    ("cyclic max below base", lambda o: FL.CyclicLR(o, 0.1, 0.01), "max_lr"),
    ("linear start 0", lambda o: FL.LinearLR(o, start_factor=0.0), "start_factor"),
    ("constant factor", lambda o: FL.ConstantLR(o, factor=2.0), "factor"),
    ("step size", lambda o: FL.StepLR(o, 0), "step_size"),
    ("lambda count", lambda o: FL.LambdaLR(o, [_f1]), "lr_lambda"),
    ("lambda negative lr", lambda o: FL.LambdaLR(o, lambda t: -1.0), "lr"),
    ("milestone", lambda o: FL.MultiStepLR(o, [3, -1]), r"milestones\[1\]"),
    ("last_epoch", lambda o: FL.StepLR(o, 3, last_epoch=-2), "last_epoch"),
    ("sequential other opt", lambda o: FL.SequentialLR(o, [FL.StepLR(_opt(), 3)], []), "another"),
    (
        "chained two absolute",
        lambda o: (
            lambda p: FL.ChainedScheduler(
                [
                    FL.OneCycleLR(p, 0.1, 10, cycle_momentum=False),
                    FL.CyclicLR(p, 0.01, 0.1, cycle_momentum=False),
                ]
            )
        )(_opt()),
        "outright",
    ),
]


@pytest.mark.parametrize(
    ("what", "call", "name"), BAD_CONSTRUCTIONS, ids=[b[0] for b in BAD_CONSTRUCTIONS]
)
def test_failed_construction_changes_nothing(
    what: str, call: Callable[[Any], Any], name: str
) -> None:
    opt = _opt()
    before = [dict(g, params=None) for g in opt.param_groups]
    with pytest.raises(HyperparameterError, match=name):
        call(opt)
    assert [dict(g, params=None) for g in opt.param_groups] == before


def test_cycle_momentum_needs_momentum_or_betas() -> None:
    opt = fo.Adagrad([np.zeros(1)], lr=0.1)
    with pytest.raises(HyperparameterError, match="cycle_momentum"):
        FL.CyclicLR(opt, 0.01, 0.1)
    FL.CyclicLR(opt, 0.01, 0.1, cycle_momentum=False)  # fine without


def test_reduce_on_plateau_is_the_package_one() -> None:
    assert FL.ReduceLROnPlateau is fo.ReduceLROnPlateau
    assert fo.lr_scheduler is FL
    assert fo.lr_scheduler.OneCycleLR is FL.OneCycleLR


def test_load_state_dict_rejects_a_bad_state() -> None:
    sched = FL.StepLR(_opt(), 3)
    state = sched.state_dict()
    with pytest.raises(StateDictError, match="last_epoch"):
        sched.load_state_dict({**state, "last_epoch": "x"})
    assert sched.state_dict() == state

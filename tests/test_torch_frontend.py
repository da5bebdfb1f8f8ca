"""ferroptim.torch as a drop-in torch.optim: state_dicts both ways, schedulers,
hooks, closures, zero_grad, param groups, refusals, flattened mode.

The parity on torch's own test inputs is in test_torch_parity.py; ZeRO in
test_torch_zero.py.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="torch is not installed (CPU build: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)",
)
fot = pytest.importorskip("ferroptim.torch")

import ferroptim as fo  # noqa: E402
from ferroptim.exceptions import (  # noqa: E402
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)

# Hyperparameters that make every state slot live.
KWARGS: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
    "AdamW": {"lr": 0.01, "amsgrad": True},
    "Adamax": {"lr": 0.01, "weight_decay": 0.01},
    "NAdam": {"lr": 0.01, "weight_decay": 0.01},
    "RAdam": {"lr": 0.01, "weight_decay": 0.01},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
    "Adagrad": {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    "Adadelta": {"lr": 0.5, "weight_decay": 0.01},
}
NAMES = sorted(KWARGS)
F32 = (1e-5, 1e-6)


def _model(seed: int = 0, dtype: Any = None) -> Any:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    return m.to(dtype) if dtype is not None else m


def _data(dtype: Any = torch.float32) -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(32, 6, generator=gen, dtype=dtype), torch.randn(
        32, 2, generator=gen, dtype=dtype
    )


def _train(model: Any, opt: Any, steps: int, sched: Any = None) -> None:
    x, y = _data(next(model.parameters()).dtype)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def _close(m1: Any, m2: Any, tol: tuple[float, float] = F32) -> None:
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=tol[0], atol=tol[1])


# -- state_dict both ways ----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_torch_state_dict_loads_and_training_continues(name: str) -> None:
    kw = KWARGS[name]
    m_t = _model()
    t_opt = getattr(torch.optim, name)(m_t.parameters(), foreach=False, **kw)
    _train(m_t, t_opt, 5)
    m_f = copy.deepcopy(m_t)
    f_opt = getattr(fot, name)(m_f.parameters(), **kw)
    f_opt.load_state_dict(t_opt.state_dict())
    _train(m_t, t_opt, 5)
    _train(m_f, f_opt, 5)
    _close(m_t, m_f)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_loads_into_torch_and_training_continues(name: str) -> None:
    kw = KWARGS[name]
    m_f = _model()
    f_opt = getattr(fot, name)(m_f.parameters(), **kw)
    _train(m_f, f_opt, 5)
    m_t = copy.deepcopy(m_f)
    t_opt = getattr(torch.optim, name)(m_t.parameters(), foreach=False, **kw)
    sd = f_opt.state_dict()
    t_opt.load_state_dict(sd)
    # The same format: torch's own state_dict now equals ours, key for key.
    theirs = t_opt.state_dict()
    assert theirs["state"].keys() == sd["state"].keys()
    for i, st in theirs["state"].items():
        assert st.keys() == sd["state"][i].keys()
    _train(m_t, t_opt, 5)
    _train(m_f, f_opt, 5)
    _close(m_t, m_f)


def test_step_is_a_float_tensor_and_named_params_keep_their_names() -> None:
    m = _model()
    opt = fot.AdamW(m.named_parameters())
    _train(m, opt, 2)
    sd = opt.state_dict()
    ref = torch.optim.AdamW(_model().named_parameters())
    assert (
        sd["param_groups"][0]["param_names"] == ref.state_dict()["param_groups"][0]["param_names"]
    )
    step = sd["state"][0]["step"]
    assert isinstance(step, torch.Tensor) and step.ndim == 0 and step.dtype == torch.float32
    assert float(step) == 2.0
    assert sorted(opt.state[next(m.parameters())]) == ["exp_avg", "exp_avg_sq", "step"]


def test_a_bad_state_dict_changes_nothing() -> None:
    m = _model()
    opt = fot.Adam(m.parameters(), lr=0.01)
    _train(m, opt, 2)
    before = opt.state_dict()
    bad = copy.deepcopy(before)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(StateDictError, match="lr"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["state"][1]["exp_avg"] = torch.zeros(3)
    with pytest.raises(StateDictError, match="shape"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(before)
    bad["state"][1]["momentum_buffer"] = torch.zeros(5)
    with pytest.raises(StateDictError, match="momentum_buffer"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"][0]["lr"] == 0.01
    for i, st in before["state"].items():
        for k, v in st.items():
            assert torch.equal(after["state"][i][k], v)


def test_state_assignment_reaches_the_engine() -> None:
    # As torch's ZeroRedundancyOptimizer.load_state_dict does it.
    m1, m2 = _model(), _model()
    o1, o2 = fot.Adam(m1.parameters(), lr=0.01), fot.Adam(m2.parameters(), lr=0.01)
    _train(m1, o1, 3)
    m2.load_state_dict(m1.state_dict())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        o2.state[p2] = {k: v.clone() for k, v in o1.state[p1].items()}
    _train(m1, o1, 3)
    _train(m2, o2, 3)
    _close(m1, m2, (0, 0))


# -- schedulers, hooks, closures, zero_grad, groups ------------------------------

SCHEDULERS = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=12),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0 / (1 + e)),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(
        o, base_lr=0.001, max_lr=0.05, step_size_up=3
    ),
    "SequentialLR": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
        ],
        milestones=[4],
    ),
}


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
def test_torch_schedulers_drive_the_step(sched: str) -> None:
    # OneCycleLR and CyclicLR also cycle betas/momentum: read from the groups each step.
    name, kw = ("SGD", {"lr": 0.01, "momentum": 0.9}) if sched == "CyclicLR" else ("Adam", {})
    m_t, m_f = _model(), _model()
    t_opt = getattr(torch.optim, name)(m_t.parameters(), foreach=False, **kw)
    f_opt = getattr(fot, name)(m_f.parameters(), **kw)
    _train(m_t, t_opt, 12, SCHEDULERS[sched](t_opt))
    _train(m_f, f_opt, 12, SCHEDULERS[sched](f_opt))
    _close(m_t, m_f)
    assert f_opt.param_groups[0]["lr"] == t_opt.param_groups[0]["lr"]


def test_reduce_lr_on_plateau() -> None:
    m = _model()
    opt = fot.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    w = next(m.parameters())
    for _ in range(3):
        sched.step(1.0)  # no improvement
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    before = w.detach().clone()
    w.grad = torch.ones_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.025)


def test_hooks_closure_and_zero_grad() -> None:
    m = _model()
    opt = fot.SGD(m.parameters(), lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    x, y = _data()

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == ["pre", "post"] and isinstance(loss, torch.Tensor)
    opt.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    closure()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in m.parameters())


def test_none_grad_skips_the_param() -> None:
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = fot.Adam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert not torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.ones(3))
    assert b not in opt.state and float(opt.state[a]["step"]) == 1.0


def test_add_param_group_and_its_failure_changes_nothing() -> None:
    m1, m2 = _model(), _model()
    t_opt = torch.optim.Adam(list(m1[0].parameters()), lr=0.01, foreach=False)
    f_opt = fot.Adam(list(m2[0].parameters()), lr=0.01)
    t_opt.add_param_group({"params": list(m1[2].parameters()), "lr": 0.03})
    f_opt.add_param_group({"params": list(m2[2].parameters()), "lr": 0.03})
    with pytest.raises(DtypeError, match="int32"):
        f_opt.add_param_group({"params": [torch.zeros(2, dtype=torch.int32)]})
    with pytest.raises(HyperparameterError, match="lr"):
        f_opt.add_param_group({"params": [torch.zeros(2)], "lr": -1.0})
    assert len(f_opt.param_groups) == 2
    _train(m1, t_opt, 4)
    _train(m2, f_opt, 4)
    _close(m1, m2)


def test_tensor_lr_and_implementation_flags() -> None:
    m_t, m_f = _model(), _model()
    t_opt = torch.optim.AdamW(m_t.parameters(), lr=torch.tensor(0.01), foreach=False)
    f_opt = fot.AdamW(m_f.parameters(), lr=torch.tensor(0.01), foreach=True, fused=True)
    _train(m_t, t_opt, 3)
    _train(m_f, f_opt, 3)
    _close(m_t, m_f)


@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
def test_flags_that_cannot_hold_are_refused_by_name(flag: str) -> None:
    with pytest.raises(HyperparameterError, match=flag):
        fot.Adam([torch.zeros(2, requires_grad=True)], **{flag: True})


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_params_step_in_place(dtype: str) -> None:
    # Stepped since #14 (test_torch_lowp.py has the details); flatten() still refuses them.
    p = torch.zeros(2, dtype=getattr(torch, dtype), requires_grad=True)
    ptr = p.data_ptr()
    p.grad = torch.ones(2, dtype=p.dtype)
    fot.AdamW([p], lr=0.5).step()
    assert p.data_ptr() == ptr and p.dtype == getattr(torch, dtype)
    assert torch.equal(p.detach(), torch.full((2,), -0.5, dtype=p.dtype))
    with pytest.raises(DtypeError, match="without flatten"):
        fot.flatten([torch.zeros(2, dtype=getattr(torch, dtype), requires_grad=True)])


def test_non_cpu_and_non_contiguous_params_are_refused() -> None:
    with pytest.raises(ParamError, match="meta"):
        fot.SGD([torch.zeros(2, device="meta", requires_grad=True)])
    p = torch.nn.Parameter(torch.zeros(3, 4).t())
    with pytest.raises(ParamError, match="contiguous"):
        fot.SGD([p])


def test_a_bad_grad_is_refused_and_changes_nothing() -> None:
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, 2, requires_grad=True)
    opt = fot.Adam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    b.grad_dtype = None  # torch refuses a float64 grad otherwise
    b.grad = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(DtypeError, match="grad for param 1"):
        opt.step()
    b.grad = torch.ones(2, 2).to_sparse()
    with pytest.raises(GradError, match="param 1"):
        opt.step()
    assert torch.equal(a.detach(), torch.ones(3)) and len(opt.state) == 0
    b.grad = torch.ones(2, 2)
    opt.step()
    assert float(opt.state[b]["step"]) == 1.0


def test_replaced_param_storage_is_followed_with_its_state() -> None:
    m_t, m_f = _model(), _model()
    t_opt = torch.optim.Adam(m_t.parameters(), lr=0.01, foreach=False)
    f_opt = fot.Adam(m_f.parameters(), lr=0.01)
    _train(m_t, t_opt, 2)
    _train(m_f, f_opt, 2)
    with torch.no_grad():
        for p in m_f.parameters():
            p.data = p.data.clone()  # new storage, same values
    _train(m_t, t_opt, 3)
    _train(m_f, f_opt, 3)
    _close(m_t, m_f)


def test_lion_matches_the_numpy_optimizer_bitwise() -> None:
    m = _model()
    ref = [p.detach().numpy().copy() for p in m.parameters()]
    opt = fot.Lion(m.parameters(), lr=1e-3, weight_decay=0.1)
    np_opt = fo.Lion(ref, lr=1e-3, weight_decay=0.1)
    x, y = _data()
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        grads = [p.grad.numpy().copy() for p in m.parameters()]
        opt.step()
        np_opt.step(grads)
    for p, r in zip(m.parameters(), ref):
        np.testing.assert_array_equal(p.detach().numpy(), r)


def test_signature_and_defaults_are_torchs() -> None:
    import inspect

    for name in NAMES:
        ours, theirs = getattr(fot, name), getattr(torch.optim, name)
        p = [torch.zeros(1, requires_grad=True)]
        assert ours(p).defaults == theirs(p).defaults, name
        mine = inspect.signature(ours.__init__).parameters
        for pname, param in inspect.signature(theirs.__init__).parameters.items():
            assert mine[pname].default == param.default and mine[pname].kind == param.kind, pname


# -- flattened mode --------------------------------------------------------------


def test_backward_writes_into_the_arena() -> None:
    m = _model()
    flat = fot.flatten(m)
    opt = fot.AdamW(m.parameters(), lr=0.01)
    assert len(opt._entries) == 1  # one run: no per-tensor work in a step
    x, y = _data()
    torch.nn.functional.mse_loss(m(x), y).backward()
    assert flat.arena.grad.any()
    for name, p in m.named_parameters():
        np.testing.assert_array_equal(p.grad.numpy(), flat.arena.grads[name])
        assert np.shares_memory(p.detach().numpy(), flat.arena.data)
    before = flat.arena.data.copy()
    opt.step()
    assert not np.array_equal(before, flat.arena.data)
    opt.zero_grad()  # set_to_none=True, yet the grads stay views, zeroed
    assert not flat.arena.grad.any()
    assert all(np.shares_memory(p.grad.numpy(), flat.arena.grad) for p in m.parameters())


@pytest.mark.parametrize("name", ["AdamW", "SGD", "NAdam"])
def test_flattened_equals_unflattened(name: str) -> None:
    m1, m2 = _model(), _model()
    fot.flatten(m2)
    o1, o2 = (
        getattr(fot, name)(m1.parameters(), **KWARGS[name]),
        getattr(fot, name)(m2.parameters(), **KWARGS[name]),
    )
    _train(m1, o1, 6)
    _train(m2, o2, 6)
    _close(m1, m2, (0, 0))
    s1, s2 = o1.state_dict(), o2.state_dict()
    for i, st in s1["state"].items():
        for k, v in st.items():
            assert torch.equal(s2["state"][i][k], v), (i, k)
    # A flattened optimizer's state_dict loads into torch, and back.
    t_opt = getattr(torch.optim, name)(m1.parameters(), **KWARGS[name])
    t_opt.load_state_dict(s2)
    o3 = getattr(fot, name)(m2.parameters(), **KWARGS[name])
    o3.load_state_dict(t_opt.state_dict())
    _train(m1, o1, 2)
    _train(m2, o3, 2)
    _close(m1, m2, (0, 0))


def test_flattened_links_repair_after_model_zero_grad_and_data_swap() -> None:
    m1, m2 = _model(), _model()
    flat = fot.flatten(m2)
    o1, o2 = fot.Adam(m1.parameters(), lr=0.01), fot.Adam(m2.parameters(), lr=0.01)
    x, y = _data()
    for model, opt in ((m1, o1), (m2, o2)):
        for _ in range(3):
            model.zero_grad()  # grads set to None: backward makes new tensors
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    _close(m1, m2, (0, 0))
    with torch.no_grad():
        w = m2[0].weight
        w.data = w.data.clone()
    _train(m1, o1, 2)
    _train(m2, o2, 2)
    _close(m1, m2, (0, 0))
    assert np.shares_memory(m2[0].weight.detach().numpy(), flat.arena.data)


def test_flattened_params_across_groups_and_mixed_with_plain_ones() -> None:
    def groups(m: Any) -> list[dict[str, Any]]:
        named = list(m.named_parameters())
        return [
            {"params": [p for n, p in named if n.endswith("weight")]},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0},
        ]

    m1, m2, m3 = _model(), _model(), _model()
    fot.flatten(m2)  # the whole model: two groups, each cut into runs
    fot.flatten(m3[2])  # part of it: runs and single tensors in one optimizer
    opts = [fot.AdamW(groups(m), lr=0.01, weight_decay=0.1) for m in (m1, m2, m3)]
    assert [len(o._entries) for o in opts] == [4, 4, 4]
    for m, o in zip((m1, m2, m3), opts):
        _train(m, o, 4)
    _close(m1, m2, (0, 0))
    _close(m1, m3, (0, 0))
    sds = [o.state_dict() for o in opts]
    for sd in sds[1:]:
        for i, st in sds[0]["state"].items():
            for k, v in st.items():
                assert torch.equal(sd["state"][i][k], v), (i, k)


def test_deep_copy_of_a_flattened_model_is_not_flattened() -> None:
    m1 = _model()
    fot.flatten(m1)
    m2 = copy.deepcopy(m1)
    o1, o2 = fot.Adam(m1.parameters(), lr=0.01), fot.Adam(m2.parameters(), lr=0.01)
    assert len(o2._entries) == 4  # one per tensor
    _train(m1, o1, 3)
    _train(m2, o2, 3)
    _close(m1, m2, (0, 0))


def test_links_rebound_through_python_are_repaired_without_a_scan() -> None:
    m = _model()
    flat = fot.flatten(m, check_links=False)
    assert not flat.check_links and not flat.unguarded
    assert all(type(p) is fot.LinkedParameter for p in m.parameters())
    assert repr(m[0].bias) == repr(torch.nn.Parameter(m[0].bias.detach().clone()))
    opt = fot.SGD(m.parameters(), lr=0.1)
    w, b = m[0].weight, m[0].bias
    w.grad = torch.ones_like(w)  # a Python-level rebinding: noted, then repaired
    del b.grad  # None: counts as zero
    before = w.detach().clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.1)
    assert np.shares_memory(w.grad.numpy(), flat.arena.grad) and not flat.rebound
    # C++ code that rebinds a grad bypasses the setter: a scan is what sees it.
    torch._C.TensorBase.grad.__set__(w, torch.ones_like(w))
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.2)  # the arena's grad: still ones
    torch._C.TensorBase.grad.__set__(w, torch.full_like(w, 2.0))
    flat.check_links = True
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.4)


def test_backward_with_create_graph_is_seen_by_the_default_check() -> None:
    # With grad mode on, torch's AccumulateGrad rebinds .grad in C++ (grad + new):
    # no setter runs, so only the per-step check sees it.
    m1, m2 = _model(), _model()
    fot.flatten(m2)
    o1, o2 = fot.SGD(m1.parameters(), lr=0.1), fot.SGD(m2.parameters(), lr=0.1)
    x, y = _data()
    for model, opt in ((m1, o1), (m2, o2)):
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward(create_graph=True)
            opt.step()
    _close(m1, m2, (0, 0))


def test_zero_grad_after_a_rebinding_leaves_zero_grads() -> None:
    m = _model()
    flat = fot.flatten(m)
    opt = fot.SGD(m.parameters(), lr=0.1)
    w = m[0].weight
    w.grad = torch.ones_like(w)
    before = w.detach().clone()
    opt.zero_grad()
    assert not flat.arena.grad.any() and np.shares_memory(w.grad.numpy(), flat.arena.grad)
    opt.step()
    assert torch.equal(w.detach(), before)


def test_flattened_plain_tensors_are_checked_every_step() -> None:
    # Not nn.Parameters: their setters are torch's own, so each step scans them.
    ts = [torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)]
    flat = fot.flatten(ts)
    assert flat.unguarded == [0, 1] and all(type(t) is torch.Tensor for t in ts)
    opt = fot.SGD(ts, lr=0.5)
    ts[0].grad = torch.ones(3)
    before = ts[0].detach().clone()
    opt.step()
    torch.testing.assert_close(ts[0].detach(), before - 0.5)
    assert np.shares_memory(ts[0].grad.numpy(), flat.arena.grad)


def test_flatten_refuses_mixed_dtypes_and_twice() -> None:
    m = _model()
    m[2].double()
    with pytest.raises(DtypeError, match="one dtype"):
        fot.flatten(m)
    m2 = _model()
    fot.flatten(m2)
    with pytest.raises(ParamError, match="already flattened"):
        fot.flatten(m2)


def test_help_reads() -> None:
    doc = fot.AdamW.__doc__ or ""
    assert "Parameters" in doc and "weight_decay : float, default 0.01" in doc
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fot.SGD([torch.zeros(1, requires_grad=True)])


def test_bench_torch_times_every_implementation_side_by_side(monkeypatch: Any) -> None:
    from ferroptim import bench_torch

    monkeypatch.setattr(bench_torch, "CASES", {"tiny": (lambda: [(3,), (4, 2)], True)})
    rows = bench_torch.run(budget=0.01, burst=2)
    assert [r["case"] for r in rows] == ["tiny"]
    assert set(rows[0]["medians"]) == {
        "torch fused",
        "ferroptim",
        "ferroptim, new grads",
        "ferroptim flattened",
        "flattened, unchecked",
    }
    assert min(rows[0]["counts"].values()) >= 3
    assert "| tiny |" in bench_torch.table(rows)


def test_zero_grad_frees_the_old_grads() -> None:
    import gc
    import weakref

    p = torch.ones(1000, requires_grad=True)
    opt = fot.SGD([p], lr=0.1)
    p.grad = torch.ones(1000)
    opt.step()
    old = weakref.ref(p.grad)
    opt.zero_grad()
    gc.collect()
    assert old() is None  # no view of it kept by the optimizer

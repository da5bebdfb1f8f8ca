"""Adagrad, Adadelta, Adamax, NAdam and RAdam against torch.optim, and Lion
against a NumPy transcription of the paper's update.

Every combination of each optimizer's options runs for 100 steps over two
param groups holding a 0-d, a 1-element, a small, a 2-d and a large (> 65536
elements, so the parallel path runs) tensor, with None grads on some steps,
the learning rate changed mid-run and the state moved through a pickled
state_dict into a fresh optimizer halfway. ``l1``, which torch lacks, is
emulated by adding ``s * l1 * sign(p)`` to the grad torch sees.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

F32, F64 = np.float32, np.float64
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]

# Group 0 and group 1 of every run; the large tensor has 66,563 elements.
SHAPES_G0: list[tuple[int, ...]] = [(), (7,), (257, 259)]
SHAPES_G1: list[tuple[int, ...]] = [(1,), (33, 17)]
SHAPES = SHAPES_G0 + SHAPES_G1
STEPS = 100
LR_CHANGE_AT = 30  # after this step both groups' lr change
RELOAD_AT = 50  # after this step the state moves into a fresh optimizer
CHECK_EVERY = 10


def tolerance(dtype: Any) -> dict[str, float]:
    if dtype == F32:
        return {"rtol": 1e-5, "atol": 1e-6}
    return {"rtol": 1e-10, "atol": 1e-12}


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


def grid(**axes: list[Any]) -> list[dict[str, Any]]:
    """Every combination of the option values, as keyword dicts."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def combo_id(kw: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items())


@dataclass(frozen=True)
class Spec:
    name: str
    fo_cls: Callable[..., fo.Optimizer]
    torch_cls: str  # the torch.optim class of the same name
    lr: float
    lr_group1: float
    combos: list[dict[str, Any]]  # keyword names shared by torch and ferroptim, plus "l1"


SPECS = [
    Spec(
        "adagrad",
        fo.Adagrad,
        "Adagrad",
        0.05,
        0.02,
        grid(
            maximize=[False, True],
            weight_decay=[0.0, 0.1],
            lr_decay=[0.0, 0.01],
            initial_accumulator_value=[0.0, 0.5],
            l1=[0.0, 0.01],
        ),
    ),
    Spec(
        "adadelta",
        fo.Adadelta,
        "Adadelta",
        1.0,
        0.5,
        grid(
            maximize=[False, True],
            weight_decay=[0.0, 0.1],
            rho=[0.9, 0.5],
            l1=[0.0, 0.01],
        ),
    ),
    Spec(
        "adamax",
        fo.Adamax,
        "Adamax",
        0.01,
        0.004,
        grid(
            maximize=[False, True],
            weight_decay=[0.0, 0.1],
            betas=[(0.9, 0.999), (0.5, 0.9)],
            l1=[0.0, 0.01],
        ),
    ),
    Spec(
        "nadam",
        fo.NAdam,
        "NAdam",
        0.01,
        0.004,
        grid(
            maximize=[False, True],
            weight_decay=[0.0, 0.1],
            momentum_decay=[4e-3, 0.05],
            decoupled_weight_decay=[False, True],
            l1=[0.0, 0.01],
        ),
    ),
    Spec(
        "radam",
        fo.RAdam,
        "RAdam",
        0.01,
        0.004,
        grid(
            maximize=[False, True],
            weight_decay=[0.0, 0.1],
            decoupled_weight_decay=[False, True],
            l1=[0.0, 0.01],
        ),
    ),
]

CASES = [
    pytest.param(spec, combo, id=f"{spec.name}[{combo_id(combo)}]")
    for spec in SPECS
    for combo in spec.combos
]


def initial_params(rng: np.random.Generator, dtype: Any) -> list[np.ndarray]:
    params = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    # Exact zeros, where sign(p) = 0 and the l1 term vanishes.
    params[2].reshape(-1)[::97] = 0
    params[4].reshape(-1)[::5] = 0
    return params


# Drawing 66,563 normals per step would dominate the run time: the large
# tensor's grads are windows of one pool at random offsets instead.
_POOL = np.random.default_rng(1234).standard_normal(1 << 18)


def make_grads(rng: np.random.Generator, t: int, dtype: Any) -> list[np.ndarray | None]:
    """Grads of step ``t``; each param skips (None) on some steps."""
    scale = 10.0 ** rng.uniform(-1, 0.5)
    grads: list[np.ndarray | None] = []
    for i, shape in enumerate(SHAPES):
        n = int(np.prod(shape))
        if n > 1000:
            lo = int(rng.integers(0, _POOL.size - n))
            values = _POOL[lo : lo + n].reshape(shape)
        else:
            values = rng.standard_normal(shape)
        g = np.asarray(values * scale, dtype=dtype)
        grads.append(None if (t + 2 * i) % 7 == 0 else g)
    return grads


def groups_of(params: list[Any], lr_group1: float) -> list[dict[str, Any]]:
    n0 = len(SHAPES_G0)
    return [{"params": params[:n0]}, {"params": params[n0:], "lr": lr_group1}]


def torch_state(opt: Any, p: Any) -> dict[str, Any]:
    return opt.state[p]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("spec", "combo"), CASES)
def test_matches_torch(
    spec: Spec, combo: dict[str, Any], dtype: Any, torch_one_thread: Any
) -> None:
    torch = torch_one_thread
    kwargs = {k: v for k, v in combo.items() if k != "l1"}
    l1 = combo["l1"]
    sign = -1.0 if combo["maximize"] else 1.0
    # With l1, coupled weight decay is folded into the grad torch sees as well,
    # summed in ferroptim's order (s·g + wd·p) + l1·sign(p): in float32 the
    # three terms can cancel to a few ulps, where another order of summation
    # is a different number.
    fold_wd = bool(l1) and not combo.get("decoupled_weight_decay", False)
    wd = combo["weight_decay"]
    torch_kwargs = {**kwargs, "weight_decay": 0.0} if fold_wd else kwargs
    tol = tolerance(dtype)
    rng = np.random.default_rng(zlib.crc32(f"{spec.name}{combo_id(combo)}".encode()))
    init = initial_params(rng, dtype)
    ours = [p.copy() for p in init]
    theirs = [torch.from_numpy(p.copy()) for p in init]

    with torch_default_dtype(torch, dtype):
        topt = getattr(torch.optim, spec.torch_cls)(
            groups_of(theirs, spec.lr_group1), lr=spec.lr, foreach=False, **torch_kwargs
        )
        opt = spec.fo_cls(groups_of(ours, spec.lr_group1), lr=spec.lr, l1=l1, **kwargs)
        for t in range(1, STEPS + 1):
            grads = make_grads(rng, t, dtype)
            for p, mine, g in zip(theirs, ours, grads):
                if g is None:
                    p.grad = None
                    continue
                # torch has no l1: fold s·l1·sign(p) into the grad it sees. The
                # sign is taken from our param: a param oscillating around 0 can
                # sit at +1e-11 on one side and at 0.0 on the other, and a
                # flipped sign is a 2·l1 jump, not a rounding difference.
                l1_term = dtype(l1) * np.sign(mine)
                if fold_wd:
                    g_eff = (dtype(sign) * g + dtype(wd) * p.numpy()) + l1_term
                    tg = dtype(sign) * g_eff  # torch negates it back under maximize
                else:
                    tg = g + dtype(sign) * l1_term
                p.grad = torch.from_numpy(np.asarray(tg, dtype=dtype))
            topt.step()
            assert opt.step(grads) is True

            if t == LR_CHANGE_AT:
                for ours_g, theirs_g in zip(opt.param_groups, topt.param_groups):
                    ours_g["lr"] *= 0.25
                    theirs_g["lr"] *= 0.25
            if t == RELOAD_AT:
                saved = pickle.loads(pickle.dumps(opt.state_dict()))
                # A fresh optimizer built with another lr: the state_dict brings
                # back the state and the (changed) hyperparameters.
                opt = spec.fo_cls(groups_of(ours, 123.0), lr=123.0, l1=l1, **kwargs)
                opt.load_state_dict(saved)
                assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
            if t % CHECK_EVERY == 0:
                for i, (a, b) in enumerate(zip(ours, theirs)):
                    np.testing.assert_allclose(
                        a, b.numpy(), **tol, err_msg=f"param {i} {SHAPES[i]} step {t}"
                    )

    # The state itself, slot by slot, and the per-param step counts.
    state = opt.state_dict()["state"]
    assert opt.step_counts == [int(torch_state(topt, p)["step"]) for p in theirs]
    for i, p in enumerate(theirs):
        tstate = torch_state(topt, p)
        slots = [k for k, v in tstate.items() if k != "step" and isinstance(v, torch.Tensor)]
        assert slots, "torch kept no state"
        for slot in slots:
            expected = tstate[slot].numpy()
            if slot == "mu_product":
                # One number per param: ours is float64 throughout.
                rtol = 1e-6 if dtype == F32 else 1e-12
                np.testing.assert_allclose(state[i][slot], float(expected), rtol=rtol)
                continue
            assert state[i][slot].dtype == dtype
            assert state[i][slot].shape == SHAPES[i]
            np.testing.assert_allclose(state[i][slot], expected, **tol, err_msg=f"{slot} of {i}")


# -- Lion ---------------------------------------------------------------------


def torch_sign(x: np.ndarray) -> np.ndarray:
    """sign with sign(±0) = 0 (np.sign agrees; spelled out to be explicit)."""
    return np.where(x > 0, 1, np.where(x < 0, -1, 0)).astype(x.dtype)


class NumpyLion:
    """The update of Chen et al. (2023), Algorithm 2, in the param's dtype:

    c = b1·m + (1−b1)·g;  p = p·(1 − lr·wd) − lr·sign(c);  m = b2·m + (1−b2)·g
    """

    def __init__(self, groups: list[dict[str, Any]], **defaults: Any) -> None:
        self.param_groups = [{**defaults, **g} for g in groups]
        self.state: dict[int, np.ndarray] = {}

    def step(self, grads: list[np.ndarray | None]) -> None:
        k = 0
        for group in self.param_groups:
            dt = group["params"][0].dtype.type
            b1, b2 = group["betas"]
            lr, wd, l1 = group["lr"], group["weight_decay"], group["l1"]
            s = -1.0 if group["maximize"] else 1.0
            for p in group["params"]:
                g = grads[k]
                if g is not None:
                    m = self.state.setdefault(k, np.zeros_like(p))
                    g = g * dt(s) + dt(l1) * torch_sign(p)
                    c = m * dt(b1) + dt(1.0 - b1) * g
                    p[...] = p * dt(1.0 - lr * wd) + dt(-lr) * torch_sign(c)
                    m[...] = m * dt(b2) + dt(1.0 - b2) * g
                k += 1


LION_COMBOS = grid(
    maximize=[False, True],
    weight_decay=[0.0, 0.5],
    betas=[(0.9, 0.99), (0.95, 0.98)],
    l1=[0.0, 0.01],
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("combo", LION_COMBOS, ids=combo_id)
def test_lion_matches_numpy(combo: dict[str, Any], dtype: Any) -> None:
    tol = tolerance(dtype)
    rng = np.random.default_rng(zlib.crc32(combo_id(combo).encode()))
    init = initial_params(rng, dtype)
    ours = [p.copy() for p in init]
    ref_params = [p.copy() for p in init]
    lr, lr1 = 0.01, 0.004
    opt = fo.Lion(groups_of(ours, lr1), lr=lr, **combo)
    ref = NumpyLion(groups_of(ref_params, lr1), lr=lr, **combo)
    for t in range(1, STEPS + 1):
        grads = make_grads(rng, t, dtype)
        assert opt.step(grads) is True
        ref.step(grads)
        if t == LR_CHANGE_AT:
            for a, b in zip(opt.param_groups, ref.param_groups):
                a["lr"] *= 0.25
                b["lr"] *= 0.25
        if t == RELOAD_AT:
            saved = pickle.loads(pickle.dumps(opt.state_dict()))
            opt = fo.Lion(groups_of(ours, 1.0), lr=1.0, **combo)
            opt.load_state_dict(saved)
        if t % CHECK_EVERY == 0:
            for i, (a, b) in enumerate(zip(ours, ref_params)):
                np.testing.assert_allclose(a, b, **tol, err_msg=f"param {i} step {t}")
    state = opt.state_dict()["state"]
    for i in range(len(SHAPES)):
        np.testing.assert_allclose(state[i]["exp_avg"], ref.state[i], **tol)
    # Lion moves every element with a nonzero momentum by exactly lr·sign per step
    # (plus decay), so the params must actually have moved.
    assert not np.array_equal(ours[3], init[3])


# -- state_dict round trips -----------------------------------------------------

ROUNDTRIP = {
    "adagrad": (
        fo.Adagrad,
        {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.3},
    ),
    "adadelta": (fo.Adadelta, {"lr": 1.0, "rho": 0.8, "weight_decay": 0.1, "maximize": True}),
    "adamax": (fo.Adamax, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    "nadam": (
        fo.NAdam,
        {"lr": 0.01, "weight_decay": 0.1, "momentum_decay": 0.05, "decoupled_weight_decay": True},
    ),
    "radam": (fo.RAdam, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    "lion": (fo.Lion, {"lr": 0.01, "weight_decay": 0.5, "betas": (0.9, 0.95)}),
}


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ROUNDTRIP))
def test_state_dict_round_trip_continues_bitwise(name: str, dtype: Any) -> None:
    cls, kwargs = ROUNDTRIP[name]
    rng = np.random.default_rng(7)
    params = initial_params(rng, dtype)
    opt = cls(groups_of(params, kwargs["lr"] / 3), l1=0.01, **kwargs)
    for t in range(1, 8):
        opt.step(make_grads(rng, t, dtype))
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    twin_params = [p.copy() for p in params]
    twin = cls(groups_of(twin_params, 1.0), lr=1.0)  # defaults: replaced by the load
    twin.load_state_dict(saved)
    assert twin.step_counts == opt.step_counts
    for t in range(8, 20):
        grads = make_grads(rng, t, dtype)
        opt.step(grads)
        twin.step(grads)
    for a, b in zip(params, twin_params):
        assert bits(a) == bits(b)
    mine, other = opt.state_dict(), twin.state_dict()
    assert mine["param_groups"] == other["param_groups"]
    assert mine["state"].keys() == other["state"].keys()
    for key, entry in mine["state"].items():
        assert entry.keys() == other["state"][key].keys()
        for slot, value in entry.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == other["state"][key][slot].dtype
                assert bits(value) == bits(other["state"][key][slot]), (key, slot)
            else:
                assert value == other["state"][key][slot], (key, slot)

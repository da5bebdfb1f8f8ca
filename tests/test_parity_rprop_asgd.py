"""Rprop and ASGD against torch.optim and against NumPy transcriptions of their
update equations.

Every combination of each optimizer's options runs for 100 steps over two
param groups holding a 0-d, a 1-element, a small, a 2-d and a large (> 65536
elements, so the parallel path runs) tensor, with None grads on some steps
(one param starts late), exact zeros in the grads, the learning rate changed
mid-run and the state moved through a pickled state_dict into a fresh
optimizer halfway. ``l1``, which torch lacks (and Rprop's ``weight_decay``),
is emulated by folding it into the grad torch sees.

Rprop's arithmetic is exact but for its rounded products, which ferroptim
computes as torch does: its runs must match torch bitwise. ASGD's
``p - eta*g`` is a fused multiply-add in torch's vectorized loop and two
roundings in its scalar tail (and in ferroptim): compared to rounding.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.exceptions import HyperparameterError
from reference import combo_id, grad_stream, grid, initial_params, seed_of, split_groups

F32, F64 = np.float32, np.float64
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]

SHAPES_G0: list[tuple[int, ...]] = [(), (7,), (257, 259)]
SHAPES_G1: list[tuple[int, ...]] = [(1,), (33, 17)]
SHAPES = SHAPES_G0 + SHAPES_G1
N0 = len(SHAPES_G0)
STEPS = 100
LR_CHANGE_AT = 30
RELOAD_AT = 50
CHECK_EVERY = 10


def tolerance(dtype: Any) -> dict[str, float]:
    if dtype == F32:
        return {"rtol": 1e-5, "atol": 1e-6}
    return {"rtol": 1e-10, "atol": 1e-12}


def sign(x: np.ndarray) -> np.ndarray:
    """torch.sign: -1, 0 or 1 in x's dtype (0 for both zeros, NaN stays NaN)."""
    return np.sign(x).astype(np.asarray(x).dtype)


def grads_of(seed: int, dtype: Any, steps: int = STEPS) -> Iterator[tuple[int, list[Any]]]:
    """The shared stream (None grads, a late starter) with exact zeros on even
    steps: g·prev = 0 takes Rprop's third branch."""
    for t, grads in grad_stream(seed, SHAPES, dtype, steps):
        if t % 2 == 0:
            for g in grads:
                if g is not None and g.size > 3:
                    g.reshape(-1)[:: 3 + t % 5] = 0
        yield t, grads


@contextlib.contextmanager
def default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    """torch with this default dtype: the dtype of ASGD's eta and mu tensors."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


# -- NumPy references, from the equations ------------------------------------------


class NumpyRprop:
    """Riedmiller & Braun's Rprop as torch.optim.Rprop states it, in the param's
    dtype (factors and bounds rounded to it once)::

        f = eta+ if g·prev > 0, eta- if g·prev < 0, else 1
        d = clamp(d·f, lo, hi);  g = 0 where g·prev < 0;  p -= sign(g)·d;  prev = g
    """

    def __init__(self, groups: list[dict[str, Any]], **defaults: Any) -> None:
        self.param_groups = [{**defaults, **g} for g in groups]
        self.state: dict[int, dict[str, Any]] = {}

    def step(self, grads: list[Any]) -> None:
        k = 0
        for group in self.param_groups:
            for p in group["params"]:
                g = grads[k]
                if g is not None:
                    self._one(k, p, g, group)
                k += 1

    def _one(self, k: int, p: np.ndarray, g: np.ndarray, h: dict[str, Any]) -> None:
        dt = p.dtype.type
        st = self.state.setdefault(
            k, {"step": 0, "prev": np.zeros_like(p), "step_size": np.full_like(p, h["lr"])}
        )
        st["step"] += 1
        g = g * dt(-1.0 if h["maximize"] else 1.0)
        g = (g + dt(h["weight_decay"]) * p) + dt(h["l1"]) * sign(p)
        product = g * st["prev"]
        eta_minus, eta_plus = (dt(e) for e in h["etas"])
        factor = np.where(product > 0, eta_plus, np.where(product < 0, eta_minus, dt(1)))
        lo, hi = (dt(s) for s in h["step_sizes"])
        st["step_size"][...] = np.clip(st["step_size"] * factor, lo, hi)
        g = np.where(product < 0, dt(0), g)
        p[...] = p - sign(g) * st["step_size"]
        st["prev"][...] = g


class NumpyASGD:
    """Polyak-Juditsky averaging with Bottou's step-size schedule, as
    torch.optim.ASGD states it; eta and mu carried per param and rounded to
    ``scalar`` (float32: torch's default dtype)::

        p = p·(1 − lambd·eta) − eta·g;   ax = p if mu = 1 else ax + mu·(p − ax)
        eta = lr / (1 + lambd·lr·t)^alpha;   mu = 1 / max(1, t − t0)
    """

    def __init__(self, groups: list[dict[str, Any]], **defaults: Any) -> None:
        self.param_groups = [{**defaults, **g} for g in groups]
        self.state: dict[int, dict[str, Any]] = {}

    def step(self, grads: list[Any]) -> None:
        k = 0
        for group in self.param_groups:
            for p in group["params"]:
                if grads[k] is not None:
                    self._one(k, p, grads[k], group)
                k += 1

    def _one(self, k: int, p: np.ndarray, g: np.ndarray, h: dict[str, Any]) -> None:
        dt = p.dtype.type
        scalar = np.float32 if h.get("scalar_dtype", "float32") == "float32" else np.float64
        st = self.state.setdefault(
            k, {"step": 0, "eta": float(scalar(h["lr"])), "mu": 1.0, "ax": np.zeros_like(p)}
        )
        st["step"] += 1
        g = g * dt(-1.0 if h["maximize"] else 1.0)
        g = (g + dt(h["weight_decay"]) * p) + dt(h["l1"]) * sign(p)
        eta, mu = st["eta"], st["mu"]
        p[...] = p * dt(1.0 - h["lambd"] * eta)
        p[...] = p + dt(-eta) * g
        st["ax"][...] = p if mu == 1.0 else st["ax"] + (p - st["ax"]) * dt(mu)
        t = float(st["step"])
        st["eta"] = float(scalar(h["lr"] / (1.0 + h["lambd"] * h["lr"] * t) ** h["alpha"]))
        st["mu"] = float(scalar(1.0 / max(1.0, t - h["t0"])))


# -- the options of each run ---------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    fo_cls: Any
    lr: float
    lr_group1: float
    combos: list[dict[str, Any]]
    numpy_cls: Any
    bitwise: bool  # runs equal torch's bit for bit


RPROP_COMBOS = grid(
    maximize=[False, True],
    etas=[(0.5, 1.2), (0.3, 1.5)],
    step_sizes=[(1e-6, 50.0), (1e-3, 0.02)],
    weight_decay=[0.0, 0.1],
    l1=[0.0, 0.01],
)
ASGD_COMBOS = [
    {**c, **schedule}
    for c in grid(maximize=[False, True], weight_decay=[0.0, 0.1], l1=[0.0, 0.01])
    for schedule in (
        {},  # torch's defaults: t0 = 1e6, so the average is a copy
        {"lambd": 0.01, "alpha": 0.5, "t0": 10.0},  # averaging from step 12
        {"lambd": 1e-3, "t0": 40.0, "scalar_dtype": "float64"},
    )
]
SPECS = [
    Spec("rprop", fo.Rprop, 0.01, 0.004, RPROP_COMBOS, NumpyRprop, True),
    Spec("asgd", fo.ASGD, 0.05, 0.02, ASGD_COMBOS, NumpyASGD, False),
]
CASES = [
    pytest.param(spec, combo, id=f"{spec.name}[{combo_id(combo)}]")
    for spec in SPECS
    for combo in spec.combos
]
TORCH_DEFAULTS = {"lambd": 1e-4, "alpha": 0.75, "t0": 1e6}


def assert_same(a: np.ndarray, b: np.ndarray, dtype: Any, bitwise: bool, msg: str) -> None:
    if bitwise:
        np.testing.assert_array_equal(a, b, err_msg=msg)
    else:
        np.testing.assert_allclose(a, b, **tolerance(dtype), err_msg=msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("spec", "combo"), CASES)
def test_matches_torch(
    spec: Spec, combo: dict[str, Any], dtype: Any, torch_one_thread: Any
) -> None:
    torch = torch_one_thread
    kwargs = {k: v for k, v in combo.items() if k != "l1"}
    torch_kwargs = {k: v for k, v in kwargs.items() if k != "scalar_dtype"}
    l1, wd = combo["l1"], combo["weight_decay"]
    s = -1.0 if combo["maximize"] else 1.0
    # torch's Rprop has no weight decay: always folded into its grad. ASGD's
    # is folded only with l1, summed in ferroptim's order (s·g + wd·p) + l1·sign(p).
    fold_wd = bool(wd) and (spec.name == "rprop" or bool(l1))
    if fold_wd:
        torch_kwargs["weight_decay"] = 0.0
    if spec.name == "rprop":
        del torch_kwargs["weight_decay"]
    scalar = torch.float64 if combo.get("scalar_dtype") == "float64" else torch.float32
    seed = seed_of("rprop-asgd", spec.name, combo_id(combo), np.dtype(dtype).name)
    init = initial_params(np.random.default_rng(seed), SHAPES, dtype)
    ours = [p.copy() for p in init]
    theirs = [torch.from_numpy(p.copy()) for p in init]

    with default_dtype(torch, scalar):
        topt = getattr(torch.optim, spec.fo_cls.__name__)(
            split_groups(theirs, N0, {"lr": spec.lr_group1}),
            lr=spec.lr,
            foreach=False,
            **torch_kwargs,
        )
        opt = spec.fo_cls(split_groups(ours, N0, {"lr": spec.lr_group1}), lr=spec.lr, **combo)
        for t, grads in grads_of(seed + 1, dtype):
            for p, mine, g in zip(theirs, ours, grads):
                if g is None:
                    p.grad = None
                    continue
                # The sign is our param's: see test_parity_more.
                l1_term = dtype(l1) * sign(mine)
                if fold_wd:
                    tg = dtype(s) * ((dtype(s) * g + dtype(wd) * p.numpy()) + l1_term)
                elif l1:
                    tg = g + dtype(s) * l1_term
                else:
                    tg = g
                p.grad = torch.from_numpy(np.asarray(tg, dtype=dtype))
            topt.step()
            assert opt.step(grads) is True
            if t == LR_CHANGE_AT:
                for a, b in zip(opt.param_groups, topt.param_groups):
                    a["lr"] *= 0.25
                    b["lr"] *= 0.25
            if t == RELOAD_AT:
                saved = pickle.loads(pickle.dumps(opt.state_dict()))
                opt = spec.fo_cls(split_groups(ours, N0, {"lr": 1.0}), lr=123.0, **combo)
                opt.load_state_dict(saved)
            if t % CHECK_EVERY == 0:
                for i, (a, b) in enumerate(zip(ours, theirs)):
                    assert_same(a, b.numpy(), dtype, spec.bitwise, f"param {i} step {t}")

    state = opt.state_dict()["state"]
    assert opt.step_counts == [int(topt.state[p]["step"]) for p in theirs]
    for i, p in enumerate(theirs):
        tstate = topt.state[p]
        assert set(state[i]) == set(tstate), (set(state[i]), set(tstate))
        for key, value in tstate.items():
            if key == "step":
                continue
            if key in ("eta", "mu"):  # ASGD's carried numbers, rounded as torch rounds them
                assert state[i][key] == value.item(), (i, key)
                continue
            assert state[i][key].dtype == dtype and state[i][key].shape == SHAPES[i]
            assert_same(state[i][key], value.numpy(), dtype, spec.bitwise, f"{key} of {i}")
    # The runs went somewhere: every param moved.
    assert all(not np.array_equal(a, b) for a, b in zip(ours, init) if a.size > 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("spec", "combo"), CASES)
def test_matches_numpy_reference(spec: Spec, combo: dict[str, Any], dtype: Any) -> None:
    """The same run against the equations in NumPy (no torch needed)."""
    seed = seed_of("rprop-asgd-numpy", spec.name, combo_id(combo), np.dtype(dtype).name)
    init = initial_params(np.random.default_rng(seed), SHAPES, dtype)
    ours = [p.copy() for p in init]
    ref_params = [p.copy() for p in init]
    defaults = {**TORCH_DEFAULTS, **combo} if spec.name == "asgd" else combo
    opt = spec.fo_cls(split_groups(ours, N0, {"lr": spec.lr_group1}), lr=spec.lr, **combo)
    ref = spec.numpy_cls(
        split_groups(ref_params, N0, {"lr": spec.lr_group1}), lr=spec.lr, **defaults
    )
    for t, grads in grads_of(seed + 1, dtype):
        assert opt.step(grads) is True
        ref.step(grads)
        if t == LR_CHANGE_AT:
            for a, b in zip(opt.param_groups, ref.param_groups):
                a["lr"] *= 0.25
                b["lr"] *= 0.25
        if t % CHECK_EVERY == 0:
            for i, (a, b) in enumerate(zip(ours, ref_params)):
                assert_same(a, b, dtype, spec.bitwise, f"param {i} step {t}")
    state = opt.state_dict()["state"]
    for i in range(len(SHAPES)):
        for key, value in ref.state[i].items():
            if isinstance(value, np.ndarray):
                assert_same(state[i][key], value, dtype, spec.bitwise, f"{key} of {i}")
            else:
                assert state[i][key] == value, (i, key)


# -- Rprop's details ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_rprop_sign_test_is_on_the_rounded_product(dtype: Any, torch_one_thread: Any) -> None:
    """g·prev can underflow to 0 (factor 1), as in torch: not sign(g)·sign(prev)."""
    torch = torch_one_thread
    tiny = np.finfo(dtype).tiny
    g = np.array([tiny, 1.0, -tiny, 1.0], dtype)
    p = np.zeros(4, dtype)
    opt = fo.Rprop([p], lr=0.1)
    tp = torch.zeros(4, dtype=torch.float32 if dtype == F32 else torch.float64)
    topt = torch.optim.Rprop([tp], lr=0.1, foreach=False)
    for _ in range(3):
        opt.step([g])
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
    sizes = opt.state_dict()["state"][0]["step_size"]
    np.testing.assert_array_equal(sizes, topt.state[tp]["step_size"].numpy())
    np.testing.assert_array_equal(p, tp.numpy())
    # tiny·tiny underflows: the step size never grew; 1·1 grew twice.
    assert sizes[0] == dtype(0.1) and sizes[1] == dtype(0.1) * dtype(1.2) * dtype(1.2)


def test_rprop_lr_sets_only_the_first_step_size() -> None:
    p = np.zeros(3)
    opt = fo.Rprop([p], lr=0.25, step_sizes=(0.0, 10.0))
    opt.step([np.ones(3)])
    opt.param_groups[0]["lr"] = 100.0
    opt.step([np.ones(3)])
    np.testing.assert_array_equal(p, -(0.25 + 0.25 * 1.2) * np.ones(3))


# -- ASGD's carried scalars --------------------------------------------------------


def test_asgd_eta_and_mu_are_float32_by_default_and_float64_on_request() -> None:
    lr, lambd = 0.1, 0.3  # eta after step 1: 0.1 / 1.03**0.75, not a float32 number
    runs = {}
    for scalar in ("float32", "float64"):
        p = np.ones(2)
        opt = fo.ASGD([p], lr=lr, lambd=lambd, t0=0.5, scalar_dtype=scalar)
        opt.step([np.ones(2)])
        runs[scalar] = opt.state_dict()["state"][0]
    exact_eta = lr / (1 + lambd * lr) ** 0.75
    exact_mu = 1 / max(1, 1 - 0.5)
    assert runs["float64"]["eta"] == exact_eta
    assert runs["float32"]["eta"] == float(np.float32(exact_eta)) != exact_eta
    assert runs["float64"]["mu"] == runs["float32"]["mu"] == exact_mu


def test_asgd_state_without_eta_and_mu_takes_the_constant_schedule() -> None:
    """A state_dict without eta and mu (hand-made): the values the step would have
    with the hyperparameters unchanged, which is what a full state holds then."""
    kwargs = {"lr": 0.05, "lambd": 0.01, "t0": 3.0}
    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal(5)] for _ in range(12)]
    full, partial = np.ones(5), np.ones(5)
    a = fo.ASGD([full], **kwargs)
    for g in grads[:6]:
        a.step(g)
    saved = a.state_dict()
    partial[...] = full
    b = fo.ASGD([partial], **kwargs)
    stripped = pickle.loads(pickle.dumps(saved))
    del stripped["state"][0]["eta"], stripped["state"][0]["mu"]
    b.load_state_dict(stripped)
    assert "eta" not in b.state_dict()["state"][0]  # not invented before a step
    for g in grads[6:]:
        a.step(g)
        b.step(g)
    np.testing.assert_array_equal(partial, full)
    assert b.state_dict()["state"][0]["eta"] == a.state_dict()["state"][0]["eta"]


# -- state_dict round trips, bad input -----------------------------------------------

ROUNDTRIP = {
    "rprop": (fo.Rprop, {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-4, 1.0)}),
    "asgd": (fo.ASGD, {"lr": 0.05, "lambd": 0.01, "t0": 3.0, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ROUNDTRIP))
def test_state_dict_round_trip_continues_bitwise(name: str, dtype: Any) -> None:
    cls, kwargs = ROUNDTRIP[name]
    params = initial_params(np.random.default_rng(7), SHAPES, dtype)
    opt = cls(split_groups(params, N0, {"lr": kwargs["lr"] / 3}), l1=0.01, **kwargs)
    stream = list(grads_of(8, dtype, 20))
    for _, grads in stream[:7]:
        opt.step(grads)
    saved = pickle.loads(pickle.dumps(opt.state_dict()))
    twin_params = [p.copy() for p in params]
    twin = cls(split_groups(twin_params, N0, {}), lr=1.0)  # replaced by the load
    twin.load_state_dict(saved)
    assert twin.step_counts == opt.step_counts
    for _, grads in stream[7:]:
        opt.step(grads)
        twin.step(grads)
    for a, b in zip(params, twin_params):
        assert a.tobytes() == b.tobytes()
    mine, other = opt.state_dict(), twin.state_dict()
    assert mine["param_groups"] == other["param_groups"]
    for key, entry in mine["state"].items():
        assert entry.keys() == other["state"][key].keys()
        for slot, value in entry.items():
            if isinstance(value, np.ndarray):
                assert value.tobytes() == other["state"][key][slot].tobytes(), (key, slot)
            else:
                assert value == other["state"][key][slot], (key, slot)


BAD = [
    (fo.Rprop, {"etas": (1.0, 1.2)}, "etas"),
    (fo.Rprop, {"etas": (0.5, 0.9)}, "etas"),
    (fo.Rprop, {"etas": (0.0, 1.2)}, "etas"),
    (fo.Rprop, {"etas": (0.5,)}, "etas"),
    (fo.Rprop, {"step_sizes": (1.0, 0.5)}, "step_sizes"),
    (fo.Rprop, {"step_sizes": (-1.0, 0.5)}, "step_sizes"),
    (fo.Rprop, {"lr": -0.1}, "lr"),
    (fo.Rprop, {"weight_decay": -0.1}, "weight_decay"),
    (fo.ASGD, {"lambd": -1.0}, "lambd"),
    (fo.ASGD, {"alpha": float("nan")}, "alpha"),
    (fo.ASGD, {"t0": float("nan")}, "t0"),
    (fo.ASGD, {"scalar_dtype": "float16"}, "scalar_dtype"),
    (fo.ASGD, {"l1": -0.5}, "l1"),
]


@pytest.mark.parametrize(("cls", "kwargs", "key"), BAD, ids=lambda v: getattr(v, "__name__", None))
def test_bad_hyperparameters_are_named(cls: Any, kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(HyperparameterError, match=key):
        cls([np.zeros(2)], **kwargs)
    # A bad group added later changes nothing.
    p = np.ones(2)
    opt = cls([p])
    with pytest.raises(HyperparameterError, match=key):
        opt.add_param_group({"params": [np.zeros(3)], **kwargs})
    assert len(opt.param_groups) == 1
    opt.step([np.ones(2)])
    assert not np.array_equal(p, np.ones(2))


def test_registry_functional_and_torch_names() -> None:
    """Both reach the tools through ferroptim.__all__ alone."""
    from ferroptim import functional as F
    from ferroptim import registry

    for cls in (fo.Rprop, fo.ASGD):
        info = registry.get(cls.__name__)
        assert info.cls is cls and info.default_lr == 1e-2
        assert getattr(F, cls.__name__.lower()).__name__ == cls.__name__.lower()
    assert registry.get("rprop").hyperparameters["etas"].default == (0.5, 1.2)
    assert registry.get("asgd").hyperparameters["scalar_dtype"].type is str

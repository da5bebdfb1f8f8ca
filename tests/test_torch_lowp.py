"""float16/bfloat16 torch params in ferroptim.torch, and the #14 parity with
torch's own bfloat16 AdamW.

Why torch's fused bfloat16 AdamW and ferroptim's ``state_dtype="bfloat16",
master_weights=False`` are not bitwise equal: both widen param, grad and state
to float32, update, and round the state and the param to bfloat16 (nearest
even) once, the step using the unrounded float32 moments. The same formulas,
in the same order, except that torch's CPU kernel (ATen's
``cpu/FusedAdamKernel.cpp``, AVX2/AVX-512 builds) rounds three of them once
where ferroptim rounds twice:

- ``exp_avg = fma(1-β1, g-m, m)`` (the kernel's explicit ``vec::fmadd`` lerp);
- ``exp_avg_sq = fma((1-β2)·g, g, β2·v)`` (the compiler contracts ``a*b + c*d*e``);
- Adam's coupled decay ``g = fma(p, wd, g)``.

``_reference`` below, float32 NumPy with and without these FMAs, reproduces
torch's kernel (torch 2.13, AVX-512) and ferroptim bit for bit. Between the
two, a moment differs where its float32 value lies within a float32 rounding
of a bfloat16 rounding boundary (1 bfloat16 ulp, ~1 element in 10^4 per
step), or where it cancels to ~0 (the FMA keeps the residual, ~1e-9, the
plain form gives 0); the params rarely feel it: over 10 steps of 100003
elements, AdamW's are bitwise equal but for 1 element at 1 ulp, coupled
Adam's differ in at most 2 elements by up to 8 ulp (where ``g + wd·p``
cancels and the eps-sized denominator magnifies the residual). torch's
foreach and single-tensor paths also round every intermediate tensor (the
moments, sqrt(v), the denominator) to bfloat16, so they differ from both in
many elements; the per-op reference reproduces them bit for bit too (AdamW;
their coupled Adam rounds wd itself to bfloat16 in ``grad.add(p, alpha=wd)``).
Bitwise parity with the fused kernel needs the three FMAs in ferroptim's Adam
rule (a Rust change).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
fot = pytest.importorskip("ferroptim.torch")

import ferroptim as fo  # noqa: E402
from ferroptim.exceptions import DtypeError, HyperparameterError  # noqa: E402
from ferroptim.torch.lowp import numpy_view  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32
LOW = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
# torch's fused/vectorized kernels use FMAs only in their AVX2/AVX-512 builds.
HAS_FMA = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
needs_fma = pytest.mark.skipif(not HAS_FMA, reason="torch's CPU kernels run without FMA here")


def _bf16_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int16).copy()).view(torch.bfloat16)


def _bits(x: object) -> np.ndarray:
    a = numpy_view(x) if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.view(np.uint16 if a.itemsize == 2 else np.uint32).copy()


# -- the float32 reference of both kernels --------------------------------------


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a*b + c`` rounded once: the product is exact in float64, the
    sum is rounded to odd in float64 (TwoSum), then to nearest in float32."""
    p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
    c = np.broadcast_to(np.asarray(c, np.float64), p.shape)
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    fix = (err != 0) & ((s.view(np.int64) & 1) == 0)
    s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(F32)


def _reference(st: dict, g: np.ndarray, k: int, h: dict, fma: bool, per_op: bool) -> None:
    """One Adam/AdamW step on bfloat16 ``st["p"]``, ``st["m"]``, ``st["v"]``
    (``st["vmax"]``), in place: torch's fused kernel (``per_op=False``) or its
    foreach/single-tensor ops, each rounding its result to bfloat16 (``per_op=True``)."""
    lr, b1, b2, eps, wd = h["lr"], 0.9, 0.999, 1e-8, h.get("weight_decay", 0.0)
    r = (lambda x: x.astype(BF16).astype(F32)) if per_op else (lambda x: x)
    p, gf, m, v = (x.astype(F32) for x in (st["p"], g, st["m"], st["v"]))
    if h.get("maximize"):
        gf = -gf
    if wd:
        if h["decoupled"]:
            p = r(p * F32(1 - lr * wd))
        else:
            gf = _fma32(p, F32(wd), gf) if fma else gf + p * F32(wd)
    m = r(_fma32(F32(1 - b1), gf - m, m) if fma else m + F32(1 - b1) * (gf - m))
    if per_op:  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        v = r(v * F32(b2))
        v = r(_fma32(F32(1 - b2) * gf, gf, v))
    elif fma:
        v = _fma32(F32(1 - b2) * gf, gf, v * F32(b2))
    else:
        v = v * F32(b2) + F32(1 - b2) * gf * gf
    second = v
    if h.get("amsgrad"):
        second = np.maximum(st["vmax"].astype(F32), v)
        st["vmax"] = second.astype(BF16)
    step, bc2 = -(lr / (1 - b1**k)), np.sqrt(1 - b2**k)
    denom = r(r(r(np.sqrt(second)) / F32(bc2)) + F32(eps))
    if per_op:  # param.addcdiv_(exp_avg, denom, value=-step_size)
        p = _fma32(F32(step), m / denom, p)
    else:
        p = p + F32(step) * m / denom
    st["p"], st["m"], st["v"] = p.astype(BF16), m.astype(BF16), v.astype(BF16)


def _grads(n: int, steps: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scaled = (rng.standard_normal(n) * (0.1 * (k + 1)) for k in range(steps))
    return [g.astype(F32).astype(BF16) for g in scaled]


def _start(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n).astype(F32).astype(BF16)


# Adam options; "decoupled" picks AdamW (the reference's flag).
HYPERS = [
    pytest.param({"lr": 1e-2, "decoupled": True}, id="adamw"),
    pytest.param({"lr": 1e-2, "decoupled": True, "weight_decay": 0.1}, id="adamw-wd"),
    pytest.param({"lr": 1e-2, "decoupled": True, "amsgrad": True}, id="adamw-amsgrad"),
    pytest.param({"lr": 1e-2, "decoupled": True, "maximize": True}, id="adamw-maximize"),
    pytest.param({"lr": 1e-2, "decoupled": False, "weight_decay": 0.1}, id="adam-wd"),
    pytest.param(
        {"lr": 1e-2, "decoupled": False, "weight_decay": 0.1, "maximize": True, "amsgrad": True},
        id="adam-all",
    ),
]
# 64: vector lanes only; 1000 and 4099: torch's scalar tail; 70001: threads.
SIZES = [64, 1000, 4099, 70001]


def _torch_kwargs(h: dict) -> dict:
    # weight_decay always given: AdamW's default is 0.01, the reference's 0.
    return {"weight_decay": 0.0, **{k: v for k, v in h.items() if k != "decoupled"}}


def _torch_opt(t: torch.Tensor, h: dict, impl: str) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if h["decoupled"] else torch.optim.Adam
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "single": {"foreach": False}}
    return cls([t], **_torch_kwargs(h), **flags[impl])


def _run_torch(n: int, h: dict, impl: str, steps: int = 10) -> list[dict]:
    t = torch.nn.Parameter(_bf16_tensor(_start(n)))
    opt = _torch_opt(t, h, impl)
    out = []
    for g in _grads(n, steps):
        t.grad = _bf16_tensor(g)
        opt.step()
        s = opt.state[t]
        out.append({"p": _bits(t), "m": _bits(s["exp_avg"]), "v": _bits(s["exp_avg_sq"])})
    return out


def _run_reference(n: int, h: dict, fma: bool, per_op: bool, steps: int = 10) -> list[dict]:
    z = np.zeros(n, BF16)
    st = {"p": _start(n), "m": z.copy(), "v": z.copy(), "vmax": z.copy()}
    out = []
    for k, g in enumerate(_grads(n, steps), 1):
        _reference(st, g, k, h, fma, per_op)
        out.append({key: _bits(st[key]) for key in ("p", "m", "v")})
    return out


def _run_ferroptim(n: int, h: dict, route: str, steps: int = 10) -> list[dict]:
    kw = {**_torch_kwargs(h), "state_dtype": "bfloat16", "master_weights": False}
    name = "AdamW" if h["decoupled"] else "Adam"
    out = []
    if route == "numpy":
        p = _start(n)
        opt = getattr(fo, name)([p], **kw)
        for g in _grads(n, steps):
            opt.step([g])
            s = opt.state_dict()["state"][0]
            out.append({"p": _bits(p), "m": _bits(s["exp_avg"]), "v": _bits(s["exp_avg_sq"])})
        return out
    t = torch.nn.Parameter(_bf16_tensor(_start(n)))
    opt = getattr(fot, name)([t], **kw)
    for g in _grads(n, steps):
        t.grad = _bf16_tensor(g)
        opt.step()
        s = opt.state[t]
        out.append({"p": _bits(t), "m": _bits(s["exp_avg"]), "v": _bits(s["exp_avg_sq"])})
    return out


def _assert_same(a: list[dict], b: list[dict], what: str) -> None:
    for k, (x, y) in enumerate(zip(a, b), 1):
        for key in x:
            bad = np.flatnonzero(x[key] != y[key])
            assert bad.size == 0, f"{what}: step {k}, {key} differs at {bad[:5]} ({bad.size})"


# -- the parity of #14 ----------------------------------------------------------


@needs_fma
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("h", HYPERS)
def test_torch_fused_bf16_adam_is_the_fma_reference(h: dict, n: int) -> None:
    _assert_same(_run_torch(n, h, "fused"), _run_reference(n, h, True, False), "torch fused")


@pytest.mark.parametrize("route", ["numpy", "torch"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("h", HYPERS)
def test_ferroptim_bf16_state_without_master_is_the_plain_reference(
    h: dict, n: int, route: str
) -> None:
    ours = _run_ferroptim(n, h, route)
    _assert_same(ours, _run_reference(n, h, False, False), f"ferroptim ({route})")


@pytest.mark.parametrize("h", HYPERS)
def test_torch_fused_and_ferroptim_differ_only_where_the_fmas_round(h: dict) -> None:
    """What the FMAs change, measured on 100003 elements over 10 steps: a moment
    in at most 23 elements per step (a bfloat16 rounding flipped, or a value
    that cancels to ~1e-9 against 0); a param in at most 2, by 1 ulp (AdamW)
    or, for coupled Adam, by up to 8 ulp where ``g + wd·p`` cancels: the
    residual (torch) or 0 (ferroptim) then meets an eps-sized denominator."""
    n = 100003
    theirs, ours = _run_torch(n, h, "fused"), _run_ferroptim(n, h, "torch")
    for x, y in zip(theirs, ours):
        tp, fp = (z["p"].view(BF16).astype(np.float64) for z in (x, y))
        diff = np.abs(tp - fp)
        big = np.maximum(np.abs(tp), np.abs(fp)).astype(BF16)
        ulps = diff / np.spacing(big).astype(np.float64)
        assert np.count_nonzero(diff) <= 2
        assert ulps.max() <= (1 if h["decoupled"] else 8)
        for key in ("m", "v"):
            assert np.count_nonzero(x[key] != y[key]) <= 25, key


@needs_fma
@pytest.mark.parametrize("impl", ["foreach", "single"])
@pytest.mark.parametrize("h", HYPERS[:4])
def test_torch_non_fused_bf16_adamw_rounds_every_op(h: dict, impl: str) -> None:
    # Coupled Adam is left out: torch's grad.add(param, alpha=wd) rounds wd to bfloat16.
    theirs = _run_torch(4099, h, impl)
    _assert_same(theirs, _run_reference(4099, h, True, True), f"torch {impl}")
    ours = _run_ferroptim(4099, h, "torch")
    assert np.count_nonzero(theirs[-1]["p"] != ours[-1]["p"]) > 10  # really another rounding


@pytest.mark.parametrize("impl", ["fused", "single"])
@pytest.mark.parametrize("dtype", LOW)
def test_16bit_params_with_master_weights_are_the_float32_run(dtype, impl: str) -> None:
    n, rng = 4099, np.random.default_rng(3)
    start = torch.from_numpy(rng.standard_normal(n).astype(F32)).to(dtype)
    low, f32 = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.float())
    ref = torch.nn.Parameter(start.float())
    kw = {"lr": 1e-3, "weight_decay": 0.1, "amsgrad": True}
    o_low, o_f32 = fot.AdamW([low], **kw), fot.AdamW([f32], **kw)
    o_ref = torch.optim.AdamW([ref], **kw, **({"fused": True} if impl == "fused" else {}))
    for k in range(30):
        g = torch.from_numpy(rng.standard_normal(n).astype(F32) * (1 + k % 3)).to(dtype)
        low.grad, f32.grad, ref.grad = g, g.float(), g.float()
        for o in (o_low, o_f32, o_ref):
            o.step()
        master = o_low.state[low]["master_param"]
        assert master.dtype == torch.float32
        assert torch.equal(master, f32.detach())  # bitwise: the same engine, the same numbers
        assert torch.equal(low.detach(), f32.detach().to(dtype))  # rounded to nearest even
    # torch's float32 AdamW: the same formulas, its own roundings (FMAs, addcdiv's order).
    torch.testing.assert_close(master, ref.detach(), rtol=1e-5, atol=1e-6)


# -- ferroptim.torch on float16/bfloat16 tensors ----------------------------------

# Hyperparameters that make every state slot live.
CLASSES = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
    "AdamW": {"lr": 0.01, "amsgrad": True},
    "Adamax": {"lr": 0.01, "weight_decay": 0.01},
    "NAdam": {"lr": 0.01, "weight_decay": 0.01},
    "RAdam": {"lr": 0.01, "weight_decay": 0.01},
    "RMSprop": {"lr": 0.01, "momentum": 0.9, "centered": True},
    "Adagrad": {"lr": 0.1, "initial_accumulator_value": 0.1},
    "Adadelta": {"lr": 1.0, "weight_decay": 0.01},
    "Lion": {"lr": 1e-3, "weight_decay": 0.1},
    "Rprop": {"lr": 0.01},
    "ASGD": {"lr": 0.01, "t0": 2.0},
}


def _pair(dtype: torch.dtype, shape: tuple = (37, 11)) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.from_numpy(np.random.default_rng(5).standard_normal(shape).astype(F32))
    return torch.nn.Parameter(start.to(dtype)), torch.nn.Parameter(start.to(dtype).float())


def _grad(shape: tuple, k: int, dtype: torch.dtype) -> torch.Tensor:
    rng = np.random.default_rng(100 + k)
    return torch.from_numpy(rng.standard_normal(shape).astype(F32)).to(dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_views_share_the_tensors_memory(dtype) -> None:
    t = torch.zeros(5, dtype=dtype)
    a = numpy_view(t)
    assert a.ctypes.data == t.data_ptr() and a.dtype == (BF16 if dtype == torch.bfloat16 else "f2")
    a[1] = 1.5
    assert float(t[1]) == 1.5


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_16bit_params_step_in_place_as_the_float32_run_rounded(name: str, dtype) -> None:
    low, f32 = _pair(dtype)
    ptr = low.data_ptr()
    o_low = getattr(fot, name)([low], **CLASSES[name])
    o_f32 = getattr(fot, name)([f32], **CLASSES[name])
    for k in range(4):
        low.grad = _grad(low.shape, k, dtype)
        f32.grad = low.grad.float()
        o_low.step()
        o_f32.step()
        assert torch.equal(o_low.state[low]["master_param"], f32.detach())
        assert torch.equal(low.detach(), f32.detach().to(dtype))
    assert low.data_ptr() == ptr and low.dtype == dtype


def test_float32_grads_of_16bit_params_and_wrong_grads_named() -> None:
    a, b = _pair(torch.bfloat16, (300,))[0], _pair(torch.bfloat16, (300,))[0]
    oa, ob = fot.Adam([a], lr=0.01), fot.Adam([b], lr=0.01)
    a.grad = _grad(a.shape, 0, torch.bfloat16)
    b.grad_dtype = None  # torch >= 2.10 otherwise holds grads to the param's dtype
    b.grad = a.grad.float()  # the same values, in float32
    oa.step()
    ob.step()
    assert torch.equal(a, b)
    b.grad = a.grad.to(torch.float16)
    with pytest.raises(DtypeError, match="float16"):
        ob.step()
    assert torch.equal(a, b)  # nothing stepped


def test_the_options_are_keyword_only_outside_the_groups_and_checked_by_name() -> None:
    params = inspect.signature(fot.AdamW.__init__).parameters
    for name, default in (("state_dtype", None), ("master_weights", True), ("seed", 0)):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == default
        assert name in (fot.AdamW.__doc__ or "")
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    opt = fot.AdamW([p], state_dtype="int8", master_weights=False)
    assert "state_dtype" not in opt.param_groups[0] and opt.precision["state_dtype"] == "int8"
    theirs = torch.optim.AdamW([p]).state_dict()["param_groups"][0]
    assert theirs.keys() == opt.state_dict()["param_groups"][0].keys()
    for bad, match in (
        ({"state_dtype": "int4"}, "state_dtype"),
        ({"master_weights": "yes"}, "master_weights"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises(HyperparameterError, match=match):
            fot.AdamW([p], **bad)
    with pytest.raises(HyperparameterError, match="state_dtype"):
        fot.Rprop([p], state_dtype="int8")

"""The CUDA path, on two kinds of device.

``cupy``: a real GPU. Runs where CuPy imports and sees a CUDA device; skipped
elsewhere with the reason shown by ``pytest -ra``.

``emulated``: ``kernels.cu`` compiled as host C++ and run block by block, one
thread per block (:mod:`ferroptim.cuda.emulate`). It runs everywhere a C++
compiler exists, so CI checks the CUDA engine (pointer and chunk tables, the
norm passes, state handling, input checks) and the kernels' arithmetic on
every push. It does not check CUDA itself; the ``cupy`` runs do.

The CPU path is the reference: it is checked against torch.optim by
test_parity_torch.py and test_parity_more.py. Emulated runs must match it
bitwise (same operations, no FMA contraction). GPU runs must match it to a few
ulps (the same operations with IEEE division and square root, compiled with
--fmad=false: expected bitwise, asserted to rounding); where a global norm is
involved, its summation order differs, so clipping runs are compared to rounding.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import cuda
from ferroptim.cuda import emulate
from ferroptim.exceptions import DtypeError, GradError, ParamError, StateDictError
from reference import (
    SPECS,
    combo_id,
    grad_stream,
    initial_params,
    seed_of,
    shapes_for,
    split_groups,
)

F32, F64 = np.float32, np.float64
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]


class Device:
    """Moves arrays to and from one kind of device."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "cupy":
            import cupy

            self.cp = cupy

    def put(self, a: np.ndarray | None) -> Any:
        if a is None:
            return None
        if self.kind == "cupy":
            return self.cp.asarray(a)
        return emulate.device_array(a)

    def get(self, a: Any) -> np.ndarray:
        if self.kind == "cupy":
            return self.cp.asnumpy(a)
        return np.array(a, copy=True).view(np.ndarray)

    def assert_same(self, got: Any, want: np.ndarray, msg: str = "", norm: bool = False) -> None:
        got = (
            self.get(got) if not isinstance(got, np.ndarray) or type(got) is not np.ndarray else got
        )
        if self.kind == "emulated" and not norm:
            np.testing.assert_array_equal(got, want, err_msg=msg)
        else:
            tight = (
                {"rtol": 1e-6, "atol": 1e-7}
                if want.dtype == F32
                else {"rtol": 1e-13, "atol": 1e-14}
            )
            np.testing.assert_allclose(got, want, **tight, err_msg=msg)


KINDS = [
    pytest.param(
        "emulated",
        marks=pytest.mark.skipif(
            not emulate.available(), reason="no C++ compiler for the CUDA emulation"
        ),
    ),
    pytest.param(
        "cupy",
        marks=pytest.mark.skipif(
            not cuda.available(),
            reason="no GPU here (CuPy missing or no CUDA device): GPU tests need "
            "pip install 'ferroptim[cuda]' on a machine with one",
        ),
    ),
]


@pytest.fixture(params=KINDS)
def dev(request) -> Device:
    return Device(request.param)


# -- parity with the CPU path -----------------------------------------------

CORE = [
    pytest.param(spec, combo, id=f"{spec.name}[{combo_id(combo)}]")
    for spec in SPECS.values()
    for combo in spec.combos
]

# The toolkit's rules: each option on and off at least once.
TOOLKIT = [
    (fo.Adagrad, {"lr": 0.05}, [{}, {"lr_decay": 0.01, "initial_accumulator_value": 0.5}]),
    (fo.Adadelta, {"lr": 1.0}, [{}, {"rho": 0.5, "weight_decay": 0.1}]),
    (fo.Adamax, {"lr": 0.01}, [{}, {"betas": (0.5, 0.9), "l1": 0.01, "maximize": True}]),
    (
        fo.NAdam,
        {"lr": 0.01},
        [{}, {"momentum_decay": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}],
    ),
    (fo.RAdam, {"lr": 0.01}, [{}, {"weight_decay": 0.1, "decoupled_weight_decay": True}]),
    (fo.Lion, {"lr": 1e-3}, [{}, {"weight_decay": 0.1, "betas": (0.5, 0.9), "l1": 0.01}]),
    (
        fo.Rprop,
        {"lr": 0.01},
        [{}, {"etas": (0.3, 1.5), "step_sizes": (1e-3, 0.05), "weight_decay": 0.1, "l1": 0.01}],
    ),
    (
        fo.ASGD,
        {"lr": 0.05},
        [
            {},
            {"lambd": 0.01, "t0": 5.0, "weight_decay": 0.1, "maximize": True},
            {"t0": 10.0, "l1": 0.01, "scalar_dtype": "float64"},
        ],
    ),
]
TOOLKIT_CASES = [
    pytest.param(cls, base, combo, id=f"{cls.__name__}[{combo_id(combo)}]")
    for cls, base, combos in TOOLKIT
    for combo in combos
]


def run_pair(
    dev: Device,
    cls: Any,
    kwargs: dict[str, Any],
    group1: dict[str, Any],
    dtype: Any,
    *,
    steps: int = 40,
    large: bool = True,
    options: dict[str, Any] | None = None,
    name: str = "",
) -> tuple[fo.Optimizer, list[np.ndarray], fo.Optimizer, list[Any]]:
    """The same run on the CPU path and on ``dev``: two groups, None grads,
    an lr change, and a state_dict round trip (device -> NumPy -> device)."""
    options = options or {}
    g0, g1 = shapes_for(large)
    shapes, n0 = g0 + g1, len(g0)
    seed = seed_of("cuda", name, combo_id(kwargs), np.dtype(dtype).name)
    init = initial_params(np.random.default_rng(seed), shapes, dtype)
    host = [p.copy() for p in init]
    gpu = [dev.put(p) for p in init]
    cpu_opt = cls(split_groups(host, n0, group1), **kwargs, **options)
    gpu_opt = cls(split_groups(gpu, n0, group1), **kwargs, **options)
    for t, grads in grad_stream(seed + 1, shapes, dtype, steps):
        assert cpu_opt.step(grads) == gpu_opt.step([dev.put(g) for g in grads])
        if t == 15:
            for opt in (cpu_opt, gpu_opt):
                opt.param_groups[0]["lr"] *= 0.5
        if t == 25:
            saved = gpu_opt.state_dict()
            for st in saved["state"].values():
                for v in st.values():
                    assert not hasattr(v, "__cuda_array_interface__")
                    assert type(v) is not emulate.DeviceArray
            cpu_opt = _reload(cls, cpu_opt.state_dict(), host, n0, group1, kwargs, options)
            gpu_opt = _reload(cls, saved, gpu, n0, group1, kwargs, options)
    return cpu_opt, host, gpu_opt, gpu


def _reload(cls, saved, params, n0, group1, kwargs, options) -> fo.Optimizer:
    fresh = cls(split_groups(params, n0, group1), **kwargs, **options)
    fresh.load_state_dict(saved)
    return fresh


def assert_runs_match(dev: Device, cpu_opt, host, gpu_opt, gpu, norm: bool = False) -> None:
    for i, (a, b) in enumerate(zip(host, gpu)):
        dev.assert_same(b, a, f"param {i}", norm=norm)
    assert cpu_opt.step_counts == gpu_opt.step_counts
    want, got = cpu_opt.state_dict()["state"], gpu_opt.state_dict()["state"]
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].keys() == got[key].keys(), key
        for slot, value in want[key].items():
            if isinstance(value, np.ndarray):
                dev.assert_same(got[key][slot], value, f"{slot} of {key}", norm=norm)
            else:
                assert got[key][slot] == pytest.approx(value, rel=1e-12), (key, slot)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec,combo", CORE)
def test_core_optimizers_match_cpu_path(dev, spec, combo, dtype):
    kwargs = {"lr": spec.lr, **combo}
    run = run_pair(dev, spec.fo_cls, kwargs, spec.group1(combo), dtype, name=spec.name)
    assert_runs_match(dev, *run)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,base,combo", TOOLKIT_CASES)
def test_toolkit_optimizers_match_cpu_path(dev, cls, base, combo, dtype):
    kwargs = {**base, **combo}
    group1 = {"lr": base["lr"] * 0.4}
    run = run_pair(dev, cls, kwargs, group1, dtype, name=cls.__name__)
    assert_runs_match(dev, *run)


STEP_OPTIONS = [
    {"max_grad_norm": 0.5},
    {"max_grad_norm": 0.5, "norm_type": math.inf},
    {"clip_value": 0.3},
    {"ema_decay": 0.9},
    {"ema_equal_weights": True, "clip_value": 1.0},
    {"skip_nonfinite": True},
    {"accumulate": 3},
    {"accumulate": 2, "accumulate_mean": False, "max_grad_norm": 1.0},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", STEP_OPTIONS, ids=combo_id)
def test_step_options_match_cpu_path(dev, options, dtype):
    run = run_pair(
        dev,
        fo.AdamW,
        {"lr": 0.01, "weight_decay": 0.1},
        {"lr": 0.004},
        dtype,
        options=options,
        name="options",
    )
    norm = "max_grad_norm" in options
    assert_runs_match(dev, *run, norm=norm)
    cpu_opt, gpu_opt = run[0], run[2]
    if norm:
        assert gpu_opt.last_grad_norm == pytest.approx(cpu_opt.last_grad_norm, rel=1e-9)


def test_nonfinite_grads_skip_the_step_and_change_nothing(dev):
    p = np.linspace(-1, 1, 50_000).astype(F32)
    gp = dev.put(p)
    opt = fo.Adam([gp], lr=0.1, skip_nonfinite=True)
    assert opt.step([dev.put(np.full_like(p, 0.5))])
    before = dev.get(gp)
    state_before = opt.state_dict()["state"][0]["exp_avg"].copy()
    for bad in (np.inf, -np.inf, np.nan):
        g = np.full_like(p, 0.5)
        g[40_000] = bad
        assert opt.step([dev.put(g)]) is False
        np.testing.assert_array_equal(dev.get(gp), before)
        np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], state_before)
    assert opt.skipped_steps == 3
    assert opt.step_counts == [1]
    assert math.isnan(opt.last_grad_norm) or math.isinf(opt.last_grad_norm)


def test_freeze_and_averaged_params(dev):
    a, b = np.ones(1000, F64), np.ones(10, F64)
    ga, gb = dev.put(a), dev.put(b)
    opt = fo.SGD({"a": ga, "b": gb}, lr=0.1, ema_decay=0.5)
    opt.freeze("b")
    grads = {"a": dev.put(np.ones(1000)), "b": dev.put(np.ones(10))}
    opt.step(grads)
    opt.step(grads)
    np.testing.assert_allclose(dev.get(ga), 0.8)
    np.testing.assert_array_equal(dev.get(gb), 1.0)  # frozen: untouched
    assert opt.step_counts == [2, 0]
    with opt.averaged_params():
        # EMA after 0.9 then 0.8 with decay 0.5: 0.9 + 0.5 (0.8 - 0.9)
        np.testing.assert_allclose(dev.get(ga), 0.85)
    np.testing.assert_allclose(dev.get(ga), 0.8)


# -- one launch per step -------------------------------------------------------


def test_many_tensors_take_one_update_launch_per_dtype(dev, monkeypatch):
    params = [dev.put(np.full(s, 1.0, F32)) for s in [100] * 3000 + [70_001]]
    params += [dev.put(np.full(7, 1.0, F64))] * 0 + [dev.put(np.full(7, 1.0, F64))]
    opt = fo.AdamW(params, lr=0.01, max_grad_norm=1.0)
    launches: list[tuple[str, int]] = []
    real = opt._engine.device.launch
    monkeypatch.setattr(
        opt._engine.device,
        "launch",
        lambda name, grid, threads, args: (
            launches.append((name, grid)),
            real(name, grid, threads, args),
        ),
    )
    grads = [dev.put(np.full(p.shape, 0.1, p.dtype)) for p in params]
    assert opt.step(grads)
    names = [n for n, _ in launches]
    assert names.count("adam_f32") == 1 and names.count("adam_f64") == 1
    assert names.count("norm_partials_f32") == 1 and names.count("norm_finish") == 1
    # 3000 one-block tensors, five 16k-element blocks for the large one.
    assert dict(launches)["adam_f32"] == 3000 + 5
    for p in params[:3] + params[-2:]:
        assert not np.allclose(dev.get(p), 1.0)


# -- a GPU arena: one tensor, whatever the model ---------------------------------


def _arena_device(dev: Device) -> Any:
    return "cuda" if dev.kind == "cupy" else "emulated"


@pytest.mark.parametrize("dtype", DTYPES)
def test_arena_on_the_device_matches_the_cpu_arena(dev, dtype):
    shapes = {f"w{i}": (i % 7 + 1, 13) for i in range(300)} | {"big": (70_001,)}
    rng = np.random.default_rng(5)
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    cpu = fo.ParamArena.from_arrays(init)
    gpu = fo.ParamArena.from_arrays({k: dev.put(v) for k, v in init.items()})
    assert gpu.device == cuda.device_of(gpu.data) and gpu.dtype == dtype
    groups = lambda a: [  # noqa: E731
        {"params": a.select("w*")},
        {"params": a.select("big"), "weight_decay": 0.0, "lr": 0.003},
    ]
    cpu_opt = fo.AdamW(groups(cpu), lr=0.01, weight_decay=0.1, clip_value=1.5)
    gpu_opt = fo.AdamW(groups(gpu), lr=0.01, weight_decay=0.1, clip_value=1.5)
    for _ in range(5):
        g = rng.standard_normal(cpu.size).astype(dtype)
        cpu.grad[...] = g
        gpu.grad[...] = dev.put(g)
        assert cpu_opt.step() and gpu_opt.step()
    dev.assert_same(gpu.data, cpu.data)
    dev.assert_same(gpu.params["w17"], cpu.params["w17"])
    assert cpu_opt.state_dict()["state"].keys() == gpu_opt.state_dict()["state"].keys()


def test_arena_from_numpy_onto_a_device(dev):
    arena = fo.ParamArena.from_arrays(
        {"a": np.arange(6.0).reshape(2, 3)}, device=_arena_device(dev)
    )
    assert cuda.is_device_array(arena.data)
    assert repr(arena) == f"ParamArena(1 params, 6 float64 values on {_arena_device(dev)!r})"
    np.testing.assert_array_equal(dev.get(arena.params["a"]), np.arange(6.0).reshape(2, 3))
    arena.zero_grad()
    opt = fo.SGD(arena, lr=1.0)
    arena.grads["a"][...] = dev.put(np.ones((2, 3)))
    opt.step()
    np.testing.assert_array_equal(dev.get(arena.data), np.arange(6.0) - 1)


def test_arena_device_is_checked():
    with pytest.raises(ParamError, match="device"):
        fo.ParamArena({"a": 3}, device="gpu")


# -- checkpoints move between devices -----------------------------------------


def test_checkpoint_from_device_loads_on_cpu_and_back(dev):
    rng = np.random.default_rng(3)
    p = rng.standard_normal((40, 30))
    grads = [rng.standard_normal((40, 30)) for _ in range(6)]
    gp = dev.put(p)
    gpu_opt = fo.NAdam([gp], lr=0.01)
    for g in grads[:3]:
        gpu_opt.step([dev.put(g)])
    saved = gpu_opt.state_dict()
    host = dev.get(gp)
    cpu_opt = fo.NAdam([host], lr=0.01)
    cpu_opt.load_state_dict(saved)
    for g in grads[3:]:
        cpu_opt.step([g])
        gpu_opt.step([dev.put(g)])
    dev.assert_same(gp, host)
    # And back: a CPU checkpoint onto the device.
    gp2 = dev.put(host)
    back = fo.NAdam([gp2], lr=0.01)
    back.load_state_dict(cpu_opt.state_dict())
    back.step([dev.put(grads[0])])
    cpu_opt.step([grads[0]])
    dev.assert_same(gp2, host)


def test_accumulation_buffers_survive_a_checkpoint(dev):
    p = np.zeros(20, F32)
    gp = dev.put(p)
    opt = fo.SGD([gp], lr=1.0, accumulate=2)
    assert opt.step([dev.put(np.ones(20, F32))]) is False
    saved = opt.state_dict()
    assert isinstance(saved["accumulation"]["buffers"][0], np.ndarray)
    assert type(saved["accumulation"]["buffers"][0]) is np.ndarray
    opt2 = fo.SGD([gp], lr=1.0, accumulate=2)
    opt2.load_state_dict(saved)
    assert opt2.step([dev.put(np.full(20, 3.0, F32))]) is True
    np.testing.assert_array_equal(dev.get(gp), -2.0)


# -- bad input: a clear error, nothing changed ---------------------------------


def _snapshot(dev, opt, params):
    return [dev.get(p) for p in params], opt.state_dict()


def _assert_unchanged(dev, opt, params, snap):
    values, state = snap
    for p, v in zip(params, values):
        np.testing.assert_array_equal(dev.get(p), v)
    now = opt.state_dict()
    assert now["state"].keys() == state["state"].keys()
    for k in state["state"]:
        for slot, v in state["state"][k].items():
            np.testing.assert_array_equal(now["state"][k][slot], v)


def test_bad_grads_raise_and_change_nothing(dev):
    params = [dev.put(np.ones(10, F32)), dev.put(np.ones((2, 3), F32))]
    opt = fo.Adam(params, lr=0.1)
    opt.step([dev.put(np.ones(10, F32)), dev.put(np.ones((2, 3), F32))])
    snap = _snapshot(dev, opt, params)
    good = dev.put(np.ones(10, F32))
    cases = [
        ([good, np.ones((2, 3), F32)], DtypeError, "NumPy array"),
        ([good, dev.put(np.ones((2, 3), F64))], DtypeError, "dtype float64"),
        ([good, dev.put(np.ones((3, 2), F32))], GradError, "shape"),
        ([good], GradError, "got 1 grads for 2 params"),
        ([params[0], dev.put(np.ones((2, 3), F32))], GradError, "shares memory with its param"),
        ([good, "x"], DtypeError, "str"),
    ]
    for grads, err, text in cases:
        with pytest.raises(err, match=text):
            opt.step(grads)
        _assert_unchanged(dev, opt, params, snap)


def test_bad_params_raise(dev):
    a = dev.put(np.ones(10, F32))
    with pytest.raises(DtypeError, match="NumPy array"):
        fo.SGD([a, np.ones(3, F32)], lr=0.1)
    with pytest.raises(DtypeError, match="GPU arrays"):
        opt = fo.SGD([np.ones(3, F32)], lr=0.1)
        opt.add_param_group({"params": [a]})
    with pytest.raises(DtypeError, match="float32 or float64"):
        fo.SGD([dev.put(np.ones(3, np.int32))], lr=0.1)
    with pytest.raises(ParamError, match="same array"):
        fo.SGD([a, a], lr=0.1)
    with pytest.raises(ParamError, match="C-contiguous"):
        fo.SGD([dev.put(np.ones((4, 4), F32))[:, ::2]], lr=0.1)


def test_bad_state_dict_raises_and_changes_nothing(dev):
    params = [dev.put(np.ones(10, F32))]
    opt = fo.Adam(params, lr=0.1)
    opt.step([dev.put(np.ones(10, F32))])
    snap = _snapshot(dev, opt, params)
    bad = opt.state_dict()
    bad["state"][0]["exp_avg"] = np.ones(11, F32)
    with pytest.raises(StateDictError, match="shape"):
        opt.load_state_dict(bad)
    _assert_unchanged(dev, opt, params, snap)


def test_strided_grads_are_read_in_index_order(dev):
    p = np.zeros((6, 4), F64)
    gp = dev.put(p)
    opt = fo.SGD([gp], lr=1.0)
    g = np.arange(48, dtype=F64).reshape(6, 8)
    opt.step([dev.put(g)[:, ::2]])
    np.testing.assert_array_equal(dev.get(gp), -g[:, ::2])


# -- without CuPy ----------------------------------------------------------------


def test_ferroptim_never_imports_cupy_for_numpy_work():
    code = (
        "import sys, numpy as np, ferroptim as fo\n"
        "o = fo.Adam([np.ones(3)], lr=0.1); o.step([np.ones(3)]); o.state_dict()\n"
        "print('cupy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_other_gpu_array_kinds_are_refused():
    class FakeTorchCuda:
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False)}

    with pytest.raises(DtypeError, match="CuPy"):
        fo.SGD([FakeTorchCuda()], lr=0.1)


# -- torch on CUDA (GPU machines only) -------------------------------------------


@pytest.mark.skipif(not cuda.available(), reason="no GPU here: needs CuPy and a CUDA device")
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("Adam", {"lr": 1e-2}),
        ("AdamW", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
        ("SGD", {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
        ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}),
        ("Adagrad", {"lr": 1e-2}),
        ("NAdam", {"lr": 1e-2}),
        ("RAdam", {"lr": 1e-2}),
        ("Rprop", {"lr": 1e-2}),
        ("ASGD", {"lr": 1e-2, "t0": 5.0}),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_on_cuda(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    import cupy

    rng = np.random.default_rng(0)
    p = rng.standard_normal(100_003).astype(dtype)
    gp = cupy.asarray(p)
    tp = torch.tensor(p, device="cuda", requires_grad=True)
    ours = getattr(fo, name)([gp], **kwargs)
    theirs = getattr(torch.optim, name)([tp], foreach=False, **kwargs)
    for _ in range(30):
        g = rng.standard_normal(p.size).astype(dtype)
        ours.step([cupy.asarray(g)])
        tp.grad = torch.tensor(g, device="cuda")
        theirs.step()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == F32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(cupy.asnumpy(gp), tp.detach().cpu().numpy(), **tol)


# -- the kernel source under NVRTC (no GPU needed) -------------------------------


def test_kernel_source_compiles_under_nvrtc():
    """NVRTC compiles kernels.cu with the engine's options, for a generic
    architecture; every kernel the engine launches is there, and the PTX has
    no fused multiply-add (what keeps GPU steps bitwise equal to CPU steps)."""
    pytest.importorskip("cupy", reason="CuPy is not installed")
    from cupy.cuda import nvrtc

    from ferroptim import _core
    from ferroptim.cuda.device import KERNEL_SOURCE, NVRTC_OPTIONS

    try:
        prog = nvrtc.createProgram(KERNEL_SOURCE.read_text(), "kernels.cu", [], [])
    except Exception as err:  # CuPy without the NVRTC library
        pytest.skip(f"NVRTC is not available: {err}")
    try:
        nvrtc.compileProgram(prog, [*NVRTC_OPTIONS, "--gpu-architecture=compute_80"])
    except Exception as err:
        pytest.fail(f"NVRTC: {err}\n{nvrtc.getProgramLog(prog)}")
    ptx = nvrtc.getPTX(prog).decode()
    rules = [c.__name__.lower() for c in vars(_core).values() if hasattr(c, "cuda_scalars")]
    assert len(rules) >= 9
    wanted = {f"{r}_{d}" for r in rules for d in ("f16", "f32", "f64")}
    wanted |= {"norm_partials_f16", "norm_partials_f32", "norm_partials_f64", "norm_finish"}
    wanted |= {"half_roundtrip"}
    for name in sorted(wanted):
        assert f".entry {name}(" in ptx, name
    assert "fma." not in ptx
    assert "div.rn" in ptx and "sqrt.rn" in ptx  # IEEE division and square root


# -- `ferroptim bench --cuda`, driven on the emulated device ---------------------


@pytest.mark.skipif(not emulate.available(), reason="no C++ compiler for the CUDA emulation")
def test_cuda_bench_driver_on_the_emulated_device():
    from ferroptim import bench
    from ferroptim import bench_cuda as cuda_bench

    assert cuda_bench.cases()[-1].numel == 100_000_000
    rows = cuda_bench.run(
        ["adam", "rmsprop"], "emulated", budget=0.0, case_list=[bench.Case("1 x 1000", [(1000,)])]
    )
    assert [(r.optimizer, r.impl) for r in rows] == [
        ("adam", "ferroptim"),
        ("adam", "ferroptim arena"),
        ("rmsprop", "ferroptim"),
        ("rmsprop", "ferroptim arena"),
    ]
    for r in rows:
        assert r.median_s > 0 and r.roofline > 0 and r.numel == 1000
    assert len(bench.table(rows).splitlines()) == 6


# -- float16 params: float32 state and master weights ----------------------------

F16 = np.float16


def test_half_conversions_match_numpy(dev):
    """kernels.cu's float32 <-> float16 conversions round to nearest even, as NumPy does."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    special = np.array(
        [
            0.0,
            -0.0,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            6.1e-5,
            2.0**-24,
            2.0**-25,
            3 * 2.0**-26,
            2.0**-14,
            1.0009765625,
            1.00048828125,
            1.000732421875,
            np.inf,
            -np.inf,
        ],
        np.float32,
    )
    # Around every float16 value: the midpoints and their neighbours.
    grid = np.arange(0, 2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    mids = grid[np.isfinite(grid)]
    near = np.concatenate([mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf)])
    x = np.concatenate([values, special, near, (mids[:-1] + mids[1:]) / 2]).astype(np.float32)
    finite = ~np.isnan(x)
    x = x[finite]
    engine_dev = fo.SGD([dev.put(np.zeros(1, F16))], lr=0.1)._engine.device
    inp, half, back = dev.put(x), dev.put(np.zeros(x.size, np.uint16)), dev.put(np.zeros_like(x))
    engine_dev.launch(
        "half_roundtrip",
        1 if dev.kind == "emulated" else 512,
        256,
        (inp, half, back, np.int64(x.size)),
    )
    with np.errstate(over="ignore"):  # values past 65504 become inf, as intended
        want = x.astype(F16)
    np.testing.assert_array_equal(dev.get(half), want.view(np.uint16))
    np.testing.assert_array_equal(dev.get(back), want.astype(np.float32))
    nan_half = dev.put(np.zeros(1, np.uint16))
    engine_dev.launch(
        "half_roundtrip",
        1,
        1,
        (
            dev.put(np.array([np.nan], np.float32)),
            nan_half,
            dev.put(np.zeros(1, np.float32)),
            np.int64(1),
        ),
    )
    assert np.isnan(dev.get(nan_half).view(F16)[0])


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (fo.Adam, {"lr": 1e-2, "amsgrad": True}),
        (fo.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
        (fo.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
        (fo.RMSprop, {"lr": 1e-3, "centered": True}),
        (fo.Lion, {"lr": 1e-3}),
        (fo.Rprop, {"lr": 1e-2}),
        (fo.ASGD, {"lr": 1e-2, "t0": 3.0}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else combo_id(v),
)
@pytest.mark.parametrize("options", [{}, {"max_grad_norm": 0.5}, {"clip_value": 0.2}], ids=combo_id)
def test_half_params_follow_the_float32_run(dev, cls, kwargs, options):
    """A float16 run updates float32 master weights exactly as a float32 run on
    the CPU path does (given the same float16 grads); the params are the masters
    rounded to float16, and the state is float32."""
    rng = np.random.default_rng(2)
    shapes = [(3, 5), (70_001,), ()]
    init = [rng.standard_normal(s).astype(F16) for s in shapes]
    host = [p.astype(np.float32) for p in init]
    gpu = [dev.put(p) for p in init]
    cpu_opt = cls(host, **kwargs, **options)
    gpu_opt = cls(gpu, **kwargs, **options)
    for t in range(12):
        grads = [rng.standard_normal(s).astype(F16) for s in shapes]
        if t % 5 == 3:
            grads[0] = None
        cpu_opt.step([None if g is None else g.astype(np.float32) for g in grads])
        gpu_opt.step([dev.put(g) for g in grads])
    norm = "max_grad_norm" in options
    saved = gpu_opt.state_dict()["state"]
    for i, (a, b) in enumerate(zip(host, gpu)):
        assert dev.get(b).dtype == F16
        master = saved[i]["master_param"]
        assert master.dtype == np.float32
        dev.assert_same(master, a, f"master {i}", norm=norm)
        if not norm:
            np.testing.assert_array_equal(dev.get(b), a.astype(F16))
    want = cpu_opt.state_dict()["state"]
    for key, st in want.items():
        for slot, value in st.items():
            if isinstance(value, np.ndarray):
                assert saved[key][slot].dtype == np.float32
                dev.assert_same(saved[key][slot], value, f"{slot} of {key}", norm=norm)


def test_half_params_written_by_the_user_are_picked_up(dev):
    p = dev.put(np.ones(10, F16))
    opt = fo.SGD([p], lr=0.25)
    opt.step([dev.put(np.ones(10, F16))])
    np.testing.assert_array_equal(dev.get(p), 0.75)
    p[3:5] = dev.put(np.full(2, 4.0, F16))  # e.g. weights reloaded from a file
    opt.step([dev.put(np.ones(10, F16))])
    want = np.full(10, 0.5, F16)
    want[3:5] = 3.75
    np.testing.assert_array_equal(dev.get(p), want)


def test_half_state_dict_round_trip_and_checks(dev):
    p = dev.put(np.linspace(-1, 1, 64).astype(F16))
    opt = fo.Adam([p], lr=1e-2)
    for _ in range(3):
        opt.step([dev.put(np.full(64, 0.1, F16))])
    saved = opt.state_dict()
    q = dev.put(dev.get(p))
    again = fo.Adam([q], lr=1e-2)
    again.load_state_dict(saved)
    for o in (opt, again):
        o.step([dev.put(np.full(64, -0.3, F16))])
    np.testing.assert_array_equal(dev.get(p), dev.get(q))
    np.testing.assert_array_equal(
        opt.state_dict()["state"][0]["master_param"], again.state_dict()["state"][0]["master_param"]
    )
    bad = again.state_dict()
    bad["state"][0]["master_param"] = np.zeros(63, np.float32)
    before = again.state_dict()
    with pytest.raises(StateDictError, match="master_param"):
        again.load_state_dict(bad)
    np.testing.assert_array_equal(
        again.state_dict()["state"][0]["master_param"], before["state"][0]["master_param"]
    )
    f32 = fo.Adam([dev.put(np.zeros(64, np.float32))], lr=1e-2)
    with pytest.raises(StateDictError, match="master_param"):
        f32.load_state_dict(saved)


def test_half_params_refuse_averaging(dev):
    with pytest.raises(ParamError, match="float16"):
        fo.Adam([dev.put(np.ones(4, F16))], lr=0.1, ema_decay=0.9)


def test_half_params_on_numpy_take_the_cpu_engine():
    # float16 NumPy params are the CPU engine's since #14 (float32 master
    # weights there too); only CuPy arrays go to the CUDA engine.
    p = np.ones(4, F16)
    opt = fo.Adam([p], lr=0.1)
    assert not opt._gpu
    opt.step([np.ones(4, F16)])
    assert np.all(p == F16(0.9))
    assert opt.state_dict()["state"][0]["master_param"].dtype == np.float32

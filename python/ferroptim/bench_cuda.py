"""`ferroptim bench --cuda`: the CUDA path against torch's CUDA optimizers.

Beside :mod:`ferroptim.bench`, whose cases, timing table and settings it
shares; the CUDA package itself knows nothing of the benchmarks.

Cases: the CPU bench's (without the 100-element one) plus one 100M-param
tensor. Implementations: ferroptim on CuPy arrays (a list of them, and a GPU
:class:`~ferroptim.ParamArena`), torch.optim with
``fused=True`` (``foreach=True`` for RMSprop, which has no fused kernel), on
the same GPU. The roofline is CuPy's in-place ``a += b`` over the case's bytes
(12 per float32 element) in the same run: the device bandwidth a streaming
kernel actually gets.

Each measurement is a burst of steps between two CUDA events, after a
synchronize; the table gives medians over round-robin bursts, as the CPU
bench does. The same driver runs on the emulated device (tests) with host
timers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim import bench as cpu_bench
from ferroptim import registry

__all__ = ["cases", "main", "run"]


def cases() -> list[cpu_bench.Case]:
    keep = [c for c in cpu_bench.cases(full=False) if c.name not in ("1 x 100 f32",)]
    return keep + [cpu_bench.Case("1 x 100M f32", [(100_000_000,)])]


class _Timer:
    """Per-step seconds of a burst: CUDA events on a GPU, host clock when emulated."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "cupy":
            import cupy

            self.cp = cupy

    def burst(self, fn: Callable[[], None], steps: int) -> float:
        if self.kind != "cupy":
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            return (time.perf_counter() - t0) / steps
        cp = self.cp
        cp.cuda.Device().synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) / 1e3 / steps


def _put(kind: str, a: np.ndarray) -> Any:
    if kind == "cupy":
        import cupy

        return cupy.asarray(a)
    from ferroptim.cuda.emulate import device_array

    return device_array(a)


def _ferroptim(kind: str, opt: str, case: cpu_bench.Case) -> Callable[[], None]:
    params, grads = cpu_bench._data(case)
    dp = [_put(kind, p) for p in params]
    dg = [_put(kind, g) for g in grads]
    o = registry.get(opt).cls(dp, **cpu_bench.HYPER[opt])
    return lambda: o.step(dg)


def _ferroptim_arena(kind: str, opt: str, case: cpu_bench.Case) -> Callable[[], None]:
    params, grads = cpu_bench._data(case)
    device = "cuda" if kind == "cupy" else "emulated"
    arena = fo.ParamArena.from_arrays({f"p{i}": p for i, p in enumerate(params)}, device=device)
    for i, g in enumerate(grads):
        arena.grads[f"p{i}"][...] = _put(kind, g)
    o = registry.get(opt).cls(arena, **cpu_bench.HYPER[opt])
    return o.step


def _torch(opt: str, case: cpu_bench.Case) -> Callable[[], None] | None:
    """torch's step for ``opt`` on the GPU (see :func:`_torch_column`)."""
    column = _torch_column(opt, case)
    return column[1] if column is not None else None


def _torch_column(opt: str, case: cpu_bench.Case) -> tuple[str, Callable[[], None]] | None:
    """(column, step) of torch's fastest mode for ``opt`` on the GPU: fused, else
    foreach (RMSprop has no fused kernel); None without torch, a GPU or the class."""
    try:
        import torch
    except ImportError:
        return None
    cls = getattr(torch.optim, registry.get(opt).cls.__name__, None)
    if cls is None or not torch.cuda.is_available():
        return None
    params, grads = cpu_bench._data(case)
    tensors = []
    for p, g in zip(params, grads):
        t = torch.tensor(p, device="cuda", requires_grad=True)
        t.grad = torch.tensor(g, device="cuda")
        tensors.append(t)
    for mode in ("fused", "foreach"):
        try:
            o = cls(tensors, **cpu_bench.HYPER[opt], **{mode: True})
        except (RuntimeError, TypeError, ValueError):
            continue
        return f"torch {mode}", o.step
    return None


def _roofline(kind: str, numel: int) -> Callable[[], None]:
    a = _put(kind, np.zeros(numel, np.float32))
    b = _put(kind, np.ones(numel, np.float32))

    def add() -> None:
        a.__iadd__(b)

    return add


def run(
    optimizers: list[str],
    kind: str = "cupy",
    budget: float = 1.0,
    case_list: list[cpu_bench.Case] | None = None,
) -> list[cpu_bench.Row]:
    timer = _Timer(kind)
    rows = []
    for case in case_list if case_list is not None else cases():
        width = np.dtype(case.dtype).itemsize // 4
        for opt in optimizers:
            fns: dict[str, Callable[[], None]] = {
                "ferroptim": _ferroptim(kind, opt, case),
                "ferroptim arena": _ferroptim_arena(kind, opt, case),
            }
            theirs = _torch_column(opt, case) if kind == "cupy" else None
            if theirs is not None:
                fns[theirs[0]] = theirs[1]
            fns[cpu_bench.ROOFLINE] = _roofline(kind, case.numel * width)
            times: dict[str, list[float]] = {k: [] for k in fns}
            for fn in fns.values():
                fn()  # warm up: compile, allocate state
            start = time.perf_counter()
            rounds = 0
            while rounds < 5 or (time.perf_counter() - start < budget and rounds < 100):
                for name, fn in fns.items():
                    times[name].append(timer.burst(fn, 5))
                rounds += 1
            roof = 12 * width * case.numel / statistics.median(times.pop(cpu_bench.ROOFLINE)) / 1e9
            bpp = cpu_bench.fused_bytes_per_param(opt) * width
            for name, ts in times.items():
                rows.append(
                    cpu_bench.Row(
                        case.name,
                        opt,
                        name,
                        statistics.median(ts),
                        case.numel,
                        bpp,
                        roof,
                        spread=cpu_bench.Spread.of(ts),
                    )
                )
    return rows


def main(optimizers: list[str], budget: float) -> int:
    from ferroptim import cuda

    if not cuda.available():
        print("ferroptim bench --cuda: no GPU here (needs CuPy and a CUDA device)")
        return 1
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print(f"ferroptim {fo.__version__} on {props['name'].decode()}, CuPy {cupy.__version__}")
    rows = run(optimizers, "cupy", budget)
    print("roofline: CuPy in-place a += b over the case's bytes (12 B per float32), same run\n")
    print(cpu_bench.table(rows))
    print()
    print(cpu_bench.legend(rows))
    return 0

"""`ferroptim bench`'s low-precision cases (issue #14) and the state bytes per param.

State bytes per param (every case of the bench has the column): the
``nbytes`` of every array in the optimizer's ``state_dict`` (moments, the
8-bit codes and their per-block float32 scales, float32 master weights),
over the param count. The per-tensor step count is left out: ferroptim keeps
it as a Python int, torch as a one-element tensor.

The low-precision cases time AdamW on one tensor, side by side in one run:
ferroptim with compressed state and bfloat16 params, and torch's fused
AdamW on float32 and on bfloat16 params (torch keeps a bfloat16 param's
state in bfloat16). Their GB/s count the bytes each variant really moves
per param per step: the param written, and read unless float32 master
weights stand in for it (the kernel updates the master and writes its
rounding); the grad read; every state array, master included, read and
written once (:func:`moved_bytes_per_param`). With the 8-bit blocks of 256
elements, a float32 scale per block and moment:

=============================================  =====  ====  ======  ======  =====
variant                                        param  grad  moment  master  total
=============================================  =====  ====  ======  ======  =====
float32, float32 state (torch fused f32 too)     8     4     16              28
float32, bfloat16 state                          8     4      8              20
float32, int8 state (scales: 2 x 2 x 4/256)      8     4     4.06            16.06
bfloat16 + float32 master weights                2     2     16       8      28
bfloat16, int8 state, stochastic rounding        4     2     4.06            10.06
torch fused, bfloat16 params and state           4     2      8              14
=============================================  =====  ====  ======  ======  =====

The "% roofline" column divides by the same in-place float32 ``a += b``
the rest of the bench uses, timed in the same round-robin.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim.bench_report import Row, Spread, _spread, ratio

__all__ = ["LOWP_NUMEL", "VARIANTS", "Variant", "lowp_table", "make_variant"]
__all__ += ["moved_bytes_per_param", "run_lowp", "state_bytes_per_param", "state_nbytes"]

# The tensor the low-precision cases time (issue #14's target size).
LOWP_NUMEL = 16 << 20
ADAMW = {"lr": 1e-3, "weight_decay": 1e-2}


@dataclass(frozen=True)
class Variant:
    """One low-precision AdamW case.

    Parameters
    ----------
    name : str
        The row's label.
    impl : str
        ``"ferroptim"`` or ``"torch fused"``.
    param : str
        The params' dtype, ``"float32"`` or ``"bfloat16"``.
    grad : str
        The grads' dtype.
    options : dict
        ferroptim's precision keywords (state_dtype, master_weights, ...).
    """

    name: str
    impl: str
    param: str
    grad: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def master(self) -> bool:
        """Whether float32 master weights stand in for the params (ferroptim's default
        for low-precision params)."""
        return (
            self.impl == "ferroptim"
            and self.param != "float32"
            and self.options.get("master_weights", True)
        )


BF16_STATE = {"state_dtype": "bfloat16"}
INT8_STATE = {"state_dtype": "int8"}
SR_INT8 = {"state_dtype": "int8", "master_weights": False, "stochastic_rounding": True}
VARIANTS = (
    Variant("torch fused f32", "torch fused", "float32", "float32"),
    Variant("torch fused bf16", "torch fused", "bfloat16", "bfloat16"),
    Variant("ferroptim f32", "ferroptim", "float32", "float32"),
    Variant("ferroptim f32, bf16 state", "ferroptim", "float32", "float32", BF16_STATE),
    Variant("ferroptim f32, int8 state", "ferroptim", "float32", "float32", INT8_STATE),
    Variant("ferroptim bf16 + f32 master", "ferroptim", "bfloat16", "bfloat16"),
    Variant("ferroptim bf16, int8 state, SR", "ferroptim", "bfloat16", "bfloat16", SR_INT8),
)


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def state_nbytes(optimizer: Any) -> int:
    """Bytes of the arrays in ``optimizer``'s state_dict (ferroptim's or torch's),
    the step counts left out."""
    total = 0
    for per_param in optimizer.state_dict()["state"].values():
        for key, value in per_param.items():
            if key == "step":
                continue
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif hasattr(value, "element_size"):  # a torch tensor
                total += value.numel() * value.element_size()
    return total


def state_bytes_per_param(step: Callable[[], None], numel: int) -> float | None:
    """State bytes per param of a bench step function: from the optimizer it
    carries (``step.optimizer``), or its NumPy arrays (``step.state_arrays``);
    None when it carries neither."""
    optimizer = getattr(step, "optimizer", None)
    if optimizer is not None:
        return state_nbytes(optimizer) / numel
    arrays = getattr(step, "state_arrays", None)
    if arrays is not None:
        return sum(a.nbytes for a in arrays) / numel
    return None


def moved_bytes_per_param(variant: Variant, state_bpp: float) -> float:
    """Bytes one step moves per param: the param written (and read unless master
    weights replace it), the grad read, the state (master included) read and written."""
    param = _np_dtype(variant.param).itemsize
    return param * (1 if variant.master else 2) + _np_dtype(variant.grad).itemsize + 2 * state_bpp


def make_variant(variant: Variant, numel: int) -> Callable[[], None] | None:
    """The step of ``variant`` on one tensor of ``numel`` random values (the
    bench's own draw, rounded to the variant's dtypes); None without torch or ml_dtypes."""
    from ferroptim import bench

    try:
        pdt, gdt = _np_dtype(variant.param), _np_dtype(variant.grad)
        _np_dtype(variant.options.get("state_dtype", "float32").replace("int8", "float32"))
    except ImportError:
        return None  # bfloat16 needs ml_dtypes
    params, grads = bench._data(bench.Case(f"1 x {numel} f32", [(numel,)]))
    if variant.impl == "ferroptim":
        import ferroptim as fo

        p, g = params[0].astype(pdt), grads[0].astype(gdt)
        o = fo.AdamW([p], **ADAMW, **variant.options)
        return bench.tagged(lambda: o.step([g]), o)
    try:
        import torch
    except ImportError:
        return None
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    t = torch.from_numpy(params[0]).to(tdt[variant.param]).requires_grad_()
    t.grad = torch.from_numpy(grads[0]).to(tdt[variant.grad])
    o = torch.optim.AdamW([t], **ADAMW, fused=True)
    return bench.tagged(o.step, o)


def run_lowp(
    numel: int = LOWP_NUMEL,
    *,
    deadline: float | None = None,
    budget: float = 0.0,
    variants: tuple[Variant, ...] = VARIANTS,
    min_rounds: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Row]:
    """Time the low-precision AdamW variants on one tensor, round-robin with the roofline.

    Parameters
    ----------
    numel : int
        The tensor's size.
    deadline : float, optional
        The ``clock()`` value to stop at (else ``budget`` seconds from now).
    budget : float
        Seconds of timed rounds when no deadline is given.
    variants : tuple of Variant
        The cases (default: all of ``VARIANTS``).
    min_rounds : int
        Rounds run whatever the time.
    clock : callable
        Seconds, monotonic.

    Each row's ``bytes_per_param`` is what the variant moves
    (:func:`moved_bytes_per_param`); ``state_bytes_per_param`` its state's size.
    """
    from ferroptim import bench

    if deadline is None:
        deadline = clock() + budget
    fns, kept = {}, {}
    for v in variants:
        fn = make_variant(v, numel)
        if fn is not None:
            fns[v.name], kept[v.name] = fn, v
    fns[bench.ROOFLINE] = bench.roofline_fn(numel)
    try:
        times = bench.measure(fns, min_rounds=min_rounds, deadline=deadline, clock=clock)
    finally:
        bench._BASE.clear()
    roof = 12 * numel / statistics.median(times.pop(bench.ROOFLINE)) / 1e9
    rows = []
    for name, ts in times.items():
        sbpp = state_bytes_per_param(fns[name], numel)
        moved = moved_bytes_per_param(kept[name], sbpp or 0.0)
        spread = Spread.of(ts)
        rows.append(
            Row(
                f"1 x {numel}",
                "adamw",
                name,
                spread.median,
                numel,
                moved,
                roof,
                spread=spread,
                state_bytes_per_param=sbpp,
            )
        )
    return rows


def lowp_table(rows: list[Row]) -> str:
    """The Markdown table of :func:`run_lowp`'s rows, with ratios to torch fused on
    float32 and on bfloat16 params."""
    lines = [
        "| case | implementation | median ms | spread | state B/param | moved B/param | GB/s "
        "| roofline GB/s | % roofline | vs torch fused f32 | vs torch fused bf16 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_impl = {r.impl: r for r in rows}
    for r in rows:
        sb = "-" if r.state_bytes_per_param is None else f"{r.state_bytes_per_param:.3f}"
        lines.append(
            f"| {r.case} | {r.impl} | {r.median_s * 1e3:.2f} | {_spread(r)} | {sb} | "
            f"{r.bytes_per_param:.2f} | {r.gbps:.1f} | {r.roofline:.1f} | "
            f"{100 * r.gbps / r.roofline:.0f}% | {ratio(by_impl.get('torch fused f32'), r)} | "
            f"{ratio(by_impl.get('torch fused bf16'), r)} |"
        )
    return "\n".join(lines)

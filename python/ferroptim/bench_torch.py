"""AdamW step time through torch's API: ferroptim.torch against torch's fused step.

``python -m ferroptim.bench_torch`` times, side by side in one run,
``torch.optim.AdamW(fused=True)`` and ``ferroptim.torch.AdamW`` on the same
shapes of CPU float32 tensors:

- GPT-2 small's 148 param shapes (``ferroptim.bench.gpt2_small``, 124M values);
- 1000 tensors of 1k values;
- 10000 tensors of 100 values.

ferroptim is timed four ways: grads kept between steps (``zero_grad(set_to_none=False)``,
the views are reused), new grad tensors before each step (torch's default
``set_to_none=True``: a NumPy view per tensor per step), and flattened
(:func:`ferroptim.torch.flatten`: one arena, each param's links checked at
each step; and with ``check_links=False``: no per-tensor work at all) on the
two many-tensor cases. The implementations take turns (round-robin) so machine noise hits
them alike; each turn's first step is not counted (torch's OpenMP
workers spin for a while after a parallel region). The table gives medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CASES", "main", "run"]

# name -> (shapes, whether the flattened mode is timed too)
CASES: dict[str, tuple[Callable[[], list[tuple[int, ...]]], bool]] = {}


def _register() -> None:
    from ferroptim.bench import gpt2_small

    CASES["gpt2-small (148 tensors)"] = (gpt2_small, False)
    CASES["1000 x 1k"] = (lambda: [(1000,)] * 1000, True)
    CASES["10000 x 100"] = (lambda: [(100,)] * 10000, True)


_register()


def _tensors(torch: Any, shapes: list[tuple[int, ...]], seed: int) -> list[Any]:
    gen = torch.Generator().manual_seed(seed)
    # nn.Parameters, as in a model (flatten() guards their links, see its docs).
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    return params


Impl = tuple[Callable[[], None] | None, Callable[[], None]]  # (untimed prepare, timed step)


def _impls(torch: Any, shapes: list[tuple[int, ...]], flat: bool) -> dict[str, Impl]:
    """Per implementation: what to do before each step (untimed) and the step."""
    import ferroptim.torch as fot

    kw = {"lr": 1e-3, "weight_decay": 0.01}
    impls: dict[str, Impl] = {}
    t_params = _tensors(torch, shapes, 0)
    impls["torch fused"] = (None, torch.optim.AdamW(t_params, fused=True, **kw).step)
    kept = _tensors(torch, shapes, 0)
    impls["ferroptim"] = (None, fot.AdamW(kept, **kw).step)
    fresh = _tensors(torch, shapes, 0)
    pools = [[p.grad.clone() for p in fresh], [p.grad.clone() for p in fresh]]
    turn = [0]

    def new_grads() -> None:
        # New grad objects before each step, as after zero_grad(set_to_none=True)
        # and a backward: the step makes a NumPy view of each.
        turn[0] ^= 1
        for p, g in zip(fresh, pools[turn[0]]):
            p.grad = g

    impls["ferroptim, new grads"] = (new_grads, fot.AdamW(fresh, **kw).step)
    if flat:
        f_params = _tensors(torch, shapes, 0)
        fot.flatten(f_params)
        impls["ferroptim flattened"] = (None, fot.AdamW(f_params, **kw).step)
        u_params = _tensors(torch, shapes, 0)
        fot.flatten(u_params, check_links=False)
        impls["flattened, unchecked"] = (None, fot.AdamW(u_params, **kw).step)
    return impls


def run(budget: float = 20.0, burst: int = 5, cases: list[str] | None = None) -> list[dict]:
    """Median step seconds per case and implementation.

    Parameters
    ----------
    budget : float
        Seconds of timing per case (setup not counted).
    burst : int
        Steps per turn; the first of each turn is not counted.
    cases : list of str, optional
        Names in ``CASES``; all by default.
    """
    import torch

    rows = []
    for name in cases or list(CASES):
        make, flat = CASES[name]
        impls = _impls(torch, make(), flat)
        times: dict[str, list[float]] = {k: [] for k in impls}
        for prepare, step in impls.values():  # warm-up: state allocation, first touch
            if prepare is not None:
                prepare()
            step()
        end = time.perf_counter() + budget
        while time.perf_counter() < end or min(len(t) for t in times.values()) < 3:
            for key, (prepare, step) in impls.items():
                for i in range(burst):
                    if prepare is not None:
                        prepare()
                    t0 = time.perf_counter()
                    step()
                    if i:
                        times[key].append(time.perf_counter() - t0)
        medians = {k: statistics.median(v) for k, v in times.items()}
        counts = {k: len(v) for k, v in times.items()}
        rows.append({"case": name, "medians": medians, "counts": counts})
        del impls
    return rows


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


def table(rows: list[dict]) -> str:
    """A Markdown table: median step time, and torch fused / this (the speedup)."""
    keys = ["torch fused", "ferroptim", "ferroptim, new grads", "ferroptim flattened"]
    keys.append("flattened, unchecked")
    head = "| case | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for row in rows:
        m = row["medians"]
        cells = []
        for k in keys:
            if k not in m:
                cells.append("-")
            elif k == "torch fused":
                cells.append(_fmt(m[k]))
            else:
                cells.append(f"{_fmt(m[k])} ({m['torch fused'] / m[k]:.1f}x)")
        lines.append(f"| {row['case']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ferroptim.bench_torch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per case")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only this case")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and ferroptim (default: theirs)",
    )
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error("--budget: must be > 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: must be >= 1")
    import torch

    import ferroptim as fo

    if args.threads is not None:
        torch.set_num_threads(args.threads)
        fo.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), ferroptim "
        f"{fo.__version__} ({fo.get_num_threads()} threads); AdamW, float32, CPU"
    )
    print(table(run(args.budget, cases=args.case)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

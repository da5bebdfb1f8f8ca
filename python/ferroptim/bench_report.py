"""`ferroptim bench`: the command (:func:`main`) and the tables it prints.

A ratio of two medians means little when the two sets of step times overlap
or scatter widely (on a busy 2-core machine one run measured torch's fused
Adam on 100 params at 7985 µs and the next at 32 µs). So every figure comes
with its spread, and every ratio is marked:

- ``~`` the two interquartile ranges overlap: no clear difference;
- ``?`` a spread is wide (half the interquartile range over ``WIDE`` of the
  median, or fewer than ``MIN_SAMPLES`` step times): noisy, rerun with more time.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ferroptim as fo

__all__ = ["MIN_SAMPLES", "WIDE", "Row", "Spread", "legend", "main", "ratio", "scaling_table"]
__all__ += ["table"]

# A spread (half the interquartile range) over this fraction of the median is "noisy".
WIDE = 0.15
# Fewer step times than this give no usable spread.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Spread:
    """Order statistics of one implementation's step times, in seconds."""

    min: float
    q1: float
    median: float
    q3: float
    max: float
    n: int

    @classmethod
    def of(cls, times: Sequence[float]) -> Spread:
        """The spread of ``times`` (at least one value)."""
        ts = sorted(times)
        if len(ts) >= 2:
            q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive")
        else:
            q1 = q3 = ts[0]
        return cls(ts[0], q1, statistics.median(ts), q3, ts[-1], len(ts))

    @property
    def relative(self) -> float:
        """Half the interquartile range over the median: the table's ``±``."""
        return (self.q3 - self.q1) / 2 / self.median if self.median > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        return self.n < MIN_SAMPLES or self.relative > WIDE


@dataclass
class Row:
    """One implementation on one case: its median step time and what it implies."""

    case: str
    optimizer: str
    impl: str
    median_s: float
    numel: int
    bytes_per_param: float
    roofline: float
    extra: dict = field(default_factory=dict)
    spread: Spread | None = None
    # The optimizer's state over the param count (None: not known, as for a fake step).
    state_bytes_per_param: float | None = None

    @property
    def gbps(self) -> float:
        return self.bytes_per_param * self.numel / self.median_s / 1e9


def ratio(ref: Row | None, r: Row, digits: int = 2) -> str:
    """``ref``'s median over ``r``'s, marked ``~`` (spreads overlap) or ``?`` (noisy)."""
    if ref is None:
        return "-"
    text = f"{ref.median_s / r.median_s:.{digits}f}x"
    if ref is r:
        return text  # the baseline itself
    a, b = ref.spread, r.spread
    if a is None or b is None:
        return text  # no samples kept (an older caller): nothing to judge by
    if a.noisy or b.noisy:
        return text + "?"
    if a.q1 <= b.q3 and b.q1 <= a.q3:
        return "~" + text
    return text


def _spread(r: Row) -> str:
    s = r.spread
    if s is None:
        return "-"
    if s.n < MIN_SAMPLES:
        return f"? (n={s.n})"  # too few step times for a spread
    return f"±{100 * s.relative:.0f}% (n={s.n})"


def _state(r: Row) -> str:
    b = r.state_bytes_per_param
    return "-" if b is None else f"{b:.2f}"


def table(rows: list[Row]) -> str:
    """The Markdown table of ``rows`` (see the module docstring for ``~`` and ``?``)."""
    lines = [
        "| case | optimizer | implementation | median µs | spread | state B/param | Mparams/s "
        "| GB/s | roofline GB/s | % roofline | vs torch fused | vs torch foreach | vs numpy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r.case, r.optimizer, r.impl): r for r in rows}
    for r in rows:
        fused = by_key.get((r.case, r.optimizer, "torch fused"))
        foreach = by_key.get((r.case, r.optimizer, "torch foreach"))
        npy = by_key.get((r.case, r.optimizer, "numpy"))
        lines.append(
            f"| {r.case} | {r.optimizer} | {r.impl} | {r.median_s * 1e6:.1f} | {_spread(r)} | "
            f"{_state(r)} | {r.numel / r.median_s / 1e6:.0f} | {r.gbps:.1f} | {r.roofline:.1f} | "
            f"{100 * r.gbps / r.roofline:.0f}% | {ratio(fused, r)} | {ratio(foreach, r)} | "
            f"{ratio(npy, r, 1)} |"
        )
    return "\n".join(lines)


def legend(rows: list[Row]) -> str:
    """What the spread column and the marks mean, and how many figures are noisy."""
    noisy = sum(1 for r in rows if r.spread is not None and r.spread.noisy)
    lines = [
        "spread: ± half the interquartile range of the step times, over the median;",
        "        n: how many step times.",
        "vs X:   X's median over this row's (above 1: this row is faster);",
        "        ~ the two interquartile ranges overlap (no clear difference),",
        f"        ? a spread over ±{100 * WIDE:.0f}% or under {MIN_SAMPLES} step times (noisy).",
    ]
    if noisy:
        lines.append(f"note: {noisy} of {len(rows)} rows are noisy (their ratios are marked ?):")
        lines.append("      rerun with a larger --time-budget or on a quieter machine.")
    return "\n".join(lines)


def scaling_table(points: list[dict], opt: str, numel: int, bytes_per_param: int) -> str:
    """The thread-scaling table: ferroptim and torch fused, one row per thread count."""
    lines = [
        f"| threads | ferroptim {opt} ms | GB/s | torch fused ms | roofline GB/s | % roofline |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        gb = bytes_per_param * numel / p["ferroptim"] / 1e9
        roof = 12 * numel / p["roofline"] / 1e9
        tf = f"{p['torch fused'] * 1e3:.2f}" if "torch fused" in p else "-"
        lines.append(
            f"| {p['threads']} | {p['ferroptim'] * 1e3:.2f} | {gb:.1f} | {tf} | {roof:.1f} | "
            f"{100 * gb / roof:.0f}% |"
        )
    return "\n".join(lines)


# `ferroptim bench --quick`: small cases whose slowest step is a few ms, so
# the minimum rounds fit in any share of the budget and the run keeps its time.
QUICK_CASES = ("1 x 1M f32", "1000 x 1k f32", "1 x 100 f32")
QUICK_OPTIMIZERS = ("adam", "rmsprop")
QUICK_TIME_BUDGET = 20.0
DEFAULT_TIME_BUDGET = 120.0
FULL_TIME_BUDGET = 300.0
SCALING_NUMEL = 16 << 20
# The low-precision AdamW cases' tensor with --quick (else bench_lowp.LOWP_NUMEL).
QUICK_LOWP_NUMEL = 1 << 20


def main(
    optimizers: list[str],
    full: bool = False,
    budget: float | None = None,
    threads: bool = True,
    quiet: bool = False,
    *,
    time_budget: float | None = None,
    quick: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Run `ferroptim bench` and print its tables.

    Parameters
    ----------
    optimizers : list of str
        Registry names; with adamw, the low-precision AdamW cases
        (:mod:`ferroptim.bench_lowp`) run too.
    full : bool
        Add the GPT-2 small case.
    budget : float, optional
        Seconds per case (and per thread-scaling point), setup included.
    threads : bool
        Also time the thread scaling (not with ``quick``).
    quiet : bool
        No progress bar.
    time_budget : float, optional
        Seconds for the whole run; the default depends on ``quick`` and ``full``.
    quick : bool
        The small cases of ``QUICK_CASES`` only.
    clock : callable
        Seconds, monotonic (a fake one in tests).
    """
    from ferroptim import bench
    from ferroptim.bench import NUMPY_BYTES_PER_PARAM, fused_bytes_per_param

    try:
        import torch

        torch_note = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_note = "torch not installed: no torch columns"
    print(
        f"ferroptim {fo.__version__}: SIMD {fo.simd_level()}, {fo.get_num_threads()} threads; "
        f"{torch_note}; {os.cpu_count()} cores"
    )
    names = list(QUICK_CASES) if quick else [c.name for c in bench.cases(full)]
    threads = threads and not quick
    points = (os.cpu_count() or 1) if threads else 0
    # The low-precision AdamW variants (issue #14) come with adamw: one more job.
    lowp = 1 if "adamw" in optimizers else 0
    jobs = len(names) * len(optimizers)
    if time_budget is None:
        if budget is not None:
            time_budget = budget * (jobs + points + lowp)
        else:
            time_budget = (
                QUICK_TIME_BUDGET if quick else FULL_TIME_BUDGET if full else DEFAULT_TIME_BUDGET
            )
    plan = bench.Plan(time_budget, jobs + points + lowp, clock)
    print(
        f"{jobs} cases ({len(names)} shapes x {len(optimizers)} optimizers)"
        + (" + low-precision AdamW" if lowp else "")
        + (f" + thread scaling ({points} points)" if points else "")
        + f"; time budget {time_budget:.0f} s, about "
        f"{time_budget / (jobs + points + lowp):.1f} s each, setup included"
    )
    rows = bench.run(optimizers, full=full, case_names=names, quiet=quiet, plan=plan, clock=clock)
    streams = ", ".join(
        f"{opt} {NUMPY_BYTES_PER_PARAM[opt]} B/param (fused: {fused_bytes_per_param(opt)})"
        for opt in optimizers
        if opt in NUMPY_BYTES_PER_PARAM  # the others have no NumPy version
    )
    print(
        "roofline: in-place a += b over the case's bytes (12 B per float32), same run;\n"
        + (f"NumPy streams {streams}" if streams else "no NumPy version of these optimizers")
        + "\n"
    )
    print(table(rows))
    print()
    print(legend(rows))
    if lowp:
        from ferroptim import bench_lowp

        numel = QUICK_LOWP_NUMEL if quick else bench_lowp.LOWP_NUMEL
        print(
            f"\nlow precision, adamw, 1 x {numel}: state B/param from each optimizer's "
            "state_dict;\nGB/s and % roofline count the bytes each variant moves "
            "(help(ferroptim.bench_lowp)):\n"
        )
        lowp_rows = bench_lowp.run_lowp(numel, deadline=plan.next_deadline(), clock=clock)
        print(bench_lowp.lowp_table(lowp_rows))
    if threads:
        print("\nthread scaling, adam, 1 x 16M float32:\n")
        points_ = bench.scaling("adam", SCALING_NUMEL, plan=plan, clock=clock)
        print(scaling_table(points_, "adam", SCALING_NUMEL, fused_bytes_per_param("adam")))
    took = plan.elapsed()
    print(f"\ntook {took:.1f} s (time budget {time_budget:.0f} s)")
    if took > 1.2 * time_budget + 5:
        # Every implementation runs 2 warm-up steps and one round whatever the
        # budget: the slow torch paths on the large cases cannot go faster.
        print(
            "over the budget: each implementation runs at least 4 steps per case\n"
            "(the slowest take tenths of a second each, more on a busy machine);\n"
            "use --quick, fewer --optimizers or a larger --time-budget"
        )
    return 0

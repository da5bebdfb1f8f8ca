"""Plot every built-in schedule of ferroptim.schedules as small multiples.

    python scripts/plot_schedules.py [--out docs/schedules.png]

Needs matplotlib (``pip install 'ferroptim[plot]'``); renders with the Agg
backend, so no display is needed. Relative schedules are drawn with base 0.1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim import schedules as S

STEPS = 1000
EPOCHS = 60
BASE = 0.1
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "schedules.png"


def plateau_run() -> tuple[np.ndarray, np.ndarray]:
    """The lr that ReduceLROnPlateau gives over a synthetic loss with plateaus."""
    rng = np.random.default_rng(0)
    t = np.arange(STEPS)
    loss = 1.0 / (1 + t / 50) + 0.02 * np.floor(t / 250) * (t % 250 > 150)
    loss = loss * (1 + 1e-3 * rng.standard_normal(STEPS))
    opt = fo.SGD([np.zeros(1)], lr=BASE)
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=30, cooldown=20, min_lr=1e-3)
    lrs = []
    for m in loss:
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(m)
    return np.array(lrs), loss


# (title, what it draws, x values, y values or list of (label, y values))
Panel = tuple[str, str, np.ndarray, Any]


def panels() -> list[Panel]:
    t = np.arange(STEPS)
    e = np.arange(EPOCHS)
    b = BASE

    def lr(title: str, sub: str, sched: S.Schedule) -> Panel:
        return title, sub, t, sched(t)

    def bs(title: str, sub: str, sched: S.BatchSizeSchedule) -> Panel:
        return title, sub, e, sched(e)

    plateau_lr, plateau_loss = plateau_run()
    return [
        lr("constant", "value=0.1", S.constant(b)),
        lr("step_decay", "step_size=200, gamma=0.5", S.step_decay(200, 0.5, base=b)),
        lr(
            "multi_step",
            "milestones=[300, 600, 800], gamma=0.3",
            S.multi_step([300, 600, 800], 0.3, base=b),
        ),
        lr("exponential", "gamma=0.997", S.exponential(0.997, base=b)),
        lr("inverse_time", "decay_rate=0.01", S.inverse_time(0.01, base=b)),
        (
            "polynomial",
            "total_steps=800, end=0.01",
            t,
            [(f"power={p}", S.polynomial(800, p, 0.01, base=b)(t)) for p in (0.5, 1.0, 2.0)],
        ),
        lr("linear (warmup)", "start_factor=0.1, total_iters=300", S.linear(0.1, 1.0, 300, base=b)),
        lr(
            "cosine_annealing",
            "T_max=400, eta_min=0.01 (continues past T_max, as torch)",
            S.cosine_annealing(400, 0.01, base=b),
        ),
        lr("cosine_warm_restarts", "T_0=100, T_mult=2", S.cosine_warm_restarts(100, 2, base=b)),
        (
            "one_cycle",
            "max_lr=0.1, total_steps=1000",
            t,
            [
                ("two-phase cos", S.one_cycle(b, STEPS)(t)),
                ("three-phase linear", S.one_cycle(b, STEPS, 0.3, "linear", three_phase=True)(t)),
            ],
        ),
        lr("one_cycle_momentum", "base=0.85, max=0.95", S.one_cycle_momentum(STEPS)),
        lr("cyclic triangular", "0.01..0.1, up=100, down=150", S.cyclic(0.01, b, 100, 150)),
        lr(
            "cyclic triangular2",
            "0.01..0.1, step_size_up=100",
            S.cyclic(0.01, b, 100, mode="triangular2"),
        ),
        lr(
            "cyclic exp_range",
            "0.01..0.1, gamma=0.998",
            S.cyclic(0.01, b, 100, mode="exp_range", gamma=0.998),
        ),
        lr("cyclic_momentum", "0.8..0.9, step_size_up=100", S.cyclic_momentum(0.8, 0.9, 100)),
        lr(
            "lambda_schedule",
            "f(t) = 0.5 + 0.5 cos(t / 60) / (1 + t / 200)",
            S.lambda_schedule(lambda s: 0.5 + 0.5 * math.cos(s / 60) / (1 + s / 200), base=b),
        ),
        lr(
            "multiplicative",
            "f(t) = 0.7 on multiples of 150, else 1.002",
            S.multiplicative(lambda s: 0.7 if s % 150 == 0 else 1.002, base=b),
        ),
        lr(
            "sequential",
            "linear warmup 100 | exponential | step_decay, milestones=[100, 600]",
            S.sequential(
                [
                    S.linear(0.05, 1.0, 100, base=b),
                    S.exponential(0.998, base=b),
                    S.step_decay(100, 0.5, base=0.5 * b),
                ],
                [100, 600],
            ),
        ),
        lr(
            "chained",
            "step_decay(250, 0.5) x cosine_warm_restarts(125, eta_min=0.2)",
            S.chained([S.step_decay(250, 0.5, base=b), S.cosine_warm_restarts(125, eta_min=0.2)]),
        ),
        lr(
            "warmup_cosine",
            "peak=0.1, warmup=100, total=900, end=0.005",
            S.warmup_cosine(b, 100, 900, 0.005),
        ),
        (
            "ReduceLROnPlateau",
            "factor=0.5, patience=30, cooldown=20",
            t,
            [("lr", plateau_lr), ("loss / 10", plateau_loss / 10)],
        ),
        bs("step_batch_size", "32 x2 every 10 epochs, max 512", S.step_batch_size(32, 2, 10, 512)),
        bs("linear_batch_size", "32 +16 per epoch, max 512", S.linear_batch_size(32, 16, 512)),
        bs(
            "exponential_batch_size",
            "32 x1.07 per epoch, max 1024",
            S.exponential_batch_size(32, 1.07, 1024),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plotting needs matplotlib: pip install 'ferroptim[plot]'", file=sys.stderr)
        return 1

    items = panels()
    cols = 4
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    plot: Callable[..., Any]
    for ax, (title, sub, x, y) in zip(axes.flat, items, strict=False):
        is_batch = "batch_size" in title
        plot = ax.step if is_batch else ax.plot
        if isinstance(y, list):
            for label, values in y:
                plot(x, values, lw=1.3, label=label, **({"where": "post"} if is_batch else {}))
            ax.legend(fontsize=7, loc="best", frameon=False)
        else:
            plot(x, y, lw=1.3, color="C0", **({"where": "post"} if is_batch else {}))
        ax.text(0.0, 1.01, sub, transform=ax.transAxes, fontsize=7, color="0.35", va="bottom")
        ax.set_title(title + "\n", fontsize=10, fontweight="bold", loc="left")
        ax.set_xlabel("epoch" if is_batch else "step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if "momentum" not in title:
            ax.set_ylim(bottom=0)
    for ax in axes.flat[len(items) :]:
        ax.set_visible(False)
    fig.suptitle("ferroptim.schedules", fontsize=14, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

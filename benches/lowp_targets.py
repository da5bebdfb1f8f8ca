"""Issue #14's targets, measured side by side in one run: prints Markdown tables.

Parts (``--parts a,b,c,d,e``, all by default):

a. state bytes per param of AdamW on 16M params: float32, bfloat16 and int8
   state (and the bfloat16-param variants), from each optimizer's state_dict;
b. the AdamW step on one 16M tensor, ferroptim's variants against torch's
   fused AdamW on float32 and on bfloat16 params, 2 threads for both: medians
   of interleaved repetitions in one process (``ferroptim.bench.measure``: each
   round gives every variant one burst whose first step is not counted), with
   ratios and % of the ``a += b`` roofline counting the bytes each moves
   (``ferroptim.bench_lowp``);
c. memory: 200M float32 params with int8 AdamW state in a fresh subprocess,
   VmRSS after 3 steps against params + grads + the state's own bytes;
d. accuracy: ``ferroptim train`` (the digits MLP, its defaults) over 5 seeds,
   float32 against int8 state and bfloat16 params (master weights, or
   stochastic rounding without them);
e. a longer run: a 4-hidden-layer MLP regression on scikit-learn's
   make_friedman1 (>= 2000 steps) for each variant, the final training loss
   relative to float32, and the loss curves in one PNG (``--png``);
k. (not by default) each ferroptim variant's compute cost alone: one thread,
   a cache-resident tensor, ns per param.

Run from the repository root, e.g. ``nice -n 10 python benches/lowp_targets.py --parts d,e``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The training parts (d, e) multiply small matrices: a 2-thread BLAS on a loaded
# 2-core machine made them 50x slower (a 64x256 @ 256x256 float32 product: 116 us
# on one thread, 6.3 ms on two). Set before NumPy loads; the results do not change.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import ferroptim as fo  # noqa: E402
from ferroptim import bench_lowp  # noqa: E402
from ferroptim.bench_lowp import Variant  # noqa: E402

# ferroptim's threads in the training parts: the tensors are small, and ferroptim's
# results are the same bits for any thread count.
TRAIN_THREADS = 1

NUMEL = 16 << 20
MEMORY_NUMEL = 200_000_000

# --------------------------------------------------------------------------- a


def part_a(numel: int = NUMEL) -> str:
    """State bytes per param of AdamW after one step, per precision variant."""
    import ml_dtypes

    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(0)
    p32 = rng.standard_normal(numel, dtype=np.float32)
    g32 = rng.standard_normal(numel, dtype=np.float32)
    cases = [
        ("float32", "float32", {}, "8 B"),
        ("float32", "bfloat16", {"state_dtype": "bfloat16"}, "4 B"),
        ("float32", "int8", {"state_dtype": "int8"}, "<= 2.1 B"),
        ("bfloat16 + f32 master", "float32", {}, ""),
        ("bfloat16, no master", "int8", bench_lowp.SR_INT8, ""),
    ]
    lines = [
        f"| params | state | state B/param ({numel} params, AdamW) | target |",
        "|---|---|---:|---|",
    ]
    for params, state, options, target in cases:
        low = params != "float32"
        p = p32.astype(bf16) if low else p32.copy()
        g = g32.astype(bf16) if low else g32
        o = fo.AdamW([p], lr=1e-3, weight_decay=1e-2, **options)
        o.step([g])
        per = bench_lowp.state_nbytes(o) / numel
        lines.append(f"| {params} | {state} | {per:.4f} | {target} |")
        del o, p
    return "\n".join(lines)


# --------------------------------------------------------------------------- b

# torch's fused AdamW on bfloat16 params keeps bfloat16 state and rounds the
# params to nearest: ferroptim's same configuration, for the like-for-like ratio.
BF16_LIKE_TORCH = Variant(
    "ferroptim bf16, bf16 state, no master",
    "ferroptim",
    "bfloat16",
    "bfloat16",
    {"state_dtype": "bfloat16", "master_weights": False},
)

# (variant, baseline, target ratio baseline/variant) from the issue.
TARGETS = [
    ("ferroptim f32, int8 state", "torch fused f32", 1.4),
    ("ferroptim bf16, int8 state, SR", "torch fused f32", 2.0),
    ("ferroptim bf16, int8 state, SR", "torch fused bf16", 1.0),
    ("ferroptim bf16 + f32 master", "torch fused bf16", 1.0),
    (BF16_LIKE_TORCH.name, "torch fused bf16", 1.0),
]


def part_b(numel: int = NUMEL, threads: int = 2, rounds: int = 20, budget: float = 60.0) -> str:
    """Step times of the low-precision variants against torch fused (f32 and bf16)."""
    import torch

    from ferroptim.bench_report import legend

    torch.set_num_threads(threads)
    fo.set_num_threads(threads)
    rows = bench_lowp.run_lowp(
        numel, budget=budget, variants=(*bench_lowp.VARIANTS, BF16_LIKE_TORCH), min_rounds=rounds
    )
    by = {r.impl: r for r in rows}
    out = [
        f"torch {torch.__version__}, ferroptim {fo.__version__} (SIMD {fo.simd_level()}), "
        f"{threads} threads each; one tensor of {numel} params, AdamW lr 1e-3 wd 1e-2\n",
        bench_lowp.lowp_table(rows),
        "",
        "| variant | vs | ratio (baseline / variant) | target | met |",
        "|---|---|---:|---:|---|",
    ]
    for name, base, target in TARGETS:
        if name in by and base in by:
            r = by[base].median_s / by[name].median_s
            out.append(
                f"| {name} | {base} | {r:.2f}x | >= {target}x | {'yes' if r >= target else 'no'} |"
            )
    out += ["", legend(rows)]
    return "\n".join(out)


def part_k(numel: int = 1 << 16, loops: int = 50, repeats: int = 31) -> str:
    """One thread, a tensor that stays in cache: each variant's compute cost alone,
    to set beside part b's 16M times (memory and compute together)."""
    threads = fo.get_num_threads()
    fo.set_num_threads(1)
    lines = [
        f"one thread, one tensor of {numel} params (cache-resident), best of {repeats} "
        f"loops of {loops} steps\n",
        "| implementation | ns/param |",
        "|---|---:|",
    ]
    try:
        for v in (*bench_lowp.VARIANTS[2:], BF16_LIKE_TORCH):
            step = bench_lowp.make_variant(v, numel)
            for _ in range(loops):
                step()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(loops):
                    step()
                best = min(best, (time.perf_counter() - t0) / loops)
            lines.append(f"| {v.name} | {1e9 * best / numel:.2f} |")
    finally:
        fo.set_num_threads(threads)
    return "\n".join(lines)


# --------------------------------------------------------------------------- c

_MEMORY_CHILD = r"""
import sys, numpy as np, ferroptim as fo
from ferroptim import bench_lowp

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
n, steps = int(sys.argv[1]), int(sys.argv[2])
base = status("VmRSS")
rng = np.random.default_rng(0)
p = rng.standard_normal(n, dtype=np.float32)
g = rng.standard_normal(n, dtype=np.float32)
o = fo.AdamW([p], lr=1e-3, weight_decay=1e-2, state_dtype="int8")
for _ in range(steps):
    o.step([g])
rss, hwm = status("VmRSS"), status("VmHWM")
state = bench_lowp.state_nbytes(o)  # after the reading: the state_dict's copies are not counted
print(base, rss, hwm, p.nbytes, g.nbytes, state)
"""


def part_c(numel: int = MEMORY_NUMEL, steps: int = 3) -> str:
    """RSS of a fresh process holding ``numel`` float32 params, grads and int8 AdamW state."""
    res = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(numel), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    base, rss, hwm, p, g, state = (int(x) for x in res.stdout.split())
    own = p + g + state
    mb = 1e6
    return "\n".join(
        [
            f"| {numel} float32 params, AdamW state_dtype=int8, after {steps} steps | MB |",
            "|---|---:|",
            f"| params | {p / mb:.1f} |",
            f"| grads | {g / mb:.1f} |",
            f"| state (codes + scales, {state / numel:.4f} B/param) | {state / mb:.1f} |",
            f"| params + grads + state | {own / mb:.1f} |",
            f"| VmRSS before allocating (interpreter, NumPy, ferroptim) | {base / mb:.1f} |",
            f"| VmRSS after {steps} steps | {rss / mb:.1f} |",
            f"| VmHWM (peak RSS) | {hwm / mb:.1f} |",
            f"| excess: RSS / (params + grads + state) - 1 | {100 * (rss / own - 1):.1f}% |",
            f"| excess without the interpreter: (RSS - before) / own - 1 "
            f"| {100 * ((rss - base) / own - 1):.1f}% |",
            f"| peak excess: HWM / own - 1 | {100 * (hwm / own - 1):.1f}% |",
            "",
            "target: excess < 10%",
        ]
    )


# --------------------------------------------------------------------------- d

# name -> extra `ferroptim train` flags
TRAIN_VARIANTS = {
    "float32": [],
    "f32 params, int8 state": ["--opt", "state_dtype=int8"],
    "bf16 params + f32 master": ["--dtype", "bfloat16"],
    "bf16 params, SR, no master": [
        *("--dtype", "bfloat16", "--opt", "master_weights=false"),
        *("--opt", "stochastic_rounding=true"),
    ],
    "bf16 params, SR, no master, int8 state": [
        *("--dtype", "bfloat16", "--opt", "master_weights=false"),
        *("--opt", "stochastic_rounding=true", "--opt", "state_dtype=int8"),
    ],
}
# Points of accuracy a variant may lose against float32 (the targets).
ACCURACY_TARGET = {
    "f32 params, int8 state": 0.5,
    "bf16 params + f32 master": 0.5,
    "bf16 params, SR, no master": 1.0,
}


def part_d(seeds: int = 5, verbose: bool = True) -> str:
    """Test accuracy of ``ferroptim train`` (its digits MLP) per variant, mean of ``seeds``."""
    acc: dict[str, list[float]] = {}
    for name, flags in TRAIN_VARIANTS.items():
        acc[name] = []
        for seed in range(seeds):
            cmd = [sys.executable, "-m", "ferroptim", "train", "--verbose", "0"]
            cmd += ["--seed", str(seed), *flags]
            env = {**os.environ, "FERROPTIM_NUM_THREADS": str(TRAIN_THREADS)}
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            m = re.search(r"test accuracy: ([0-9.]+)", res.stdout)
            if m is None:
                raise RuntimeError(f"no test accuracy in: {res.stdout!r} {res.stderr!r}")
            acc[name].append(100 * float(m.group(1)))
            if verbose:
                print(f"  d: {name} seed {seed}: {acc[name][-1]:.2f}", file=sys.stderr)
    ref = statistics.mean(acc["float32"])
    lines = [
        "`ferroptim train` defaults (digits, MLP 256,128, dropout 0.2, AdamW, cosine, "
        f"60 epochs, batch 32); test accuracy %, seeds 0..{seeds - 1}\n",
        "| variant | flags | per seed | mean | vs float32 (points) | target | met |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for name, flags in TRAIN_VARIANTS.items():
        mean = statistics.mean(acc[name])
        diff = mean - ref
        tgt = ACCURACY_TARGET.get(name)
        target = f"within {tgt}" if tgt else ""
        met = "" if tgt is None else ("yes" if diff >= -tgt else "no")
        per = ", ".join(f"{a:.2f}" for a in acc[name])
        shown = f"`{' '.join(flags)}`" if flags else "(defaults)"
        lines.append(f"| {name} | {shown} | {per} | {mean:.2f} | {diff:+.2f} | {target} | {met} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- e

LONG_VARIANTS = {
    "float32": ("float32", {}),
    "f32 params, int8 state": ("float32", {"state_dtype": "int8"}),
    "bf16 params + f32 master": ("bfloat16", {}),
    "bf16 params, SR, no master": (
        "bfloat16",
        {"master_weights": False, "stochastic_rounding": True},
    ),
    "bf16 params, SR, no master, int8 state": ("bfloat16", bench_lowp.SR_INT8),
}


def _friedman(path: Path, n: int, noise: float) -> float:
    """scikit-learn's make_friedman1 (10 features, 5 informative), y standardized;
    returns the noise floor: the MSE of the noiseless function on the saved targets."""
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=n, n_features=10, noise=noise, random_state=0)
    # The same random_state draws the same X first, then the noise: the clean targets.
    _, clean = make_friedman1(n_samples=n, n_features=10, noise=0.0, random_state=0)
    mean, std = y.mean(), y.std()
    np.savez(path, X=X, y=(y - mean) / std)
    return float(np.mean(((y - clean) / std) ** 2))


def long_run(dataset: Path, dtype: str, opt: dict, seed: int, epochs: int) -> tuple:
    """One run through the Trainer: per-step losses and the final full training-set loss."""
    from ferroptim.train import TrainConfig, build_trainer

    config = TrainConfig(
        dataset=str(dataset),
        hidden="256,256,256,256",
        dropout=0.0,
        epochs=epochs,
        batch_size=64,
        seed=seed,
        dtype=dtype,
        opt=dict(opt),
        lr=1e-3,
        verbose=0,
    )
    trainer, data = build_trainer(config)
    trainer.fit(data.X_train, data.y_train, epochs=epochs)
    steps = np.array([s["loss"] for s in trainer.history.steps])
    final = trainer.evaluate(data.X_train, data.y_train)["loss"]
    return steps, final, len(data.X_train)


def part_e(png: Path | None, seeds: int = 3, min_steps: int = 2000, verbose: bool = True) -> str:
    """Final training loss of each variant relative to float32; the curves to ``png``."""
    # Enough rows that 2000 steps (5 epochs) cannot memorize the noise: the loss
    # stays above a known floor (on 2,800 rows every variant reached 1e-5, too
    # small to compare).
    n, noise, batch = 40000, 0.5, 64
    n_train = n - 2 * round(0.15 * n)
    epochs = -(-min_steps // -(-n_train // batch))
    curves: dict[str, list[np.ndarray]] = {}
    finals: dict[str, list[float]] = {}
    threads = fo.get_num_threads()
    fo.set_num_threads(TRAIN_THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "friedman1.npz"
        floor = _friedman(path, n, noise)
        for name, (dtype, opt) in LONG_VARIANTS.items():
            curves[name], finals[name] = [], []
            for seed in range(seeds):
                t0 = time.perf_counter()
                steps, final, _ = long_run(path, dtype, opt, seed, epochs)
                curves[name].append(steps)
                finals[name].append(final)
                if verbose:
                    print(
                        f"  e: {name} seed {seed}: {len(steps)} steps, final train loss "
                        f"{final:.5f} ({time.perf_counter() - t0:.0f} s)",
                        file=sys.stderr,
                    )
    fo.set_num_threads(threads)
    nsteps = len(curves["float32"][0])
    ref = statistics.mean(finals["float32"])
    lines = [
        f"make_friedman1 (n={n}, noise {noise}, y standardized; {n_train} training rows), MLP "
        f"256,256,256,256 relu, AdamW lr 1e-3 cosine, batch {batch}, {epochs} epochs = "
        f"{nsteps} steps; final loss = MSE over the whole training split after training; "
        f"seeds 0..{seeds - 1}. Noise floor (MSE of the noiseless function): {floor:.5f}; "
        "excess = loss - floor\n",
        "| variant | final train loss per seed | mean | relative to float32 | target | met "
        "| excess over floor | excess relative to float32 |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for name in LONG_VARIANTS:
        mean = statistics.mean(finals[name])
        rel = mean / ref
        per = ", ".join(f"{f:.5f}" for f in finals[name])
        met = "" if name == "float32" else ("yes" if abs(rel - 1) <= 0.05 else "no")
        target = "" if name == "float32" else "within 5%"
        excess = (mean - floor) / (ref - floor)
        lines.append(
            f"| {name} | {per} | {mean:.5f} | {rel:.3f} | {target} | {met} | "
            f"{mean - floor:.5f} | {excess:.2f} |"
        )
    if png is not None:
        _plot(curves, png, nsteps, floor)
        lines.append(f"\ncurves: {png}")
    return "\n".join(lines)


def _plot(curves: dict[str, list[np.ndarray]], png: Path, nsteps: int, floor: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, nsteps // 50)  # a moving average over 2% of the run
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(12, 4.5))
    mean = {k: np.mean(np.stack(v), axis=0) for k, v in curves.items()}
    kernel = np.ones(window) / window
    smooth = {k: np.convolve(v, kernel, mode="valid") for k, v in mean.items()}
    x = np.arange(window, nsteps + 1)
    for i, (name, y) in enumerate(smooth.items()):
        ax.plot(x, y, label=name, lw=1.2, color=f"C{i}")
        if name != "float32":
            rel.plot(x, y / smooth["float32"], label=name, lw=1.2, color=f"C{i}")
    ax.axhline(floor, color="gray", lw=0.8, ls=":", label="noise floor")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (MSE), mean of seeds, {window}-step moving average")
    ax.legend(fontsize=8)
    ax.set_title("AdamW on make_friedman1, MLP 4 x 256")
    rel.axhline(1.0, color="k", lw=0.8)
    for band in (0.95, 1.05):
        rel.axhline(band, color="gray", lw=0.6, ls="--")
    rel.set_xlabel("step")
    rel.set_ylabel("loss / float32 loss")
    rel.set_title("relative to float32 (dashed: ±5%)")
    rel.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def machine() -> str:
    load = os.getloadavg()
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at start; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, ferroptim {fo.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default="a,b,c,d,e", help="comma-separated among a,b,c,d,e (and k)"
    )
    parser.add_argument("--numel", type=int, default=NUMEL, help="params of parts a and b")
    parser.add_argument("--threads", type=int, default=2, help="threads of part b, both libraries")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds of part b")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of part b's timing")
    parser.add_argument("--memory-numel", type=int, default=MEMORY_NUMEL, help="params of c")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of part d")
    parser.add_argument("--long-seeds", type=int, default=3, help="seeds of part e")
    parser.add_argument("--steps", type=int, default=2000, help="at least this many steps in e")
    parser.add_argument("--png", type=Path, default=Path("docs/lowp_curves.png"), help="e's plot")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in "abcdek" or len(p) != 1]
    if bad:
        parser.error(f"--parts: unknown part(s) {bad}; choose among a,b,c,d,e,k")
    print(f"machine: {machine()}\n")
    titles = {
        "a": "(a) state bytes per param",
        "b": "(b) AdamW step, one tensor",
        "c": "(c) memory",
        "d": "(d) accuracy, digits MLP (`ferroptim train`)",
        "e": "(e) longer run",
        "k": "(k) compute cost in cache, one thread",
    }
    for part in parts:
        t0 = time.perf_counter()
        if part == "a":
            text = part_a(args.numel)
        elif part == "b":
            text = part_b(args.numel, args.threads, args.rounds, args.budget)
        elif part == "c":
            text = part_c(args.memory_numel)
        elif part == "d":
            text = part_d(args.seeds)
        elif part == "k":
            text = part_k()
        else:
            text = part_e(args.png, args.long_seeds, args.steps)
        print(f"### {titles[part]}\n\n{text}\n\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

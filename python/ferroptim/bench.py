"""`ferroptim bench`: ferroptim against torch.optim and NumPy on this machine.

Timing. The implementations of a case take turns (round-robin), so machine
noise hits them alike, and the table gives medians with their spread (see
:mod:`ferroptim.bench_report`). A :class:`Plan` shares a total time budget
out over the cases as they run, setup and warm-up included. Each turn is a short
burst of steps whose first step is not counted: torch's OpenMP workers
busy-wait for a few milliseconds after each parallel region, and without
the discarded step whatever ran right after torch paid for its spinning
threads (measured: ferroptim's 16M Adam step went from 8.5 ms to 11 ms).

Bandwidth. Every case also times an in-place ``a += b`` over as many
elements as the case has params, in the case's dtype, on ferroptim's pool
(12 bytes per float32 element), in the same round-robin: the roofline the
"% roofline" column divides by. A case small enough to live in cache gets a
cache-resident roofline.

Bytes moved per param per step (float32; double them for float64), each
array read once and written once:

=================  =====================================  =====
optimizer          arrays                                 bytes
=================  =====================================  =====
SGD (momentum)     read p, g, buf; write p, buf           20
Adam / AdamW       read p, g, m, v; write p, m, v         28
RMSprop            read p, g, sq; write p, sq             20
=================  =====================================  =====

Every optimizer of :mod:`ferroptim.registry` can be timed; its byte count comes
from the state arrays it keeps (:func:`fused_bytes_per_param`). The NumPy
column exists for the four above; torch's columns for the optimizers torch.optim
has, in the modes it has.

Every row also shows the state bytes per param of the optimizer it timed
(its state_dict's arrays over the param count; 8 for float32 Adam). With
adamw among the optimizers, ``main`` adds the low-precision AdamW cases of
issue #14 (bfloat16 and int8 state, bfloat16 params) beside torch's fused
AdamW on float32 and bfloat16 params: see :mod:`ferroptim.bench_lowp`.

The NumPy implementation cannot fuse its ufuncs: each one streams whole
arrays through memory, so it moves ``NUMPY_BYTES_PER_PARAM`` bytes per param
(counted ufunc by ufunc in :func:`numpy_impl`) on one thread. On a
bandwidth-bound step the ratio of the two byte counts bounds how much faster
any fused kernel can be.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim import registry
from ferroptim.bench_lowp import state_bytes_per_param
from ferroptim.bench_numpy import NUMPY_BYTES_PER_PARAM, numpy_impl  # noqa: F401  (re-exported)
from ferroptim.bench_report import Row, Spread, legend, main, scaling_table, table

__all__ = ["Case", "Plan", "Row", "Spread", "cases", "legend", "main", "measure", "run"]
__all__ += ["scaling", "scaling_table", "table"]

# The optimizers timed when none are named (every registry name may be named).
DEFAULT_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


@functools.cache
def fused_bytes_per_param(opt: str) -> int:
    """Float32 bytes a fused step moves per param: p and g read, p written, and each
    state array the optimizer keeps (with the bench's settings) read and written."""
    info = registry.get(opt)
    o = info.cls([np.zeros(1, np.float32)], lr=1e-3, **_SETTINGS.get(opt, {}))
    o.step([np.ones(1, np.float32)])
    arrays = sum(isinstance(v, np.ndarray) for v in o.state_dict()["state"][0].values())
    return 4 * (3 + 2 * arrays)


# ---------------------------------------------------------------- shapes


def gpt2_small() -> list[tuple[int, ...]]:
    """GPT-2 small (124M): token and position embeddings, 12 blocks, final norm."""
    d, shapes = 768, [(50257, 768), (1024, 768)]
    for _ in range(12):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def resnet50() -> list[tuple[int, ...]]:
    """ResNet-50 (25.6M): conv weights, batch-norm scales and shifts, the fc layer."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            cout = 4 * width
            shapes += [(width, cin, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(cout, width, 1, 1), (cout,), (cout,)]
            if b == 0:
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
            cin = cout
    return shapes + [(1000, 2048), (1000,)]


@dataclass
class Case:
    name: str
    shapes: list[tuple[int, ...]]
    dtype: Any = np.float32

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def cases(full: bool) -> list[Case]:
    out = [
        Case("1 x 16M f32", [(16 << 20,)]),
        Case("1 x 8M f64", [(8 << 20,)], np.float64),
        Case("1 x 1M f32", [(1 << 20,)]),
        Case("1000 x 1k f32", [(1000,)] * 1000),
        Case("10000 x 100 f32", [(100,)] * 10000),
        Case("1 x 100 f32", [(100,)]),
        Case("ResNet-50 f32", resnet50()),
    ]
    if full:
        out.append(Case("GPT-2 small f32", gpt2_small()))
    return out


# ---------------------------------------------------------------- optimizers

# The settings of the timed steps: lr 1e-3 for every optimizer, plus these.
_SETTINGS: dict[str, dict[str, float]] = {"sgd": {"momentum": 0.9}, "adamw": {"weight_decay": 1e-2}}
HYPER = {name: {"lr": 1e-3, **_SETTINGS.get(name, {})} for name in registry.names()}
FO_CLASS = {name: info.cls.__name__ for name, info in registry.optimizers().items()}
# The default optimizers' counts (sgd 20, adam 28, adamw 28, rmsprop 20); any
# other: fused_bytes_per_param.
BYTES_PER_PARAM = {name: fused_bytes_per_param(name) for name in DEFAULT_OPTIMIZERS}


# The random arrays of the case being timed: drawing them once and copying
# them for each implementation saves seconds of setup on the large cases.
_BASE: dict[tuple, tuple[list[np.ndarray], list[np.ndarray]]] = {}


def _data(case: Case, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fresh copies of the case's random params and grads (the same for every call)."""
    key = (case.name, np.dtype(case.dtype).str, case.numel, len(case.shapes), seed)
    if key not in _BASE:
        _BASE.clear()  # one case at a time: the large ones take gigabytes
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(s).astype(case.dtype) for s in case.shapes]
        grads = [rng.standard_normal(s).astype(case.dtype) for s in case.shapes]
        _BASE[key] = (params, grads)
    params, grads = _BASE[key]
    return [p.copy() for p in params], [g.copy() for g in grads]


def tagged(step: Callable[[], None], optimizer: Any) -> Callable[[], None]:
    """``step``, carrying the optimizer whose state the "state B/param" column counts."""

    def run() -> None:
        step()

    run.optimizer = optimizer  # type: ignore[attr-defined]
    return run


def fo_list(opt: str, case: Case) -> Callable[[], None]:
    params, grads = _data(case)
    o = registry.get(opt).cls(params, **HYPER[opt])
    return tagged(lambda: o.step(grads), o)


def fo_arena(opt: str, case: Case) -> Callable[[], None]:
    params, grads = _data(case)
    arena = fo.ParamArena.from_arrays({f"p{i}": p for i, p in enumerate(params)})
    for i, g in enumerate(grads):
        arena.grads[f"p{i}"][...] = g
    o = registry.get(opt).cls(arena, **HYPER[opt])
    return tagged(o.step, o)


def torch_impl(opt: str, case: Case, mode: str) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    # ferroptim's optimizers are torch's under the same class name and keywords.
    cls = getattr(torch.optim, registry.get(opt).cls.__name__, None)
    if cls is None:
        return None  # torch.optim has none of that name (Lion)
    params, grads = _data(case)
    tensors = []
    for p, g in zip(params, grads):
        t = torch.from_numpy(p).requires_grad_()
        t.grad = torch.from_numpy(g)
        tensors.append(t)
    flags = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    try:
        o = cls(tensors, **HYPER[opt], **flags[mode])
    except (RuntimeError, TypeError, ValueError):
        return None  # a mode torch lacks for it (no fused RMSprop)
    return tagged(o.step, o)


ROOFLINE = "roofline a += b"

IMPLS: dict[str, Callable[[str, Case], Callable[[], None] | None]] = {
    "ferroptim": fo_list,
    "ferroptim arena": fo_arena,
    "torch loop": lambda o, c: torch_impl(o, c, "loop"),
    "torch foreach": lambda o, c: torch_impl(o, c, "foreach"),
    "torch fused": lambda o, c: torch_impl(o, c, "fused"),
    "numpy": numpy_impl,
}


# ---------------------------------------------------------------- timing

Clock = Callable[[], float]


def roofline_fn(numel: int) -> Callable[[], None]:
    """An in-place float32 ``a += b`` over ``numel`` elements on ferroptim's pool."""
    a = np.zeros(numel, np.float32)
    b = np.ones(numel, np.float32)
    return lambda: fo._core.stream_add(a, b)


def roofline_gbps(numel: int, budget: float = 0.5) -> float:
    """GB/s of :func:`roofline_fn` (12 bytes per element)."""
    times = measure({"add": roofline_fn(numel)}, budget)["add"]
    return 12 * numel / statistics.median(times) / 1e9


# A burst lasts at least this long (short steps run several times per turn).
_BURST_S = 2e-3
_MAX_BURST = 64
_MAX_ROUNDS = 200


def measure(
    fns: dict[str, Callable[[], None]],
    budget: float = 0.0,
    min_rounds: int = 5,
    *,
    deadline: float | None = None,
    clock: Clock = time.perf_counter,
) -> dict[str, list[float]]:
    """Round-robin timing in bursts.

    Parameters
    ----------
    fns : dict
        Name to a function that runs one step.
    budget : float
        Seconds of timed rounds after the warm-up (ignored when ``deadline`` is given).
    min_rounds : int
        Rounds run whatever the time: the fewest samples a spread needs.
    deadline : float, optional
        The ``clock()`` value to stop at, warm-up included.
    clock : callable
        Seconds, monotonic (a fake one in tests).

    Every round gives each function one burst; the first step of a burst is
    run but not counted (see the module docstring). Returns each function's
    counted step times in seconds.
    """
    bursts = {}
    for name, f in fns.items():
        f()  # warm up (first-touch allocation of state)
        t0 = clock()
        f()
        once = max(clock() - t0, 1e-7)
        bursts[name] = max(1, min(_MAX_BURST, int(_BURST_S / once)))
    if deadline is None:
        deadline = clock() + budget
    times: dict[str, list[float]] = {k: [] for k in fns}
    rounds = 0
    while rounds < min_rounds or (clock() < deadline and rounds < _MAX_ROUNDS):
        for name, f in fns.items():
            f()  # absorbs the previous implementation's idle-spinning threads
            for _ in range(bursts[name]):
                t0 = clock()
                f()
                times[name].append(clock() - t0)
        rounds += 1
    return times


class Plan:
    """A total time budget shared out over jobs as they run.

    Each job may run until :meth:`next_deadline`: an equal share of the time
    left, so setup, warm-up and any overrun of one job come out of the jobs
    after it, and the run ends near ``total`` seconds after it started
    (later only if the minimum rounds of the slowest steps do not fit).
    """

    def __init__(self, total: float, jobs: int, clock: Clock = time.perf_counter) -> None:
        self.total, self.jobs_left, self.clock = total, jobs, clock
        self.start = clock()

    def next_deadline(self) -> float:
        now = self.clock()
        left = max(self.start + self.total - now, 0.0)
        share = left / max(self.jobs_left, 1)
        self.jobs_left = max(self.jobs_left - 1, 0)
        return now + share

    def elapsed(self) -> float:
        return self.clock() - self.start


def _progress(total: int, quiet: bool):
    """A tqdm bar in a terminal; one line per case in a log (no carriage returns)."""
    if not quiet and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            return tqdm(total=total, desc="bench", unit="case", file=sys.stderr)
        except ImportError:
            pass

    class Lines:
        n = 0
        case = ""

        def update(self, k: int = 1) -> None:
            self.n += k
            if not quiet:
                print(f"bench: {self.n}/{total} {self.case}".rstrip(), file=sys.stderr, flush=True)

        def set_postfix_str(self, s: str) -> None:
            self.case = s

        def close(self) -> None:
            pass

    return Lines()


def run(
    optimizers: Iterable[str] = ("sgd", "adam", "adamw", "rmsprop"),
    full: bool = False,
    budget: float = 1.0,
    case_names: Iterable[str] | None = None,
    impls: Iterable[str] | None = None,
    quiet: bool = False,
    *,
    time_budget: float | None = None,
    plan: Plan | None = None,
    clock: Clock = time.perf_counter,
    min_rounds: int = 1,
) -> list[Row]:
    """Time each implementation on each case and optimizer.

    Parameters
    ----------
    optimizers : iterable of str
        Among sgd, adam, adamw, rmsprop.
    full : bool
        Add the GPT-2 small case.
    budget : float
        Seconds per case, setup included (used when neither ``time_budget`` nor ``plan``).
    case_names : iterable of str, optional
        Only these cases (names as in :func:`cases`).
    impls : iterable of str, optional
        Only these implementations (keys of ``IMPLS``).
    quiet : bool
        No progress bar.
    time_budget : float, optional
        Seconds for the whole run, shared out over the cases as they run.
    plan : Plan, optional
        A budget shared with other work (``main`` shares it with the thread scaling).
    clock : callable
        Seconds, monotonic (a fake one in tests).
    min_rounds : int
        Rounds each case runs even past its share of the time. One by default:
        on a busy machine the slow torch paths can take seconds a step, and a
        run that keeps its time with a few figures marked noisy beats one that
        runs for many minutes.
    """
    chosen = [c for c in cases(full) if case_names is None or c.name in set(case_names)]
    impl_names = list(impls) if impls is not None else list(IMPLS)
    optimizers = list(optimizers)
    jobs = len(chosen) * len(optimizers)
    if plan is None:
        total = time_budget if time_budget is not None else budget * jobs
        plan = Plan(total, jobs, clock)
    rows: list[Row] = []
    bar = _progress(jobs, quiet)
    try:
        for case in chosen:
            for opt in optimizers:
                bar.set_postfix_str(f"{case.name} {opt}")
                deadline = plan.next_deadline()  # before setup: setup counts
                fns = {}
                for name in impl_names:
                    fn = IMPLS[name](opt, case)
                    if fn is not None:
                        fns[name] = fn
                # Same bytes as the case's params: float64 cases stream twice the floats.
                width = np.dtype(case.dtype).itemsize // 4
                fns[ROOFLINE] = roofline_fn(case.numel * width)
                times = measure(fns, min_rounds=min_rounds, deadline=deadline, clock=clock)
                roof = 12 * width * case.numel / statistics.median(times.pop(ROOFLINE)) / 1e9
                bpp = fused_bytes_per_param(opt) * width
                for name, ts in times.items():
                    rows.append(
                        Row(
                            case.name,
                            opt,
                            name,
                            statistics.median(ts),
                            case.numel,
                            bpp,
                            roof,
                            spread=Spread.of(ts),
                            state_bytes_per_param=state_bytes_per_param(fns[name], case.numel),
                        )
                    )
                del fns
                bar.update(1)
    finally:
        _BASE.clear()
        bar.close()
    return rows


def scaling(
    opt: str = "adam",
    numel: int = 16 << 20,
    budget: float = 1.0,
    *,
    plan: Plan | None = None,
    clock: Clock = time.perf_counter,
) -> list[dict]:
    """ferroptim and torch fused on one tensor, threads 1..all cores (``budget`` s each)."""
    before = fo.get_num_threads()
    cores = os.cpu_count() or 1
    if plan is None:
        plan = Plan(budget * cores, cores, clock)
    out = []
    try:
        import torch
    except ImportError:
        torch = None
    torch_before = torch.get_num_threads() if torch else None
    try:
        case = Case(f"1 x {numel}", [(numel,)])
        for n in range(1, cores + 1):
            deadline = plan.next_deadline()
            fo.set_num_threads(n)
            if torch:
                torch.set_num_threads(n)
            fns = {"ferroptim": fo_list(opt, case), "roofline": roofline_fn(numel)}
            tf = torch_impl(opt, case, "fused")
            if tf is not None:
                fns["torch fused"] = tf
            times = measure(fns, min_rounds=1, deadline=deadline, clock=clock)
            out.append({"threads": n, **{k: statistics.median(v) for k, v in times.items()}})
    finally:
        _BASE.clear()
        fo.set_num_threads(before)
        if torch:
            torch.set_num_threads(torch_before)
    return out

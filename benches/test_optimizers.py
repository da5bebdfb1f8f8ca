"""One optimizer step per benchmark round, for every case and implementation.

The cases, implementations and the bytes each optimizer moves per param are
defined once, in :mod:`ferroptim.bench` (also behind `ferroptim bench`).
"""

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import bench

CASES = {c.name: c for c in bench.cases(full=False)}
OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop"]


@pytest.mark.parametrize("impl", list(bench.IMPLS))
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("case", list(CASES))
def test_step(benchmark, case, opt, impl):
    spec = CASES[case]
    if impl == "numpy" and spec.numel > (4 << 20) and opt != "adam":
        pytest.skip("NumPy on big tensors: measured for adam only, to keep the run short")
    fn = bench.IMPLS[impl](opt, spec)
    if fn is None:
        pytest.skip(f"{impl} not available for {opt} (torch missing, or no fused kernel)")
    benchmark.group = f"{case} {opt}"
    bpp = bench.BYTES_PER_PARAM[opt] * (2 if spec.dtype == np.float64 else 1)
    benchmark.extra_info.update(numel=spec.numel, bytes_per_param=bpp)
    rounds = 5 if spec.numel > (4 << 20) else 50
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    benchmark.extra_info["GB/s (median)"] = bpp * spec.numel / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("numel", [1 << 20, 16 << 20])
def test_roofline(benchmark, numel):
    """The bandwidth yardstick: in-place a += b (12 B/elem) on ferroptim's pool."""
    a = np.zeros(numel, np.float32)
    b = np.ones(numel, np.float32)
    benchmark.group = "roofline a += b"
    benchmark.pedantic(lambda: fo._core.stream_add(a, b), rounds=20, warmup_rounds=1)
    benchmark.extra_info["GB/s (median)"] = 12 * numel / benchmark.stats["median"] / 1e9

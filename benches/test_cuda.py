"""The CUDA path under pytest-benchmark: `pytest benches/test_cuda.py --benchmark-group-by=group`.

Skipped without a GPU. Each round is one step followed by a device
synchronize, so the time is the step's, not its launch's. The same cases and
implementations as `ferroptim bench --cuda` (see :mod:`ferroptim.bench_cuda`),
which also reports the bandwidth roofline.
"""

import pytest

from ferroptim import cuda

if not cuda.available():
    pytest.skip("no GPU here: needs CuPy and a CUDA device", allow_module_level=True)

import cupy  # noqa: E402
import numpy as np  # noqa: E402

from ferroptim import bench  # noqa: E402
from ferroptim import bench_cuda as cuda_bench  # noqa: E402

CASES = {c.name: c for c in cuda_bench.cases()}
IMPLS = {
    "ferroptim": lambda o, c: cuda_bench._ferroptim("cupy", o, c),
    "ferroptim arena": lambda o, c: cuda_bench._ferroptim_arena("cupy", o, c),
    "torch": cuda_bench._torch,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_step(benchmark, case, opt, impl):
    spec = CASES[case]
    fn = IMPLS[impl](opt, spec)
    if fn is None:
        pytest.skip("torch with CUDA is not installed")
    device = cupy.cuda.Device()

    def step() -> None:
        fn()
        device.synchronize()

    benchmark.group = f"cuda {case} {opt}"
    width = np.dtype(spec.dtype).itemsize // 4
    bpp = bench.BYTES_PER_PARAM[opt] * width
    benchmark.pedantic(step, rounds=20, warmup_rounds=2, iterations=1)
    benchmark.extra_info["GB/s (median)"] = bpp * spec.numel / benchmark.stats["median"] / 1e9

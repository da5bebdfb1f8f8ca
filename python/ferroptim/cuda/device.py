"""Where the CUDA engine's arrays live and how its kernels launch.

:class:`CupyDevice` is the real thing: CuPy arrays, kernels compiled once by
NVRTC through ``cupy.RawModule`` and cached. Its stand-in where no GPU exists,
:class:`ferroptim.cuda.emulate.EmulatedDevice`, lives in ``emulate``, which
imports this module (for the kernel source) and never the other way round.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CupyDevice", "KERNEL_SOURCE", "NVRTC_OPTIONS", "THREADS"]

KERNEL_SOURCE = Path(__file__).with_name("kernels.cu")
# Threads per block; kernels.cu sizes its shared memory for at most 256.
THREADS = 256
# Bitwise the CPU kernels' arithmetic: no fused multiply-add contraction, and
# IEEE division and square root (NVRTC's defaults, stated for the reader).
NVRTC_OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--std=c++14")


class CupyDevice:
    """CuPy arrays on one GPU."""

    emulated = False

    def __init__(self, device_id: int) -> None:
        import cupy

        self.xp = cupy
        self.id = device_id
        self.array_type = cupy.ndarray

    @staticmethod
    def device_of(array: Any) -> int:
        return int(array.device.id)

    @staticmethod
    def ptr(array: Any) -> int:
        return int(array.data.ptr)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        with self.xp.cuda.Device(self.id):
            return self.xp.zeros(shape, dtype)

    def to_device(self, host: np.ndarray) -> Any:
        with self.xp.cuda.Device(self.id):
            return self.xp.asarray(host)

    def to_host(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def contiguous(self, array: Any) -> Any:
        with self.xp.cuda.Device(self.id):
            return self.xp.ascontiguousarray(array)

    def launch(self, kernel: str, grid: int, threads: int, args: tuple) -> None:
        if grid == 0:
            return
        with self.xp.cuda.Device(self.id):
            _cupy_module(self.id).get_function(kernel)((grid,), (threads,), args)


@functools.cache
def _cupy_module(device_id: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=KERNEL_SOURCE.read_text(), options=NVRTC_OPTIONS)

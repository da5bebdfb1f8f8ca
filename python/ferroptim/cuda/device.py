"""Where the CUDA engine's arrays live and how its kernels launch.

:class:`CupyDevice` is the real thing: CuPy arrays, kernels compiled once by
NVRTC through ``cupy.RawModule`` and cached. :class:`EmulatedDevice` runs the
same ``kernels.cu`` compiled as host C++ (see :mod:`ferroptim.cuda.emulate`),
so the engine and the kernels' arithmetic can be tested where no GPU exists.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CupyDevice", "EmulatedDevice", "KERNEL_SOURCE", "THREADS"]

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


class EmulatedDevice:
    """Host arrays standing in for device memory; blocks run one by one, one thread each."""

    emulated = True
    id = 0

    def __init__(self) -> None:
        from ferroptim.cuda import emulate

        self.xp = np
        self._lib = emulate.library()
        self.array_type = self._array_type = emulate.DeviceArray

    @staticmethod
    def device_of(array: Any) -> int:
        return 0

    @staticmethod
    def ptr(array: Any) -> int:
        return int(array.ctypes.data)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return np.zeros(shape, dtype).view(self._array_type)

    def to_device(self, host: np.ndarray) -> Any:
        return np.array(host, copy=True).view(self._array_type)

    def to_host(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True).view(np.ndarray)

    def contiguous(self, array: Any) -> Any:
        return np.ascontiguousarray(array).view(self._array_type)

    def launch(self, kernel: str, grid: int, threads: int, args: tuple) -> None:
        fn = getattr(self._lib, kernel)
        cargs = [_c_arg(a) for a in args]
        for block in range(grid):
            self._lib.fo_emu_set_block(block, grid)
            fn(*cargs)


def _c_arg(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.int32):
        return ctypes.c_int(int(a))
    if isinstance(a, np.int64):
        return ctypes.c_longlong(int(a))
    if isinstance(a, np.float64):
        return ctypes.c_double(float(a))
    raise TypeError(f"kernel argument of type {type(a).__name__}")

"""CPU emulation of the CUDA path, for tests on machines without a GPU.

``kernels.cu`` is compiled as host C++ with ``-DFO_EMULATE`` (no FMA
contraction, as on the GPU) and loaded with ctypes; each kernel launch runs
its blocks one after another with one thread each. :class:`DeviceArray`
marks NumPy arrays as "device" arrays, so an optimizer given them takes the
CUDA engine, with its pointer tables, chunking, norm reduction and state
handling, end to end.

This checks the engine and the kernels' arithmetic, not CUDA itself: thread
indexing with more than one thread per block, and the GPU's memory, are only
exercised by the GPU tests. Needs a C++ compiler (``c++`` or ``$CXX``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ferroptim.cuda.device import KERNEL_SOURCE

__all__ = ["DeviceArray", "EmulatedDevice", "available", "device_array", "library"]


class DeviceArray(np.ndarray):
    """A NumPy array that ferroptim treats as memory of an (emulated) GPU."""


def device_array(values: np.ndarray) -> DeviceArray:
    """A contiguous copy of ``values`` as an emulated device array."""
    return np.array(values, copy=True, order="C").view(DeviceArray)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def available() -> bool:
    """True when a C++ compiler can build the emulated kernels."""
    return _compiler() is not None


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The emulated kernels, compiled once per source version and cached on disk."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("the CUDA emulation needs a C++ compiler (set $CXX)")
    source = KERNEL_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"ferroptim-emu-{os.getuid()}"
    cache.mkdir(exist_ok=True)
    target = cache / f"kernels-{digest}.so"
    if not target.exists():
        tmp = cache / f"kernels-{digest}.{os.getpid()}.so"
        subprocess.run(
            [
                cxx,
                "-std=c++14",
                "-O2",
                "-ffp-contract=off",
                "-fPIC",
                "-shared",
                "-DFO_EMULATE",
                "-x",
                "c++",
                str(KERNEL_SOURCE),
                "-o",
                str(tmp),
            ],
            check=True,
            capture_output=True,
        )
        os.replace(tmp, target)  # atomic: concurrent test workers may race here
    lib = ctypes.CDLL(str(target))
    lib.fo_emu_set_block.argtypes = [ctypes.c_uint, ctypes.c_uint]
    return lib


class EmulatedDevice:
    """Host arrays standing in for device memory; blocks run one by one, one thread each."""

    emulated = True
    id = 0

    def __init__(self) -> None:
        self.xp = np
        self._lib = library()
        self.array_type = self._array_type = DeviceArray

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

"""The CUDA path: the same optimizers on CuPy arrays.

Nothing here imports CuPy until an optimizer is given CuPy arrays
(``pip install 'ferroptim[cuda]'``); ferroptim itself needs only NumPy.

An optimizer whose params are CuPy arrays runs the fused kernels of
``kernels.cu`` (compiled once per process by NVRTC): one launch per step and
dtype over every tensor, with clipping, the global norm and the finite check
fused in. ``state_dict()`` returns NumPy arrays, so a checkpoint made on a GPU
loads on a CPU machine, and ``load_state_dict`` moves state to the params' GPU.
"""

from __future__ import annotations

from typing import Any

__all__ = ["available", "is_device_array", "is_emulated", "make_engine"]


def is_emulated(x: Any) -> bool:
    """An emulated device array (tests without a GPU; see :mod:`ferroptim.cuda.emulate`)."""
    from ferroptim.cuda.emulate import DeviceArray

    return isinstance(x, DeviceArray)


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy" and hasattr(x, "__cuda_array_interface__")


def is_device_array(x: Any) -> bool:
    """True for GPU arrays: anything exposing ``__cuda_array_interface__`` (or emulated)."""
    return hasattr(x, "__cuda_array_interface__") or (
        type(x).__name__ == "DeviceArray" and is_emulated(x)
    )


def available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA present without a usable driver/device
        return False


def make_engine(engine_class: Any, first: Any) -> Any:
    """A CUDA engine for the optimizer whose first param is the device array ``first``."""
    from ferroptim.cuda.device import CupyDevice, EmulatedDevice
    from ferroptim.cuda.engine import CudaEngine
    from ferroptim.exceptions import DtypeError

    if is_emulated(first):
        return CudaEngine(engine_class, EmulatedDevice())
    if not _is_cupy(first):
        raise DtypeError(
            f"GPU params must be CuPy arrays, got {type(first).__module__}."
            f"{type(first).__name__}: convert with cupy.asarray (no copy)"
        )
    return CudaEngine(engine_class, CupyDevice(int(first.device.id)))

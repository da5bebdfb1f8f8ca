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

__all__ = [
    "available",
    "device_of",
    "is_device_array",
    "is_emulated",
    "make_engine",
    "on_device_of",
    "zeros",
]


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
    from ferroptim.cuda.device import CupyDevice
    from ferroptim.cuda.emulate import EmulatedDevice
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


def device_of(x: Any) -> Any:
    """The ``device`` argument (for :class:`~ferroptim.ParamArena`) that ``x`` lives on."""
    if is_emulated(x):
        return "emulated"
    return int(x.device.id)


def zeros(device: Any, n: int, dtype: Any) -> Any:
    """``n`` zeros on ``device``: ``"cuda"`` (the current GPU), a GPU number, or
    ``"emulated"`` (tests)."""
    from ferroptim.exceptions import ParamError

    if device == "emulated":
        import numpy as np

        from ferroptim.cuda.emulate import DeviceArray

        return np.zeros(n, dtype).view(DeviceArray)
    if device != "cuda" and (isinstance(device, bool) or not isinstance(device, int)):
        raise ParamError(f"device: 'cuda', a GPU number or None, got {device!r}")
    import cupy

    with cupy.cuda.Device(None if device == "cuda" else device):
        return cupy.zeros(n, dtype)


def on_device_of(target: Any, values: Any) -> Any:
    """``values`` as an array ``target[...] = values`` accepts (NumPy data for a GPU target
    is copied to the GPU)."""
    if not is_device_array(target) or is_emulated(target) or is_device_array(values):
        return values
    import cupy

    return cupy.asarray(values)

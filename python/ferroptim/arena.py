"""A flat parameter arena: all of a model's params in one buffer.

An optimizer built on an arena registers each group's params as a few
contiguous runs of the buffer (usually one), so a step is one kernel pass
with no per-tensor work, and ``opt.step()`` reads the grads from the arena.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ferroptim._precision import is_low_precision
from ferroptim.exceptions import DtypeError, ParamError

__all__ = ["ArenaGroup", "ParamArena"]

Shape = tuple[int, ...]


def _shape(name: str, shape: Any) -> Shape:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise ParamError(f"shape of {name!r} must be non-negative integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def _real_array(name: Any, a: Any) -> Any:
    """``a`` as an array of real numbers: complex, bool, string and object arrays
    are refused (a copy into a float buffer would drop or garble their values)."""
    from ferroptim import cuda

    if not cuda.is_device_array(a):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as err:
            raise DtypeError(f"param {name!r} is not an array of numbers: {err}") from err
    if np.dtype(a.dtype).kind not in "fiu" and not is_low_precision(a.dtype):
        raise DtypeError(
            f"param {name!r} has dtype {a.dtype}: an arena holds real numbers (float32 or float64)"
        )
    return a


def _common_dtype(dtypes: list[np.dtype], keep_low: bool) -> np.dtype:
    """The arena dtype for arrays of ``dtypes``: theirs when they all share one
    float16/bfloat16 dtype and ``keep_low`` (a CPU arena), else float32 or
    float64 (NumPy cannot promote bfloat16 with float16: both count as float32)."""
    if keep_low and len(set(dtypes)) == 1 and is_low_precision(dtypes[0]):
        return dtypes[0]
    wide = [np.dtype(np.float32) if is_low_precision(d) else d for d in dtypes]
    dtype = np.result_type(*wide)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64 if dtype.itemsize >= 8 else np.float32)
    return dtype


class ParamArena:
    """Params and grads of a model, each in one contiguous buffer.

    >>> arena = ParamArena({"w": (784, 10), "b": (10,)})
    >>> arena["w"].shape, arena.data.shape
    ((784, 10), (7850,))

    ``arena.params[name]`` and ``arena.grads[name]`` are NumPy views into
    ``arena.data`` and ``arena.grad``: write grads there, then ``opt.step()``.
    float16 and ``ml_dtypes.bfloat16`` params have float32 grads (``grad_dtype``).

    ``device="cuda"`` (or a GPU number) puts both buffers on a GPU as CuPy
    arrays: a step is then one kernel launch over one tensor, with no
    per-tensor work on the host at all.
    """

    def __init__(
        self, shapes: Mapping[str, Any], dtype: Any = np.float32, device: Any = None
    ) -> None:
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as err:
            raise DtypeError(f"dtype: not a NumPy dtype: {dtype!r}") from err
        self.device = device
        # float16/bfloat16 params (CPU) get float32 grads: the engine takes them as they are.
        low = device is None and is_low_precision(self.dtype)
        if self.dtype not in (np.float32, np.float64) and not low:
            raise DtypeError(
                f"dtype: an arena holds float32 or float64 (float16, bfloat16 on the CPU), "
                f"got {self.dtype}"
            )
        self.grad_dtype = np.dtype(np.float32) if low else self.dtype
        if not isinstance(shapes, Mapping) or not shapes:
            raise ParamError("shapes must be a non-empty dict name -> shape")
        self.names: list[str] = []
        self.shapes: dict[str, Shape] = {}
        self.offsets: dict[str, tuple[int, int]] = {}
        total = 0
        for name, shape in shapes.items():
            if not isinstance(name, str):
                raise ParamError(f"param names must be strings, got {name!r}")
            dims = _shape(name, shape)
            size = math.prod(dims)
            self.names.append(name)
            self.shapes[name] = dims
            self.offsets[name] = (total, total + size)
            total += size
        if device is None:
            self.data = np.zeros(total, self.dtype)
            self.grad = np.zeros(total, self.grad_dtype)
        else:
            from ferroptim import cuda

            self.data = cuda.zeros(device, total, self.dtype)
            self.grad = cuda.zeros(device, total, self.dtype)
        self.params = self._views(self.data)
        self.grads = self._views(self.grad)

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, Any], dtype: Any = None, device: Any = None
    ) -> ParamArena:
        """An arena holding copies of ``arrays`` (their dtype, or ``dtype``).

        GPU (CuPy) arrays give a GPU arena on their device unless ``device`` says otherwise.
        """
        from ferroptim import cuda

        if not isinstance(arrays, Mapping):
            raise ParamError(f"arrays must be a dict name -> array, got {type(arrays).__name__}")
        on_gpu = [a for a in arrays.values() if cuda.is_device_array(a)]
        if device is None and on_gpu:
            device = cuda.device_of(on_gpu[0])
        arrays = {name: _real_array(name, a) for name, a in arrays.items()}
        if dtype is None:
            dtypes = [np.dtype(a.dtype) for a in arrays.values()]
            dtype = _common_dtype(dtypes, device is None) if dtypes else np.float32
        arena = cls({name: a.shape for name, a in arrays.items()}, dtype, device)
        for name, a in arrays.items():
            arena.params[name][...] = cuda.on_device_of(arena.data, a)
        return arena

    def _views(self, buffer: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: buffer[lo:hi].reshape(self.shapes[name])
            for name, (lo, hi) in self.offsets.items()
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]

    def __contains__(self, name: object) -> bool:
        return name in self.offsets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        """Number of scalar params."""
        return self.data.size

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def select(self, names: str | Iterable[str]) -> ArenaGroup:
        """The params matching ``names`` (exact names or fnmatch patterns like
        ``"*.bias"``), in arena order: put one in a param group's ``"params"``."""
        patterns = [names] if isinstance(names, str) else list(names)
        chosen = set()
        for pattern in patterns:
            hits = [n for n in self.names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise ParamError(f"no param of the arena matches {pattern!r}")
            chosen.update(hits)
        return ArenaGroup(self, [n for n in self.names if n in chosen])

    def all(self) -> ArenaGroup:
        return ArenaGroup(self, list(self.names))

    def __repr__(self) -> str:
        where = "" if self.device is None else f" on {self.device!r}"
        return f"ParamArena({len(self)} params, {self.size} {self.dtype} values{where})"


class ArenaGroup:
    """Some params of one arena, in arena order (see :meth:`ParamArena.select`)."""

    def __init__(self, arena: ParamArena, names: Sequence[str]) -> None:
        self.arena = arena
        self.names = list(names)

    def runs(self) -> list[list[str]]:
        """The names cut into runs that sit next to each other in the buffer."""
        runs: list[list[str]] = []
        end = None
        for name in self.names:
            lo, hi = self.arena.offsets[name]
            if runs and lo == end:
                runs[-1].append(name)
            else:
                runs.append([name])
            end = hi
        return runs

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ArenaGroup({self.names})"

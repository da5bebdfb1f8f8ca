"""The CUDA engine: the Rust engine's interface over device arrays.

:class:`~ferroptim.optimizer.Optimizer` talks to its engine through a dozen
methods (``add_params``, ``step``, ``state``...). For CuPy params it gets a
:class:`CudaEngine` instead of the Rust one, so param groups, schedules,
accumulation, freezing and state dicts work unchanged.

A step is: check every grad (nothing launched yet), optionally one fused
norm/finite pass (two launches, any number of tensors), then one launch per
dtype of the update kernel over all tensors, driven by a pointer table and a
chunk table uploaded in one copy each. The math comes from the Rust core
through the engine class's static methods (hyperparameter and option checks,
slot layout, per-step scalars), so both engines accept and reject the same
things with the same messages and compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferroptim import _core
from ferroptim.cuda.device import THREADS
from ferroptim.exceptions import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
)

__all__ = ["CudaEngine", "CHUNK"]

# Elements per block: enough blocks to fill a large GPU many times over on a
# big tensor (small tail), few enough that per-block setup stays negligible.
CHUNK = 16384
_TAB = 8  # int64 entries per tensor in the pointer table (kernels.cu: FO_TAB)
_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16"}
HALF = np.dtype(np.float16)
AVERAGED = "averaged_param"
# float16 params keep float32 master weights (and float32 state).
MASTER = "master_param"
AVERAGED_STEPS = "n_averaged"


@dataclass
class _Param:
    array: Any
    label: str
    dtype: np.dtype
    shape: tuple[int, ...]
    numel: int
    group: int
    ptr: int
    step: int = 0
    aux: tuple[float, ...] = ()  # the engine class's AUX values, in its order
    frozen: bool = False
    averaged: int = 0
    slots: list[Any] = field(default_factory=lambda: [None, None, None])
    average: Any = None
    master: Any = None  # float16 params: float32 master weights
    # Cached table entries after the grad pointer (state addresses, numel);
    # rebuilt when state is allocated or loaded, or the slots in use change.
    row: list[int] | None = None
    row_used: tuple[bool, ...] = ()

    @property
    def state_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.dtype == HALF else self.dtype


class CudaEngine:
    """One optimizer's params and state on one GPU (or the emulated device)."""

    def __init__(self, engine_class: Any, device: Any) -> None:
        self._rust = engine_class
        # kernels.cu names each rule's kernel after the class: adam_f32, ...
        self.kernel = engine_class.__name__.lower()
        self.slots = list(engine_class.state_names)
        self.aux = list(engine_class.AUX)  # (state-dict name, initial value) pairs
        self.device = device
        self.params: list[_Param] = []
        self.skipped_steps = 0
        self._norm: Any = None  # device array holding the last step's grad norm, or None
        self._options: dict[str, Any] = {}
        self._spans = _core.MemorySpans()  # the params' memory (overlap checks)
        self.configure()

    # -- configuration ------------------------------------------------------

    def configure(
        self,
        max_grad_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
        skip_nonfinite: bool = False,
        ema_decay: float | None = None,
        ema_equal: bool = False,
    ) -> None:
        options = dict(
            max_grad_norm=max_grad_norm,
            norm_type=norm_type,
            clip_value=clip_value,
            skip_nonfinite=skip_nonfinite,
            ema_decay=ema_decay,
            ema_equal=ema_equal,
        )
        self._rust.check_options(**options)  # the same checks and messages as on the CPU
        self._options = options

    def _average_weight(self, done: int) -> float | None:
        o = self._options
        if o["ema_decay"] is None and not o["ema_equal"]:
            return None
        if done == 0:
            return 1.0
        if o["ema_equal"]:
            return 1.0 / (done + 1.0)
        return 1.0 - o["ema_decay"]

    # -- params ---------------------------------------------------------------

    def steps(self) -> list[int]:
        return [p.step for p in self.params]

    def add_params(self, arrays: list[Any], group: int, labels: list[str]) -> None:
        if len(labels) != len(arrays):
            raise ParamError(f"got {len(labels)} labels for {len(arrays)} params")
        staged = []
        for array, label in zip(arrays, labels):
            what = f"param {label}"
            self._check_device_array(array, what, ParamError)
            dtype = np.dtype(array.dtype)
            if dtype not in _DTYPES:
                raise DtypeError(f"{what} must have dtype float16, float32 or float64, got {dtype}")
            if dtype == HALF and self._average_weight(0) is not None:
                raise ParamError(
                    f"{what}: EMA/SWA averaging of float16 params is not supported "
                    "(their master weights are float32): use float32 params"
                )
            if not array.flags.c_contiguous:
                raise ParamError(
                    f"{what} is not C-contiguous: it is updated in place, so pass a contiguous "
                    "array (cupy.ascontiguousarray makes a copy that you would then train)"
                )
            staged.append(
                _Param(
                    array=array,
                    label=label,
                    dtype=dtype,
                    shape=tuple(array.shape),
                    numel=int(array.size),
                    group=group,
                    ptr=self.device.ptr(array),
                    aux=tuple(initial for _, initial in self.aux),
                )
            )
        # The CPU engine's overlap checks and messages (the Rust core's).
        self._spans.add([(p.ptr, p.numel * p.dtype.itemsize, p.label) for p in staged])
        self.params += staged

    def _check_device_array(self, array: Any, what: str, error: type) -> None:
        if type(array) is self.device.array_type and (
            self.device.emulated or self.device.device_of(array) == self.device.id
        ):
            return  # the common case, without the general checks below
        from ferroptim import cuda

        if not cuda.is_device_array(array):
            kind = "a NumPy array" if isinstance(array, np.ndarray) else type(array).__name__
            raise DtypeError(
                f"{what} is {kind}, but this optimizer's params are GPU arrays: "
                "keep every param and grad of one optimizer on the same device"
            )
        if cuda.is_emulated(array) != self.device.emulated:
            raise DtypeError(f"{what}: emulated and real device arrays do not mix")
        dev = self.device.device_of(array)
        if dev != self.device.id:
            raise error(
                f"{what} is on GPU {dev}, this optimizer's params are on GPU {self.device.id}"
            )

    def set_frozen(self, indices: list[int], frozen: bool) -> None:
        n = len(self.params)
        bad = next((i for i in indices if not 0 <= i < n), None)
        if bad is not None:
            raise ParamError(f"no param #{bad}: the optimizer has {n}")
        for i in indices:
            self.params[i].frozen = frozen

    def frozen(self) -> list[bool]:
        return [p.frozen for p in self.params]

    # -- stepping -------------------------------------------------------------

    @property
    def last_grad_norm(self) -> float | None:
        if self._norm is None:
            return None
        return float(self.device.to_host(self._norm)[3])

    def step(self, grads: Any, groups: list[dict[str, Any]], grad_scale: float = 1.0) -> bool:
        if not (isinstance(grad_scale, (int, float)) and math.isfinite(grad_scale)) or not (
            grad_scale > 0
        ):
            raise HyperparameterError(f"grad_scale: must be a finite number > 0, got {grad_scale}")
        n_groups = 1 + max((p.group for p in self.params), default=-1)
        if len(groups) != n_groups:
            raise ParamError(f"got {len(groups)} param groups, the optimizer has {n_groups}")
        for g in groups:
            if not isinstance(g, dict):
                raise DtypeError(f"a param group must be a dict, got {type(g).__name__}")
            self._rust.validate_group(g)
        try:
            grads = list(grads)
        except TypeError:
            raise DtypeError(
                f"grads must be a list of arrays, got {type(grads).__name__}"
            ) from None
        if len(grads) != len(self.params):
            raise GradError(f"got {len(grads)} grads for {len(self.params)} params")

        # Pass 1: check every grad; nothing is launched or changed before this ends.
        ready: list[tuple[_Param, Any, int]] = []
        spans: list[tuple[int, int, int]] = []  # (param index, grad address, bytes)
        for k, (p, g) in enumerate(zip(self.params, grads)):
            if g is None or p.frozen:
                continue
            g = self._checked_grad(p, g)
            ready.append((p, g, self.device.ptr(g)))
            spans.append((k, ready[-1][2], p.numel * p.dtype.itemsize))
        self._spans.check_grads(spans)  # no grad may share memory with a param

        o = self._options
        glob = np.array([grad_scale, o["clip_value"] or math.inf, 0.0, math.nan])
        glob_dev = self.device.to_device(glob)
        norm_needed = o["max_grad_norm"] is not None or o["skip_nonfinite"]
        by_dtype = {d: [item for item in ready if item[0].dtype == d] for d in _DTYPES}
        tables = {d: self._tables(items) for d, items in by_dtype.items() if items}
        if norm_needed:
            self._launch_norm(by_dtype, tables, glob_dev, grad_scale)
            if o["skip_nonfinite"]:
                host = self.device.to_host(glob_dev)  # the one sync: step() must answer
                if host[2] != 0.0:
                    self.skipped_steps += 1
                    self._norm = glob_dev
                    return False

        # Pass 2: allocate the state this step needs, count the step, build scalars.
        hypers = [dict(g) for g in groups]
        used_by_group = [tuple(self._rust.slots_used(h)) for h in hypers]
        averaging = self._average_weight(0) is not None
        for dtype, items in by_dtype.items():
            if not items:
                continue
            rows: list[list[int]] = []
            scalars: list[float] = []
            # Tensors with the same group, step, freshness and aux share one
            # row of scalars: thousands of tensors upload a few rows.
            offsets: dict[tuple, tuple[int, tuple[float, ...]]] = {}
            for p, _g, g_ptr in items:
                h = hypers[p.group]
                used = used_by_group[p.group]
                slots = p.slots
                fresh = (slots[0] is None, slots[1] is None, slots[2] is None)
                for k in range(3):
                    if used[k] and fresh[k]:
                        slots[k] = self.device.zeros(p.shape, p.state_dtype)
                        p.row = None
                if p.dtype == HALF and p.master is None:
                    p.master = p.array.astype(np.float32)
                    p.row = None
                weight = self._average_weight(p.averaged) if averaging else None
                if weight is not None:
                    if p.average is None:
                        p.average = self.device.zeros(p.shape, p.dtype)
                        p.row = None
                    p.averaged += 1
                p.step += 1
                key = (p.group, p.step, fresh, p.aux, weight)
                if key not in offsets:
                    row, aux = self._rust.cuda_scalars(h, p.step, fresh, p.aux, weight or 0.0)
                    offsets[key] = (len(scalars), tuple(aux))
                    scalars += row
                offset, p.aux = offsets[key]
                if p.row is None or p.row_used != used:
                    extra = p.master if p.master is not None else p.average
                    p.row = [
                        *(self.device.ptr(s) if used[k] else 0 for k, s in enumerate(p.slots)),
                        0 if extra is None else self.device.ptr(extra),
                        p.numel,
                    ]
                    p.row_used = used
                rows.append([p.ptr, g_ptr, *p.row, offset])
            chunks = tables[dtype]
            tab = self.device.to_device(np.array(rows, np.int64).reshape(-1))
            sc = self.device.to_device(np.array(scalars, np.float64))
            self.device.launch(
                f"{self.kernel}_{_DTYPES[dtype]}",
                len(chunks) // 2,
                THREADS,
                (tab, chunks, sc, glob_dev, np.int32(CHUNK)),
            )
        self._norm = glob_dev if norm_needed else None
        return True

    def _checked_grad(self, p: _Param, g: Any) -> Any:
        what = f"grad for param {p.label}"
        self._check_device_array(g, what, GradError)
        if np.dtype(g.dtype) != p.dtype:
            raise DtypeError(f"{what} has dtype {g.dtype}, the param has {p.dtype}")
        if tuple(g.shape) != p.shape:
            raise GradError(f"{what} has shape {tuple(g.shape)}, the param has shape {p.shape}")
        if not g.flags.c_contiguous:
            return self.device.contiguous(g)  # strided: read it in index order from a copy
        return g

    def _tables(self, items: list[tuple[_Param, Any, int]]) -> Any:
        """The chunk table of these tensors (tensor row, first element), on the device."""
        counts = np.array([-(-item[0].numel // CHUNK) for item in items], np.int64)
        rows = np.repeat(np.arange(len(items), dtype=np.int64), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        starts = (np.arange(rows.size, dtype=np.int64) - first) * CHUNK
        table = np.stack([rows, starts], axis=1).reshape(-1)
        return self.device.to_device(table)

    def _launch_norm(
        self,
        by_dtype: dict[np.dtype, list[tuple[_Param, Any, int]]],
        tables: dict[np.dtype, Any],
        glob: Any,
        grad_scale: float,
    ) -> None:
        """Global grad norm and finite check of this step's grads, written into ``glob``."""
        o = self._options
        counts = {d: len(t) // 2 for d, t in tables.items()}
        partials = self.device.zeros(2 * max(1, sum(counts.values())), np.float64)
        offset = 0
        for dtype, chunks in tables.items():
            rows = [[0, ptr, 0, 0, 0, 0, p.numel, 0] for p, _, ptr in by_dtype[dtype]]
            tab = self.device.to_device(np.array(rows, np.int64).reshape(-1))
            self.device.launch(
                f"norm_partials_{_DTYPES[dtype]}",
                counts[dtype],
                THREADS,
                (tab, chunks, partials[2 * offset :], np.int32(CHUNK)),
            )
            offset += counts[dtype]
        opts = np.array(
            [
                -1.0 if o["max_grad_norm"] is None else o["max_grad_norm"],
                1.0 if o["norm_type"] == math.inf else 0.0,
                1.0 if o["skip_nonfinite"] else 0.0,
                grad_scale,
            ]
        )
        self.device.launch(
            "norm_finish",
            1,
            THREADS,
            (partials, np.int64(offset), self.device.to_device(opts), glob),
        )

    # -- averaging ------------------------------------------------------------

    def swap_averages(self) -> int:
        swapped = 0
        for p in self.params:
            if p.averaged == 0 or p.numel == 0:
                continue
            kept = p.array.copy()
            p.array[...] = p.average
            p.average[...] = kept
            swapped += 1
        return swapped

    # -- state ----------------------------------------------------------------

    def state(self) -> list[dict[str, Any]]:
        """Each param's state with NumPy copies of the device arrays (a CPU-loadable dict)."""
        out = []
        for p in self.params:
            st: dict[str, Any] = {"step": p.step}
            if p.step > 0:
                # NaN: not carried yet (ASGD before its first step): left out, as on the CPU.
                st.update((name, v) for (name, _), v in zip(self.aux, p.aux) if v == v)
            if p.averaged > 0:
                st[AVERAGED_STEPS] = p.averaged
                st[AVERAGED] = self.device.to_host(p.average)
            for name, slot in zip(self.slots, p.slots):
                if slot is not None:
                    st[name] = self.device.to_host(slot)
            if p.master is not None:
                st[MASTER] = self.device.to_host(p.master)
            out.append(st)
        return out

    def load_state(self, states: list[dict[str, Any]]) -> None:
        """Replaces all state; checked by the Rust core first, so errors change nothing."""
        from ferroptim.exceptions import StateDictError

        masters: list[np.ndarray | None] = []
        plain = []
        for p, st in zip(self.params, states):
            # The CPU engine knows no float16 and no master weights: check those here.
            master = None
            if isinstance(st, dict) and MASTER in st:
                st = dict(st)
                master = st.pop(MASTER)
                if p.dtype != HALF:
                    raise StateDictError(
                        f"state of param {p.label} has '{MASTER}', but the param is {p.dtype}"
                    )
                try:
                    master = np.array(master, dtype=np.float32)
                except (TypeError, ValueError) as err:
                    raise StateDictError(f"{MASTER} of param {p.label}: {err}") from None
                if master.shape != p.shape:
                    raise StateDictError(
                        f"{MASTER} of param {p.label} has shape {master.shape}, "
                        f"the param has shape {p.shape}"
                    )
            masters.append(master)
            plain.append(st)
        # The CPU engine's checks and messages, for params of the state's dtype.
        checked = self._rust.check_state(
            plain if len(plain) == len(states) else states,
            [(p.label, p.shape, p.state_dtype.name) for p in self.params],
        )
        staged = []
        for st, master in zip(checked, masters):
            slots = [
                self.device.to_device(st[name]) if name in st else None for name in self.slots
            ] + [None] * (3 - len(self.slots))
            average = self.device.to_device(st[AVERAGED]) if AVERAGED in st else None
            aux = tuple(st.get(name, initial) for name, initial in self.aux)
            master = None if master is None else self.device.to_device(master)
            staged.append((st["step"], aux, st.get(AVERAGED_STEPS, 0), slots, average, master))
        for p, (step, aux, averaged, slots, average, master) in zip(self.params, staged):
            p.step, p.aux, p.averaged, p.slots, p.average = step, aux, averaged, slots, average
            p.master = master
            p.row = None

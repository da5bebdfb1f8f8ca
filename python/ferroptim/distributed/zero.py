"""Data-parallel optimizers on MPI: plain grad all-reduce (stage 0) and ZeRO stages 1 and 2.

Every rank holds the whole model in a :class:`~ferroptim.arena.ParamArena`
and writes its local grads into ``arena.grad``; :meth:`DistributedOptimizer.step`
then

- stage 0: all-reduces the grads and steps the whole arena on every rank
  (every rank keeps the whole optimizer state);
- stage 1: all-reduces the grads, steps only this rank's contiguous 1/N of
  the arena (so it keeps the state of that slice only), then all-gathers
  the params;
- stage 2: reduce-scatters the grads instead (each rank receives only the
  reduced grads of its own slice), steps its slice, all-gathers the params.

A slice can start or end inside a param and span param groups: the shard
optimizer holds one engine param per (param, slice) piece, in the group of
that param, so every group keeps its hyperparameters, freezing works per
param, and a schedule that writes into :attr:`param_groups` reaches it at
the next step. The global grad norm (``max_grad_norm``) and the non-finite
check (``skip_nonfinite``) are reduced over every rank before any rank steps,
so every rank takes the same decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ferroptim import _core
from ferroptim._options import STEP_OPTIONS
from ferroptim.distributed.comm import Comm, chunk_bounds
from ferroptim.exceptions import HyperparameterError, ParamError

__all__ = ["DistributedOptimizer"]

# Step options the shard optimizer applies itself; the rest are done here.
_SHARD_OPTIONS = ("clip_value", "ema_decay", "ema_equal_weights")
_META = ("params", "param_names")


class Piece:
    """The part ``[lo, hi)`` (arena offsets) of param ``name`` that this rank steps."""

    __slots__ = ("name", "gid", "lo", "hi", "start")

    def __init__(self, name: str, gid: int, lo: int, hi: int, start: int) -> None:
        self.name, self.gid, self.lo, self.hi = name, gid, lo, hi
        self.start = start  # offset of lo within the param, flattened


class DistributedOptimizer:
    """A ferroptim optimizer run data-parallel over MPI ranks.

    Build it on every rank with the same arguments; write each rank's grads
    (of its part of the global batch) into ``arena.grad`` and call
    :meth:`step` on every rank. The update is that of the single-process
    optimizer on the mean of the ranks' grads.

    >>> dopt = DistributedOptimizer(fo.AdamW, arena, lr=1e-3, stage=2)
    >>> model.backward(...); dopt.step()

    Parameters
    ----------
    optimizer_class : type
        A ferroptim optimizer class (``fo.AdamW``, ``fo.SGD``, ...).
    params : ParamArena or list of param-group dicts
        As for the class, built on one :class:`~ferroptim.arena.ParamArena`.
    comm : Comm or mpi4py communicator, optional
        Default: ``MPI.COMM_WORLD``.
    stage : {0, 1, 2}, default 1
        0: all-reduce, full state on every rank; 1: ZeRO-1; 2: ZeRO-2.
    bucket_size : int, optional
        Elements per all-reduce call (stages 0 and 1); default: one call.
    timeout : float, default 300.0
        Seconds to wait for a peer before aborting every rank (naming it).
    **kwargs
        The class's hyperparameters and step options (``max_grad_norm``,
        ``skip_nonfinite``, ``ema_decay``, ``accumulate``, ...).
    """

    def __init__(
        self,
        optimizer_class: type,
        params: Any,
        *,
        comm: Any = None,
        stage: int = 1,
        bucket_size: int | None = None,
        timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(stage, bool) or stage not in (0, 1, 2):
            raise HyperparameterError(f"stage: must be 0, 1 or 2, got {stage!r}")
        if bucket_size is not None and (
            isinstance(bucket_size, bool) or not isinstance(bucket_size, int) or bucket_size < 1
        ):
            raise HyperparameterError(
                f"bucket_size: must be an integer >= 1 or None, got {bucket_size!r}"
            )
        self.comm = comm if isinstance(comm, Comm) else Comm(comm, timeout)
        #: The user-visible optimizer: its param_groups, freeze(), ... Under
        #: stages 1 and 2 it never steps and keeps no state.
        self.optimizer = optimizer_class(params, **kwargs)
        arena = self.optimizer._arena
        if arena is None:
            raise ParamError("params: build the optimizer on a ParamArena (or its groups)")
        if arena.device is not None:
            raise ParamError("params: a GPU arena is not supported by ferroptim.distributed")
        self.stage = stage
        self.bucket_size = bucket_size
        self.arena = arena
        self._class = optimizer_class
        self._options = {k: kwargs.get(k) for k in STEP_OPTIONS if k in kwargs}
        self._hypers = {k: v for k, v in kwargs.items() if k not in STEP_OPTIONS}
        self.accumulate = self.optimizer.accumulate
        self.accumulate_mean = self.optimizer.accumulate_mean
        self._calls = 0
        self._buffer: np.ndarray | None = None
        self._updates = 0
        self._skipped = 0
        self._last_norm: float | None = None
        self.lo, self.hi = chunk_bounds(arena.size, self.comm.size)[self.comm.rank]
        self._n_groups = len(self.optimizer.param_groups)
        self.pieces: list[Piece] = []
        self.shard: Any = None
        if stage > 0:
            self._build_shard()

    # -- the shard --------------------------------------------------------

    def _build_shard(self) -> None:
        arena, lo, hi = self.arena, self.lo, self.hi
        gid_of = {n: g for g, keys in enumerate(self.optimizer._group_keys) for n in keys}
        for name in arena.names:
            a, b = arena.offsets[name]
            if name in gid_of and max(a, lo) < min(b, hi):
                s = max(a, lo)
                self.pieces.append(Piece(name, gid_of[name], s, min(b, hi), s - a))
        self._shard_gids = sorted({p.gid for p in self.pieces})
        groups = []
        for gid in self._shard_gids:
            group = {k: v for k, v in self.optimizer.param_groups[gid].items() if k not in _META}
            group["params"] = [arena.data[p.lo : p.hi] for p in self.pieces if p.gid == gid]
            groups.append(group)
        # Order the pieces as the shard optimizer registers them: group by group.
        self.pieces = [p for gid in self._shard_gids for p in self.pieces if p.gid == gid]
        options = {k: self._options[k] for k in _SHARD_OPTIONS if k in self._options}
        if groups:
            self.shard = self._class(groups, **self._hypers, **options)

    def _sync_groups(self) -> None:
        """Copies the user's hyperparameters (a schedule's lr) into the shard."""
        if self.shard is None:
            return
        for sgroup, gid in zip(self.shard.param_groups, self._shard_gids):
            for k, v in self.optimizer.param_groups[gid].items():
                if k not in _META:
                    sgroup[k] = v

    # -- stepping ---------------------------------------------------------

    def step(self, weight: float | None = None) -> bool:
        """One step from every rank's ``arena.grad``; call it on every rank.

        Parameters
        ----------
        weight : float, optional
            This rank's share of the global batch (its samples over the
            global batch's): the update then uses the weighted sum of the
            ranks' grads. Default: the plain mean over ranks (equal shares).

        Returns
        -------
        bool
            False for a call that only accumulates (``accumulate=k``) and for
            a step skipped for non-finite grads on any rank, else True.
        """
        if weight is not None and not (isinstance(weight, (int, float)) and weight >= 0):
            raise HyperparameterError(f"weight: must be a number >= 0, got {weight!r}")
        if len(self.optimizer.param_groups) != self._n_groups:
            # The slices were cut for the groups given at construction.
            raise ParamError(
                "param groups were added after the DistributedOptimizer was built: "
                "build a new one over all the groups"
            )
        grad = self.arena.grad
        # Each rank's grads are scaled by its share first, so that a plain sum
        # over ranks is the global grad, and pending micro-batch sums are in
        # global units (a checkpoint can hold them in the single-process format).
        factor = 1.0 / self.comm.size if weight is None else float(weight)
        if factor != 1.0:
            grad *= grad.dtype.type(factor)
        if self.accumulate > 1 and self._calls + 1 < self.accumulate:
            # Micro-batches add up locally; only the k-th call communicates.
            if self._buffer is None:
                self._buffer = grad.copy()
            else:
                self._buffer += grad
            self._calls += 1
            return False
        if self._buffer is not None:
            grad += self._buffer
        self._buffer, self._calls = None, 0
        scale = 1.0 / self.accumulate if self.accumulate > 1 and self.accumulate_mean else 1.0
        if self.stage == 0:
            self.comm.allreduce(grad, bucket=self.bucket_size)
            opt = self.optimizer
            with opt._lock:
                opt._check_groups()
                applied = opt._engine.step(opt._arena_grads, opt.param_groups, scale)
            opt.num_updates += applied
            return bool(applied)
        if self.stage == 1:
            self.comm.allreduce(grad, bucket=self.bucket_size)
        else:
            self.comm.reduce_scatter(grad)
        applied = self._step_shard(scale)
        if applied:
            self.comm.allgather(self.arena.data)
        return applied

    def _step_shard(self, scale: float) -> bool:
        frozen = set(self.optimizer.frozen)
        grads = [None if p.name in frozen else self.arena.grad[p.lo : p.hi] for p in self.pieces]
        max_norm = self._options.get("max_grad_norm")
        inf_norm = self._options.get("norm_type", 2.0) == float("inf")
        if max_norm is not None or self._options.get("skip_nonfinite"):
            live = [g for g in grads if g is not None]
            norm = _core.grad_norm(live, float("inf") if inf_norm else 2.0) if live else 0.0
            finite = bool(np.isfinite(norm)) or (not np.isnan(norm) and _core.all_finite(live))
            local = [norm if inf_norm else norm * norm, 0.0 if finite else 1.0]
            total, bad = self.comm.allreduce_values(local, "max" if inf_norm else "sum")
            norm = (total if inf_norm else float(np.sqrt(total))) * scale
            self._last_norm = norm
            if self._options.get("skip_nonfinite") and bad > 0:
                self._skipped += 1
                return False
            if max_norm is not None:
                coef = max_norm / (norm + 1e-6)  # torch's clip_grad_norm_, as the engine
                scale *= coef if np.isnan(coef) else min(coef, 1.0)
        self._sync_groups()
        if self.shard is not None and any(g is not None for g in grads):
            with self.shard._lock:
                self.shard._engine.step(grads, self.shard.param_groups, scale)
        self._updates += 1
        return True

    # -- the Optimizer interface the Trainer uses -------------------------

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The user-visible param groups: edit hyperparameters here."""
        return self.optimizer.param_groups

    @property
    def _engine_class(self) -> Any:  # schedules validate the values they write with it
        return self.optimizer._engine_class

    @property
    def _arena(self) -> Any:
        return self.arena

    @property
    def _averaging(self) -> bool:
        return self.optimizer._averaging

    @property
    def num_updates(self) -> int:
        """Updates applied so far (as Optimizer.num_updates)."""
        return self.optimizer.num_updates if self.stage == 0 else self._updates

    @num_updates.setter
    def num_updates(self, value: int) -> None:
        if self.stage == 0:
            self.optimizer.num_updates = value
        else:
            self._updates = value

    @property
    def skipped_steps(self) -> int:
        """Steps skipped because some rank's grads held NaN or Inf."""
        return self.optimizer.skipped_steps if self.stage == 0 else self._skipped

    @property
    def last_grad_norm(self) -> float | None:
        """The global grad norm of the last step, over every rank, before clipping."""
        return self.optimizer.last_grad_norm if self.stage == 0 else self._last_norm

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zeroes ``arena.grad`` (pending micro-batch sums are kept)."""
        self.arena.zero_grad()

    def freeze(self, *params: Any, group: int | None = None) -> None:
        """As :meth:`Optimizer.freeze`; call it on every rank."""
        self.optimizer.freeze(*params, group=group)

    def unfreeze(self, *params: Any, group: int | None = None) -> None:
        """As :meth:`Optimizer.unfreeze`; call it on every rank."""
        self.optimizer.unfreeze(*params, group=group)

    @property
    def frozen(self) -> list[Any]:
        return self.optimizer.frozen

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds (slots and averages)."""
        opt = self.optimizer if self.stage == 0 else self.shard
        if opt is None:
            return 0
        total = 0
        for st in opt._engine.state():
            total += sum(v.nbytes for v in st.values() if isinstance(v, np.ndarray))
        return total

    @contextlib.contextmanager
    def averaged_params(self) -> Iterator[None]:
        """Swaps the averaged weights into every rank's params, and back on exit;
        enter it on every rank."""
        if self.stage == 0:
            with self.optimizer.averaged_params():
                yield
            return
        if not self._averaging:
            raise ParamError(
                "no averaged weights: construct with ema_decay=... or ema_equal_weights"
            )
        saved = self.arena.data.copy()
        if self.shard is not None:
            self.shard._engine.swap_averages()
        self.comm.allgather(self.arena.data)
        try:
            yield
        finally:
            if self.shard is not None:
                self.shard._engine.swap_averages()
            self.arena.data[...] = saved

    def state_dict(self) -> dict[str, Any]:
        """The single-process optimizer's state_dict (name-keyed, same format),
        gathered from every rank's shard; collective: call it on every rank."""
        from ferroptim.distributed.checkpoint import gather_state

        return gather_state(self)

    def load_state_dict(self, state_dict: Any) -> None:
        """Loads a single-process (or gathered) state_dict, taking this rank's
        slice of it: any world size; call it on every rank."""
        from ferroptim.distributed.checkpoint import scatter_state

        scatter_state(self, state_dict)

    def __repr__(self) -> str:
        return (
            f"DistributedOptimizer({self._class.__name__}, stage {self.stage}, "
            f"rank {self.comm.rank} of {self.comm.size}, slice [{self.lo}, {self.hi}))"
        )

"""Ring collectives over MPI point-to-point messages, with a byte count and a timeout.

The collectives are written here rather than taken from ``MPI_Allreduce`` for
three reasons:

- every byte a rank sends goes through :meth:`Comm._exchange`, so
  :attr:`Comm.bytes_sent` is what the implementation really sent, and can be
  checked against the ring formula (reduce-scatter and all-gather each send
  ``(N - 1) / N`` of the buffer per rank; an all-reduce sends twice that);
- the order of the additions depends only on the world size, so a run at
  the same world size is bitwise reproducible whatever MPI picks;
- every wait polls with a deadline: a peer that died or hangs makes this
  rank print a line naming it and abort the whole job (``MPI_Abort``)
  instead of hanging forever.

Chunk ``r`` of a buffer of ``n`` elements is ``[r * n // N, (r + 1) * n // N)``:
after :meth:`Comm.reduce_scatter` rank ``r`` holds the reduced chunk ``r``.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ferroptim.exceptions import HyperparameterError

__all__ = ["Comm", "DistributedError", "chunk_bounds", "mpi_available"]

_HELLO = 99  # tag of the "I am stuck here too" messages after a timeout
_OPS: dict[str, Callable[..., Any]] = {"sum": np.add, "max": np.maximum}


class DistributedError(RuntimeError):
    """MPI is missing, or a distributed call was used the wrong way."""


def mpi_available() -> str | None:
    """None when mpi4py imports and initializes MPI, else the reason it does not."""
    try:
        from mpi4py import MPI  # noqa: F401
    except Exception as err:  # ImportError, or a broken MPI library behind mpi4py
        return f"mpi4py is not usable ({err}); install it with: pip install 'ferroptim[mpi]'"
    return None


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """The ``size`` contiguous chunks of ``n`` elements, as ``(lo, hi)`` pairs."""
    return [(r * n // size, (r + 1) * n // size) for r in range(size)]


class Comm:
    """A communicator for :mod:`ferroptim.distributed`.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The MPI communicator (default: ``MPI.COMM_WORLD``).
    timeout : float, default 300.0
        Seconds a rank waits for a peer's message before it names that peer
        and aborts every rank (``MPI_Abort``); > 0.
    """

    def __init__(self, comm: Any = None, timeout: float = 300.0) -> None:
        reason = mpi_available()
        if reason is not None:
            raise DistributedError(reason)
        from mpi4py import MPI

        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise HyperparameterError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.timeout = float(timeout)
        #: Bytes this rank has sent through the collectives, in total.
        self.bytes_sent = 0
        self._seq = 0  # collectives started so far, named in timeout messages
        self._MPI = MPI

    # -- plumbing ---------------------------------------------------------

    def _wait(self, requests: list[Any], peer: int, what: str) -> None:
        """Waits for ``requests``; past the timeout, names ``peer`` and aborts."""
        MPI = self._MPI
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not MPI.Request.Testall(requests):
            if time.monotonic() > deadline:
                suspects = self._suspects()
                self.abort(
                    f"collective {self._seq} ({what}) waited {self.timeout:g} s for rank "
                    f"{peer}; rank(s) {suspects or [peer]} never reached it: died or hang"
                )
            # Back off to at most 1 ms, so that waiting ranks leave the cores
            # to the ranks that are still computing.
            time.sleep(pause)
            pause = min(pause * 2 or 1e-5, 1e-3)

    def _suspects(self) -> list[int]:
        """The ranks that do not answer: every live rank stuck in the same
        collective times out too and announces itself; the silent ones are
        dead or hung (in a ring, the peer a rank waits on may itself be
        waiting on the culprit)."""
        MPI = self._MPI
        others = [p for p in range(self.size) if p != self.rank]
        for p in others:
            self.comm.isend(self._seq, dest=p, tag=_HELLO)
        seen = {self.rank}
        deadline = time.monotonic() + min(self.timeout, 5.0)
        status = MPI.Status()
        while time.monotonic() < deadline and len(seen) < self.size:
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_HELLO, status=status):
                source = status.Get_source()
                self.comm.recv(source=source, tag=_HELLO)
                seen.add(source)
            time.sleep(0.01)
        return [p for p in others if p not in seen]

    def abort(self, message: str, code: int = 1) -> None:
        """Prints ``message`` naming this rank on stderr and aborts every rank."""
        print(f"ferroptim.distributed: rank {self.rank}: {message}; aborting", file=sys.stderr)
        sys.stderr.flush()
        self.comm.Abort(code)

    def _exchange(self, send: np.ndarray, dest: int, recv: np.ndarray, source: int, what: str):
        """Sends ``send`` to ``dest`` while receiving ``recv`` from ``source``."""
        requests = []
        if recv.size:
            requests.append(self.comm.Irecv(recv, source=source, tag=7))
        if send.size:
            requests.append(self.comm.Isend(send, dest=dest, tag=7))
            self.bytes_sent += send.nbytes
        self._wait(requests, source, what)

    # -- collectives ------------------------------------------------------

    def reduce_scatter(self, buf: np.ndarray, op: str = "sum") -> tuple[int, int]:
        """Ring reduce-scatter in place: afterwards ``buf[lo:hi]`` (returned) holds
        chunk ``rank`` reduced over every rank; the other chunks hold partial sums."""
        N, r = self.size, self.rank
        bounds = chunk_bounds(buf.size, N)
        self._seq += 1
        if N == 1:
            return bounds[0]
        combine = _OPS[op]
        right, left = (r + 1) % N, (r - 1) % N
        tmp = np.empty(max(hi - lo for lo, hi in bounds), buf.dtype)
        for s in range(N - 1):
            slo, shi = bounds[(r - s - 1) % N]
            rlo, rhi = bounds[(r - s - 2) % N]
            recv = tmp[: rhi - rlo]
            self._exchange(buf[slo:shi], right, recv, left, "reduce-scatter")
            combine(buf[rlo:rhi], recv, out=buf[rlo:rhi])
        return bounds[r]

    def allgather(self, buf: np.ndarray, bounds: list[tuple[int, int]] | None = None) -> None:
        """Ring all-gather in place: chunk ``r`` of rank ``r`` (``bounds[r]``,
        default :func:`chunk_bounds`) reaches every rank."""
        N, r = self.size, self.rank
        self._seq += 1
        if N == 1:
            return
        bounds = bounds or chunk_bounds(buf.size, N)
        right, left = (r + 1) % N, (r - 1) % N
        for s in range(N - 1):
            slo, shi = bounds[(r - s) % N]
            rlo, rhi = bounds[(r - s - 1) % N]
            self._exchange(buf[slo:shi], right, buf[rlo:rhi], left, "all-gather")

    def allreduce(self, buf: np.ndarray, op: str = "sum", bucket: int | None = None) -> None:
        """Ring all-reduce in place (reduce-scatter, then all-gather), over the
        whole buffer or in buckets of ``bucket`` elements."""
        step = buf.size if not bucket else bucket
        for lo in range(0, buf.size, max(step, 1)):
            part = buf[lo : lo + step]
            self.reduce_scatter(part, op)
            self.allgather(part)

    def allreduce_values(self, values: Any, op: str = "sum") -> np.ndarray:
        """A few float64 numbers reduced over every rank (the same result everywhere)."""
        local = np.asarray(values, dtype=np.float64).reshape(-1)
        # One element per rank at least, so that every chunk is non-empty.
        buf = np.zeros(max(local.size, 1) * self.size)
        buf[: local.size] = local
        if op == "max":
            buf[local.size :] = -np.inf
        self.allreduce(buf, op)
        return buf[: local.size].copy()

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``obj`` of ``root`` on every rank (pickled; with the timeout)."""
        return self.allgather_objects(obj if self.rank == root else None)[root]

    def allgather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (pickled; through
        the ring, so with the timeout and counted)."""
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        sizes = np.zeros(self.size)
        sizes[self.rank] = data.size
        sizes = self.allreduce_values(sizes).astype(np.int64)
        ends = np.cumsum(sizes)
        bounds = [(int(e - s), int(e)) for s, e in zip(sizes, ends)]
        buf = np.empty(int(ends[-1]), np.uint8)
        lo, hi = bounds[self.rank]
        buf[lo:hi] = data
        self.allgather(buf, bounds)
        return [pickle.loads(buf[a:b].tobytes()) for a, b in bounds]

    def barrier(self) -> None:
        """Waits for every rank, with the timeout of the collectives."""
        self.allreduce_values([0.0])

    def __repr__(self) -> str:
        return f"Comm(rank {self.rank} of {self.size}, {self.bytes_sent} bytes sent)"

"""Data-parallel training on MPI, with the optimizer state sharded (ZeRO 1 and 2).

Needs mpi4py (``pip install 'ferroptim[mpi]'``); run under ``mpirun``::

    mpirun -n 4 ferroptim train --distributed --out run1

- :class:`DistributedOptimizer`: grads all-reduced (stage 0), or the
  optimizer state sharded over ranks with grads all-reduced (ZeRO-1) or
  reduce-scattered (ZeRO-2), params all-gathered;
- :class:`Comm`: ring collectives with a byte count and a timeout that
  names a dead peer and aborts every rank;
- :class:`DistributedSampler`: every rank's part of each global batch;
- :class:`DistributedTrainer` and :func:`train_main`: the Trainer and the
  ``ferroptim train`` command line across ranks.

See docs/distributed.md.
"""

from __future__ import annotations

from ferroptim.distributed.comm import Comm, DistributedError, chunk_bounds, mpi_available
from ferroptim.distributed.sampler import DistributedSampler, local_part
from ferroptim.distributed.zero import DistributedOptimizer

__all__ = [
    "Comm",
    "DistributedError",
    "DistributedOptimizer",
    "DistributedSampler",
    "DistributedTrainer",
    "chunk_bounds",
    "local_part",
    "mpi_available",
    "train_main",
]


def __getattr__(name: str):
    # The trainer pulls in ferroptim.train (and its optional deps) only when used.
    if name in ("DistributedTrainer", "train_main"):
        from ferroptim.distributed import train

        return getattr(train, name)
    raise AttributeError(name)

"""Bytes each rank sends in one step, per stage, vs the ring formula.

Prints one JSON line per stage on rank 0 with every rank's count. argv: n (params)
"""

from __future__ import annotations

import json
import sys

import numpy as np

import ferroptim as fo
from ferroptim.distributed import Comm, DistributedOptimizer, chunk_bounds


def main() -> None:
    n = int(sys.argv[1])
    comm = Comm(timeout=60)
    for stage in (0, 1, 2):
        arena = fo.ParamArena({"w": (n,)}, dtype=np.float32)
        opt = DistributedOptimizer(fo.AdamW, arena, comm=comm, stage=stage, lr=1e-3)
        arena.grad[...] = 1.0
        opt.step()  # the first step allocates the state
        before = comm.bytes_sent
        arena.grad[...] = 1.0
        opt.step()
        sent = comm.bytes_sent - before
        sizes = [hi - lo for lo, hi in chunk_bounds(n, comm.size)]
        r, N = comm.rank, comm.size
        # Ring: a reduce-scatter sends every chunk but the rank's own, an
        # all-gather every chunk but its right neighbour's.
        rs = (n - sizes[r]) * arena.dtype.itemsize
        ag = (n - sizes[(r + 1) % N]) * arena.dtype.itemsize
        exact = {0: rs + ag, 1: rs + 2 * ag, 2: rs + ag}[stage]
        passes = {0: 2, 1: 3, 2: 2}[stage]
        rows = comm.allgather_objects({"sent": sent, "exact": exact, "state": opt.state_bytes()})
        if comm.rank == 0:
            N, b = comm.size, n * arena.dtype.itemsize
            print(
                json.dumps(
                    {
                        "stage": stage,
                        "size": N,
                        "grad_bytes": b,
                        "formula": passes * (N - 1) / N * b,
                        "ranks": rows,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

"""The global grad norm and the non-finite check over every rank's slice.

Rank 0's grads hold an Inf in the first element only, which after the
reduce-scatter lies in rank 0's slice alone: every rank must still skip the
step. Prints one JSON line per stage on rank 0.
"""

from __future__ import annotations

import json

import numpy as np

import ferroptim as fo
from ferroptim.distributed import Comm, DistributedOptimizer


def main() -> None:
    comm = Comm(timeout=60)
    for stage in (0, 1, 2):
        arena = fo.ParamArena({"w": (6,), "b": (4,)}, dtype=np.float64)
        opt = DistributedOptimizer(
            fo.SGD, arena, comm=comm, stage=stage, lr=0.1, skip_nonfinite=True, max_grad_norm=1.0
        )
        arena.grad[...] = 1.0
        if comm.rank == 0:
            arena.grad[0] = np.inf
        skipped = not opt.step()
        unchanged = bool(np.all(arena.data == 0.0))
        arena.grad[...] = 3.0  # mean 3 everywhere: norm sqrt(10) * 3, clipped to 1
        stepped = opt.step()
        rows = comm.allgather_objects(
            {
                "skipped": skipped,
                "unchanged": unchanged,
                "stepped": bool(stepped),
                "norm": opt.last_grad_norm,
                "skipped_steps": opt.skipped_steps,
                "params": arena.data.tolist(),
            }
        )
        if comm.rank == 0:
            print(json.dumps({"stage": stage, "ranks": rows}), flush=True)


if __name__ == "__main__":
    main()

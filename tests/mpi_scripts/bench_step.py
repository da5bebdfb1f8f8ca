"""Local numbers for the scaling model in docs/distributed.md (not run by the tests).

At this world size: the optimizer step time over this rank's slice (AdamW,
float32), and the ring reduce-scatter / all-gather times and bandwidth over
the arena. Prints one JSON line on rank 0 (medians of `reps`). argv: n reps
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import ferroptim as fo
from ferroptim.distributed import Comm, DistributedOptimizer


def median_time(fn, reps: int, comm: Comm) -> float:
    times = []
    for _ in range(reps):
        comm.barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    n, reps = int(sys.argv[1]), int(sys.argv[2])
    comm = Comm(timeout=120)
    arena = fo.ParamArena({"w": (n,)}, dtype=np.float32)
    opt = DistributedOptimizer(fo.AdamW, arena, comm=comm, stage=2, lr=1e-3)
    arena.grad[...] = 1.0
    opt.step()
    grads = [arena.grad[p.lo : p.hi] for p in opt.pieces]
    shard_step = median_time(
        lambda: opt.shard._engine.step(grads, opt.shard.param_groups, 1.0), reps, comm
    )
    rs = median_time(lambda: comm.reduce_scatter(arena.grad), reps, comm)
    ag = median_time(lambda: comm.allgather(arena.data), reps, comm)
    whole = median_time(opt.step, reps, comm)
    if comm.rank == 0:
        print(
            json.dumps(
                {
                    "size": comm.size,
                    "elements": n,
                    "shard_step_s": shard_step,
                    "reduce_scatter_s": rs,
                    "allgather_s": ag,
                    "zero2_step_s": whole,
                    "ring_bytes_per_s": (comm.size - 1) / comm.size * n * 4 / max(rs, 1e-12),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

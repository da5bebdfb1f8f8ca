"""A rank that dies (argv[1] == "die") or hangs ("hang") at step 3 of 10.

The other ranks must exit non-zero within a bounded time, with a message
naming that rank; rank 0 saves a checkpoint (the gathered state) after
every step to argv[2], which must stay loadable.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

import numpy as np
from common import data, grads, init_arena

import ferroptim as fo
from ferroptim.distributed import Comm, DistributedOptimizer


def main() -> None:
    fault, path = sys.argv[1], sys.argv[2]
    # Long enough that a live rank slowed by a busy machine is not taken for hung.
    comm = Comm(timeout=10.0)
    arena = init_arena(0)
    opt = DistributedOptimizer(fo.Adam, arena, comm=comm, stage=2, lr=1e-2)
    X, Y = data(0)
    for t in range(10):
        if t == 3 and comm.rank == comm.size - 1:
            if fault == "die":
                os._exit(7)
            time.sleep(3600)
        grads(arena, X[comm.rank :: comm.size], Y[comm.rank :: comm.size])
        opt.step()
        sd = opt.state_dict()
        if comm.rank == 0:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                pickle.dump({"params": arena.data.copy(), "optimizer": sd, "step": t + 1}, f)
            os.replace(tmp, path)  # atomic: a crash never leaves half a file
    print("finished", flush=True)
    np.save(path + ".done", arena.data)


if __name__ == "__main__":
    main()

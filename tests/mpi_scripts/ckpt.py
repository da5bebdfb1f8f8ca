"""Save the gathered state at one world size, resume at another.

argv: save|resume PATH steps stage. save: trains `steps` steps and writes
the params and the gathered (single-process format) state_dict to PATH on
rank 0. resume: loads PATH, trains `steps` more, writes PATH.out on rank 0.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
from common import data, grads, groups, init_arena

import ferroptim as fo
from ferroptim.distributed import Comm, DistributedOptimizer, local_part

KW = {"lr": 1e-2, "weight_decay": 0.1, "ema_decay": 0.9, "max_grad_norm": 0.5}


def run(opt, arena, comm, first: int, steps: int) -> None:
    X, Y = data(0)
    for t in range(first, first + steps):
        idx = np.arange(len(X))[(t * 16) % 64 : (t * 16) % 64 + 16]
        part = local_part(idx, comm.rank, comm.size)
        grads(arena, X[part], Y[part])
        opt.step(weight=len(part) / len(idx))


def main() -> None:
    mode, path, steps, stage = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    comm = Comm(timeout=60)
    arena = init_arena(0)
    opt = DistributedOptimizer(fo.AdamW, groups(arena, KW["lr"]), comm=comm, stage=stage, **KW)
    first = 0
    if mode == "resume":
        saved = comm.bcast(pickle.load(open(path, "rb")) if comm.rank == 0 else None)
        arena.data[...] = saved["params"]
        opt.load_state_dict(saved["optimizer"])
        first = saved["step"]
        path += ".out"
    run(opt, arena, comm, first, steps)
    sd = opt.state_dict()
    with opt.averaged_params():
        averaged = arena.data.copy()
    if comm.rank == 0:
        with open(path, "wb") as f:
            pickle.dump(
                {
                    "params": arena.data.copy(),
                    "averaged": averaged,
                    "optimizer": sd,
                    "step": first + steps,
                    "state_bytes": opt.state_bytes(),
                },
                f,
            )


if __name__ == "__main__":
    main()

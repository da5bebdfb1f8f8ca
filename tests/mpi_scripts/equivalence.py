"""Every optimizer, ZeRO stage 0/1/2, at this world size vs the single process.

Prints one JSON line per case on rank 0: the largest relative difference of
the params and of the gathered state from the single-process run, whether
the gathered state_dict has the single-process keys, and the state bytes
of each rank. argv: steps [names...]
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
from common import OPTIMIZERS, data, grads, groups, init_arena

from ferroptim.distributed import Comm, DistributedOptimizer, local_part


def rel(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def train(cls, kw, options, steps, comm=None, stage=None, seed=0, bucket=None, mean=False):
    arena = init_arena(seed)
    X, Y = data(seed)
    if comm is None:
        opt = cls(groups(arena, kw["lr"]), **kw, **options)
    else:
        opt = DistributedOptimizer(
            cls,
            groups(arena, kw["lr"]),
            comm=comm,
            stage=stage,
            bucket_size=bucket,
            **kw,
            **options,
        )
    for t in range(steps):
        idx = np.arange(len(X))[(t * 16) % 64 : (t * 16) % 64 + 16]
        if t == 3:
            opt.freeze("b2")
        if t == 6:
            opt.unfreeze("b2")
        if comm is None:
            grads(arena, X[idx], Y[idx])
            opt.step()
        else:
            part = local_part(idx, comm.rank, comm.size)
            grads(arena, X[part], Y[part])
            # Equal parts: the plain mean over ranks; else each rank's share.
            opt.step(weight=None if mean else len(part) / len(idx))
        for g in opt.param_groups:  # a schedule writing lr into the groups
            g["lr"] *= 0.95
    return arena, opt


def main() -> None:
    steps = int(sys.argv[1])
    names = sys.argv[2:] or list(OPTIMIZERS)
    comm = Comm(timeout=60)
    option_sets = {
        "plain": {},
        "clip+ema": {"max_grad_norm": 0.5, "ema_decay": 0.9, "skip_nonfinite": True},
        "accumulate": {"accumulate": 2, "clip_value": 0.3},
    }
    for name in names:
        cls, kw = OPTIMIZERS[name]
        for oname, options in option_sets.items():
            ref_arena, ref = train(cls, kw, options, steps)
            ref_sd = ref.state_dict()
            for stage in (0, 1, 2):
                # Buckets of 7 elements under accumulation, the plain mean without options.
                bucket = 7 if oname == "accumulate" else None
                arena, opt = train(
                    cls, kw, options, steps, comm, stage, bucket=bucket, mean=oname == "plain"
                )
                sd = opt.state_dict()
                sdiff = 0.0
                same_keys = set(sd["state"]) == set(ref_sd["state"])
                for key, entry in ref_sd["state"].items():
                    if key not in sd["state"]:
                        continue
                    same_keys &= set(entry) == set(sd["state"][key])
                    for slot, v in entry.items():
                        if isinstance(v, np.ndarray) and slot in sd["state"][key]:
                            sdiff = max(sdiff, rel(np.asarray(sd["state"][key][slot]), v))
                            same_keys &= sd["state"][key][slot].shape == v.shape
                bytes_ = comm.allgather_objects(opt.state_bytes())
                if comm.rank == 0:
                    row = {
                        "optimizer": name,
                        "options": oname,
                        "stage": stage,
                        "size": comm.size,
                        "param_rel": rel(arena.data, ref_arena.data),
                        "digest": hashlib.sha256(arena.data.tobytes()).hexdigest(),
                        "size_elements": int(arena.size),
                        "state_rel": sdiff,
                        "same_keys": bool(same_keys),
                        "updates": opt.num_updates,
                        "ref_updates": ref.num_updates,
                        "state_bytes": bytes_,
                        "ref_state_bytes": int(
                            sum(
                                v.nbytes
                                for st in ref._engine.state()
                                for v in st.values()
                                if isinstance(v, np.ndarray)
                            )
                        ),
                    }
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

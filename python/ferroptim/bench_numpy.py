"""The NumPy baseline of ``ferroptim bench``: SGD, Adam, AdamW and RMSprop written
with in-place ufuncs, and the bytes each one streams (see :mod:`ferroptim.bench`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ferroptim.bench import Case

__all__ = ["NUMPY_BYTES_PER_PARAM", "numpy_impl"]

# What numpy_impl's ufuncs stream per float32 param (reads + writes, in order):
#   sgd:     s0*=m 8, s0+=g 12, tmp=-lr*s0 8, p+=tmp 12                      = 40
#   rmsprop: s0*=a 8, tmp=g*g 8, tmp*=c 8, s0+=tmp 12, sqrt 8, +eps 8,
#            g/tmp 12, *=-lr 8, p+=tmp 12                                    = 84
#   adam:    s0*=b1 8, tmp=g*c 8, s0+=tmp 12, s1*=b2 8, tmp=g*g 8, *=c 8,
#            s1+=tmp 12, sqrt 8, /=bc 8, +=eps 8, s0/tmp 12, *=-lr 8, p+=tmp 12 = 120
#   adamw:   adam + p*=decay 8                                               = 128
NUMPY_BYTES_PER_PARAM = {"sgd": 40, "adam": 120, "adamw": 128, "rmsprop": 84}


def numpy_impl(
    opt: str, case: Case, data: tuple[list[np.ndarray], list[np.ndarray]] | None = None
) -> Callable[[], None] | None:
    """A careful in-place NumPy implementation (ufuncs with out=, one scratch buffer).

    Updates ``data``'s params (default: the case's own random arrays). None for an
    optimizer without a hand-written NumPy version (see ``NUMPY_BYTES_PER_PARAM``).
    """
    if opt not in NUMPY_BYTES_PER_PARAM:
        return None
    from ferroptim.bench import HYPER, _data

    params, grads = data if data is not None else _data(case)
    h = HYPER[opt]
    lr = h["lr"]
    scratch = np.empty(max(p.size for p in params), case.dtype)
    # Adam's two moments; one buffer for SGD's momentum and RMSprop's square average.
    slots = 2 if opt in ("adam", "adamw") else 1
    state = [[np.zeros_like(p) for _ in range(slots)] + [None] * (2 - slots) for p in params]
    t = [0]

    def step() -> None:
        t[0] += 1
        for p, g, (s0, s1) in zip(params, grads, state):
            tmp = scratch[: p.size].reshape(p.shape)
            if opt == "sgd":
                s0 *= h["momentum"]
                s0 += g
                np.multiply(s0, -lr, out=tmp)
                p += tmp
            elif opt == "rmsprop":
                s0 *= 0.99
                np.multiply(g, g, out=tmp)
                tmp *= 0.01
                s0 += tmp
                np.sqrt(s0, out=tmp)
                tmp += 1e-8
                np.divide(g, tmp, out=tmp)
                tmp *= -lr
                p += tmp
            else:
                if opt == "adamw":
                    p *= 1 - lr * h["weight_decay"]
                s0 *= 0.9
                np.multiply(g, 0.1, out=tmp)
                s0 += tmp
                s1 *= 0.999
                np.multiply(g, g, out=tmp)
                tmp *= 0.001
                s1 += tmp
                np.sqrt(s1, out=tmp)
                tmp /= math.sqrt(1 - 0.999 ** t[0])
                tmp += 1e-8
                np.divide(s0, tmp, out=tmp)
                tmp *= -lr / (1 - 0.9 ** t[0])
                p += tmp

    step.state_arrays = [a for pair in state for a in pair if a is not None]  # type: ignore[attr-defined]
    return step

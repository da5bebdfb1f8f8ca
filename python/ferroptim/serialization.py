"""Saving and loading optimizer state and params to a file, with no pickle.

``np.savez(path, **opt.state_dict())`` does not work: a state_dict is nested
(dicts of dicts, int keys, lists of groups), NumPy stores it as object arrays,
and ``np.load`` then refuses them (or, with ``allow_pickle=True``, runs
whatever code the file holds). Use :func:`save` and :func:`load` instead:

>>> import numpy as np, ferroptim as fo
>>> w = np.zeros(3, np.float32)
>>> opt = fo.AdamW([w], lr=1e-3)
>>> opt.step([np.ones(3, np.float32)])
True
>>> path = fo.save("run.npz", {"params": {"w": w}, "optimizer": opt.state_dict()})
>>> saved = fo.load("run.npz")
>>> w[...] = saved["params"]["w"]
>>> opt.load_state_dict(saved["optimizer"])

The file is an ordinary ``.npz``: every array is a member, and the rest
(nesting, keys, numbers, strings) is a JSON header. Reading it never
unpickles; a damaged or hostile file raises
:class:`ferroptim.train.CheckpointError` (a ``ValueError``). Writes are
atomic: a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["load", "save"]


def save(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` to ``path`` (an ``.npz`` with a JSON header), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (taken as given: no ``.npz`` is appended); its folder is created.
    obj : Any
        Nested dicts (any keys of the types below), lists, tuples, NumPy arrays
        (not object arrays), ints, floats, bools, strings and None: e.g.
        ``opt.state_dict()``, ``model.arena.params``, or a dict of both.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    TypeError
        ``obj`` holds something else (an object array, a set, a torch tensor, ...).
    """
    from ferroptim.train import checkpoint  # lazily: keeps `import ferroptim` light

    return checkpoint.save(path, obj)


def load(path: str | os.PathLike) -> Any:
    """Reads what :func:`save` wrote: the same nesting, keys and arrays.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save` (or a trainer checkpoint).

    Returns
    -------
    Any
        The saved object; arrays come back as writable NumPy arrays with
        their dtype, shape and bits, tuples as tuples, NumPy scalars as
        Python numbers.

    Raises
    ------
    ferroptim.train.CheckpointError
        The file is missing, not written by :func:`save`, corrupt or hostile.
    """
    from ferroptim.train import checkpoint

    return checkpoint.load(path)

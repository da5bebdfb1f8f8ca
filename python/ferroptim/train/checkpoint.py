"""Checkpoints: one ``.npz`` holding arrays and a JSON header.

Nested state (dicts, lists, numbers, strings, arrays) is split in two: every
NumPy array goes into the archive under a generated key and is replaced in
the header by ``{"__array__": key}``; the rest is JSON. Loading uses
``np.load(allow_pickle=False)``, so opening a checkpoint never runs code.

Writes are atomic: a temporary file in the same folder is written, flushed
and fsynced, then renamed over the target. A crash mid-write leaves the old
checkpoint (or none), never a broken one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "FORMAT", "load", "save"]

FORMAT = "ferroptim-checkpoint/1"
_HEADER = "__header__"
# Keys that mark encoded values; dicts using them are stored as item lists.
_MARKERS = {"__array__", "__items__", "__tuple__"}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not fit the run."""


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("cannot store an object array in a checkpoint")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not _MARKERS & obj.keys():
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, archive: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            key = obj["__array__"]
            if key not in archive.files:
                raise CheckpointError(f"the checkpoint lacks array {key!r}")
            return archive[key]
        if "__items__" in obj:
            return {_decode(k, archive): _decode(v, archive) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, archive) for v in obj["__tuple__"])
        return {k: _decode(v, archive) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, archive) for v in obj]
    return obj


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Writes ``state`` to ``path`` atomically; returns the path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    header = {"format": FORMAT, "state": _encode(state, arrays)}
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    with _suppress():
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files") or _HEADER not in archive.files:
                raise CheckpointError(f"{path} is not a ferroptim checkpoint (no header)")
            header = json.loads(archive[_HEADER].tobytes().decode())
            if header.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} has format {header.get('format')!r}, expected {FORMAT!r}"
                )
            state = _decode(header["state"], archive)
            # Materialize every array now, while the archive is open.
            return _materialize(state)
    except CheckpointError:
        raise
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
    ) as err:
        raise CheckpointError(f"{path} is corrupt or truncated: {err}") from err


def _materialize(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return np.array(obj)
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj

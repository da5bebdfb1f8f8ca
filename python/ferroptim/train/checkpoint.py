"""Checkpoints: one ``.npz`` holding arrays and a JSON header.

Nested state (dicts, lists, numbers, strings, arrays) is split in two: every
NumPy array goes into the archive under a generated key and is replaced in
the header by ``{"__array__": key}``; the rest is JSON. Loading never
unpickles and never runs code.

Loading trusts nothing in the file: every array's ``.npy`` header is read
first and its size checked against the zip member's declared size (and the
compressed size: no member may inflate past what deflate can produce), then
exactly that many bytes are read. Whatever is wrong with a file (not a zip,
truncated, a header that is not a JSON object, nesting deeper than
:data:`MAX_DEPTH`, an array larger than its member, an unsupported zip
feature) raises :class:`CheckpointError`.

Writes are atomic: a temporary file ``.{name}.pid{PID}.{random}.tmp`` in the
same folder is written, flushed and fsynced, then renamed over the target. A
crash mid-write leaves the old checkpoint (or none), never a broken one. A
process killed mid-write (``kill -9``) leaves its temporary file behind;
the next save to the same target removes such leftovers whose process is
gone. Files get the usual permissions (``0o666`` less the umask).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "CheckpointError", "FORMAT", "load", "save"]

FORMAT = "ferroptim-checkpoint/1"
_HEADER = "__header__"
# Keys that mark encoded values; dicts using them are stored as item lists.
_MARKERS = {"__array__", "__items__", "__tuple__"}
#: Deepest nesting of dicts, lists and tuples a checkpoint may hold.
MAX_DEPTH = 100
# Deflate cannot expand data by more than about 1032:1; a member claiming
# more is lying about its size (a zip bomb).
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 24
# Old versions used mkstemp: ".{name}.XXXXXXXX.tmp" with 8 random characters.
_LEGACY_TMP = r"[a-z0-9_]{8}"
_IMPORTED_AT = time.time()
# ml_dtypes types .npy cannot name: name -> (ml_dtypes attribute, the same-size
# unsigned int they are stored as).
_VIEWED = {"bfloat16": ("bfloat16", np.uint16)}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not fit the run."""


def _encode(obj: Any, arrays: dict[str, np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        # Refused here rather than written as a file that load() refuses.
        raise ValueError(f"cannot store state nested deeper than {MAX_DEPTH} levels")
    if hasattr(obj, "__cuda_array_interface__") and hasattr(obj, "get"):
        obj = obj.get()  # a CuPy array: stored as its NumPy copy
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("cannot store an object array in a checkpoint")
        key = f"a{len(arrays)}"
        if obj.dtype.name in _VIEWED:
            # .npy has no bfloat16: its bits go in as unsigned ints, the name in the header.
            arrays[key] = np.ascontiguousarray(obj).view(_VIEWED[obj.dtype.name][1])
            return {"__array__": key, "dtype": obj.dtype.name}
        arrays[key] = obj
        return {"__array__": key}
    d = depth + 1
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not _MARKERS & obj.keys():
            return {k: _encode(v, arrays, d) for k, v in obj.items()}
        return {
            "__items__": [[_encode(k, arrays, d), _encode(v, arrays, d)] for k, v in obj.items()]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, d) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays, d) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


# -- writing -------------------------------------------------------------------


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Writes ``state`` to ``path`` atomically; returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        The target file; its folder is created if needed.
    state : dict
        Nested dicts, lists, tuples, NumPy arrays (not object arrays),
        numbers, strings, booleans and None.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    header = {"format": FORMAT, "state": _encode(state, arrays)}
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _create_temp(path: Path) -> tuple[int, str]:
    # os.open with mode 0o666 applies the umask as for any file (mkstemp
    # would force 0o600); O_EXCL keeps the name ours alone.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.pid{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # maybe another thread's save in progress
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove_stale_temp_files(path: Path) -> None:
    """Removes temporary files of earlier saves to ``path`` whose process died.

    A file of this version names its writer's pid and is stale once that
    process is gone; a file of an older version (mkstemp names) is stale when
    it was last written before this module was imported. Best effort: a file
    we cannot list or remove is left alone.
    """
    name = re.escape(path.name)
    ours = re.compile(rf"\.{name}\.pid(\d+)\.[0-9a-f]+\.tmp")
    legacy = re.compile(rf"\.{name}\.{_LEGACY_TMP}\.tmp")
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return
    for tmp in candidates:
        with contextlib.suppress(OSError):
            match = ours.fullmatch(tmp.name)
            if match:
                stale = not _pid_alive(int(match.group(1)))
            elif legacy.fullmatch(tmp.name):
                stale = tmp.stat().st_mtime < _IMPORTED_AT
            else:
                continue
            if stale and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


# -- reading -------------------------------------------------------------------


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Raises
    ------
    CheckpointError
        The file is missing, not a checkpoint, corrupt, truncated or hostile.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            reader = _Reader(archive, path.stat().st_size)
            if _HEADER not in reader.members:
                raise CheckpointError(f"{path} is not a ferroptim checkpoint (no header)")
            raw = reader.read(_HEADER)
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise CheckpointError(f"{path}: the header is not a byte string")
            header = json.loads(raw.tobytes().decode())
            if not isinstance(header, dict):
                raise CheckpointError(
                    f"{path}: the header is a JSON {type(header).__name__}, not an object"
                )
            if header.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} has format {header.get('format')!r}, expected {FORMAT!r}"
                )
            if "state" not in header:
                raise CheckpointError(f"{path}: the header has no 'state'")
            return reader.decode(header["state"], 0)
    except CheckpointError as err:
        message = str(err)
        if str(path) not in message:
            raise CheckpointError(f"{path}: {message}") from err
        raise
    except RecursionError as err:
        raise CheckpointError(f"{path} is corrupt: its header is nested too deeply") from err
    except MemoryError as err:
        raise CheckpointError(f"{path}: not enough memory for its arrays") from err
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
        SyntaxError,
    ) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path} is corrupt or truncated: {detail}") from err


class _Reader:
    """Reads the ``.npy`` members of a checkpoint's zip, each at most once."""

    def __init__(self, archive: zipfile.ZipFile, file_size: int) -> None:
        self.archive = archive
        self.file_size = file_size
        self.members = {
            info.filename[:-4]: info
            for info in archive.infolist()
            if info.filename.endswith(".npy")
        }
        self.used: set[str] = set()

    def read(self, key: str) -> np.ndarray:
        info = self.members[key]
        if info.flag_bits & 0x1:
            raise CheckpointError(f"array {key!r} is encrypted")
        if info.header_offset + info.compress_size > self.file_size:
            raise CheckpointError(f"array {key!r} extends past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise CheckpointError(f"array {key!r}: stored member sizes disagree")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                raise CheckpointError(
                    f"array {key!r} claims {info.file_size} bytes from "
                    f"{info.compress_size} compressed: not a real deflate stream"
                )
        else:
            raise CheckpointError(
                f"array {key!r} uses zip compression method {info.compress_type}; "
                "only stored and deflated members are read"
            )
        with self.archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise CheckpointError(f"array {key!r}: unknown .npy version {version}")
            if dtype.hasobject:
                raise CheckpointError(f"array {key!r} holds Python objects (pickles are refused)")
            nbytes = math.prod(shape) * dtype.itemsize
            # The .npy header and the data must fill the member exactly.
            if f.tell() + nbytes != info.file_size:
                raise CheckpointError(
                    f"array {key!r} declares shape {shape} of {dtype} ({nbytes} bytes) "
                    f"in a member of {info.file_size} bytes"
                )
            out = np.empty(shape, dtype, order="F" if fortran else "C")
            buffer = memoryview(out.reshape(-1, order="A").view(np.uint8))
            done = 0
            while done < nbytes:
                got = f.readinto(buffer[done : min(done + _CHUNK, nbytes)])
                if not got:
                    raise CheckpointError(f"array {key!r} is truncated")
                done += got
            if f.read(1):  # reaching the end also checks the CRC
                raise CheckpointError(f"array {key!r} has trailing data")
        return out

    def decode(self, obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CheckpointError(f"the state is nested deeper than {MAX_DEPTH} levels")
        if isinstance(obj, dict):
            if "__array__" in obj:
                key = obj["__array__"]
                if not isinstance(key, str) or key == _HEADER or key not in self.members:
                    raise CheckpointError(f"the checkpoint lacks array {key!r}")
                if key in self.used:
                    # One array per reference: a file repeating a key could
                    # otherwise make one member fill memory many times over.
                    raise CheckpointError(f"array {key!r} is referenced twice")
                self.used.add(key)
                array = self.read(key)
                return _viewed(key, array, obj["dtype"]) if "dtype" in obj else array
            if "__items__" in obj:
                return {
                    self.decode(k, depth + 1): self.decode(v, depth + 1)
                    for k, v in obj["__items__"]
                }
            if "__tuple__" in obj:
                items = obj["__tuple__"]
                if not isinstance(items, list):
                    raise CheckpointError("a '__tuple__' must hold a list")
                return tuple(self.decode(v, depth + 1) for v in items)
            return {k: self.decode(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.decode(v, depth + 1) for v in obj]
        return obj


def _viewed(key: str, array: np.ndarray, name: Any) -> np.ndarray:
    """A stored ``bfloat16`` array (see :func:`_encode`) back in its dtype."""
    if not isinstance(name, str) or name not in _VIEWED:
        raise CheckpointError(f"array {key!r} has unknown dtype {name!r}")
    attr, stored = _VIEWED[name]
    if array.dtype != stored:
        raise CheckpointError(f"array {key!r}: {name} is stored as {np.dtype(stored)}")
    try:
        import ml_dtypes
    except ImportError:
        raise CheckpointError(f"array {key!r} holds {name}: install ml_dtypes") from None
    return array.view(getattr(ml_dtypes, attr))

"""Hardening of the trainer's checkpoint files (issues 11 and 12).

- hostile checkpoint files (a list header, deep nesting, an array bigger than
  its member, a zip bomb, a bad zip version) are CheckpointError;
- a save cleans the temporary files a killed save left, and writes files with
  the umask's permissions.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from _hardening_train_helpers import same
from ferroptim.train import CheckpointError
from ferroptim.train import checkpoint as ckpt

# -- 11.12: hostile checkpoint files -------------------------------------------


def _npy(array=None, header=None):
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, array, allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        if array is not None:
            buf.write(array.tobytes())
    return buf.getvalue()


def _header(state):
    body = state if isinstance(state, bytes) else json.dumps(state).encode()
    return _npy(np.frombuffer(body, np.uint8))


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return path


def _patch_central(path, name, offset, fmt, value):
    """Overwrites a field of ``name``'s central directory record."""
    raw = bytearray(path.read_bytes())
    start = 0
    while True:
        start = raw.index(b"PK\x01\x02", start)
        (name_len,) = struct.unpack_from("<H", raw, start + 28)
        if raw[start + 46 : start + 46 + name_len] == name.encode():
            break
        start += 4
    struct.pack_into(fmt, raw, start + offset, value)
    path.write_bytes(bytes(raw))


ONE_ARRAY = {"format": ckpt.FORMAT, "state": {"x": {"__array__": "a0"}}}


def test_a_header_that_is_a_json_list_is_a_checkpoint_error(tmp_path):
    path = _zip(tmp_path / "list.npz", {"__header__.npy": _header([1, 2, 3])})
    with pytest.raises(CheckpointError, match="list"):
        ckpt.load(path)


def test_deeply_nested_json_is_a_checkpoint_error(tmp_path):
    deep = b'{"format": "ferroptim-checkpoint/1", "state": ' + b"[" * 100_000
    deep += b"]" * 100_000 + b"}"
    path = _zip(tmp_path / "deep.npz", {"__header__.npy": _header(deep)})
    with pytest.raises(CheckpointError, match="deep.npz"):
        ckpt.load(path)
    # Deep but within what json reads: refused by the checkpoint's own bound.
    nested = {"format": ckpt.FORMAT, "state": {}}
    inner = nested["state"]
    for _ in range(ckpt.MAX_DEPTH + 5):
        inner["a"] = {}
        inner = inner["a"]
    path = _zip(tmp_path / "nested.npz", {"__header__.npy": _header(nested)})
    with pytest.raises(CheckpointError, match="nested deeper"):
        ckpt.load(path)
    # ... and never written in the first place.
    with pytest.raises(ValueError, match="nested deeper"):
        ckpt.save(tmp_path / "w.npz", nested)
    assert not (tmp_path / "w.npz").exists()


def test_a_member_declaring_a_1_tib_array_is_a_checkpoint_error(tmp_path):
    huge = _npy(np.zeros(8, np.uint8), {"descr": "<f8", "fortran_order": False, "shape": (2**37,)})
    path = _zip(tmp_path / "tib.npz", {"__header__.npy": _header(ONE_ARRAY), "a0.npy": huge})
    with pytest.raises(CheckpointError, match="1099511627776 bytes"):
        ckpt.load(path)


def test_a_member_inflating_past_its_declared_array_is_refused(tmp_path):
    # The .npy header says 10 float64 values; the deflated member holds 8 MB.
    lying = _npy(
        np.zeros(8_000_000, np.uint8), {"descr": "<f8", "fortran_order": False, "shape": (10,)}
    )
    path = _zip(
        tmp_path / "bomb.npz",
        {"__header__.npy": _header(ONE_ARRAY), "a0.npy": lying},
        zipfile.ZIP_DEFLATED,
    )
    with pytest.raises(CheckpointError, match="80 bytes"):
        ckpt.load(path)


def test_a_member_claiming_more_than_deflate_can_give_is_refused(tmp_path):
    declared = 2**26  # 64 MiB of float64 from a few hundred compressed bytes
    header = {"descr": "<f8", "fortran_order": False, "shape": (declared // 8,)}
    member = _npy(np.zeros(64, np.uint8), header)
    path = _zip(
        tmp_path / "ratio.npz",
        {"__header__.npy": _header(ONE_ARRAY), "a0.npy": member},
        zipfile.ZIP_DEFLATED,
    )
    _patch_central(path, "a0.npy", 24, "<I", declared + len(member) - 64)  # file_size
    with pytest.raises(CheckpointError, match="compressed"):
        ckpt.load(path)


def test_a_stored_member_claiming_more_bytes_than_the_file_has_is_refused(tmp_path):
    declared = 2**31  # 2 GiB, in a file of a few hundred bytes
    header = {"descr": "<f8", "fortran_order": False, "shape": (declared // 8,)}
    member = _npy(np.zeros(64, np.uint8), header)
    path = _zip(tmp_path / "long.npz", {"a0.npy": member, "__header__.npy": _header(ONE_ARRAY)})
    size = declared + len(member) - 64
    _patch_central(path, "a0.npy", 20, "<I", size)  # compress_size
    _patch_central(path, "a0.npy", 24, "<I", size)  # file_size
    with pytest.raises(CheckpointError, match="past the end"):
        ckpt.load(path)


def test_a_corrupted_zip_version_byte_is_a_checkpoint_error(tmp_path):
    good = ckpt.save(tmp_path / "good.npz", {"x": np.arange(4.0)})
    bad = tmp_path / "version.npz"
    bad.write_bytes(good.read_bytes())
    _patch_central(bad, "a0.npy", 6, "<H", 99)  # version needed to extract: 9.9
    with pytest.raises(CheckpointError, match="version.npz"):
        ckpt.load(bad)
    method = tmp_path / "method.npz"
    method.write_bytes(good.read_bytes())
    _patch_central(method, "a0.npy", 10, "<H", 99)  # compression method 99
    with pytest.raises(CheckpointError, match="method.npz"):
        ckpt.load(method)


def test_an_array_referenced_twice_is_refused(tmp_path):
    state = {"format": ckpt.FORMAT, "state": [{"__array__": "a0"}] * 3}
    path = _zip(
        tmp_path / "twice.npz",
        {"__header__.npy": _header(state), "a0.npy": _npy(np.zeros(10))},
    )
    with pytest.raises(CheckpointError, match="twice"):
        ckpt.load(path)


def test_compressed_and_fortran_members_still_load(tmp_path):
    # np.savez_compressed writes deflated members: honest ones are read.
    arrays = {"a0": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "a1": np.array(["ab"])}
    state = {"format": ckpt.FORMAT, "state": {"f": {"__array__": "a0"}, "s": {"__array__": "a1"}}}
    header = np.frombuffer(json.dumps(state).encode(), np.uint8)
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, __header__=header, **arrays)
    loaded = ckpt.load(path)
    same(loaded["f"], arrays["a0"])
    same(loaded["s"], arrays["a1"])
    assert loaded["f"].flags.writeable


# -- 11.13 and 12.8: temporary files and permissions ---------------------------

KILLED_SAVE = """
import os, signal, sys
import numpy as np
from ferroptim.train import checkpoint

def die(fd):
    os.kill(os.getpid(), signal.SIGKILL)

os.fsync = die  # killed after writing the temporary file, before the rename
checkpoint.save(sys.argv[1], {"x": np.ones(1000)})
"""


@pytest.mark.skipif(os.name == "nt", reason="kill -9 and pid checks are POSIX")
def test_a_save_removes_the_temp_files_of_killed_saves(tmp_path):
    target = tmp_path / "last.npz"
    ckpt.save(target, {"x": 1})
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(target)], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".last.npz.")
    # A leftover of an older version (mkstemp name), last written long ago.
    legacy = tmp_path / ".last.npz.ab12cd_9.tmp"
    legacy.write_bytes(b"old")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    # Kept: a save in progress in a live process, another target's file, others' files.
    live = tmp_path / f".last.npz.pid{os.getppid()}.00ff.tmp"
    dead = left[0].split(".pid")[1].split(".")[0] if ".pid" in left[0] else "999999"
    other_target = tmp_path / f".best.npz.pid{dead}.00ff.tmp"
    unrelated = tmp_path / ".last.npz.mine.tmp"
    for keep in (live, other_target, unrelated):
        keep.write_bytes(b"keep")
    ckpt.save(target, {"x": 2})
    assert ckpt.load(target) == {"x": 2}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["last.npz", live.name, other_target.name, unrelated.name])


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_checkpoints_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = ckpt.save(tmp_path / "ck.npz", {"x": np.ones(3)})
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        path = ckpt.save(tmp_path / "private.npz", {"x": np.ones(3)})
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)

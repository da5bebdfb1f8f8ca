"""Checkpoints of ferroptim.train: the .npz + JSON format, atomic writes and
safe loading of bad files.

Loading a trainer state that does not match, and exact resume (in a new
process and through ``ferroptim train --stop-after / --resume``), are in
test_checkpoint_resume.py.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _checkpoint_helpers import assert_same
from ferroptim.train import CheckpointError
from ferroptim.train import checkpoint as ckpt

# -- round trip ----------------------------------------------------------------


def nested_state() -> dict:
    rng = np.random.default_rng(0)
    return {
        "ints": {0: "zero", 1: [1, 2, 3], -5: None},
        "tuple": (1, "two", (3.5, None), np.arange(3)),
        "arrays": {
            "f32": rng.standard_normal((3, 4)).astype(np.float32),
            "f64": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324]),
            "f16": np.array([1.5, -2.0], dtype=np.float16),
            "i64": np.array([-(2**62), 2**62], dtype=np.int64),
            "u8": np.arange(256, dtype=np.uint8),
            "bool": np.array([[True, False]]),
            "c128": np.array([1 + 2j, -3j]),
            "scalar": np.array(7.25),
            "empty": np.zeros((0, 3), np.float32),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "text": np.array(["ab", "cde"]),
        },
        "floats": [0.1, float("nan"), float("inf"), -float("inf"), -0.0, 1e308],
        "none": None,
        "bool": True,
        "str": "naïve ✓",
        "empty": {},
        "list_of_arrays": [np.ones(2), np.zeros(1, np.int32)],
        "mixed_keys": {(1, 2): "tuple key", 3.5: "float key", None: "none key"},
    }


def test_round_trip_of_nested_state(tmp_path):
    state = nested_state()
    path = ckpt.save(tmp_path / "sub" / "state.npz", state)
    assert path == tmp_path / "sub" / "state.npz"
    loaded = ckpt.load(path)
    assert_same(loaded, state)
    # The arrays are materialized: usable after the file is gone.
    os.remove(path)
    assert loaded["arrays"]["f32"].sum() == state["arrays"]["f32"].sum()
    # Scalars of NumPy types come back as Python numbers.
    again = ckpt.load(ckpt.save(tmp_path / "np.npz", {"a": np.float32(1.5), "b": np.int64(3)}))
    assert again == {"a": 1.5, "b": 3}


def test_round_trip_of_dicts_whose_keys_look_like_the_format_markers(tmp_path):
    # The header marks arrays, tuples and non-string keys with "__array__",
    # "__tuple__" and "__items__"; a user dict with such a key must survive.
    state = {
        "a": {"__tuple__": [1, 2], "other": 3},
        "b": {"__items__": "x"},
        "c": {"__array__": 1},
    }
    assert_same(ckpt.load(ckpt.save(tmp_path / "m.npz", state)), state)


def test_unsupported_values_are_rejected_at_save(tmp_path):
    target = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="set"):
        ckpt.save(target, {"a": {1, 2}})
    assert list(tmp_path.iterdir()) == []


def test_an_object_array_is_rejected_at_save(tmp_path):
    # Loading uses allow_pickle=False, so saving must not pickle either: an
    # object array would give a checkpoint that can never be read back.
    target = tmp_path / "obj.npz"
    ckpt.save(target, {"old": np.ones(2)})
    before = target.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        ckpt.save(target, {"x": np.array([{"a": 1}, None], dtype=object)})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.npz"]


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    good = ckpt.save(tmp_path / "good.npz", {"x": np.ones(3)})
    with zipfile.ZipFile(good) as z:
        header = z.read("__header__.npy")
    evil = tmp_path / "evil.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(str(marker))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, payload, allow_pickle=True)
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("__header__.npy", header)  # refers to array "a0"
        z.writestr("a0.npy", buf.getvalue())
    with pytest.raises(CheckpointError, match="evil.npz"):
        ckpt.load(evil)
    assert not marker.exists()
    # A pickled header is refused the same way.
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("__header__.npy", buf.getvalue())
    with pytest.raises(CheckpointError):
        ckpt.load(evil)
    assert not marker.exists()


# -- atomic writes ---------------------------------------------------------------


def _crash_in_savez(monkeypatch):
    real = np.savez

    def savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip")  # part of the data reaches the disk
        file.flush()
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez)
    return real


def _crash_in_replace(monkeypatch):
    def replace(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", replace)


def _interrupt_in_savez(monkeypatch):
    def savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez)


@pytest.mark.parametrize(
    ("crash", "error"),
    [
        (_crash_in_savez, OSError),
        (_crash_in_replace, OSError),
        (_interrupt_in_savez, KeyboardInterrupt),
    ],
)
def test_a_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, crash, error):
    target = tmp_path / "last.npz"
    old = {"epoch": 3, "params": np.arange(10.0)}
    ckpt.save(target, old)
    before = target.read_bytes()
    crash(monkeypatch)
    with pytest.raises(error):
        ckpt.save(target, {"epoch": 4, "params": np.zeros(10)})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert_same(ckpt.load(target), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]  # no temp file left


def test_a_crash_on_the_first_write_leaves_nothing(tmp_path, monkeypatch):
    _crash_in_savez(monkeypatch)
    with pytest.raises(OSError):
        ckpt.save(tmp_path / "first.npz", {"a": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_save_writes_to_a_temporary_file_then_renames(tmp_path, monkeypatch):
    target = tmp_path / "ck.npz"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((Path(src), Path(dst), Path(src).stat().st_size))
        assert not Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    ckpt.save(target, {"a": np.ones(100)})
    ((src, dst, size),) = seen
    assert src.parent == tmp_path and src != target and dst == target
    assert size == target.stat().st_size > 0


# -- bad files -------------------------------------------------------------------


def test_corrupt_truncated_and_foreign_files_raise_checkpoint_error(tmp_path):
    good = ckpt.save(tmp_path / "good.npz", {"params": np.arange(1000.0), "epoch": 1})
    data = good.read_bytes()

    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, X=np.ones(3), y=np.zeros(3))
    plain_npy = tmp_path / "array.npz"
    with plain_npy.open("wb") as f:
        np.save(f, np.ones(3))

    for path, words in [
        (random_bytes, ("corrupt",)),
        (truncated, ("corrupt or truncated",)),
        (empty, ("corrupt or truncated",)),
        (foreign, ("not a ferroptim checkpoint",)),
        (plain_npy, ("corrupt", "not a ferroptim checkpoint")),  # .npy under a .npz name
        (tmp_path / "missing.npz", ("no checkpoint",)),
        (tmp_path, ("no checkpoint",)),
    ]:
        with pytest.raises(CheckpointError) as info:
            ckpt.load(path)
        message = str(info.value)
        assert any(w in message for w in words), message
        assert str(path) in message, message
        assert "\n" not in message


def test_a_damaged_header_or_format_raises_checkpoint_error(tmp_path):
    def write(name, header_bytes, **arrays):
        path = tmp_path / name
        np.savez(path, __header__=np.frombuffer(header_bytes, np.uint8), **arrays)
        return path

    cases = {
        write("json.npz", b"{not json"): "corrupt",
        write("utf8.npz", b"\xff\xfe\xfd"): "corrupt",
        write("format.npz", b'{"format": "other/9", "state": {}}'): "format",
        write("noformat.npz", b'{"state": {}}'): "format",
        write(
            "missing_array.npz",
            b'{"format": "ferroptim-checkpoint/1", "state": {"x": {"__array__": "a7"}}}',
        ): "lacks array 'a7'",
    }
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words):
            ckpt.load(path)

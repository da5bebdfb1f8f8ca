"""Hardening of the trainer and its checkpoints (issues 11 and 12).

- a malformed trainer state is refused with CheckpointError and changes
  nothing (params, optimizer state, history, counters, scheduler, callbacks);
- hostile checkpoint files (a list header, deep nesting, an array bigger than
  its member, a zip bomb, a bad zip version) are CheckpointError;
- a save cleans the temporary files a killed save left, and writes files with
  the umask's permissions;
- ``fit`` twice continues; ``initial_epoch`` keeps Keras' "up to epoch N";
- ``ferroptim.save`` / ``ferroptim.load`` round-trip a state_dict with no pickle;
- a FunctionModel trains the user's own arrays.
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

import ferroptim as fo
from ferroptim import schedules as S
from ferroptim.train import (
    CheckpointError,
    EarlyStopping,
    FunctionModel,
    Trainer,
)
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import mlp

# -- helpers -------------------------------------------------------------------


def same(a, b, path="state"):
    """Deep, bitwise equality (arrays by dtype, shape and bytes)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), f"{path}: values differ"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and a != a:
        assert b != b, path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 6)) + 1.5 * np.eye(6)[y]
    return X.astype(np.float32), y.astype(np.int64)


def make_trainer():
    model = mlp(6, hidden=(8,), n_outputs=3, dropout=0.1, seed=0)
    opt = fo.AdamW(model.arena, lr=0.01)
    return Trainer(
        model,
        opt,
        metrics=["accuracy"],
        scheduler=fo.Scheduler(opt, S.exponential(0.9)),
        batch_size=16,
        callbacks=[EarlyStopping("loss", patience=50)],
        verbose=0,
    )


def snapshot(trainer):
    """Everything a failed load must leave exactly as it was."""
    stop = trainer.callbacks[0]
    return {
        "params": trainer.get_params(),
        "optimizer": trainer.optimizer.state_dict(),
        "lr": [g["lr"] for g in trainer.optimizer.param_groups],
        "updates": trainer.optimizer.num_updates,
        "scheduler": trainer.scheduler.state_dict(),
        "rng": trainer.model.get_rng_state(),
        "history": trainer.history.state_dict(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "early_stopping": dict(vars(stop)),
    }


# -- 11.5: a malformed trainer state changes nothing ---------------------------


def _set(path, value):
    def edit(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _delete(key):
    return lambda state: state.pop(key)


MALFORMED = {
    "history missing": _delete("history"),
    "history a list": _set(["history"], [1, 2]),
    "history record an array": _set(["history", "epochs", 0], {"loss": np.ones(2)}),
    "history steps not a list": _set(["history", "steps"], "x"),
    "metric names not strings": _set(["history", "metric_names"], [1]),
    "epoch missing": _delete("epoch"),
    "epoch a string": _set(["epoch"], "three"),
    "epoch a float": _set(["epoch"], 2.5),
    "epoch negative": _set(["epoch"], -1),
    "step a bool": _set(["step"], True),
    "updates a string": _set(["optimizer_updates"], "7"),
    "scheduler missing": _delete("scheduler"),
    "scheduler a list": _set(["scheduler"], [1]),
    "scheduler base values": _set(["scheduler", "base_values"], [0.1, 0.2, 0.3]),
    "scheduler last_epoch": _set(["scheduler", "last_epoch"], "x"),
    "callback state partial": _set(["callbacks", 0], {"best": -1.0, "best_epoch": 7}),
    "callback state a list": _set(["callbacks", 0], [1]),
    "callbacks not a list": _set(["callbacks"], 3),
    "rng of another kind": _set(["model_rng"], {"bit_generator": "MT19937"}),
    "params strings": lambda s: s.update(params=s["params"].astype(str)),
    "params float64": lambda s: s.update(params=s["params"].astype(np.float64)),
    "params a list": lambda s: s.update(params=s["params"].tolist()),
    "params wrong shape": lambda s: s.update(params=s["params"][:-1]),
    "optimizer state": _set(["optimizer", "param_groups"], []),
    "layout an array": _set(["layout"], np.ones(3)),
    "dtype an array": _set(["dtype"], np.ones(3)),
    "config a list": _set(["config"], [1]),
    "not a dict": lambda s: s.clear(),
}


@pytest.fixture(scope="module")
def saved_state():
    X, y = data()
    saved = make_trainer()
    saved.fit(X, y, epochs=3)
    return saved.state_dict()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_trainer_state_raises_and_changes_nothing(saved_state, case):
    import copy

    X, y = data()
    target = make_trainer()
    target.fit(X, y, epochs=1)  # differs from the saved run in every part
    state = copy.deepcopy(saved_state)
    MALFORMED[case](state)
    if case == "not a dict":
        state = [1, 2]
    before = snapshot(target)
    with pytest.raises(CheckpointError):
        target.load_state_dict(state)
    same(snapshot(target), before)
    # The same state loads once repaired, and the trainer trains on.
    target.load_state_dict(saved_state)
    assert target.epoch == 3
    target.fit(X, y, epochs=1)
    assert target.epoch == 4


def test_a_checkpoint_with_string_params_is_refused_not_converted(tmp_path, saved_state):
    state = dict(saved_state, params=saved_state["params"].astype(str))
    path = ckpt.save(tmp_path / "strings.npz", state)
    target = make_trainer()
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="params"):
        target.load_checkpoint(path)
    same(snapshot(target), before)


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


# -- 12.4: fit twice, and saving a state_dict with no pickle ---------------------


def test_a_second_fit_continues_and_initial_epoch_means_up_to():
    X, y = data()
    trainer = make_trainer()
    trainer.fit(X, y, epochs=3)
    trainer.fit(X, y, epochs=3)
    assert trainer.epoch == 6 and trainer.history["epoch"] == [1, 2, 3, 4, 5, 6]
    trainer.fit(X, y, epochs=8, initial_epoch=trainer.epoch)
    assert trainer.epoch == 8
    with pytest.raises(ValueError, match="initial_epoch"):
        trainer.fit(X, y, epochs=9, initial_epoch=-1)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(X, y, epochs=2.5)
    assert trainer.epoch == 8


@pytest.mark.parametrize("named", [True, False])
def test_save_and_load_an_optimizer_state_dict_with_no_pickle(tmp_path, named):
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3), "b": (3,)}

    def build():
        params = {n: np.ones(s, np.float32) for n, s in shapes.items()}
        if named:
            groups = [{"params": params, "lr": 0.01}]
        else:
            groups = [
                {"params": [params["w"]], "lr": 0.01},
                {"params": [params["b"]], "lr": 0.02, "weight_decay": 0.0},
            ]
        return params, fo.AdamW(groups, accumulate=2, ema_decay=0.9)

    grads = [
        {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()} for _ in range(7)
    ]

    def step(opt, g):
        opt.step(g if named else [g["w"], g["b"]])

    params, opt = build()
    for g in grads[:3]:  # mid-accumulation: one micro-batch pending
        step(opt, g)
    path = fo.save(tmp_path / "opt.npz", {"params": params, "optimizer": opt.state_dict()})
    # A plain .npz: NumPy reads every member without pickle.
    with np.load(path, allow_pickle=False) as z:
        assert "__header__" in z.files
    loaded = fo.load(path)
    same(loaded["optimizer"], opt.state_dict())
    if not named:
        assert 0 in loaded["optimizer"]["state"]  # int keys stay ints
    params2, opt2 = build()
    for n, a in loaded["params"].items():
        params2[n][...] = a
    opt2.load_state_dict(loaded["optimizer"])
    for g in grads[3:]:
        step(opt, g)
        step(opt2, g)
    for n in shapes:
        assert params[n].tobytes() == params2[n].tobytes(), n
    same(opt.state_dict(), opt2.state_dict())


def test_save_refuses_what_it_cannot_store_and_load_refuses_foreign_files(tmp_path):
    with pytest.raises(TypeError, match="set"):
        fo.save(tmp_path / "x.npz", {"a": {1, 2}})
    np.savez(tmp_path / "naive.npz", a=np.ones(2))
    with pytest.raises(CheckpointError, match="not a ferroptim checkpoint"):
        fo.load(tmp_path / "naive.npz")
    # The name is taken as given (np.savez would append .npz).
    assert fo.save(tmp_path / "state.bin", [1, (2, None)]).name == "state.bin"
    assert fo.load(tmp_path / "state.bin") == [1, (2, None)]


# -- 12.8: FunctionModel trains the user's arrays ------------------------------


def _least_squares(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3

    def loss_and_grads(params, Xb, yb):
        r = Xb @ params["w"] + params["b"] - yb
        return float(r @ r / len(r)), {"w": 2 * Xb.T @ r / len(r), "b": 2 * r.mean()}

    return X, y, loss_and_grads


def test_function_model_trains_the_users_arrays_in_place(tmp_path):
    X, y, fn = _least_squares()
    w, b = np.zeros(3), np.zeros(())
    model = FunctionModel({"w": w, "b": b}, fn)
    trainer = Trainer(model, fo.SGD(model.arena, lr=0.1), batch_size=16, verbose=0)
    trainer.fit(X, y, epochs=20)
    np.testing.assert_allclose(w, [1.0, -2.0, 0.5], atol=1e-3)
    assert w.tobytes() == model.arena.params["w"].tobytes()
    assert b.tobytes() == model.arena.params["b"].tobytes()
    # Loads and set_params reach the user's arrays as well.
    path = trainer.save_checkpoint(tmp_path / "ck.npz")
    trained = w.copy()
    trainer.set_params(np.zeros(4))
    assert not w.any()
    trainer.load_checkpoint(path)
    assert w.tobytes() == trained.tobytes()


def test_function_model_warns_for_arrays_it_cannot_train_in_place():
    X, y, fn = _least_squares()
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": [0.0, 0.0, 0.0], "b": np.zeros(())}, fn)
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": np.zeros(3, np.int64), "b": np.zeros(())}, fn)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": frozen, "b": np.zeros(())}, fn)

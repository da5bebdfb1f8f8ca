"""Checkpoints of ferroptim.train: mismatch errors and exact resume.

The key test resumes a run in a *new process*: run A trains 10 epochs in one
go; run B trains 5, saves, and a fresh interpreter rebuilds the same model
(with dropout), optimizer (AdamW with EMA and clipping), per-step scheduler
and callbacks, loads the checkpoint and trains to 10. Params, every array of
the optimizer state and the whole loss history must be bitwise equal. The
same is checked through ``ferroptim train --stop-after / --resume``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import ferroptim as fo
from _checkpoint_helpers import assert_same
from ferroptim import schedules as S
from ferroptim.train import (
    CheckpointError,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    TerminateOnNaN,
    Trainer,
)
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import mlp

# -- trainer state: mismatches ---------------------------------------------------


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 6)) + 1.5 * np.eye(6)[y]
    return X.astype(np.float32), y.astype(np.int64)


def _trainer(hidden=(8,), dtype=np.float32, opt_cls=fo.AdamW, callbacks=(), verbose=0):
    model = mlp(6, hidden=hidden, n_outputs=3, dropout=0.1, seed=0, dtype=dtype)
    opt = opt_cls(model.arena, lr=0.01)
    scheduler = fo.Scheduler(opt, S.exponential(0.99))
    return Trainer(
        model,
        opt,
        metrics=["accuracy"],
        scheduler=scheduler,
        batch_size=16,
        callbacks=list(callbacks),
        verbose=verbose,
    )


def _snapshot(trainer):
    return {
        "params": trainer.get_params(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "lr": [g["lr"] for g in trainer.optimizer.param_groups],
        "rng": trainer.model.get_rng_state(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "history": trainer.history.state_dict(),
        "updates": trainer.optimizer.num_updates,
    }


@pytest.mark.parametrize(
    ("other", "words"),
    [
        ({"hidden": (12,)}, ["params differ", "hidden1.W", "model config differs in ['hidden']"]),
        ({"hidden": (8, 8)}, ["params differ", "model config differs in ['hidden']"]),
        ({"dtype": np.float64}, ["dtype float32 != float64", "'dtype'"]),
        ({"opt_cls": fo.Adam}, ["optimizer AdamW != Adam"]),
        ({"callbacks": [TerminateOnNaN()]}, ["0 callbacks saved, 1 here"]),
    ],
)
def test_load_from_another_run_names_the_difference_and_changes_nothing(tmp_path, other, words):
    X, y = _data()
    saved = _trainer()
    saved.fit(X, y, epochs=2)
    path = saved.save_checkpoint(tmp_path / "ck.npz")

    target = _trainer(**other)
    target.fit(X, y, epochs=1)
    before = _snapshot(target)
    with pytest.raises(CheckpointError) as info:
        target.load_checkpoint(path)
    message = str(info.value)
    assert message.startswith("checkpoint does not match this run")
    for w in words:
        assert w in message, message
    assert_same(_snapshot(target), before)
    # ... and the trainer still trains.
    target.fit(X, y, epochs=1)
    assert target.epoch == 2


def test_load_without_a_scheduler_is_a_mismatch(tmp_path):
    X, y = _data()
    saved = _trainer()
    saved.fit(X, y, epochs=1)
    state = saved.state_dict()
    model = mlp(6, hidden=(8,), n_outputs=3, dropout=0.1, seed=0)
    plain = Trainer(model, fo.AdamW(model.arena, lr=0.01), batch_size=16, verbose=0)
    before = plain.get_params()
    with pytest.raises(CheckpointError, match="scheduler"):
        plain.load_state_dict(state)
    np.testing.assert_array_equal(plain.get_params(), before)


def test_a_checkpoint_of_a_verbose_trainer_loads_into_a_quiet_one(tmp_path):
    # The progress bar is display, not part of the run: a run started with
    # progress bars must be resumable without them (and the other way round).
    X, y = _data()
    verbose = _trainer(verbose=1)
    verbose.fit(X, y, epochs=1)
    path = verbose.save_checkpoint(tmp_path / "ck.npz")
    quiet = _trainer(verbose=0)
    quiet.load_checkpoint(path)
    np.testing.assert_array_equal(quiet.get_params(), verbose.get_params())
    back = _trainer(verbose=1)
    back.load_checkpoint(quiet.save_checkpoint(tmp_path / "ck2.npz"))
    assert back.epoch == 1


# -- exact resume ------------------------------------------------------------------

RUN_SCRIPT = '''
"""One training configuration, rebuilt identically in any process."""
import sys

import numpy as np

import ferroptim as fo
from ferroptim import schedules as S
from ferroptim.train import EarlyStopping, ModelCheckpoint, Trainer
from ferroptim.train.models import mlp


def data():
    rng = np.random.default_rng(42)
    y = rng.integers(0, 3, 150)
    X = rng.standard_normal((150, 6)) + 1.2 * np.eye(6)[y]
    yv = rng.integers(0, 3, 45)
    Xv = rng.standard_normal((45, 6)) + 1.2 * np.eye(6)[yv]
    return X.astype(np.float32), y, Xv.astype(np.float32), yv


def build(out_dir):
    model = mlp(6, hidden=(16, 8), n_outputs=3, dropout=0.3, seed=7)
    opt = fo.AdamW(
        fo.exclude_from_weight_decay(model.arena, patterns=("*.b",)),
        lr=0.02,
        weight_decay=0.05,
        ema_decay=0.9,
        max_grad_norm=1.0,
    )
    # Relative: a factor of each group's lr, 10 warmup steps then a cosine.
    schedule = S.sequential([S.linear(0.1, 1.0, 10), S.cosine_annealing(60, 0.05)], [10])
    scheduler = fo.Scheduler(opt, schedule)
    callbacks = [
        EarlyStopping("val_loss", patience=100),
        ModelCheckpoint(out_dir, monitor="val_loss"),
    ]
    return Trainer(
        model,
        opt,
        metrics=["accuracy"],
        scheduler=scheduler,
        batch_size=S.step_batch_size(16, 2, every=4, max_batch_size=64),
        callbacks=callbacks,
        seed=3,
        verbose=0,
        config={"name": "resume-test"},
    )


def fit(trainer, epochs):
    """Trains up to epoch ``epochs`` in total."""
    X, y, Xv, yv = data()
    trainer.fit(X, y, epochs=epochs, validation_data=(Xv, yv), initial_epoch=trainer.epoch)


if __name__ == "__main__":
    source, target, epochs, out_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    trainer = build(out_dir)
    trainer.load_checkpoint(source)
    fit(trainer, epochs)
    trainer.save_checkpoint(target)
'''


def _load_script(tmp_path):
    script = tmp_path / "resume_run.py"
    script.write_text(RUN_SCRIPT)
    spec = importlib.util.spec_from_file_location("resume_run", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return script, module


def _compare_runs(a: dict, b: dict) -> None:
    """Bitwise equality of everything a resumed run must reproduce."""
    np.testing.assert_array_equal(a["params"], b["params"])
    assert a["params"].tobytes() == b["params"].tobytes()
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    assert a["optimizer_updates"] == b["optimizer_updates"]
    # Every array (and scalar) of the optimizer state, param by param.
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sorted(sa) == sorted(sb)
    slots = set()
    for name in sa:
        assert sorted(sa[name]) == sorted(sb[name]), name
        for slot in sa[name]:
            slots.add(slot)
            assert_same(sa[name][slot], sb[name][slot], f"optimizer[{name!r}][{slot!r}]")
    assert {"exp_avg", "exp_avg_sq", "averaged_param"} <= slots
    assert_same(a["optimizer"]["param_groups"], b["optimizer"]["param_groups"])
    assert_same(a["scheduler"], b["scheduler"])
    assert_same(a["model_rng"], b["model_rng"])
    assert_same(a["callbacks"], b["callbacks"])
    # The history, bitwise, except wall times.
    for ea, eb in zip(a["history"]["epochs"], b["history"]["epochs"], strict=True):
        assert {k: v for k, v in ea.items() if k != "time"} == {
            k: v for k, v in eb.items() if k != "time"
        }
    la = [(s["loss"], s["lr"], s["batch_size"]) for s in a["history"]["steps"]]
    lb = [(s["loss"], s["lr"], s["batch_size"]) for s in b["history"]["steps"]]
    assert la == lb


def test_resume_in_a_new_process_is_bitwise_identical(tmp_path):
    script, run = _load_script(tmp_path)

    # Run A: 10 epochs in one go.
    a = run.build(tmp_path / "A")
    run.fit(a, 10)
    a.save_checkpoint(tmp_path / "A.npz")

    # Run B: 5 epochs here, then 5 more in a fresh interpreter.
    b = run.build(tmp_path / "B")
    run.fit(b, 5)
    half = b.save_checkpoint(tmp_path / "B5.npz")
    assert not np.array_equal(b.get_params(), a.get_params())
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(half),
            str(tmp_path / "B.npz"),
            "10",
            str(tmp_path / "B"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    state_a = ckpt.load(tmp_path / "A.npz")
    state_b = ckpt.load(tmp_path / "B.npz")
    assert state_a["epoch"] == 10
    assert len(state_a["history"]["steps"]) > 50
    assert [e["batch_size"] for e in state_a["history"]["epochs"]][::4] == [16, 32, 64]
    val = [e["val_accuracy"] for e in state_a["history"]["epochs"]]
    assert val[-1] > 0.6 and val[-1] > val[0]  # a real run, not a degenerate one
    _compare_runs(state_a, state_b)
    # The ModelCheckpoint files of both runs agree as well.
    for name in ("last.npz", "best.npz"):
        pa = ckpt.load(tmp_path / "A" / name)["params"]
        pb = ckpt.load(tmp_path / "B" / name)["params"]
        assert pa.tobytes() == pb.tobytes(), name
    # The saved state matters: the same resume with other dropout masks (or
    # from scratch) ends elsewhere, so the equality above is not vacuous.
    c = run.build(tmp_path / "C")
    c.load_checkpoint(half)
    c.model.set_rng_state(run.build(tmp_path / "D").model.get_rng_state())
    run.fit(c, 10)
    assert not np.array_equal(c.get_params(), a.get_params())


def test_resume_is_exact_mid_accumulation(tmp_path):
    # 7 batches per epoch with accumulate=3: the epoch-2 checkpoint is taken
    # with 2 micro-batches accumulated but not yet applied.
    X, y = _data(100)

    def build():
        model = mlp(6, hidden=(8,), n_outputs=3, seed=0)
        opt = fo.AdamW(model.arena, lr=0.01, accumulate=3)
        return Trainer(
            model, opt, scheduler=fo.Scheduler(opt, S.exponential(0.97)), batch_size=16, verbose=0
        )

    a = build()
    a.fit(X, y, epochs=4)
    b = build()
    b.fit(X, y, epochs=2)
    path = b.save_checkpoint(tmp_path / "b.npz")
    c = build()
    c.load_checkpoint(path)
    c.fit(X, y, epochs=2)
    assert c.optimizer.num_updates == a.optimizer.num_updates
    np.testing.assert_array_equal(c.get_params(), a.get_params())


def test_resume_keeps_callback_state(tmp_path):
    X, y = _data()
    Xv, yv = _data(48, seed=1)

    def build():
        return _trainer(
            callbacks=[
                EarlyStopping("val_loss", patience=50),
                ModelCheckpoint(tmp_path / "mc", monitor="val_loss"),
                CSVLogger(tmp_path / "history.csv"),
            ]
        )

    first = build()
    first.fit(X, y, epochs=3, validation_data=(Xv, yv))
    early = first.callbacks[0]
    resumed = build()
    resumed.load_checkpoint(tmp_path / "mc" / "last.npz")
    stop, mc = resumed.callbacks[0], resumed.callbacks[1]
    assert stop.best == early.best and stop.best_epoch == early.best_epoch
    assert stop.wait == early.wait
    np.testing.assert_array_equal(stop.best_params, early.best_params)
    assert mc.best == first.callbacks[1].best == min(first.history["val_loss"])
    resumed.fit(X, y, epochs=5, validation_data=(Xv, yv), initial_epoch=resumed.epoch)
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 1 + 5


# -- exact resume through the command line -----------------------------------------


def _train(cwd, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "ferroptim", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_stop_after_and_resume_is_bitwise_identical(tmp_path):
    common = ["--dataset", "synthetic-classification", "--hidden", "16", "--verbose", "0"]
    common += ["--epochs", "6"]
    _train(tmp_path, *common, "--out", "A")
    _train(tmp_path, *common, "--stop-after", "3", "--out", "B")
    assert ckpt.load(tmp_path / "B" / "last.npz")["epoch"] == 3
    out = _train(tmp_path, "--resume", "B")
    assert "after 6 epochs" in out.stdout.strip().splitlines()[-1]

    state_a = ckpt.load(tmp_path / "A" / "last.npz")
    state_b = ckpt.load(tmp_path / "B" / "last.npz")
    assert state_a["epoch"] == state_b["epoch"] == 6
    assert state_a["params"].tobytes() == state_b["params"].tobytes()
    _compare_runs_cli(state_a, state_b)
    best_a = ckpt.load(tmp_path / "A" / "best.npz")["params"]
    best_b = ckpt.load(tmp_path / "B" / "best.npz")["params"]
    assert best_a.tobytes() == best_b.tobytes()
    # history.csv of B holds all six epochs, with A's numbers.
    rows_a = (tmp_path / "A" / "history.csv").read_text().splitlines()
    rows_b = (tmp_path / "B" / "history.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == 7
    strip_time = [",".join(r.split(",")[:-1]) for r in rows_a]
    assert strip_time == [",".join(r.split(",")[:-1]) for r in rows_b]


def _compare_runs_cli(a: dict, b: dict) -> None:
    for name in a["optimizer"]["state"]:
        for slot, value in a["optimizer"]["state"][name].items():
            assert_same(value, b["optimizer"]["state"][name][slot], f"{name}.{slot}")
    assert [s["loss"] for s in a["history"]["steps"]] == [s["loss"] for s in b["history"]["steps"]]
    assert [e["val_loss"] for e in a["history"]["epochs"]] == [
        e["val_loss"] for e in b["history"]["epochs"]
    ]

"""The trainer's callbacks: early stopping, model checkpoints, the
ReduceLROnPlateau callback, the CSV logger, TerminateOnNaN, the progress bar
and plot_history.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

import ferroptim as fo
from _trainer_helpers import Recorder, blobs, logistic_trainer
from ferroptim import schedules as S
from ferroptim.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    PlotHistory,
    ProgressBar,
    ReduceLROnPlateauCallback,
    TerminateOnNaN,
    Trainer,
)
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import logistic_regression, mlp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- helpers -------------------------------------------------------------------


class Scripted(Callback):
    """Puts a scripted value under ``key`` into each epoch's logs (it must come
    before the callbacks that read it: they all share the logs dict)."""

    def __init__(self, key: str, values: list[float]) -> None:
        self.key = key
        self.values = values

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        logs[self.key] = self.values[epoch]


# -- callbacks -----------------------------------------------------------------


def test_early_stopping_stops_after_patience_and_restores_the_best_params():
    X, y = blobs(64)
    rec = Recorder()
    # min_delta 0.1: 0.45 is not better than 0.5; three bad epochs > patience 2.
    script = Scripted("val_score", [1.0, 0.5, 0.45, 0.6, 0.7, 0.1, 0.1, 0.1])
    stop = EarlyStopping("val_score", mode="min", patience=2, min_delta=0.1)
    trainer = logistic_trainer(callbacks=[script, rec, stop])
    history = trainer.fit(X, y, epochs=8)
    assert len(history.epochs) == 5
    assert trainer.epoch == 5
    assert stop.best == 0.5 and stop.best_epoch == 1
    assert stop.stopped_epoch == 4
    np.testing.assert_array_equal(trainer.get_params(), rec.after_epoch[1])
    assert not np.array_equal(rec.after_epoch[4], rec.after_epoch[1])


def test_early_stopping_without_restore_and_in_max_mode():
    X, y = blobs(64)
    rec = Recorder()
    script = Scripted("val_acc", [0.5, 0.9, 0.8, 0.85, 0.95])
    stop = EarlyStopping("val_acc", patience=1, restore_best=False)  # auto: max for acc
    assert stop.mode == "max"
    trainer = logistic_trainer(callbacks=[script, rec, stop])
    trainer.fit(X, y, epochs=5)
    assert trainer.epoch == 4  # epochs 3 and 4 (0.8, 0.85) are not above 0.9
    np.testing.assert_array_equal(trainer.get_params(), rec.after_epoch[-1])
    # Enough patience: no stop, and nothing is restored.
    rec = Recorder()
    script = Scripted("val_acc", [0.5, 0.9, 0.8, 0.85, 0.95])
    trainer = logistic_trainer(callbacks=[script, rec, EarlyStopping("val_acc", patience=5)])
    trainer.fit(X, y, epochs=5)
    assert trainer.epoch == 5
    np.testing.assert_array_equal(trainer.get_params(), rec.after_epoch[-1])


def test_early_stopping_on_real_val_loss_and_bad_arguments():
    X, y = blobs(64)
    Xv, yv = blobs(32, seed=1)
    # A wild lr makes the val loss blow up after the first epochs.
    stop = EarlyStopping("val_loss", patience=0)
    model = logistic_regression(4, 3, seed=0)
    trainer = Trainer(model, fo.SGD(model.arena, lr=50.0), callbacks=[stop], verbose=0)
    history = trainer.fit(X, y, epochs=30, validation_data=(Xv, yv))
    assert len(history.epochs) < 30
    assert stop.best == min(history["val_loss"])
    with pytest.raises(KeyError, match="val_nothing"):
        logistic_trainer(callbacks=[EarlyStopping("val_nothing")]).fit(X, y, epochs=1)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-0.1)
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_model_checkpoint_writes_best_and_last(tmp_path):
    X, y = blobs(64)
    rec = Recorder()
    script = Scripted("val_score", [3.0, 1.0, 2.0, 4.0])
    trainer = logistic_trainer(
        callbacks=[script, rec, ModelCheckpoint(tmp_path / "ck", monitor="val_score")]
    )
    trainer.fit(X, y, epochs=4)
    best = ckpt.load(tmp_path / "ck" / "best.npz")
    last = ckpt.load(tmp_path / "ck" / "last.npz")
    assert best["epoch"] == 2
    np.testing.assert_array_equal(best["params"], rec.after_epoch[1])
    assert last["epoch"] == 4
    np.testing.assert_array_equal(last["params"], rec.after_epoch[3])
    assert len(last["history"]["epochs"]) == 4
    # A fresh trainer continues from last.npz.
    again = logistic_trainer(
        callbacks=[
            Scripted("val_score", [0] * 4),
            Recorder(),
            ModelCheckpoint(tmp_path / "ck2", monitor="val_score"),
        ]
    )
    again.load_checkpoint(tmp_path / "ck" / "last.npz")
    np.testing.assert_array_equal(again.get_params(), trainer.get_params())
    assert again.epoch == 4


def test_reduce_lr_on_plateau_callback_lowers_the_lr():
    X, y = blobs(64)
    script = Scripted("val_loss", [1.0] * 6)  # never improves after the first epoch
    plateau = ReduceLROnPlateauCallback("val_loss", factor=0.5, patience=1)
    trainer = logistic_trainer(callbacks=[script, plateau], batch_size=32)
    history = trainer.fit(X, y, epochs=6)
    # The epoch's lr is logged before the callback reacts to that epoch.
    assert history["lr"] == [0.05, 0.05, 0.05, 0.025, 0.025, 0.0125]
    assert [s["lr"] for s in history.steps[6:8]] == [0.025, 0.025]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)
    # An improving metric leaves the lr alone.
    script = Scripted("val_loss", [1.0, 0.9, 0.8, 0.7])
    trainer = logistic_trainer(
        callbacks=[script, ReduceLROnPlateauCallback("val_loss", patience=0)]
    )
    assert trainer.fit(X, y, epochs=4)["lr"] == [0.05] * 4
    assert trainer.optimizer.param_groups[0]["lr"] == 0.05


def test_csv_logger_writes_a_header_and_one_row_per_epoch(tmp_path):
    X, y = blobs(64)
    Xv, yv = blobs(32, seed=1)
    path = tmp_path / "logs" / "history.csv"
    trainer = logistic_trainer(callbacks=[CSVLogger(path)])
    history = trainer.fit(X, y, epochs=3, validation_data=(Xv, yv))
    trainer.fit(X, y, epochs=1, validation_data=(Xv, yv))  # appends, no second header
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[:2] == ["epoch", "loss"]
    for key in ("accuracy", "val_loss", "val_accuracy", "lr", "batch_size", "time"):
        assert key in header
    assert len(body) == 4
    assert [r[0] for r in body] == ["1", "2", "3", "4"]
    col = header.index("val_loss")
    assert [float(r[col]) for r in body] == history["val_loss"]  # exact: repr round-trips


def test_terminate_on_nan_stops_on_a_huge_lr():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)) * 10
    y = X @ np.ones(4)
    model = mlp(4, hidden=(8,), n_outputs=1, seed=0, dtype=np.float64)
    trainer = Trainer(
        model,
        fo.SGD(model.arena, lr=1e6),
        loss="mse",
        batch_size=8,
        callbacks=[TerminateOnNaN()],
        verbose=0,
    )
    with np.errstate(all="ignore"):
        history = trainer.fit(X, y.reshape(-1, 1), epochs=50)
    losses = [s["loss"] for s in history.steps]
    assert len(losses) < 50 * 8
    assert not math.isfinite(losses[-1])
    assert all(math.isfinite(v) for v in losses[:-1])
    assert trainer.stop_training


def test_terminate_on_nan_stops_on_nan_data():
    X, y = blobs(64)
    X[0, 0] = np.nan
    trainer = logistic_trainer(callbacks=[TerminateOnNaN()], shuffle=False, verbose=0)
    with np.errstate(all="ignore"):
        history = trainer.fit(X, y, epochs=5)
    assert len(history.steps) == 1
    assert math.isnan(history.steps[0]["loss"])
    assert len(history.epochs) == 1 and trainer.epoch == 1
    # Without the callback the run goes on to the end.
    trainer = logistic_trainer(shuffle=False)
    with np.errstate(all="ignore"):
        assert len(trainer.fit(X, y, epochs=2).steps) == 8


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_epochs_batches_and_loss():
    X, y = blobs(200)
    buf = io.StringIO()
    schedule = S.step_batch_size(8, 2, every=1, max_batch_size=64)  # 25, then 13 batches
    trainer = logistic_trainer(
        batch_size=schedule, callbacks=[ProgressBar(1, force=True, file=buf)], verbose=1
    )
    trainer.fit(X, y, epochs=2, validation_data=(X, y))
    text = buf.getvalue()
    assert "epoch 2/2" in text  # the epoch bar finished
    assert "epoch 1" in text and "/25" in text  # a batch bar per epoch, with its size
    assert "epoch 2" in text and "/13" in text
    assert "loss=" in text and "val_acc=" in text  # short names: they fit 80 columns
    # The trainer did not add a second bar.
    assert sum(isinstance(c, ProgressBar) for c in trainer.callbacks) == 1


def test_progress_bar_is_quiet_with_verbose_0_and_prints_lines_without_a_terminal(capsys):
    X, y = blobs(64)
    quiet = io.StringIO()
    logistic_trainer(callbacks=[ProgressBar(0, force=True, file=quiet)]).fit(X, y, epochs=2)
    assert quiet.getvalue() == ""
    # Not a terminal (a log): one line per epoch, no bar (Keras' verbose=2).
    not_a_tty = io.StringIO()
    logistic_trainer(callbacks=[ProgressBar(1, file=not_a_tty)]).fit(X, y, epochs=2)
    lines = not_a_tty.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert "\r" not in not_a_tty.getvalue()
    terminal = _Terminal()  # the bar draws on a terminal
    logistic_trainer(callbacks=[ProgressBar(1, file=terminal)]).fit(X, y, epochs=2)
    assert "\r" in terminal.getvalue() and "epoch 2/2" in terminal.getvalue()
    # verbose=1 adds a ProgressBar on stderr, which is not a terminal under pytest.
    trainer = logistic_trainer(verbose=1)
    assert any(isinstance(c, ProgressBar) for c in trainer.callbacks)
    trainer.fit(X, y, epochs=2)
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 2 and captured.out == ""
    assert not any(isinstance(c, ProgressBar) for c in logistic_trainer(verbose=0).callbacks)


def test_plot_history_writes_a_real_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = blobs(96)
    path = tmp_path / "plots" / "curves.png"
    scheduler_model = logistic_regression(4, 3, seed=0)
    opt = fo.Adam(scheduler_model.arena, lr=0.05)
    trainer = Trainer(
        scheduler_model,
        opt,
        metrics=["accuracy"],
        scheduler=fo.Scheduler(opt, S.cosine_annealing(30)),
        batch_size=S.step_batch_size(8, 2, every=1, max_batch_size=32),
        callbacks=[PlotHistory(path)],
        verbose=0,
    )
    trainer.fit(X, y, epochs=3, validation_data=(X, y))
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000
    image = plt.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.01  # not a blank canvas

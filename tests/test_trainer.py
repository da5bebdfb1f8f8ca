"""The trainer of ferroptim.train: the loop, its history, and its callbacks.

Everything runs on small seeded synthetic data (a few hundred rows, models of
a few hundred params), so the whole file takes a few seconds. Where the
trainer's bookkeeping is checked (which lr a step used, which rows a batch
held, what EMA weights are), the oracle is independent of the code under
test: a FunctionModel with a known gradient, a callback recording the params
after every batch, or an EMA recomputed by hand.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import schedules as S
from ferroptim.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    FunctionModel,
    History,
    ModelCheckpoint,
    PlotHistory,
    ProgressBar,
    ReduceLROnPlateauCallback,
    TerminateOnNaN,
    Trainer,
)
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.losses import SoftmaxCrossEntropy
from ferroptim.train.metrics import accuracy
from ferroptim.train.models import logistic_regression, mlp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- helpers -------------------------------------------------------------------


def blobs(n: int = 120, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 4-D: (X, integer labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [-2.0, 2.0, 0, 0], [-2.0, -2.0, 0, 0]])
    X = centers[y] + 0.5 * rng.standard_normal((n, 4))
    return X.astype(dtype), y.astype(np.int64)


def logistic_trainer(**kwargs) -> Trainer:
    dtype = kwargs.pop("dtype", np.float32)
    model = logistic_regression(4, 3, seed=0, dtype=dtype)
    opt_kwargs = kwargs.pop("opt_kwargs", {})
    opt = kwargs.pop("optimizer", None) or fo.Adam(model.arena, lr=0.05, **opt_kwargs)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("batch_size", 16)
    return Trainer(model, opt, metrics=kwargs.pop("metrics", ["accuracy"]), **kwargs)


def mlp_trainer(seed: int = 0, dropout: float = 0.0, **kwargs) -> Trainer:
    model = mlp(4, hidden=(16,), n_outputs=3, dropout=dropout, seed=seed)
    opt = fo.AdamW(model.arena, lr=0.02)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("batch_size", 16)
    return Trainer(model, opt, metrics=["accuracy"], seed=seed, **kwargs)


class Recorder(Callback):
    """Keeps a copy of the params after every batch and every epoch."""

    def __init__(self) -> None:
        self.start: np.ndarray | None = None
        self.after_batch: list[np.ndarray] = []
        self.after_epoch: list[np.ndarray] = []
        self.grad_norms: list[float | None] = []

    def on_train_begin(self, trainer) -> None:
        if self.start is None:
            self.start = trainer.get_params()

    def on_batch_end(self, trainer, step, logs) -> None:
        self.after_batch.append(trainer.get_params())
        self.grad_norms.append(trainer.optimizer.last_grad_norm)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self.after_epoch.append(trainer.get_params())


class Scripted(Callback):
    """Puts a scripted value under ``key`` into each epoch's logs (it must come
    before the callbacks that read it: they all share the logs dict)."""

    def __init__(self, key: str, values: list[float]) -> None:
        self.key = key
        self.values = values

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        logs[self.key] = self.values[epoch]


def constant_grad_model(c: np.ndarray) -> FunctionModel:
    """loss = w . c: the grad is ``c`` whatever the batch, so an SGD step moves
    ``w`` by exactly ``-lr * c`` and the lr a step used can be read off."""

    def loss_and_grads(params, X, y):
        return float(params["w"] @ c), {"w": c.copy()}

    return FunctionModel({"w": np.zeros(len(c))}, loss_and_grads)


def lr_used(recorder: Recorder, c: np.ndarray) -> list[float]:
    params = [recorder.start, *recorder.after_batch]
    return [float(-(b - a)[0] / c[0]) for a, b in zip(params, params[1:])]


# -- fit, history, evaluate, predict -------------------------------------------


def test_fit_returns_a_history_with_epoch_and_step_records():
    X, y = blobs(120)
    Xv, yv = blobs(60, seed=1)
    trainer = logistic_trainer()
    history = trainer.fit(X, y, epochs=3, validation_data=(Xv, yv))

    assert isinstance(history, History)
    assert history is trainer.history
    assert len(history.epochs) == 3
    assert history["epoch"] == [1, 2, 3]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "batch_size", "time"):
        assert key in history.keys()
        assert len(history[key]) == 3
    assert history["batch_size"] == [16, 16, 16]
    assert history["lr"] == [0.05, 0.05, 0.05]
    assert all(t >= 0 for t in history["time"])
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"] + history["val_accuracy"])
    # Blobs this far apart are learnt in three epochs.
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] >= 0.9

    per_epoch = math.ceil(120 / 16)  # 8 batches: 7 of 16 and one of 8
    assert len(history.steps) == 3 * per_epoch
    assert [s["step"] for s in history.steps] == list(range(1, 3 * per_epoch + 1))
    assert [s["batch_size"] for s in history.steps[:per_epoch]] == [16] * 7 + [8]
    times = [s["time"] for s in history.steps]
    assert times == sorted(times)
    for s in history.steps:
        assert set(s) == {"step", "loss", "lr", "batch_size", "time"}
        assert math.isfinite(s["loss"])
    # The epoch loss is the sample-weighted mean of its batch losses.
    for e in range(3):
        chunk = history.steps[e * per_epoch : (e + 1) * per_epoch]
        mean = sum(s["loss"] * s["batch_size"] for s in chunk) / 120
        assert history["loss"][e] == pytest.approx(mean, rel=1e-12)
    # The last val_* numbers are an evaluation of the final params.
    final = trainer.evaluate(Xv, yv)
    assert history["val_loss"][-1] == final["loss"]
    assert history["val_accuracy"][-1] == final["accuracy"]
    assert trainer.epoch == 3 and trainer.step == 3 * per_epoch
    assert "3 epochs" in repr(history)


def test_fit_continues_for_the_given_number_of_epochs():
    X, y = blobs(64)
    trainer = logistic_trainer()
    trainer.fit(X, y, epochs=2)
    steps = len(trainer.history.steps)
    trainer.fit(X, y, epochs=2)  # two more, as a second torch/Keras loop would
    assert trainer.epoch == 4 and len(trainer.history.steps) == 2 * steps
    assert trainer.history["epoch"] == [1, 2, 3, 4]
    # initial_epoch: "up to epoch N" (Keras); nothing left to do at N.
    trainer.fit(X, y, epochs=4, initial_epoch=trainer.epoch)
    assert trainer.epoch == 4 and len(trainer.history.steps) == 2 * steps
    trainer.fit(X, y, epochs=5, initial_epoch=trainer.epoch)
    assert trainer.history["epoch"] == [1, 2, 3, 4, 5]


def test_fit_rejects_bad_input():
    X, y = blobs(32)
    trainer = logistic_trainer()
    with pytest.raises(ValueError, match="rows"):
        trainer.fit(X, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(X, y, epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        logistic_trainer(batch_size=0)
    with pytest.raises(ValueError, match="scheduler_interval"):
        logistic_trainer(scheduler_interval="batch")


def test_evaluate_and_predict_shapes_and_values():
    X, y = blobs(100)
    trainer = logistic_trainer()
    trainer.fit(X, y, epochs=2)
    out = trainer.predict(X)
    assert out.shape == (100, 3)
    assert out.dtype == np.float32
    # Batching the prediction changes nothing.
    np.testing.assert_array_equal(trainer.predict(X, batch_size=7), out)
    assert trainer.predict(X[:0]).shape[0] == 0
    result = trainer.evaluate(X, y, batch_size=9)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(SoftmaxCrossEntropy()(out, y)[0], rel=1e-6)
    assert result["accuracy"] == accuracy(out, y)
    assert result["accuracy"] == np.mean(np.argmax(out, axis=1) == y)


def test_optimizer_not_built_on_the_model_arena_is_rejected():
    model = logistic_regression(4, 3, seed=0)
    other = logistic_regression(4, 3, seed=0)  # same shapes, another arena
    with pytest.raises(ValueError, match="model.arena"):
        Trainer(model, fo.Adam(other.arena), verbose=0)
    with pytest.raises(ValueError, match="model.arena"):
        Trainer(model, fo.Adam([model.arena.data.copy()]), verbose=0)
    with pytest.raises(TypeError, match="arena"):
        Trainer(object(), fo.Adam(model.arena), verbose=0)
    # Param groups of arena.select(...) are fine.
    groups = fo.exclude_from_weight_decay(model.arena, patterns=("*.b",))
    Trainer(model, fo.AdamW(groups), verbose=0)


# -- shuffling, drop_last, batch-size schedules ---------------------------------


def _batch_rows(seed: int, shuffle: bool = True, drop_last: bool = False, n: int = 50):
    """The row ids each batch held, as seen by a FunctionModel."""
    seen: list[list[int]] = []

    def loss_and_grads(params, X, y):
        seen.append(X[:, 0].astype(int).tolist())
        return 0.0, {"w": np.zeros(1)}

    model = FunctionModel({"w": np.zeros(1)}, loss_and_grads)
    trainer = Trainer(
        model,
        fo.SGD(model.arena, lr=0.1),
        batch_size=16,
        seed=seed,
        shuffle=shuffle,
        drop_last=drop_last,
        verbose=0,
    )
    X = np.arange(n, dtype=np.float64).reshape(-1, 1)
    history = trainer.fit(X, np.zeros(n), epochs=3)
    return seen, history


def test_seeded_shuffling_visits_every_row_once_per_epoch():
    seen, history = _batch_rows(seed=0)
    assert [len(b) for b in seen] == [16, 16, 16, 2] * 3
    epochs = [sum(seen[i * 4 : (i + 1) * 4], []) for i in range(3)]
    for rows in epochs:
        assert sorted(rows) == list(range(50))
    assert epochs[0] != list(range(50))  # shuffled
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    assert _batch_rows(seed=0)[0] == seen  # the seed fixes the order
    assert _batch_rows(seed=1)[0] != seen  # another seed, another order
    unshuffled = _batch_rows(seed=0, shuffle=False)[0]
    assert sum(unshuffled[:4], []) == list(range(50))
    assert _batch_rows(seed=1, shuffle=False)[0] == unshuffled


def test_same_seed_gives_identical_runs_another_seed_does_not():
    X, y = blobs(96)
    runs = []
    for seed in (0, 0, 1):
        trainer = mlp_trainer(seed=0, dropout=0.0)
        trainer.seed = seed  # only the shuffling seed differs
        trainer.fit(X, y, epochs=2)
        runs.append((trainer.get_params(), [s["loss"] for s in trainer.history.steps]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])
    assert runs[0][1] != runs[2][1]
    # The model seed (init and dropout masks) matters too.
    a, b = mlp_trainer(seed=3, dropout=0.3), mlp_trainer(seed=3, dropout=0.3)
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    np.testing.assert_array_equal(a.get_params(), b.get_params())


def test_drop_last_drops_the_short_batch():
    seen, history = _batch_rows(seed=0, drop_last=True)
    assert [len(b) for b in seen] == [16, 16, 16] * 3
    assert [s["batch_size"] for s in history.steps] == [16] * 9
    for e in range(3):
        rows = sum(seen[e * 3 : (e + 1) * 3], [])
        assert len(set(rows)) == 48
    # Which 2 rows are left out changes with the epoch's shuffle.
    left_out = [set(range(50)) - set(sum(seen[e * 3 : (e + 1) * 3], [])) for e in range(3)]
    assert len({frozenset(s) for s in left_out}) > 1


def test_batch_size_schedule_changes_the_batch_size_per_epoch():
    X, y = blobs(64)
    schedule = S.step_batch_size(8, 2, every=2, max_batch_size=32)
    trainer = logistic_trainer(batch_size=schedule)
    history = trainer.fit(X, y, epochs=6)
    assert history["batch_size"] == [8, 8, 16, 16, 32, 32]
    sizes = [s["batch_size"] for s in history.steps]
    assert sizes == [8] * 16 + [16] * 8 + [32] * 4
    assert trainer.batches_per_epoch(4) == 2
    # A plain callable works too, and a bad size is an error.
    trainer = logistic_trainer(batch_size=lambda epoch: 10 + epoch)
    assert trainer.fit(X, y, epochs=2)["batch_size"] == [10, 11]
    trainer = logistic_trainer(batch_size=lambda epoch: 0)
    with pytest.raises(ValueError, match="batch size at epoch 0"):
        trainer.fit(X, y, epochs=1)


# -- schedulers, accumulation, clipping, EMA ------------------------------------


def test_scheduler_per_step_drives_the_updates():
    c = np.array([1.0, -2.0, 0.5])
    model = constant_grad_model(c)
    opt = fo.SGD(model.arena, lr=1.0)
    scheduler = fo.Scheduler(opt, S.exponential(0.5))
    rec = Recorder()
    trainer = Trainer(
        model, opt, loss="mse", scheduler=scheduler, batch_size=4, callbacks=[rec], verbose=0
    )
    trainer.fit(np.zeros((12, 1)), np.zeros(12), epochs=2)  # 3 steps per epoch
    assert lr_used(rec, c) == pytest.approx([0.5**k for k in range(6)], rel=1e-12)
    assert scheduler.t == 6


def test_step_records_hold_the_lr_that_step_used():
    # A step record's lr should be the lr the update of that batch applied
    # (as its loss is the loss of that batch), not the next step's.
    c = np.array([1.0, -2.0, 0.5])
    model = constant_grad_model(c)
    opt = fo.SGD(model.arena, lr=1.0)
    scheduler = fo.Scheduler(opt, S.exponential(0.5))
    rec = Recorder()
    trainer = Trainer(
        model, opt, loss="mse", scheduler=scheduler, batch_size=4, callbacks=[rec], verbose=0
    )
    history = trainer.fit(np.zeros((12, 1)), np.zeros(12), epochs=2)
    recorded = [s["lr"] for s in history.steps]
    assert recorded == pytest.approx(lr_used(rec, c), rel=1e-12)


def test_scheduler_per_epoch():
    c = np.array([2.0])
    model = constant_grad_model(c)
    opt = fo.SGD(model.arena, lr=1.0)
    scheduler = fo.Scheduler(opt, S.exponential(0.5))
    rec = Recorder()
    trainer = Trainer(
        model,
        opt,
        loss="mse",
        scheduler=scheduler,
        scheduler_interval="epoch",
        batch_size=4,
        callbacks=[rec],
        verbose=0,
    )
    history = trainer.fit(np.zeros((12, 1)), np.zeros(12), epochs=3)
    assert history["lr"] == [1.0, 0.5, 0.25]
    assert [s["lr"] for s in history.steps] == [1.0] * 3 + [0.5] * 3 + [0.25] * 3
    assert lr_used(rec, c) == pytest.approx([1.0] * 3 + [0.5] * 3 + [0.25] * 3)
    assert scheduler.t == 3


def test_gradient_accumulation_updates_every_k_batches():
    # loss = mean(X @ w): the grad of a batch is the mean of its rows, so an
    # accumulated (averaged) update is -lr * the mean of the k batches' rows.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))

    def loss_and_grads(params, Xb, yb):
        return float(np.mean(Xb @ params["w"])), {"w": Xb.mean(axis=0)}

    model = FunctionModel({"w": np.zeros(3)}, loss_and_grads)
    opt = fo.SGD(model.arena, lr=0.5, accumulate=4)
    scheduler = fo.Scheduler(opt, S.exponential(0.9))
    rec = Recorder()
    trainer = Trainer(
        model,
        opt,
        loss="mse",
        scheduler=scheduler,
        batch_size=4,
        shuffle=False,
        callbacks=[rec],
        verbose=0,
    )
    history = trainer.fit(X, np.zeros(40), epochs=2)  # 20 micro-batches
    assert len(history.steps) == 20
    assert opt.num_updates == 5
    assert scheduler.t == 5  # only real updates count
    params = [rec.start, *rec.after_batch]
    moved = [not np.array_equal(a, b) for a, b in zip(params, params[1:])]
    assert moved == [(k + 1) % 4 == 0 for k in range(20)]
    # Update j averages the grads of rows 16j..16j+15 (4 batches of 4) and runs
    # at the scheduled lr 0.5 * 0.9**j.
    updates = [params[4 * (j + 1)] - params[4 * j] for j in range(5)]
    for j, delta in enumerate(updates):
        expected = -0.5 * 0.9**j * X[(16 * j) % 40 : (16 * j) % 40 + 16].mean(axis=0)
        if j == 2:  # rows 32..39 of epoch 1, then rows 0..7 of epoch 2
            expected = -0.5 * 0.9**j * np.concatenate([X[32:], X[:8]]).mean(axis=0)
        np.testing.assert_allclose(delta, expected, rtol=1e-10)


def test_max_grad_norm_clips_every_step():
    X, y = blobs(96)
    model = logistic_regression(4, 3, seed=0, dtype=np.float64)
    opt = fo.SGD(model.arena, lr=1.0, max_grad_norm=0.05)
    rec = Recorder()
    trainer = Trainer(model, opt, batch_size=16, callbacks=[rec], verbose=0)
    trainer.fit(X, y, epochs=2)
    params = [rec.start, *rec.after_batch]
    steps = [np.linalg.norm(b - a) for a, b in zip(params, params[1:])]
    # Plain SGD at lr 1: each move is the clipped grad, of norm min(|g|, 0.05).
    for moved, norm in zip(steps, rec.grad_norms):
        assert norm is not None
        # (torch's clip_grad_norm_ divides by norm + 1e-6, hence rel 1e-4)
        assert moved == pytest.approx(min(norm, 0.05), rel=1e-4)
        assert moved <= 0.05 * (1 + 1e-12)
    assert max(rec.grad_norms) > 0.05  # clipping did happen
    # Without clipping the same run moves further.
    free_model = logistic_regression(4, 3, seed=0, dtype=np.float64)
    free = Trainer(free_model, fo.SGD(free_model.arena, lr=1.0), batch_size=16, verbose=0)
    free.fit(X, y, epochs=2)
    assert np.linalg.norm(free.get_params() - rec.start) > 2 * np.linalg.norm(
        trainer.get_params() - rec.start
    )


def test_ema_weights_are_used_for_evaluation_and_put_back():
    X, y = blobs(96, dtype=np.float64)
    decay = 0.8
    model = logistic_regression(4, 3, seed=0, dtype=np.float64)
    opt = fo.SGD(model.arena, lr=0.5, ema_decay=decay)

    class Ema(Callback):  # the average recomputed by hand
        average = None

        def on_batch_end(self, trainer, step, logs):
            p = trainer.get_params()
            self.average = (
                p if self.average is None else self.average + (1 - decay) * (p - self.average)
            )

    ema = Ema()
    trainer = Trainer(model, opt, batch_size=16, callbacks=[ema], verbose=0)
    history = trainer.fit(X, y, epochs=3, validation_data=(X, y))
    raw = trainer.get_params()
    assert not np.allclose(raw, ema.average)

    out = trainer.predict(X)
    np.testing.assert_array_equal(trainer.get_params(), raw)  # put back, bitwise
    result = trainer.evaluate(X, y)
    np.testing.assert_array_equal(trainer.get_params(), raw)
    np.testing.assert_array_equal(model.arena.data, raw)

    model.arena.data[...] = ema.average
    expected = model.forward(X, train=False)
    expected_loss = SoftmaxCrossEntropy()(expected, y)[0]
    model.arena.data[...] = raw
    raw_loss = SoftmaxCrossEntropy()(model.forward(X, train=False), y)[0]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-10)
    assert result["loss"] != pytest.approx(raw_loss, rel=1e-6)
    # Validation during fit used the averaged weights as well.
    assert history["val_loss"][-1] == pytest.approx(expected_loss, rel=1e-10)
    # Training goes on from the raw params.
    trainer.fit(X, y, epochs=1)
    assert trainer.epoch == 4


# -- FunctionModel -------------------------------------------------------------


def _least_squares(n: int = 64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5))
    y = X @ np.arange(1.0, 6.0)

    def loss_and_grads(params, Xb, yb):
        r = Xb @ params["w"] + params["b"] - yb
        return float(np.mean(r**2)), {"w": 2 * Xb.T @ r / len(yb), "b": np.array(2 * r.mean())}

    def predict(params, Xb):
        return Xb @ params["w"] + params["b"]

    return X, y, loss_and_grads, predict


def test_function_model_fits_a_least_squares_problem():
    X, y, loss_and_grads, predict = _least_squares()
    model = FunctionModel({"w": np.zeros(5), "b": np.zeros(())}, loss_and_grads)
    trainer = Trainer(model, fo.SGD(model.arena, lr=0.05), loss="mse", batch_size=16, verbose=0)
    history = trainer.fit(X, y, epochs=15, validation_data=(X, y))
    assert history["loss"][-1] < 1e-2 * history["loss"][0]
    np.testing.assert_allclose(model.arena.params["w"], np.arange(1.0, 6.0), atol=0.1)
    # Without a predict function: evaluate gives the loss of loss_and_grads ...
    result = trainer.evaluate(X, y)
    assert set(result) == {"loss"}
    assert result["loss"] == pytest.approx(loss_and_grads(model.arena.params, X, y)[0])
    assert history["val_loss"][-1] == result["loss"]
    # ... and predict is an error.
    with pytest.raises(ValueError, match="predict"):
        trainer.predict(X)
    assert model.config()["shapes"] == {"w": [5], "b": []}


def test_function_model_with_predict_gives_predictions_and_metrics():
    X, y, loss_and_grads, predict = _least_squares()
    model = FunctionModel({"w": np.zeros(5), "b": np.zeros(())}, loss_and_grads, predict)
    trainer = Trainer(
        model,
        fo.SGD(model.arena, lr=0.05),
        loss="mse",
        metrics=["r2"],
        batch_size=16,
        verbose=0,
    )
    history = trainer.fit(X, y, epochs=10, validation_data=(X, y))
    out = trainer.predict(X)
    assert out.shape == (64,)
    np.testing.assert_allclose(out, predict(model.arena.params, X))
    result = trainer.evaluate(X, y)
    assert set(result) == {"loss", "r2"}
    assert result["r2"] > 0.99
    assert history["val_r2"][-1] == result["r2"]


def test_function_model_training_metrics_are_real_values():
    # Training metrics of a FunctionModel with a predict function should be
    # measured on the batches (like the loss), not reported as 0.0.
    X, y, loss_and_grads, predict = _least_squares()
    model = FunctionModel({"w": np.zeros(5), "b": np.zeros(())}, loss_and_grads, predict)
    trainer = Trainer(
        model, fo.SGD(model.arena, lr=0.05), loss="mse", metrics=["mse"], batch_size=16, verbose=0
    )
    history = trainer.fit(X, y, epochs=3)
    # The metric is the loss here: mse of the pre-update predictions.
    assert history["mse"] == pytest.approx(history["loss"], rel=1e-9)


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

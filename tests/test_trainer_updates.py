"""The trainer's updates: schedulers per step and per epoch (checked through
the lr each step really used), gradient accumulation, clipping, EMA weights
for evaluation, and FunctionModel on a least-squares problem.
"""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from _trainer_helpers import Recorder, blobs
from ferroptim import schedules as S
from ferroptim.train import Callback, FunctionModel, Trainer
from ferroptim.train.losses import SoftmaxCrossEntropy
from ferroptim.train.models import logistic_regression

# -- helpers -------------------------------------------------------------------


def constant_grad_model(c: np.ndarray) -> FunctionModel:
    """loss = w . c: the grad is ``c`` whatever the batch, so an SGD step moves
    ``w`` by exactly ``-lr * c`` and the lr a step used can be read off."""

    def loss_and_grads(params, X, y):
        return float(params["w"] @ c), {"w": c.copy()}

    return FunctionModel({"w": np.zeros(len(c))}, loss_and_grads)


def lr_used(recorder: Recorder, c: np.ndarray) -> list[float]:
    params = [recorder.start, *recorder.after_batch]
    return [float(-(b - a)[0] / c[0]) for a, b in zip(params, params[1:])]


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

"""The trainer of ferroptim.train: the loop, its history, and its callbacks.

Everything runs on small seeded synthetic data (a few hundred rows, models of
a few hundred params), so the whole file takes a few seconds. Where the
trainer's bookkeeping is checked (which lr a step used, which rows a batch
held, what EMA weights are), the oracle is independent of the code under
test: a FunctionModel with a known gradient, a callback recording the params
after every batch, or an EMA recomputed by hand.

This module: fit, history, evaluate, predict, shuffling, drop_last and
batch-size schedules. Schedulers, accumulation, clipping, EMA and
FunctionModel are in test_trainer_updates.py, the callbacks in
test_trainer_callbacks.py; the shared data and recorders in _trainer_helpers.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferroptim as fo
from _trainer_helpers import blobs, logistic_trainer
from ferroptim import schedules as S
from ferroptim.train import FunctionModel, History, Trainer
from ferroptim.train.losses import SoftmaxCrossEntropy
from ferroptim.train.metrics import accuracy
from ferroptim.train.models import logistic_regression, mlp

# -- helpers -------------------------------------------------------------------


def mlp_trainer(seed: int = 0, dropout: float = 0.0, **kwargs) -> Trainer:
    model = mlp(4, hidden=(16,), n_outputs=3, dropout=dropout, seed=seed)
    opt = fo.AdamW(model.arena, lr=0.02)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("batch_size", 16)
    return Trainer(model, opt, metrics=["accuracy"], seed=seed, **kwargs)


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
